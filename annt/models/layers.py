"""Keras layers of annt's models; quantizers come in as specs (:mod:`annt.models.quantizers`).

* :class:`QuantConv2D`, :class:`QuantDense` — the stock layers with the kernel passed through
  ``kernel_quantizer`` on every call, e.g. ``kernel_quantizer=("dorefa_weights", {"bits": 4})``;
  ``None`` keeps the float kernel. The float kernel is what the optimizer updates (DoReFa keeps
  full-precision shadow weights); the bias is never quantized.
* :class:`QuantActivation` — ``quantizer(x)``, placed after the nonlinearity, e.g.
  ``QuantActivation(("dorefa_activations", {"bits": 2}))``.
* :class:`ChannelPad` — zero channels for the ResNets' parameter-free shortcuts.

All are registered under the ``annt`` package, and their configs hold only JSON, so
``keras.models.load_model(path, safe_mode=True)`` restores them without custom_objects once
this module is imported (:mod:`annt.models.folder` does).
"""
from __future__ import annotations

import keras
from keras import ops

from annt.models.quantizers import FULL_PRECISION, get_quantizer, serialize_quantizer


def _legacy_spec(bits, quantizer: str):
    """Spec for the bit-width keys of model files saved before quantizer specs (``weight_bits``
    of the kernel layers, ``bits`` of QuantActivation): DoReFa at that width, None at 32."""
    return None if int(bits) == FULL_PRECISION else (quantizer, {"bits": int(bits)})


class _QuantizedKernel:
    """Mixin for a Keras layer with a ``kernel``: the forward pass uses ``kernel_quantizer(kernel)``.

    Kernels start from ``he_normal``, tensorpack's default (variance scaling 2, fan-in): ANNT's
    models were trained from it, and with Keras' Glorot default a 1-bit net starts with every
    binary activation at 0 and never learns.
    """

    def __init__(self, *args, kernel_quantizer=None, **kwargs):
        kwargs.setdefault("kernel_initializer", "he_normal")
        super().__init__(*args, **kwargs)
        self.kernel_quantizer = get_quantizer(kernel_quantizer)

    def quantized_kernel(self):
        """The kernel the forward pass uses: ``kernel_quantizer(kernel)``, or the kernel itself."""
        return self.kernel if self.kernel_quantizer is None else self.kernel_quantizer(self.kernel)

    def _bias_and_activation(self, outputs):
        if self.use_bias:
            outputs = ops.add(outputs, self.bias)  # channels_last: bias broadcasts on the last axis
        return self.activation(outputs) if self.activation is not None else outputs

    def get_config(self):
        return {**super().get_config(), "kernel_quantizer": serialize_quantizer(self.kernel_quantizer)}

    @classmethod
    def from_config(cls, config):
        if "weight_bits" in config:
            config = {**config, "kernel_quantizer": _legacy_spec(config["weight_bits"], "dorefa_weights")}
            del config["weight_bits"]
        return super().from_config(config)


@keras.saving.register_keras_serializable(package="annt")
class QuantConv2D(_QuantizedKernel, keras.layers.Conv2D):
    """``Conv2D`` whose kernel goes through ``kernel_quantizer`` (None: float kernel)."""

    def call(self, inputs):
        # Conv2D.call with the quantized kernel in place of the float one.
        return self._bias_and_activation(self.convolution_op(inputs, self.quantized_kernel()))


@keras.saving.register_keras_serializable(package="annt")
class QuantDense(_QuantizedKernel, keras.layers.Dense):
    """``Dense`` whose kernel goes through ``kernel_quantizer`` (None: float kernel)."""

    def call(self, inputs, training=None):
        return self._bias_and_activation(ops.matmul(inputs, self.quantized_kernel()))


@keras.saving.register_keras_serializable(package="annt")
class QuantActivation(keras.layers.Layer):
    """``quantizer(x)``, e.g. DoReFa's k-bit grid on [0, 1] after clipping; None: identity."""

    def __init__(self, quantizer=None, **kwargs):
        super().__init__(**kwargs)
        self.quantizer = get_quantizer(quantizer)

    def call(self, inputs):
        return inputs if self.quantizer is None else self.quantizer(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "quantizer": serialize_quantizer(self.quantizer)}

    @classmethod
    def from_config(cls, config):
        if "bits" in config:
            config = {**config, "quantizer": _legacy_spec(config["bits"], "dorefa_activations")}
            del config["bits"]
        return super().from_config(config)


@keras.saving.register_keras_serializable(package="annt")
class ChannelPad(keras.layers.Layer):
    """Zero-pads the channel axis (``before``, ``after``): ResNet option-A shortcut, no parameters."""

    def __init__(self, before: int, after: int, **kwargs):
        super().__init__(**kwargs)
        self.before, self.after = int(before), int(after)

    def call(self, inputs):
        return ops.pad(inputs, [[0, 0], [0, 0], [0, 0], [self.before, self.after]])

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + self.before + self.after)

    def get_config(self):
        return {**super().get_config(), "before": self.before, "after": self.after}
