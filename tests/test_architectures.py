"""Architectures: every arch × bit width builds, same graph at every width, quantizer placement."""
import keras
import numpy as np
import pytest

from annt.models.architectures import ARCH_DEFAULTS, ARCHITECTURES, build_model
from annt.models.layers import QuantActivation, QuantConv2D, QuantDense

ALL_BITS = [32, 1, 2, 4, 8, 12, 16]
MNIST_ARCHS = ["lenet5", "mnist_a", "mnist_b", "mnist_c"]
RESNETS = ["resnet20", "resnet32", "resnet44"]


def _x(arch, n=2, seed=0):
    return np.random.default_rng(seed).random((n, *ARCH_DEFAULTS[arch]["input_shape"]), dtype=np.float32)


def _structure(model):
    """Layer (class, name) list without the activation quantizers."""
    return [(type(l).__name__, l.name) for l in model.layers if not isinstance(l, QuantActivation)]


def _qa_names(model):
    return [l.name for l in model.layers if isinstance(l, QuantActivation)]


def test_registry_has_the_seven_names():
    assert sorted(ARCHITECTURES) == sorted(MNIST_ARCHS + RESNETS)
    assert ARCH_DEFAULTS["resnet20"]["input_shape"] == (32, 32, 3)
    assert ARCH_DEFAULTS["mnist_a"]["input_shape"] == (28, 28, 1)


@pytest.mark.parametrize("bits", ALL_BITS)
@pytest.mark.parametrize("arch", MNIST_ARCHS)
def test_mnist_arch_builds_and_outputs_logits(arch, bits):
    model = build_model(arch, weight_bits=bits, act_bits=bits)
    out = model(_x(arch)).numpy()
    assert out.shape == (2, 10)
    assert np.all(np.isfinite(out))
    assert not np.allclose(out.sum(axis=1), 1.0)  # logits, not probabilities


@pytest.mark.parametrize("bits", [32, 1, 4])
@pytest.mark.parametrize("arch", RESNETS)
def test_resnet_builds_and_outputs_logits(arch, bits):
    model = build_model(arch, (32, 32, 3), weight_bits=bits, act_bits=bits)
    assert model(_x(arch)).shape == (2, 10)


def test_resnet_depths_and_sizes():
    # 6n + 2 weighted layers; resnet20 has the paper's ~0.27M parameters.
    for arch, n in (("resnet20", 3), ("resnet32", 5)):
        model = build_model(arch, (32, 32, 3))
        weighted = [l for l in model.layers if isinstance(l, (QuantConv2D, QuantDense))]
        assert len(weighted) == 6 * n + 2
    assert build_model("resnet20", (32, 32, 3)).count_params() == 271098
    bns = [l for l in build_model("resnet20", (32, 32, 3)).layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and all(bn.momentum == 0.9 for bn in bns)


@pytest.mark.parametrize("arch", MNIST_ARCHS + ["resnet20"])
def test_fp_graph_is_the_quantized_graph_minus_quantizers(arch):
    shape = ARCH_DEFAULTS[arch]["input_shape"]
    fp, q = build_model(arch, shape), build_model(arch, shape, weight_bits=2, act_bits=2)
    assert _qa_names(fp) == []
    assert _structure(fp) == _structure(q)
    assert fp.count_params() == q.count_params()


def test_annt_quantizer_placement():
    assert _qa_names(build_model("lenet5", weight_bits=4, act_bits=4)) == ["pool0_qa", "pool1_qa", "fc0_qa"]
    assert _qa_names(build_model("mnist_a", weight_bits=4, act_bits=4)) == [
        "pool0_qa", "conv1_qa", "pool1_qa", "conv3_qa"]
    assert _qa_names(build_model("lenet5", weight_bits=4, act_bits=4, quantize_last_hidden=True))[-1] == "fc1_qa"
    assert _qa_names(build_model("mnist_a", weight_bits=4, act_bits=4, quantize_last_hidden=True))[-1] == "fc0_qa"
    # mnist_a has no BatchNorm unless asked; then one BN before each quantized activation
    no_bn = build_model("mnist_a", weight_bits=4, act_bits=4)
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in no_bn.layers)
    bn = build_model("mnist_a", weight_bits=4, act_bits=4, batchnorm=True)
    assert [l.name for l in bn.layers if isinstance(l, keras.layers.BatchNormalization)] == [
        "pool0_bn", "conv1_bn", "pool1_bn", "conv3_bn"]
    # mnist_b/c differ only in capacity
    assert build_model("mnist_c").get_layer("conv2").filters == 64


def test_mnist_a_fc0_output_stays_full_precision_relu():
    model = build_model("mnist_a", weight_bits=1, act_bits=1)
    feat = keras.Model(model.input, model.get_layer("fc0_relu").output)
    values = np.unique(feat(_x("mnist_a", n=4)).numpy())
    assert len(values) > 16 and values.min() == 0.0


def _kernel_levels(model, name):
    return len(np.unique(model.get_layer(name).quantized_kernel().numpy()))


@pytest.mark.parametrize("arch", ["lenet5", "mnist_a", "resnet20"])
def test_first_and_last_layer_stay_fp_unless_asked(arch):
    shape = ARCH_DEFAULTS[arch]["input_shape"]
    default = build_model(arch, shape, weight_bits=1, act_bits=1)
    hidden = "conv1" if arch != "resnet20" else "group0_block0_conv1"
    assert default.get_layer("conv0").weight_bits == 32 and default.get_layer("linear").weight_bits == 32
    assert _kernel_levels(default, "conv0") > 2 and _kernel_levels(default, "linear") > 2
    assert _kernel_levels(default, hidden) == 2
    both = build_model(arch, shape, weight_bits=1, act_bits=1, quantize_first_last=True)
    assert _kernel_levels(both, "conv0") == 2 and _kernel_levels(both, "linear") == 2


def test_mixed_weight_and_activation_bits():
    model = build_model("mnist_a", weight_bits=2, act_bits=8)
    assert model.get_layer("conv1").weight_bits == 2
    assert model.get_layer("conv1_qa").bits == 8
    assert _kernel_levels(model, "conv1") <= 4


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("vgg16")
    with pytest.raises(ValueError, match="weight_bits"):
        build_model("lenet5", weight_bits=3)
