"""Keras layers that apply the DoReFa quantizers of :mod:`annt.quantize`.

* :class:`QuantConv2D`, :class:`QuantDense` — the stock layers with the kernel passed through
  ``quantize_weights(kernel, weight_bits)`` on every call. The float kernel is what the
  optimizer updates (DoReFa keeps full-precision shadow weights); the bias is never quantized.
* :class:`QuantActivation` — ``quantize_activations(x, bits)``, placed after the nonlinearity.

All three are registered under the ``annt`` package so ``keras.models.load_model(path,
safe_mode=True)`` restores them without custom_objects, as long as ``annt.layers`` is imported.
"""
from __future__ import annotations

import keras
from keras import ops

from annt.quantize import FULL_PRECISION, check_bits, quantize_activations, quantize_weights


class _QuantizedKernel:
    """Mixin for a Keras layer with a ``kernel``: the forward pass uses the DoReFa-quantized kernel.

    Kernels start from ``he_normal``, tensorpack's default (variance scaling 2, fan-in): ANNT's
    models were trained from it, and with Keras' Glorot default a 1-bit net starts with every
    binary activation at 0 and never learns.
    """

    def __init__(self, *args, weight_bits: int = FULL_PRECISION, **kwargs):
        kwargs.setdefault("kernel_initializer", "he_normal")
        super().__init__(*args, **kwargs)
        self.weight_bits = check_bits(weight_bits, "weight_bits")

    def quantized_kernel(self):
        """The kernel the forward pass uses, ``quantize_weights(kernel, weight_bits)``."""
        return quantize_weights(self.kernel, self.weight_bits)

    def _bias_and_activation(self, outputs):
        if self.use_bias:
            outputs = ops.add(outputs, self.bias)  # channels_last: bias broadcasts on the last axis
        return self.activation(outputs) if self.activation is not None else outputs

    def get_config(self):
        return {**super().get_config(), "weight_bits": self.weight_bits}


@keras.saving.register_keras_serializable(package="annt")
class QuantConv2D(_QuantizedKernel, keras.layers.Conv2D):
    """``Conv2D`` whose kernel is DoReFa-quantized to ``weight_bits`` (32 = full precision)."""

    def call(self, inputs):
        # Conv2D.call with the quantized kernel in place of the float one.
        return self._bias_and_activation(self.convolution_op(inputs, self.quantized_kernel()))


@keras.saving.register_keras_serializable(package="annt")
class QuantDense(_QuantizedKernel, keras.layers.Dense):
    """``Dense`` whose kernel is DoReFa-quantized to ``weight_bits`` (32 = full precision)."""

    def call(self, inputs, training=None):
        return self._bias_and_activation(ops.matmul(inputs, self.quantized_kernel()))


@keras.saving.register_keras_serializable(package="annt")
class QuantActivation(keras.layers.Layer):
    """``quantize_activations(x, bits)``: k-bit grid on [0, 1] after clipping; identity at 32."""

    def __init__(self, bits: int, **kwargs):
        super().__init__(**kwargs)
        self.bits = check_bits(bits, "act_bits")

    def call(self, inputs):
        return quantize_activations(inputs, self.bits)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "bits": self.bits}
