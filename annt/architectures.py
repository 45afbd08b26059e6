"""Model architectures, one builder per family, parameterized by bit widths (SPEC §4).

Every builder returns a ``keras.Model`` mapping NHWC float inputs in [0, 1] to **logits**.
The graph is the same at every bit width: at 32 bits (full precision) the weight quantizers are
the identity and the activation quantizers are simply left out, so only the nonlinearity remains
(no clip). Comparing bit widths therefore never compares different architectures.

Quantization placement (faithful to ANNT, whose published numbers come from these graphs):

* ``lenet5``  conv0 6@5x5 same tanh → avgpool → **qa** → conv1 16@5x5 valid tanh → avgpool → **qa**
  → fc0 120 tanh → **qa** → fc1 84 tanh [→ qa if quantize_last_hidden] → linear 10.
* ``mnist_a/b/c`` (capacity c = 16/32/64) conv0 c → maxpool → ReLU → **qa** → conv1 c ReLU → **qa**
  → conv2 c → maxpool → ReLU → **qa** → conv3 c ReLU → **qa** → fc0 512 ReLU [→ qa if
  quantize_last_hidden] → dropout 0.5 → linear 10. All convs 3x3 same. (ReLU and max-pooling
  commute, so pooling before the ReLU is tensorpack's order and changes no value.)
* ``resnet20/32/44`` CIFAR ResNet (He et al. 2016, n = 3/5/7 basic blocks per stage, 16/32/64
  filters, parameter-free "option A" shortcuts), BatchNorm momentum 0.9, every ReLU followed by
  **qa**. The 64-d global-pooled features feed ``linear``.

"qa" = :class:`~annt.layers.QuantActivation` at ``act_bits``. Hidden-layer weights are quantized
at ``weight_bits``; the first layer (``conv0``) and the last (``linear``) stay full precision unless
``quantize_first_last=True``. Biases and BatchNorm are never quantized. With ``batchnorm=True``
(MNIST families) a BatchNorm is inserted before every quantized activation: ahead of the ReLU
in mnist_*, and after tanh + pooling (right before the quantizer) in lenet5, whose tanh lives
inside the conv/fc layer as in ANNT.
"""
from __future__ import annotations

import functools
from typing import Callable

import keras
from keras import layers

from annt.layers import QuantActivation, QuantConv2D, QuantDense
from annt.quantize import FULL_PRECISION, check_bits

BN_MOMENTUM = 0.9  # ANNT/tensorpack's BatchNorm decay (Keras default 0.99 adapts too slowly)


class _Spec:
    """Per-model build settings shared by the helpers below (keeps their signatures short)."""

    def __init__(self, weight_bits, act_bits, quantize_first_last, batchnorm):
        self.weight_bits = check_bits(weight_bits, "weight_bits")
        self.act_bits = check_bits(act_bits, "act_bits")
        self.quantize_first_last = bool(quantize_first_last)
        self.batchnorm = bool(batchnorm)

    def bits_for(self, edge: bool) -> int:
        """Weight bits of a layer; ``edge`` = first or last layer."""
        return self.weight_bits if (self.quantize_first_last or not edge) else FULL_PRECISION

    def activate(self, x, name: str, nonlinearity: str | None, quantize: bool = True, bn: bool | None = None):
        """[BatchNorm] → nonlinearity → [k-bit activation quantizer]."""
        if self.batchnorm if bn is None else bn:
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
        if nonlinearity is not None:
            x = layers.Activation(nonlinearity, name=f"{name}_{nonlinearity}")(x)
        if quantize and self.act_bits != FULL_PRECISION:
            x = QuantActivation(self.act_bits, name=f"{name}_qa")(x)
        return x


def _lenet5(inputs, spec: _Spec, num_classes: int, quantize_last_hidden: bool):
    # Nonlinearity inside the conv/fc (tanh, then avg-pool, as ANNT); with batchnorm=True the
    # BN comes right before the quantizer so it normalises what gets clipped to [0, 1].
    x = QuantConv2D(6, 5, padding="same", activation="tanh", weight_bits=spec.bits_for(True), name="conv0")(inputs)
    x = layers.AveragePooling2D(2, name="pool0")(x)
    x = spec.activate(x, "pool0", None)
    x = QuantConv2D(16, 5, padding="valid", activation="tanh", weight_bits=spec.bits_for(False), name="conv1")(x)
    x = layers.AveragePooling2D(2, name="pool1")(x)
    x = spec.activate(x, "pool1", None)
    x = layers.Flatten(name="flatten")(x)
    x = QuantDense(120, activation="tanh", weight_bits=spec.bits_for(False), name="fc0")(x)
    x = spec.activate(x, "fc0", None)
    x = QuantDense(84, activation="tanh", weight_bits=spec.bits_for(False), name="fc1")(x)
    x = spec.activate(x, "fc1", None, quantize=quantize_last_hidden, bn=spec.batchnorm and quantize_last_hidden)
    return QuantDense(num_classes, weight_bits=spec.bits_for(True), name="linear")(x)


def _mnist_cnn(inputs, spec: _Spec, num_classes: int, quantize_last_hidden: bool, *, capacity: int):
    def conv(x, name, edge=False):
        return QuantConv2D(capacity, 3, padding="same", weight_bits=spec.bits_for(edge), name=name)(x)

    x = conv(inputs, "conv0", edge=True)
    x = layers.MaxPooling2D(2, name="pool0")(x)
    x = spec.activate(x, "pool0", "relu")
    x = spec.activate(conv(x, "conv1"), "conv1", "relu")
    x = conv(x, "conv2")
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = spec.activate(x, "pool1", "relu")
    x = spec.activate(conv(x, "conv3"), "conv3", "relu")
    x = layers.Flatten(name="flatten")(x)
    x = QuantDense(512, weight_bits=spec.bits_for(False), name="fc0")(x)
    # ANNT keeps fc0 a full-precision ReLU; quantizing it (and its BN) is an explicit option.
    x = spec.activate(x, "fc0", "relu", quantize=quantize_last_hidden, bn=spec.batchnorm and quantize_last_hidden)
    x = layers.Dropout(0.5, name="dropout")(x)
    return QuantDense(num_classes, weight_bits=spec.bits_for(True), name="linear")(x)


def _option_a_shortcut(x, filters: int, stride: int, name: str):
    """Identity, or on a stage change 2x2 average-pool subsampling plus zero-padded channels
    (He et al.'s parameter-free option A, as in tensorpack's cifar10-resnet)."""
    if stride == 1 and x.shape[-1] == filters:
        return x
    if stride > 1:
        x = layers.AveragePooling2D(stride, name=f"{name}_pool")(x)
    extra = filters - x.shape[-1]
    return ChannelPad(extra // 2, extra - extra // 2, name=f"{name}_pad")(x)


@keras.saving.register_keras_serializable(package="annt")
class ChannelPad(keras.layers.Layer):
    """Zero-pads the channel axis (``before``, ``after``): ResNet option-A shortcut, no parameters."""

    def __init__(self, before: int, after: int, **kwargs):
        super().__init__(**kwargs)
        self.before, self.after = int(before), int(after)

    def call(self, inputs):
        return keras.ops.pad(inputs, [[0, 0], [0, 0], [0, 0], [self.before, self.after]])

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + self.before + self.after)

    def get_config(self):
        return {**super().get_config(), "before": self.before, "after": self.after}


def _resnet(inputs, spec: _Spec, num_classes: int, quantize_last_hidden: bool, *, n: int):
    # quantize_last_hidden has no separate meaning here: every block output is quantized, and the
    # global-average-pooled features of the last one feed `linear`.
    del quantize_last_hidden

    def conv(x, filters, stride, name, edge=False):
        return QuantConv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                           kernel_initializer="he_normal", weight_bits=spec.bits_for(edge), name=name)(x)

    def bn(x, name):
        return layers.BatchNormalization(momentum=BN_MOMENTUM, name=name)(x)

    x = spec.activate(conv(inputs, 16, 1, "conv0", edge=True), "conv0", "relu", bn=True)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(n):
            name = f"group{stage}_block{block}"
            stride = 2 if (stage > 0 and block == 0) else 1
            shortcut = _option_a_shortcut(x, filters, stride, f"{name}_shortcut")
            y = spec.activate(conv(x, filters, stride, f"{name}_conv1"), f"{name}_conv1", "relu", bn=True)
            y = bn(conv(y, filters, 1, f"{name}_conv2"), f"{name}_conv2_bn")
            x = layers.Add(name=f"{name}_add")([shortcut, y])
            x = spec.activate(x, f"{name}_out", "relu", bn=False)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return QuantDense(num_classes, weight_bits=spec.bits_for(True), name="linear")(x)


#: name → builder(inputs, spec, num_classes, quantize_last_hidden) -> logits tensor
ARCHITECTURES: dict[str, Callable] = {
    "lenet5": _lenet5,
    "mnist_a": functools.partial(_mnist_cnn, capacity=16),
    "mnist_b": functools.partial(_mnist_cnn, capacity=32),
    "mnist_c": functools.partial(_mnist_cnn, capacity=64),
    "resnet20": functools.partial(_resnet, n=3),
    "resnet32": functools.partial(_resnet, n=5),
    "resnet44": functools.partial(_resnet, n=7),
}

#: Input each architecture was designed for: (H, W, C) of MNIST-like or CIFAR-10 images.
ARCH_DEFAULTS: dict[str, dict] = {
    name: {
        "input_shape": (32, 32, 3) if name.startswith("resnet") else (28, 28, 1),
        "num_classes": 10,
        "quantize_last_hidden": False,  # SPEC §4: lenet5 fc1 and mnist_* fc0 outputs stay fp
    }
    for name in ARCHITECTURES
}


def build_model(
    arch: str,
    input_shape: tuple[int, int, int] = (28, 28, 1),
    num_classes: int = 10,
    weight_bits: int = FULL_PRECISION,
    act_bits: int = FULL_PRECISION,
    quantize_first_last: bool = False,
    batchnorm: bool = False,
    quantize_last_hidden: bool | None = None,
) -> keras.Model:
    """Build ``arch`` at the given bit widths; the model outputs logits.

    ``quantize_last_hidden=None`` takes the architecture's ANNT default (False for every
    family: lenet5's fc1 and mnist_*'s fc0 outputs are not quantized). ``batchnorm`` adds BN
    before each quantized activation of the MNIST families; ResNets always have BN.
    The resolved options are attached as ``model.annt_options`` (used to fill the model card).
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    if quantize_last_hidden is None:
        quantize_last_hidden = ARCH_DEFAULTS[arch]["quantize_last_hidden"]
    spec = _Spec(weight_bits, act_bits, quantize_first_last, batchnorm)
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    logits = ARCHITECTURES[arch](inputs, spec, int(num_classes), bool(quantize_last_hidden))
    model = keras.Model(inputs, logits, name=arch)
    model.annt_options = {
        "arch": arch,
        "weight_bits": spec.weight_bits,
        "act_bits": spec.act_bits,
        "quantize_first_last": spec.quantize_first_last,
        "batchnorm": spec.batchnorm or arch.startswith("resnet"),
        "quantize_last_hidden": bool(quantize_last_hidden),
        "input_shape": [int(d) for d in input_shape],
        "num_classes": int(num_classes),
    }
    return model
