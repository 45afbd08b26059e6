"""Model folders (save/load/card checks, broken files named by their fault) and the ANNT/tensorpack
LeNet-5 import."""
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from annt.models.architectures import build_model
from annt.errors import ModelError
from annt.models.folder import load_model_folder, save_model_folder
from annt.models.quantizers import Quantizer
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


def test_a_trained_model_is_saved_without_its_optimizer_state(tmp_path):
    import h5py
    import keras

    model = build_model("lenet5", weight_bits=2, act_bits=2, batchnorm=True)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).random((16, 28, 28, 1), dtype=np.float32)
    model.fit(x, np.arange(16) % 10, epochs=1, verbose=0)  # BatchNorm statistics move, Adam has slots
    folder = save_model_folder(model, tmp_path / "m", CALLER_CARD)
    with zipfile.ZipFile(folder / "model.keras") as z:
        (tmp_path / "w.h5").write_bytes(z.read("model.weights.h5"))
    with h5py.File(tmp_path / "w.h5") as h:
        names = []
        h.visit(names.append)
    assert names and not any(n.startswith("optimizer/vars/") for n in names)
    loaded, _ = load_model_folder(folder)
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), model(x, training=False).numpy())


def test_round_trip_gives_identical_logits_in_safe_mode(saved):
    model, folder = saved
    loaded, card = load_model_folder(folder, expect_arch="mnist_a", expect_weight_bits=4, expect_act_bits=2)
    x = np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    assert loaded.get_layer("conv1").kernel_quantizer == Quantizer("dorefa_weights", {"bits": 4})
    assert loaded.get_layer("conv1_qa").quantizer == Quantizer("dorefa_activations", {"bits": 2})
    assert loaded.get_layer("conv0").kernel_quantizer is None
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
    with pytest.raises(ModelError, match="is not a complete Keras archive"):
        load_model_folder(bad)


@pytest.fixture
def copy_of(saved, tmp_path):
    """A fresh copy of the saved folder, and the bytes of its model.keras."""
    folder = tmp_path / "copy"
    shutil.copytree(saved[1], folder)
    return folder, (folder / "model.keras").read_bytes()


def _rewrite_archive(path: Path, change):
    """Rewrite the zip at ``path`` with ``change(name, data) -> data | None`` (None drops the entry)."""
    with zipfile.ZipFile(path) as z:
        entries = [(info, z.read(info.filename)) for info in z.infolist()]
    with zipfile.ZipFile(path, "w") as z:
        for info, data in entries:
            data = change(info.filename, data)
            if data is not None:
                z.writestr(info, data)


def _load_error(folder) -> str:
    with pytest.raises(ModelError) as err:
        load_model_folder(folder)
    msg = str(err.value)
    assert "\n" not in msg and "File not found" not in msg  # one line, and never the old misleading text
    return msg


@pytest.mark.parametrize("cut", [0.5, 0.99])
def test_truncated_model_file_is_named_truncated_with_its_size(copy_of, cut):
    folder, data = copy_of
    (folder / "model.keras").write_bytes(data[:int(len(data) * cut)])
    msg = _load_error(folder)
    assert f"model.keras is not a complete Keras archive ({int(len(data) * cut)} bytes; truncated" in msg


def test_empty_model_file_is_named_with_zero_bytes(copy_of):
    folder, _ = copy_of
    (folder / "model.keras").write_bytes(b"")
    assert "model.keras is not a complete Keras archive (0 bytes; truncated" in _load_error(folder)


@pytest.mark.parametrize("entry", ["model.weights.h5", "config.json"])
def test_archive_missing_an_entry_names_it(copy_of, entry):
    folder, _ = copy_of
    _rewrite_archive(folder / "model.keras", lambda name, data: None if name == entry else data)
    assert f"model.keras is not a Keras model archive (missing {entry})" in _load_error(folder)


def test_truncated_weights_inside_a_complete_archive_are_named(copy_of):
    folder, _ = copy_of
    _rewrite_archive(folder / "model.keras", lambda name, data: data[:len(data) // 2] if name.endswith(".h5") else data)
    msg = _load_error(folder)
    assert msg.startswith(f"cannot load {folder / 'model.keras'}: ") and "truncated file" in msg


def test_corrupted_byte_is_named_by_its_crc(copy_of):
    folder, data = copy_of
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    (folder / "model.keras").write_bytes(bytes(flipped))
    assert "Bad CRC-32 for file 'model.weights.h5'" in _load_error(folder)


def test_unknown_quantizer_is_named_not_keras_wrapper_text(copy_of):
    folder, _ = copy_of

    def rename(name, data):
        return data.replace(b'"dorefa_weights"', b'"dorefa_weightz"') if name == "config.json" else data

    _rewrite_archive(folder / "model.keras", rename)
    assert _load_error(folder).endswith("unknown quantizer 'dorefa_weightz'; registered: dorefa_activations, dorefa_weights, sign, stochastic_sign")


def test_model_file_from_before_quantizer_specs_loads_with_the_same_logits(copy_of, saved):
    # weight_bits / bits, as every model.keras written before kernel_quantizer held them
    folder, _ = copy_of

    def legacy(name, data):
        if name != "config.json":
            return data
        cfg = json.loads(data)
        for layer in cfg["config"]["layers"]:
            c = layer["config"]
            if "kernel_quantizer" in c:
                q = c.pop("kernel_quantizer")
                c["weight_bits"] = 32 if q is None else q["params"]["bits"]
            if "quantizer" in c:
                c["bits"] = c.pop("quantizer")["params"]["bits"]
        return json.dumps(cfg).encode()

    _rewrite_archive(folder / "model.keras", legacy)
    with zipfile.ZipFile(folder / "model.keras") as z:
        assert b"weight_bits" in z.read("config.json") and b"kernel_quantizer" not in z.read("config.json")
    loaded, _ = load_model_folder(folder)
    x = np.random.default_rng(2).random((4, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(loaded(x).numpy(), saved[0](x).numpy())
    assert loaded.get_layer("conv1").kernel_quantizer == Quantizer("dorefa_weights", {"bits": 4})


def test_resnet_folder_loads_in_a_fresh_process(tmp_path):
    # Only what annt.models.folder imports may be needed to load any annt model (ChannelPad included).
    model = build_model("resnet20", weight_bits=2, act_bits=2)
    save_model_folder(model, tmp_path / "r", {"dataset": "cifar10"})
    x = np.random.default_rng(3).random((2, 32, 32, 3), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, numpy as np; from annt.models.folder import load_model_folder; "
            "m, _ = load_model_folder(sys.argv[1]); np.save(sys.argv[2], m(np.load(sys.argv[3])).numpy())")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r"), str(tmp_path / "y.npy"), str(tmp_path / "x.npy")],
                       capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), model(x).numpy())


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


def test_model_folder_files_respect_the_umask(tmp_path, saved):
    import os

    model, _ = saved
    old = os.umask(0o022)
    try:
        folder = save_model_folder(model, tmp_path / "shared", {"dataset": "mnist"})
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()} == {"model.keras": 0o644, "card.json": 0o644}
