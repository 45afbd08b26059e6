"""Input discretization (Panda et al. 2019, Eq. 2; SPEC §13): the model's first layer maps each pixel
to the centre of one of ``2^δ`` equal bins of the 8-bit range.

On the 0-255 scale, with bin width ``w = 256 / 2^δ``::

    I   = round(255 · x)                      (x in [0, 1] -> the nearest 8-bit level, clipped to 0..255)
    I_δ = ⌊I / w⌋ · w + w / 2                 (Eq. 2: the centre of I's bin)
    out = I_δ / 255

The rounding before the floor is ours: ``x = v/255`` is not exact in float32, so ``255·x`` may
land a rounding error below ``v`` (``x`` computed as ``v · (1/255)``, or after an attack's clip), and
at a bin edge Eq. 2 would then pick the bin below. Rounding to the nearest level first puts every
8-bit value ``v`` in its own bin, as the integer formula does;
``tests/test_discretize.py`` checks all 256 values at every δ. Every other step is exact in float32
(``w`` is a power of two), so the output is the float32 nearest to ``I_δ / 255``.

As Eq. 2 says, the output is the bin *centre*: at δ = 8 (bins one level wide) a pixel ``v`` becomes
``(v + 0.5)/255``, so white (255) becomes 255.5/255 ≈ 1.002; no clip is applied after the formula.

Gradients (:mod:`annt.attacks.adaptive`): the layer declares ``annt_bpda = True``, so attacks
with ``bpda: true`` (the default) differentiate it as the identity. Its own gradient is exactly
zero everywhere (an explicit zero, ``0·x``, not a missing one), which is what ``bpda: false``
shows: the masked view in which a gradient attack cannot move the input.
"""
from __future__ import annotations

import keras
from keras import ops

from annt.bits import INPUT_BITS  # the depths δ a model may discretize to (``model.input_bits``)

__all__ = ["INPUT_BITS", "InputDiscretization", "bin_width"]


def bin_width(bits: int) -> int:
    """``256 / 2^δ`` on the 0-255 scale (128 at δ = 1, 64 at δ = 2, 1 at δ = 8)."""
    return 256 >> int(bits)


@keras.saving.register_keras_serializable(package="annt")
class InputDiscretization(keras.layers.Layer):
    """Each pixel in [0, 1] -> the centre of its ``2^bits`` bin, divided by 255 (module docstring).

    ``annt_bpda = True``: identity in an attack's backward pass under BPDA; its own gradient is 0.
    """

    annt_bpda = True

    def __init__(self, bits: int, **kwargs):
        super().__init__(**kwargs)
        if isinstance(bits, bool) or bits not in INPUT_BITS:
            raise ValueError(f"input bits must be one of {', '.join(map(str, INPUT_BITS))}, got {bits!r}")
        self.bits = int(bits)

    def call(self, inputs):
        width = float(bin_width(self.bits))
        level = ops.clip(ops.round(inputs * 255.0), 0.0, 255.0)  # the nearest 8-bit value, so v/255 stays in v's bin
        centre = (ops.floor(level / width) * width + width / 2.0) / 255.0
        # forward value: the centre exactly (0·x adds a signed zero); gradient: 0 everywhere, never None
        return ops.stop_gradient(centre) + 0.0 * inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "bits": self.bits}
