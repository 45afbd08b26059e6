"""Architectures: built from the registry, same graph at every bit width, quantizer placement and
the actual quantization levels of kernels and activations (seeded builds, real MNIST images)."""
import keras
import numpy as np
import pytest

from annt.data import load_sample
from annt.models import registry
from annt.models.architectures import ARCH_DEFAULTS, build_model, default_input_shape
from annt.models.layers import QuantActivation, QuantConv2D, QuantDense
from annt.models.quantizers import Quantizer

ALL_BITS = [32, 1, 2, 4, 8, 12, 16]
MNIST_ARCHS = ["lenet5", "mnist_a", "mnist_b", "mnist_c"]
RESNETS = ["resnet20", "resnet32", "resnet44"]


@pytest.fixture(autouse=True)
def seeded():
    keras.utils.set_random_seed(0)  # every build below is deterministic


@pytest.fixture(scope="module")
def digits():
    return load_sample().x[:8]


def _x(arch, n=2, seed=0):
    return np.random.default_rng(seed).random((n, *default_input_shape(arch)), dtype=np.float32)


def _structure(model):
    """Layer (class, name) list without the activation quantizers."""
    return [(type(l).__name__, l.name) for l in model.layers if not isinstance(l, QuantActivation)]


def _qa_names(model):
    return [l.name for l in model.layers if isinstance(l, QuantActivation)]


def _grid_distance(values, k):
    """Largest distance, in grid steps, of DoReFa k-bit values from their grid
    (activations: {i/n} on [0, 1]; weights: {2i/n − 1} on [−1, 1]; n = 2^k − 1)."""
    n = 2 ** k - 1
    s = np.asarray(values, np.float64) * n
    return np.abs(s - np.round(s)).max()


def test_registry_names_build_with_their_datasets_input_shape():
    assert sorted(registry.ARCHITECTURES) == sorted(MNIST_ARCHS + RESNETS + ["galloway", "fcn1", "fcn2"])
    assert default_input_shape("resnet20") == (32, 32, 3)
    assert default_input_shape("mnist_a") == (28, 28, 1)
    assert ARCH_DEFAULTS["resnet20"]["input_shape"] == (32, 32, 3)
    assert build_model("resnet20").input_shape == (None, 32, 32, 3)
    assert build_model("lenet5").input_shape == (None, 28, 28, 1)


def test_a_new_architecture_is_one_registry_entry(monkeypatch):
    entry = registry.ArchSpec("mnist_tiny", "a test entry", "annt.models.mnist_cnn:mnist_cnn", ("mnist",),
                              registry.MNIST_TRAINING, {"capacity": 4}, quantize_last_hidden=True,
                              always_batchnorm=True)
    monkeypatch.setitem(registry.ARCHITECTURES, "mnist_tiny", entry)
    model = build_model("mnist_tiny", weight_bits=2, act_bits=2)
    assert model.get_layer("conv2").filters == 4
    assert _qa_names(model)[-1] == "fc0_qa"  # the registry's quantize_last_hidden
    assert model.annt_options["batchnorm"] is True and model.annt_options["quantize_last_hidden"] is True


def test_always_batchnorm_comes_from_the_registry():
    assert registry.ARCHITECTURES["resnet20"].always_batchnorm
    assert build_model("resnet20").annt_options["batchnorm"] is True
    assert build_model("mnist_a").annt_options["batchnorm"] is False
    assert build_model("mnist_a", batchnorm=True).annt_options["batchnorm"] is True


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
    fp, q = build_model(arch), build_model(arch, weight_bits=2, act_bits=2)
    assert _qa_names(fp) == []
    assert all(l.kernel_quantizer is None for l in fp.layers if isinstance(l, (QuantConv2D, QuantDense)))
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


@pytest.mark.parametrize("bits", [1, 2, 4, 8, 12, 16])
def test_activations_are_on_the_k_bit_grid_and_fc0_stays_full_precision(bits, digits):
    # Real digits through a seeded mnist_a: every quantizer output lies exactly on the k-bit grid
    # with several levels used, while fc0's ReLU output (not quantized, ANNT) is off the grid.
    model = build_model("mnist_a", weight_bits=bits, act_bits=bits)
    names = _qa_names(model) + ["fc0_relu"]
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    outs = dict(zip(names, (o.numpy() for o in probe(digits))))
    for name in _qa_names(model):
        a = outs[name]
        assert a.min() >= 0.0 and a.max() <= 1.0
        assert _grid_distance(a, bits) < 1e-2, name
        assert len(np.unique(a)) > 1, name  # not a dead layer: the check above tests something
    fc0 = outs["fc0_relu"]
    assert fc0.max() > 1.0 or _grid_distance(fc0, bits) > 0.1  # a float ReLU, not quantized
    assert fc0.min() == 0.0


@pytest.mark.parametrize("bits", [2, 4, 8, 12, 16])
def test_hidden_kernels_are_on_the_k_bit_grid(bits):
    model = build_model("mnist_a", weight_bits=bits, act_bits=bits)
    for name in ("conv1", "conv2", "conv3", "fc0"):
        layer = model.get_layer(name)
        assert layer.kernel_quantizer == Quantizer("dorefa_weights", {"bits": bits})
        q = layer.quantized_kernel().numpy()
        assert _grid_distance((q + 1.0) / 2.0, bits) < 1e-2, name
        assert q.max() == 1.0 or q.min() == -1.0  # max|tanh w| maps to an end of the grid
        assert len(np.unique(q)) >= min(2 ** bits, 4)


@pytest.mark.parametrize("arch", ["lenet5", "mnist_a", "resnet20"])
def test_first_and_last_layer_stay_fp_unless_asked(arch):
    default = build_model(arch, weight_bits=1, act_bits=1)
    hidden = "conv1" if arch != "resnet20" else "group0_block0_conv1"
    for edge in ("conv0", "linear"):
        layer = default.get_layer(edge)
        assert layer.kernel_quantizer is None
        np.testing.assert_array_equal(layer.quantized_kernel().numpy(), layer.kernel.numpy())
    for model, names in ((default, [hidden]), (build_model(arch, weight_bits=1, act_bits=1, quantize_first_last=True),
                                               [hidden, "conv0", "linear"])):
        for name in names:  # 1 bit: exactly ±E, E = mean |w| of the layer
            layer = model.get_layer(name)
            e = np.mean(np.abs(layer.kernel.numpy()))
            np.testing.assert_allclose(np.unique(layer.quantized_kernel().numpy()), [-e, e], rtol=1e-6)


def test_mixed_weight_and_activation_bits():
    model = build_model("mnist_a", weight_bits=2, act_bits=8)
    assert model.get_layer("conv1").kernel_quantizer == Quantizer("dorefa_weights", {"bits": 2})
    assert model.get_layer("conv1_qa").quantizer == Quantizer("dorefa_activations", {"bits": 8})
    q = model.get_layer("conv1").quantized_kernel().numpy()
    np.testing.assert_allclose(np.unique(q), [-1, -1 / 3, 1 / 3, 1], atol=1e-6)
    # full-precision weights with quantized activations: no kernel quantizer anywhere
    w32a4 = build_model("mnist_a", weight_bits=32, act_bits=4)
    assert all(l.kernel_quantizer is None for l in w32a4.layers if isinstance(l, (QuantConv2D, QuantDense)))
    assert _qa_names(w32a4) == ["pool0_qa", "conv1_qa", "pool1_qa", "conv3_qa"]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown architecture 'vgg16'; choose one of lenet5, mnist_a"):
        build_model("vgg16")
    with pytest.raises(ValueError, match="weight_bits"):
        build_model("lenet5", weight_bits=3)
    with pytest.raises(ValueError, match="act_bits"):
        build_model("lenet5", act_bits=0)


def test_models_package_is_tensorflow_free_until_a_builder_is_used():
    # config validation imports annt.models.registry and annt.models.card; neither may pull in TF
    import subprocess
    import sys

    code = ("import sys, annt.models, annt.models.registry, annt.models.card; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'; "
            "print(sorted(annt.models.ARCHITECTURES)[:2])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["['fcn1',", "'fcn2']"]


def test_build_model_and_the_registry_are_reachable_from_the_packages():
    import annt
    import annt.models
    from annt.models import architectures

    assert annt.models.build_model is architectures.build_model is annt.build_model
    assert annt.ARCHITECTURES is annt.models.ARCHITECTURES is registry.ARCHITECTURES
