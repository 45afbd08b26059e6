"""ANNT's Mnist A/B/C CNNs (registry names ``mnist_a``/``mnist_b``/``mnist_c``: capacity c = 16/32/64).

conv0 c → maxpool → ReLU → **qa** → conv1 c ReLU → **qa** → conv2 c → maxpool → ReLU → **qa**
→ conv3 c ReLU → **qa** → fc0 512 ReLU [→ **qa** if quantize_last_hidden] → dropout 0.5 → linear 10.
All convs 3x3 same. ReLU and max-pooling commute, so pooling before the ReLU is tensorpack's
order and changes no value. With ``batchnorm=True`` the BatchNorm comes ahead of each ReLU
that is followed by a quantizer.
"""
from __future__ import annotations

from keras import layers

from annt.models.architectures import BuildSpec
from annt.models.layers import QuantConv2D, QuantDense


def mnist_cnn(inputs, spec: BuildSpec, num_classes: int, quantize_last_hidden: bool, *, capacity: int):
    """Logits of the four-conv MNIST CNN with ``capacity`` filters per conv."""
    def conv(x, name, edge=False):
        return QuantConv2D(capacity, 3, padding="same", kernel_quantizer=spec.kernel_quantizer(edge), name=name)(x)

    x = conv(inputs, "conv0", edge=True)
    x = layers.MaxPooling2D(2, name="pool0")(x)
    x = spec.activate(x, "pool0", "relu")
    x = spec.activate(conv(x, "conv1"), "conv1", "relu")
    x = conv(x, "conv2")
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = spec.activate(x, "pool1", "relu")
    x = spec.activate(conv(x, "conv3"), "conv3", "relu")
    x = layers.Flatten(name="flatten")(x)
    x = QuantDense(512, kernel_quantizer=spec.kernel_quantizer(), name="fc0")(x)
    # ANNT keeps fc0 a full-precision ReLU; quantizing it (and its BN) is an explicit option.
    x = spec.activate(x, "fc0", "relu", quantize=quantize_last_hidden, bn=spec.batchnorm and quantize_last_hidden)
    x = layers.Dropout(0.5, name="dropout")(x)
    return QuantDense(num_classes, kernel_quantizer=spec.kernel_quantizer(edge=True), name="linear")(x)
