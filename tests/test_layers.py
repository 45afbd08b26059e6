"""Quantizer registry and the layers that take quantizer specs: spec forms, errors, get_config,
safe-mode round trips, legacy configs, and a new quantizer added as one function plus its name."""
import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from annt.models import quantizers
from annt.models.layers import ChannelPad, QuantActivation, QuantConv2D, QuantDense
from annt.models.quantizers import (Quantizer, get_quantizer, quantize_activations, quantize_weights,
                                    register_quantizer, serialize_quantizer)


def _x(shape, seed=0, low=-0.5, high=1.5):
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def test_dorefa_quantizers_are_registered_under_their_names():
    assert {"dorefa_weights", "dorefa_activations"} <= set(quantizers.QUANTIZERS)
    w = tf.constant(_x((6, 5)))
    np.testing.assert_array_equal(get_quantizer(("dorefa_weights", {"bits": 4}))(w).numpy(),
                                  quantize_weights(w, 4).numpy())
    np.testing.assert_array_equal(get_quantizer(("dorefa_activations", {"bits": 2}))(w).numpy(),
                                  quantize_activations(w, 2).numpy())


def test_every_spec_form_gives_the_same_quantizer():
    want = Quantizer("dorefa_weights", {"bits": 4})
    for spec in (("dorefa_weights", {"bits": 4}), ["dorefa_weights", {"bits": 4}],
                 {"name": "dorefa_weights", "params": {"bits": 4}}, want):
        assert get_quantizer(spec) == want
    assert get_quantizer(None) is None
    assert serialize_quantizer(want) == {"name": "dorefa_weights", "params": {"bits": 4}}
    assert serialize_quantizer(None) is None
    assert get_quantizer(("dorefa_weights", {"bits": 4.0})).params == {"bits": 4}  # checked and normalised


@pytest.mark.parametrize("spec, fragment", [
    (("dorefa_weigths", {"bits": 4}), "unknown quantizer 'dorefa_weigths'; registered: .*dorefa_weights"),
    (("dorefa_weights", {"bit": 4}), r"quantizer 'dorefa_weights' has no parameter 'bit' \(parameters: bits\)"),
    (("dorefa_weights", {}), "quantizer 'dorefa_weights' needs parameter 'bits'"),
    (("dorefa_weights", {"bits": 3}), r"must be one of \[32, 1, 2, 4, 8, 12, 16\]"),
    (4, "not a quantizer spec"),
    ({"name": "dorefa_weights", "bits": 4}, "not a quantizer spec"),
])
def test_bad_specs_are_refused_when_the_layer_is_built(spec, fragment):
    with pytest.raises(ValueError, match=fragment):
        QuantDense(3, kernel_quantizer=spec)


def test_a_name_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="already registered"):
        register_quantizer("dorefa_weights")(lambda x: x)


def test_quant_dense_and_conv_use_the_quantized_kernel_and_the_float_bias():
    dense = QuantDense(4, kernel_quantizer=("dorefa_weights", {"bits": 2}), bias_initializer="ones")
    x = _x((3, 5))
    y = dense(x).numpy()
    wq = quantize_weights(dense.kernel, 2).numpy()
    np.testing.assert_allclose(y, x @ wq + 1.0, rtol=1e-5, atol=1e-6)
    assert set(np.round((np.unique(wq) + 1) / 2 * 3, 4)) <= {0, 1, 2, 3}

    conv = QuantConv2D(2, 3, padding="same", kernel_quantizer=("dorefa_weights", {"bits": 1}))
    img = _x((1, 6, 6, 1))
    y = conv(img).numpy()
    e = np.mean(np.abs(conv.kernel.numpy()))
    np.testing.assert_allclose(np.unique(conv.quantized_kernel().numpy()), [-e, e], rtol=1e-6)
    want = tf.nn.conv2d(img, conv.quantized_kernel(), 1, "SAME").numpy() + conv.bias.numpy()
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


def test_no_kernel_quantizer_is_the_float_layer():
    dense = QuantDense(4, activation="tanh")
    assert dense.kernel_quantizer is None
    x = _x((3, 5))
    y = dense(x).numpy()
    assert dense.quantized_kernel() is dense.kernel
    np.testing.assert_allclose(y, np.tanh(x @ dense.kernel.numpy() + dense.bias.numpy()), rtol=1e-5, atol=1e-6)


def test_quant_activation_applies_its_quantizer_and_none_is_identity():
    x = _x((4, 7))
    np.testing.assert_array_equal(QuantActivation(("dorefa_activations", {"bits": 2}))(x).numpy(),
                                  quantize_activations(tf.constant(x), 2).numpy())
    np.testing.assert_array_equal(QuantActivation(None)(x).numpy(), x)


def test_get_config_stores_the_spec_as_json_and_from_config_restores_it():
    dense = QuantDense(3, kernel_quantizer=("dorefa_weights", {"bits": 4}), name="d")
    cfg = dense.get_config()
    assert cfg["kernel_quantizer"] == {"name": "dorefa_weights", "params": {"bits": 4}}
    assert "weight_bits" not in cfg
    json.dumps(cfg)
    assert QuantDense.from_config(cfg).kernel_quantizer == dense.kernel_quantizer
    act = QuantActivation(("dorefa_activations", {"bits": 8}))
    assert act.get_config()["quantizer"] == {"name": "dorefa_activations", "params": {"bits": 8}}
    assert QuantActivation.from_config(act.get_config()).quantizer == act.quantizer
    assert QuantConv2D(2, 3).get_config()["kernel_quantizer"] is None


def test_configs_saved_before_quantizer_specs_still_load():
    # model files from before kernel_quantizer/quantizer held weight_bits / bits (32 = float)
    cfg = QuantDense(3, name="d").get_config()
    del cfg["kernel_quantizer"]
    assert QuantDense.from_config({**cfg, "weight_bits": 4}).kernel_quantizer == Quantizer("dorefa_weights", {"bits": 4})
    assert QuantDense.from_config({**cfg, "weight_bits": 32}).kernel_quantizer is None
    act = QuantActivation(None).get_config()
    del act["quantizer"]
    assert QuantActivation.from_config({**act, "bits": 2}).quantizer == Quantizer("dorefa_activations", {"bits": 2})


def test_channel_pad_adds_zero_channels():
    y = ChannelPad(1, 2)(np.ones((1, 2, 2, 3), np.float32)).numpy()
    assert y.shape == (1, 2, 2, 6)
    np.testing.assert_array_equal(y[..., 1:4], 1.0)
    assert not y[..., 0].any() and not y[..., 4:].any()


@pytest.fixture
def toy_registry(monkeypatch):
    """A private copy of the registry, so the toy quantizer disappears after the test."""
    monkeypatch.setattr(quantizers, "QUANTIZERS", dict(quantizers.QUANTIZERS))
    return quantizers.QUANTIZERS


def test_a_new_quantizer_is_one_function_plus_its_name(toy_registry, tmp_path):
    # The extension point later quantizers (non-scaled sign, stochastic sign, input
    # discretization) use: register f(x, **params), then name it in any layer.
    @register_quantizer("toy_ternary", threshold=float)
    def toy_ternary(x, threshold=0.5):
        """{-1, 0, 1}: sign(x) where |x| > threshold, else 0; straight-through gradient."""
        q = tf.where(tf.abs(x) > threshold, tf.sign(x), tf.zeros_like(x))
        return x + tf.stop_gradient(q - x)

    spec = ("toy_ternary", {"threshold": 0.25})
    inputs = keras.Input((5,))
    hidden = QuantDense(4, kernel_quantizer=spec, name="fc")(inputs)
    outputs = QuantActivation("toy_ternary", name="qa")(hidden)
    model = keras.Model(inputs, outputs)
    x = _x((3, 5))

    kernel = model.get_layer("fc").kernel.numpy()
    tern = np.where(np.abs(kernel) > 0.25, np.sign(kernel), 0.0)
    h = x @ tern + model.get_layer("fc").bias.numpy()
    want = np.where(np.abs(h) > 0.5, np.sign(h), 0.0)
    np.testing.assert_array_equal(model(x).numpy(), want)
    assert set(np.unique(model(x).numpy())) <= {-1.0, 0.0, 1.0}

    path = tmp_path / "toy.keras"
    model.save(path)
    with zipfile.ZipFile(path) as z:
        layers = {l["name"]: l["config"] for l in json.loads(z.read("config.json"))["config"]["layers"]}
    assert layers["fc"]["kernel_quantizer"] == {"name": "toy_ternary", "params": {"threshold": 0.25}}
    assert layers["qa"]["quantizer"] == {"name": "toy_ternary", "params": {}}
    loaded = keras.models.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())

    del toy_registry["toy_ternary"]  # a file naming an unregistered quantizer says which
    with pytest.raises((TypeError, ValueError), match="unknown quantizer 'toy_ternary'"):
        keras.models.load_model(path, safe_mode=True, compile=False)
