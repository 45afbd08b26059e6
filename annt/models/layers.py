"""Keras layers of annt's models; quantizers come in as specs (:mod:`annt.models.quantizers`).

* :class:`QuantConv2D`, :class:`QuantDense` — the stock layers with the kernel passed through
  ``kernel_quantizer`` on every call, e.g. ``kernel_quantizer=("dorefa_weights", {"bits": 4})``;
  ``None`` keeps the float kernel. The float kernel is what the optimizer updates (DoReFa keeps
  full-precision shadow weights); the bias is never quantized.
* :class:`QuantActivation` — ``quantizer(x)``, placed after the nonlinearity, e.g.
  ``QuantActivation(("dorefa_activations", {"bits": 2}))``.
* :class:`ChannelPad` — zero channels for the ResNets' parameter-free shortcuts.
* :class:`LearnedScale` — ``α·x`` with one trainable scalar α (Galloway et al.'s type C/S models).
* :class:`ClipWeights` — kernel constraint ``clip(w, −c, c)`` after each update (BinaryNet).

A layer whose quantizer draws at random on every call (``stochastic_sign``) reports
``annt_stochastic = True`` (:mod:`annt.attacks.adaptive`: attacks then average gradients, EOT).

All are registered under the ``annt`` package, and their configs hold only JSON, so
``keras.models.load_model(path, safe_mode=True)`` restores them without custom_objects once
this module is imported (:mod:`annt.models.folder` does).
"""
from __future__ import annotations

import keras
from keras import ops

from annt.models.quantizers import FULL_PRECISION, STOCHASTIC_QUANTIZERS, get_quantizer, serialize_quantizer


def _is_stochastic(quantizer) -> bool:
    return quantizer is not None and quantizer.name in STOCHASTIC_QUANTIZERS


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

    @property
    def annt_stochastic(self) -> bool:
        """True when the kernel quantizer samples on every call (e.g. ``stochastic_sign``)."""
        return _is_stochastic(self.kernel_quantizer)

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

    @property
    def annt_stochastic(self) -> bool:
        """True when the quantizer samples on every call."""
        return _is_stochastic(self.quantizer)

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


@keras.saving.register_keras_serializable(package="annt")
class LearnedScale(keras.layers.Layer):
    """``α · x`` with one trainable scalar α (weight ``scale``), initialised to ``initial``.

    Galloway et al. (2018) §3: "a small (e.g. 1e-2) tunable scalar after the ReLU in hidden layers,
    to compensate for an increase in the L1 norm of the activations due to binarization"; their code
    (``SReLU``) starts it at 0.05."""

    def __init__(self, initial: float = 0.05, **kwargs):
        super().__init__(**kwargs)
        self.initial = float(initial)

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(), initializer=keras.initializers.Constant(self.initial),
                                     trainable=True)

    def call(self, inputs):
        return inputs * ops.cast(self.scale, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "initial": self.initial}


@keras.saving.register_keras_serializable(package="annt")
class ClipWeights(keras.constraints.Constraint):
    """``clip(w, −limit, limit)`` after every optimizer step: BinaryNet keeps the real-valued weights
    behind binary ones in [−1, 1], where the hard-tanh straight-through gradient is not zero."""

    def __init__(self, limit: float = 1.0):
        self.limit = float(limit)

    def __call__(self, w):
        return ops.clip(w, -self.limit, self.limit)

    def get_config(self):
        return {"limit": self.limit}
