"""ANNT's LeNet-5 (registry name ``lenet5``).

conv0 6@5x5 same tanh → avgpool → **qa** → conv1 16@5x5 valid tanh → avgpool → **qa**
→ fc0 120 tanh → **qa** → fc1 84 tanh [→ **qa** if quantize_last_hidden] → linear 10.

The tanh lives inside the conv/fc layer as in ANNT, so with ``batchnorm=True`` the BatchNorm
comes after tanh + pooling, right before the quantizer: it normalises what gets clipped to [0, 1].
"""
from __future__ import annotations

from keras import layers

from annt.models.architectures import BuildSpec
from annt.models.layers import QuantConv2D, QuantDense


def lenet5(inputs, spec: BuildSpec, num_classes: int, quantize_last_hidden: bool):
    """Logits of LeNet-5 on ``inputs`` (N, 28, 28, 1) in [0, 1]."""
    x = QuantConv2D(6, 5, padding="same", activation="tanh", kernel_quantizer=spec.kernel_quantizer(edge=True),
                    name="conv0")(inputs)
    x = layers.AveragePooling2D(2, name="pool0")(x)
    x = spec.activate(x, "pool0", None)
    x = QuantConv2D(16, 5, padding="valid", activation="tanh", kernel_quantizer=spec.kernel_quantizer(),
                    name="conv1")(x)
    x = layers.AveragePooling2D(2, name="pool1")(x)
    x = spec.activate(x, "pool1", None)
    x = layers.Flatten(name="flatten")(x)
    x = QuantDense(120, activation="tanh", kernel_quantizer=spec.kernel_quantizer(), name="fc0")(x)
    x = spec.activate(x, "fc0", None)
    x = QuantDense(84, activation="tanh", kernel_quantizer=spec.kernel_quantizer(), name="fc1")(x)
    x = spec.activate(x, "fc1", None, quantize=quantize_last_hidden, bn=spec.batchnorm and quantize_last_hidden)
    return QuantDense(num_classes, kernel_quantizer=spec.kernel_quantizer(edge=True), name="linear")(x)
