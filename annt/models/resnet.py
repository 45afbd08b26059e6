"""CIFAR ResNets (registry names ``resnet20``/``resnet32``/``resnet44``: n = 3/5/7 blocks per stage).

He et al. (2016): three stages of n basic blocks with 16/32/64 filters, parameter-free "option A"
shortcuts (2x2 average-pool subsampling plus zero-padded channels, as in tensorpack's
cifar10-resnet), BatchNorm (momentum 0.9) after every conv, every ReLU followed by **qa**; the
64-d global-pooled features feed ``linear``. The graph always has BatchNorm (registry:
``always_batchnorm``).
"""
from __future__ import annotations

from keras import layers

from annt.models.architectures import BN_MOMENTUM, BuildSpec
from annt.models.layers import ChannelPad, QuantConv2D, QuantDense


def _option_a_shortcut(x, filters: int, stride: int, name: str):
    """Identity, or on a stage change ``stride`` average-pool subsampling plus zero-padded channels."""
    if stride == 1 and x.shape[-1] == filters:
        return x
    if stride > 1:
        x = layers.AveragePooling2D(stride, name=f"{name}_pool")(x)
    extra = filters - x.shape[-1]
    return ChannelPad(extra // 2, extra - extra // 2, name=f"{name}_pad")(x)


def resnet(inputs, spec: BuildSpec, num_classes: int, quantize_last_hidden: bool, *, n: int):
    """Logits of the CIFAR ResNet with ``n`` basic blocks per stage (depth 6n + 2)."""
    # quantize_last_hidden has no separate meaning here: every block output is quantized, and the
    # global-average-pooled features of the last one feed `linear`.
    del quantize_last_hidden

    def conv(x, filters, stride, name, edge=False):
        return QuantConv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                           kernel_quantizer=spec.kernel_quantizer(edge), name=name)(x)

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
    return QuantDense(num_classes, kernel_quantizer=spec.kernel_quantizer(edge=True), name="linear")(x)
