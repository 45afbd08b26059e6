"""Building a model: :func:`build_model` reads the registry, :class:`BuildSpec` places the quantizers.

Every architecture is an entry of :data:`annt.models.registry.ARCHITECTURES` whose ``builder``
(``"module:function"``, one module per family: :mod:`~annt.models.lenet`,
:mod:`~annt.models.mnist_cnn`, :mod:`~annt.models.resnet`) maps NHWC float inputs in [0, 1] to
**logits**::

    builder(inputs, spec: BuildSpec, num_classes, quantize_last_hidden, **builder_kwargs, **options) -> logits

(``options``: the family's own, ``model.options``; the binary families of :mod:`~annt.models.binary`
place their own quantizers and ignore the DoReFa placement below.)

The graph is the same at every bit width: at 32 bits (full precision) the kernel quantizers are
the identity and the activation quantizers are simply left out, so only the nonlinearity remains
(no clip). Comparing bit widths therefore never compares different architectures.

Placement (faithful to ANNT, whose published numbers come from these graphs): hidden-layer
kernels get DoReFa's ``fw`` at ``weight_bits``; the first layer (``conv0``) and the last
(``linear``) stay full precision unless ``quantize_first_last=True``. Activations the family
marks get DoReFa's ``fa`` at ``act_bits`` (a :class:`~annt.models.layers.QuantActivation`
named ``<name>_qa``). Biases and BatchNorm are never quantized. With ``batchnorm=True`` a
BatchNorm (momentum :data:`BN_MOMENTUM`) comes before every quantized activation.
"""
from __future__ import annotations

import importlib

import keras
from keras import layers

from annt.bits import check as check_bits
from annt.models.layers import QuantActivation
from annt.models.quantizers import FULL_PRECISION
from annt.models.registry import ARCHITECTURES, arch_spec

BN_MOMENTUM = 0.9  # ANNT/tensorpack's BatchNorm decay (Keras default 0.99 adapts too slowly)

#: The quantizers :class:`BuildSpec` places (registered names in :mod:`annt.models.quantizers`).
WEIGHT_QUANTIZER = "dorefa_weights"
ACTIVATION_QUANTIZER = "dorefa_activations"


class BuildSpec:
    """One model's build settings: which layer gets which quantizer, and where BatchNorm goes."""

    def __init__(self, weight_bits, act_bits, quantize_first_last=False, batchnorm=False):
        self.weight_bits = check_bits(weight_bits, "weight_bits")
        self.act_bits = check_bits(act_bits, "act_bits")
        self.quantize_first_last = bool(quantize_first_last)
        self.batchnorm = bool(batchnorm)

    def kernel_quantizer(self, edge: bool = False):
        """``kernel_quantizer`` spec of a layer; ``edge`` = first or last layer (fp unless
        ``quantize_first_last``). None = float kernel."""
        if self.weight_bits == FULL_PRECISION or (edge and not self.quantize_first_last):
            return None
        return (WEIGHT_QUANTIZER, {"bits": self.weight_bits})

    def activation_quantizer(self):
        """Spec of the activation quantizer, None at full precision (the layer is then left out)."""
        return None if self.act_bits == FULL_PRECISION else (ACTIVATION_QUANTIZER, {"bits": self.act_bits})

    def activate(self, x, name: str, nonlinearity: str | None, quantize: bool = True, bn: bool | None = None):
        """[BatchNorm ``<name>_bn``] → nonlinearity ``<name>_<nonlinearity>`` → [quantizer ``<name>_qa``].
        ``bn`` None follows the model's ``batchnorm``."""
        if self.batchnorm if bn is None else bn:
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
        if nonlinearity is not None:
            x = layers.Activation(nonlinearity, name=f"{name}_{nonlinearity}")(x)
        quantizer = self.activation_quantizer()
        if quantize and quantizer is not None:
            x = QuantActivation(quantizer, name=f"{name}_qa")(x)
        return x


def default_input_shape(arch: str) -> tuple[int, int, int]:
    """(H, W, C) of the first dataset ``arch`` is made for (28x28x1 MNIST, 32x32x3 CIFAR-10)."""
    from annt.data import DATASETS

    return tuple(DATASETS[arch_spec(arch).datasets[0]]["shape"])


def build_model(
    arch: str,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int = 10,
    weight_bits: int | None = None,
    act_bits: int | None = None,
    quantize_first_last: bool = False,
    batchnorm: bool = False,
    quantize_last_hidden: bool | None = None,
    input_bits: int | None = None,
    options: dict | None = None,
) -> keras.Model:
    """Build ``arch`` (a registry name) at the given bit widths; the model outputs logits.

    ``input_shape=None`` takes the shape of the arch's first dataset. ``quantize_last_hidden=None``
    takes the registry's ANNT default (False for every family: lenet5's fc1 and mnist_*'s fc0
    outputs are not quantized). ``batchnorm`` adds BN before each quantized activation; archs
    with ``always_batchnorm`` (ResNets) have BN whatever it says. ``input_bits`` (1, 2, 3, 4, 8;
    None = none) makes the first layer an :class:`~annt.models.discretize.InputDiscretization`
    (Panda et al.'s Eq. 2), so every prediction and every attack sees it. The resolved options are
    attached as ``model.annt_options`` (used to fill the model card).

    ``options``: the family's own options (:attr:`~annt.models.registry.ArchSpec.options`, e.g.
    ``{"type": "C", "filters": 64}`` for ``galloway``), checked (``ConfigError`` for an unknown one
    or a bad value), completed with their defaults, passed to the builder as keyword arguments and
    recorded as ``annt_options["options"]``. ``weight_bits``/``act_bits`` None = full precision, or
    for a binary family the width its options imply (1 or fp; another value is a ``ValueError``).
    A model with a layer marked ``annt_stochastic`` records ``annt_options["stochastic"] = True``.
    """
    entry = arch_spec(arch)
    options = entry.resolve_options(options)
    weight_bits, act_bits = _family_bits(entry, options, weight_bits, act_bits, quantize_first_last,
                                         quantize_last_hidden)
    if input_shape is None:
        input_shape = default_input_shape(arch)
    if quantize_last_hidden is None:
        quantize_last_hidden = entry.quantize_last_hidden
    spec = BuildSpec(weight_bits, act_bits, quantize_first_last, batchnorm)
    module, function = entry.builder.split(":")
    builder = getattr(importlib.import_module(module), function)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    if input_bits is not None:
        from annt.models.discretize import InputDiscretization

        x = InputDiscretization(input_bits, name="input_discretization")(inputs)
    logits = builder(x, spec, int(num_classes), bool(quantize_last_hidden), **entry.builder_kwargs, **options)
    model = keras.Model(inputs, logits, name=arch)
    model.annt_options = {
        "arch": arch,
        "weight_bits": spec.weight_bits,
        "act_bits": spec.act_bits,
        "quantize_first_last": spec.quantize_first_last,
        "batchnorm": spec.batchnorm or entry.always_batchnorm or (entry.implied_bits is not None
                                                                  and spec.weight_bits != FULL_PRECISION),
        "quantize_last_hidden": bool(quantize_last_hidden),
        "input_shape": [int(d) for d in input_shape],
        "num_classes": int(num_classes),
        "input_bits": None if input_bits is None else int(input_bits),
    }
    if options:
        model.annt_options["options"] = dict(options)
    if is_stochastic(model):
        model.annt_options["stochastic"] = True
    return model


def is_stochastic(model) -> bool:
    """Whether any layer of ``model`` samples at inference (:data:`annt.attacks.adaptive.STOCHASTIC`)."""
    from annt.attacks.adaptive import STOCHASTIC, marked_layers

    return bool(marked_layers(model, STOCHASTIC))


def _family_bits(entry, options, weight_bits, act_bits, quantize_first_last, quantize_last_hidden):
    """``(weight_bits, act_bits)``: given (None = fp), or those a binary family's options imply."""
    implied = entry.bits_for(options)
    if implied is None:
        return (FULL_PRECISION if weight_bits is None else weight_bits,
                FULL_PRECISION if act_bits is None else act_bits)
    for what, given in (("weight_bits", weight_bits), ("act_bits", act_bits)):
        if given is not None and check_bits(given, what) != implied:
            raise ValueError(f"{entry.name} with options {options} has {what} {implied} (set by its options), not {given}")
    for what, given in (("quantize_first_last", quantize_first_last), ("quantize_last_hidden", quantize_last_hidden)):
        if given:
            raise ValueError(f"{what} does not apply to {entry.name}: the family places its own quantizers")
    return implied, implied


def _defaults(name: str) -> dict:
    from annt.data import DATASETS

    entry = ARCHITECTURES[name]
    return {"input_shape": default_input_shape(name), "num_classes": DATASETS[entry.datasets[0]]["classes"],
            "quantize_last_hidden": entry.quantize_last_hidden}


#: Per-arch build defaults derived from the registry and the datasets (benchmarks/ reads this table).
ARCH_DEFAULTS: dict[str, dict] = {name: _defaults(name) for name in ARCHITECTURES}

__all__ = ["ARCHITECTURES", "ARCH_DEFAULTS", "BN_MOMENTUM", "BuildSpec", "build_model", "default_input_shape"]
