"""Model folders (save/load/card checks) and the ANNT/tensorpack LeNet-5 import."""
import json

import numpy as np
import pytest
import tensorflow as tf

from annt.models.architectures import build_model
from annt.errors import ModelError
from annt.models.folder import load_model_folder, save_model_folder
from annt.models.tensorpack import import_tensorpack_lenet5

CALLER_CARD = {"dataset": "mnist", "val_accuracy": 0.98, "test_accuracy": 0.975, "epochs": 3,
               "seed": 0, "data_hash": "abc123"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = build_model("mnist_a", weight_bits=4, act_bits=2, batchnorm=True)
    folder = save_model_folder(model, tmp_path_factory.mktemp("m") / "mnist_a-w4a2", CALLER_CARD)
    return model, folder


def test_save_writes_model_and_full_card_only(saved):
    _, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "model.keras"]  # no temp files left
    card = json.loads((folder / "card.json").read_text())
    assert card["arch"] == "mnist_a"
    assert card["bits"] == {"weights": 4, "activations": 2, "label": "w4a2"}
    assert card["batchnorm"] is True and card["quantize_first_last"] is False
    assert card["quantize_last_hidden"] is False
    assert card["input_shape"] == [28, 28, 1] and card["num_classes"] == 10
    assert card["test_accuracy"] == 0.975 and card["data_hash"] == "abc123"
    assert set(card["versions"]) == {"tensorflow", "keras", "annt"}
    assert card["versions"]["tensorflow"] == tf.__version__


def test_round_trip_gives_identical_logits_in_safe_mode(saved):
    model, folder = saved
    loaded, card = load_model_folder(folder, expect_arch="mnist_a", expect_weight_bits=4, expect_act_bits=2)
    x = np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    assert loaded.get_layer("conv1").weight_bits == 4 and loaded.get_layer("conv1_qa").bits == 2
    assert card["val_accuracy"] == 0.98


def test_resnet_round_trip(tmp_path):
    model = build_model("resnet20", (32, 32, 3), weight_bits=1, act_bits=1)
    save_model_folder(model, tmp_path / "r", {"dataset": "cifar10"})
    loaded, card = load_model_folder(tmp_path / "r", expect_arch="resnet20")
    x = np.random.default_rng(1).random((2, 32, 32, 3), dtype=np.float32)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    assert card["bits"]["label"] == "1bit" and card["batchnorm"] is True


@pytest.mark.parametrize("kwargs, fragment", [
    ({"expect_arch": "lenet5"}, "says arch 'mnist_a', but 'lenet5' was expected"),
    ({"expect_weight_bits": 1}, "says weight bits 4, but 1 was expected"),
    ({"expect_act_bits": 32}, "says activation bits 2, but 32 was expected"),
])
def test_card_mismatch_is_refused(saved, kwargs, fragment):
    with pytest.raises(ModelError, match=fragment) as err:
        load_model_folder(saved[1], **kwargs)
    assert "\n" not in str(err.value)


def test_missing_or_broken_folders_raise_model_error(tmp_path, saved):
    with pytest.raises(ModelError, match="does not exist"):
        load_model_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="has no card.json"):
        load_model_folder(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "card.json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        load_model_folder(bad)
    (bad / "card.json").write_text(json.dumps({"arch": "mnist_a", "bits": {"weights": 4, "activations": 4}}))
    with pytest.raises(ModelError, match="has no model.keras"):
        load_model_folder(bad)
    (bad / "model.keras").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="cannot load"):
        load_model_folder(bad)


def test_card_contradicting_the_model_is_refused(tmp_path):
    model = build_model("lenet5", weight_bits=4, act_bits=4)
    with pytest.raises(ModelError, match="arch"):
        save_model_folder(model, tmp_path / "x", {"arch": "mnist_a"})
    assert not (tmp_path / "x").exists()


# --- tensorpack import ----------------------------------------------------------------------

LENET_SHAPES = {"conv0/W": (5, 5, 1, 6), "conv0/b": (6,), "conv1/W": (5, 5, 6, 16), "conv1/b": (16,),
                "fc0/W": (400, 120), "fc0/b": (120,), "fc1/W": (120, 84), "fc1/b": (84,),
                "linear/W": (84, 10), "linear/b": (10,)}


def _write_tf1_checkpoint(prefix, values):
    """A TF1 checkpoint with exactly these variable names (what tensorpack's ModelSaver writes)."""
    graph = tf.Graph()
    with graph.as_default():
        for name, value in values.items():
            scope, var = name.rsplit("/", 1)
            with tf.compat.v1.variable_scope(scope, reuse=tf.compat.v1.AUTO_REUSE):
                tf.compat.v1.get_variable(var, initializer=tf.constant(value))
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return saver.save(sess, str(prefix))


def _random_lenet_values(seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0, 0.3, s).astype(np.float32) for k, s in LENET_SHAPES.items()}


def _reference_lenet(v, images_nhw):
    """Independent forward pass from the raw variables, on ANNT's (N, 28, 28) input."""
    x = tf.expand_dims(tf.constant(images_nhw), 3)
    x = tf.tanh(tf.nn.conv2d(x, v["conv0/W"], 1, "SAME") + v["conv0/b"])
    x = tf.nn.avg_pool2d(x, 2, 2, "VALID")
    x = tf.tanh(tf.nn.conv2d(x, v["conv1/W"], 1, "VALID") + v["conv1/b"])
    x = tf.nn.avg_pool2d(x, 2, 2, "VALID")
    x = tf.reshape(x, [x.shape[0], -1])  # tensorpack batch_flatten: NHWC row-major
    x = tf.tanh(x @ v["fc0/W"] + v["fc0/b"])
    x = tf.tanh(x @ v["fc1/W"] + v["fc1/b"])
    return (x @ v["linear/W"] + v["linear/b"]).numpy()


def test_tensorpack_lenet5_import_matches_reference_forward_pass(tmp_path):
    values = _random_lenet_values()
    values["conv0/W/Adam"] = np.zeros((5, 5, 1, 6), np.float32)  # optimizer slots are ignored
    prefix = _write_tf1_checkpoint(tmp_path / "model-1000", values)
    model = import_tensorpack_lenet5(prefix)
    images = np.random.default_rng(1).random((6, 28, 28), dtype=np.float32)
    want = _reference_lenet(values, images)
    got = model(images[..., None]).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.abs(want).max() > 0.1  # a non-trivial comparison
    # the checkpoint folder works as well as the prefix
    np.testing.assert_allclose(import_tensorpack_lenet5(tmp_path)(images[..., None]).numpy(), want, atol=1e-5)


def test_tensorpack_import_names_missing_and_misshapen_variables(tmp_path):
    values = _random_lenet_values()
    del values["fc1/b"]
    prefix = _write_tf1_checkpoint(tmp_path / "a" / "ckpt", values)
    with pytest.raises(ModelError, match="lacks LeNet-5 variables: fc1/b"):
        import_tensorpack_lenet5(prefix)
    values = _random_lenet_values()
    values["fc0/W"] = np.zeros((256, 120), np.float32)
    prefix = _write_tf1_checkpoint(tmp_path / "b" / "ckpt", values)
    with pytest.raises(ModelError, match=r"fc0/W \(256, 120\) != \(400, 120\)"):
        import_tensorpack_lenet5(prefix)
    with pytest.raises(ModelError, match="cannot read"):
        import_tensorpack_lenet5(tmp_path / "missing" / "ckpt")
