"""DoReFa-Net quantizers (Zhou et al. 2016; tensorpack ``examples/DoReFa-Net/dorefa.py``).

Three small functions, each the paper's formula. Gradients are never quantized: every rounding
step uses the straight-through estimator (STE), i.e. the backward pass treats ``round`` (and
``sign``) as the identity.

Bit widths are ints in {1, 2, 4, 8, 12, 16, 32}; ``32`` means full precision and every
quantizer is then the identity (for activations: no clip either, SPEC §4).
"""
from __future__ import annotations

import tensorflow as tf

FULL_PRECISION = 32
VALID_BITS = (1, 2, 4, 8, 12, 16, 32)


def check_bits(k: int, what: str = "bits") -> int:
    """Return ``k`` if it is an allowed bit width, else raise ``ValueError``."""
    if isinstance(k, bool) or int(k) != k or int(k) not in VALID_BITS:
        raise ValueError(f"{what} must be one of {list(VALID_BITS)} (32 = full precision), got {k!r}")
    return int(k)


def bits_label(weight_bits: int, act_bits: int) -> str:
    """Human label: ``"fp"``, ``"4bit"`` (same k for both), or ``"w1a4"`` / ``"wfpa2"`` (mixed)."""
    def one(k):
        return "fp" if k == FULL_PRECISION else str(k)

    if weight_bits == act_bits:
        return "fp" if weight_bits == FULL_PRECISION else f"{weight_bits}bit"
    return f"w{one(weight_bits)}a{one(act_bits)}"


def quantize_k(x: tf.Tensor, k: int) -> tf.Tensor:
    """k-bit uniform quantizer on [0, 1] with a straight-through gradient.

        forward:  q = round(x · n) / n,   n = 2^k − 1
        backward: ∂q/∂x = 1

    ``x`` is expected in [0, 1]; the result then lies on the grid {0, 1/n, …, 1}.
    """
    n = float(2 ** k - 1)
    q = tf.round(x * n) / n
    # STE: the forward value is q, the gradient is that of the identity.
    return q + (x - tf.stop_gradient(x))  # forward exactly q (x - x = 0), gradient 1


def quantize_weights(w: tf.Tensor, k: int) -> tf.Tensor:
    """DoReFa weight quantizer ``fw``.

    * k = 32: identity.
    * k = 1:  w_q = sign(w) · E(|w|), E = mean of |w| over the whole tensor (one scale per layer),
      no gradient through E; sign(0) := +1 so there are exactly two levels ±E. Straight-through
      as in tensorpack's ``sign(w / E) · E`` with Sign -> Identity: ∂w_q/∂w = 1.
    * k > 1:  t = tanh(w);  w_q = 2 · quantize_k(t / (2·max|t|) + 0.5, k) − 1,
      values on 2^k levels in [−1, 1]; the gradient flows through tanh and max|t| exactly as
      in tensorpack (only the rounding is straight-through).
    """
    if k == FULL_PRECISION:
        return w
    if k == 1:
        e = tf.stop_gradient(tf.reduce_mean(tf.abs(w)))
        s = tf.where(w >= 0, tf.ones_like(w), -tf.ones_like(w))
        # q + (w - stop_gradient(w)): forward value exactly ±E (0 added), gradient 1.
        return s * e + (w - tf.stop_gradient(w))
    t = tf.tanh(w)
    x = t / (2.0 * tf.reduce_max(tf.abs(t))) + 0.5
    return 2.0 * quantize_k(x, k) - 1.0


def quantize_activations(x: tf.Tensor, k: int) -> tf.Tensor:
    """DoReFa activation quantizer ``fa``.

    * k = 32: identity — no clip, the layer's nonlinearity alone shapes the activation.
    * else:   a_q = quantize_k(clip(x, 0, 1), k) = round(clip(x, 0, 1) · n) / n,  n = 2^k − 1;
      ∂a_q/∂x = 1 for 0 ≤ x ≤ 1 and 0 outside (the clip's gradient; rounding is straight-through).
    """
    if k == FULL_PRECISION:
        return x
    n = float(2 ** k - 1)

    # Same values and gradient as quantize_k(tf.clip_by_value(x, 0, 1), k), written as one op
    # with a hand-made gradient: activations are the large tensors, and the composed version
    # costs ~10 elementwise passes per layer per step against ~6 here (benchmarks/).
    @tf.custom_gradient
    def _fa(x):
        def grad(dy):
            return tf.where((x >= 0.0) & (x <= 1.0), dy, 0.0)

        return tf.round(tf.clip_by_value(x, 0.0, 1.0) * n) / n, grad

    return _fa(x)
