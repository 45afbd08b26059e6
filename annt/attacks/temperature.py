"""Temperature-scaled cross-entropy for gradient attacks (Gupta & Ajanthan, paper 000, §5).

The attack's loss is ``CE(softmax(β·a), y)`` for logits ``a`` and a temperature ``β > 0``. Scaling
by ``β > 0`` keeps the argmax, so the decision boundary (and every prediction) is unchanged; only
the gradient changes: ``∇x CE(softmax(β·a), y) = β·Jᵀ(softmax(β·a) − y)`` with ``J = ∂a/∂x`` (d × N,
d = number of classes, N = input size). Quantized nets often saturate the softmax (``p`` one-hot
in float32, gradient exactly 0) or have Jacobians far from unit scale; a well-chosen ``β`` fixes both.

Two rules choose ``β`` (SPEC §12):

* **NJS** (network Jacobian scaling, Algorithm 1). ``β₁ = M·d / Σᵢ Σⱼ μⱼ(Jᵢ)``: the inverse mean
  singular value of the Jacobians of M correctly classified samples (:func:`njs_beta1`), so ``β₁J``
  has mean singular value 1. At every iteration, with ``s = β₁·a``, ``p = softmax(s)`` and ``k`` the
  label: if ``1 − p_k ≤ ρ`` (ρ = 0.01) then ``β₂ = −log(ρ / ((d−1)(1−ρ))) / γ``, ``γ = max(s) − min(s)``
  (Proposition 1), else ``β₂ = 1`` (:func:`njs_beta2`); the loss uses ``β₂·s`` with ``β₂`` a constant
  (no gradient through it).
* **HNS** (Hessian norm scaling, Algorithm 2). Per sample, once at the clean image:
  ``β* = argmax_β β²·sqrt(tr(H G H G))`` with ``G = JJᵀ`` (d × d) and ``H = diag(p) − ppᵀ``,
  ``p = softmax(β·a)`` — the Frobenius norm of the loss Hessian ``β²·Jᵀ H J`` (the ``∂J/∂x`` term is
  0 almost everywhere for ReLU / clip / straight-through nets) — over :data:`HNS_GRID` linearly
  spaced ``β`` in ``[c_lo/γ, c_hi/γ]``, ``γ`` = top-1 − top-2 logit (:func:`hns_beta`). The bounds
  are Proposition 1's ``β·γ`` at ``ρ = 1 − 1/d − 0.01`` and at ``ρ = 1e-72`` (paper, appendix B.1):
  0.1065 and 167.98 for d = 10, recomputed for other d by :func:`hns_grid_bounds`.

Proposition 1 (as used here): for logits with range ``γ = max − min`` and ``β·γ = L(ρ) =
−log(ρ / ((d−1)(1−ρ)))``, every class has ``1 − p ≥ ρ``, with equality for the top class when all
other logits equal the minimum. So scaling a saturated sample (``1 − p_k ≤ ρ``) by ``β₂`` brings
its error signal back to at least ``ρ``.

All functions take and return TensorFlow tensors and work on whole batches; :mod:`annt.attacks.estimator`
calls them inside its compiled graphs (``njs_beta2``) or once per attacked batch (``njs_beta1``, ``hns_beta``).
"""
from __future__ import annotations

import math

import tensorflow as tf

__all__ = ["HNS_GRID", "HNS_RHO_HIGH_MARGIN", "HNS_RHO_LOW", "RHO", "hns_beta", "hns_grid_bounds", "hns_objective",
           "njs_beta1", "njs_beta2", "proposition1_scale"]

#: NJS's bound on the error signal ``1 − p_k`` (paper: 0.01; their Table 6: insensitive in [1e-5, 0.2]).
RHO = 0.01
#: HNS grid size (paper, appendix B.1).
HNS_GRID = 100
#: HNS grid top: Proposition 1 at this ρ (softmax saturated to within 1e-72).
HNS_RHO_LOW = 1e-72
#: HNS grid bottom: Proposition 1 at ρ = 1 − 1/d − this margin (softmax almost uniform).
HNS_RHO_HIGH_MARGIN = 0.01


def proposition1_scale(rho: float, d: int) -> float:
    """``L(ρ) = −log(ρ / ((d−1)(1−ρ)))``: the ``β·γ`` at which ``1 − p ≥ ρ`` is guaranteed for logits
    of range ``γ`` (Proposition 1); needs ``0 < ρ < (d−1)/d`` so that ``L > 0``."""
    if not (d > 1 and 0 < rho < (d - 1) / d):
        raise ValueError(f"Proposition 1 needs d > 1 and 0 < rho < (d-1)/d, got rho={rho}, d={d}")
    return -(math.log(rho) - math.log(d - 1) - math.log1p(-rho))


def hns_grid_bounds(d: int) -> tuple[float, float]:
    """``(c_lo, c_hi)``: the HNS grid is ``[c_lo/γ, c_hi/γ]``; (0.1065, 167.98) for d = 10."""
    return proposition1_scale(1 - 1 / d - HNS_RHO_HIGH_MARGIN, d), proposition1_scale(HNS_RHO_LOW, d)


def njs_beta1(jacobians: tf.Tensor, correct: tf.Tensor | None = None) -> tf.Tensor:
    """``β₁ = M·d / Σᵢ Σⱼ μⱼ(Jᵢ)``, the inverse mean singular value of the Jacobians.

    :param jacobians: ``(B, d, N)``, ``J_i = ∂a/∂x`` at sample i (d singular values each, zeros
        included, as in the formula).
    :param correct: ``(B,)`` bool, the correctly classified samples (the M of the formula); when
        none is correct (or ``None``), all B samples are used.
    :returns: a float32 scalar; 1.0 when every singular value is 0 (a fully masked gradient cannot
        be rescaled).
    """
    j = tf.cast(jacobians, tf.float64)
    # μ_j(J) = sqrt(λ_j(JJᵀ)): d eigenvalues of a d x d matrix instead of an SVD of d x N
    sv = tf.sqrt(tf.maximum(tf.linalg.eigvalsh(tf.matmul(j, j, transpose_b=True)), 0.0))  # (B, d)
    if correct is not None:
        correct = tf.convert_to_tensor(correct, tf.bool)
        sv = tf.cond(tf.reduce_any(correct), lambda: tf.boolean_mask(sv, correct), lambda: sv)
    mean = tf.reduce_mean(sv)
    return tf.cast(tf.where(mean > 0, 1.0 / mean, tf.ones_like(mean)), tf.float32)


def njs_beta2(scaled_logits: tf.Tensor, labels: tf.Tensor, rho: float = RHO) -> tf.Tensor:
    """Per-sample ``β₂`` of Algorithm 1 for ``s = β₁·a`` (``(B, d)``) and integer ``labels`` ``(B,)``:
    ``L(ρ)/γ`` where ``1 − softmax(s)_k ≤ ρ`` (``γ = max(s) − min(s)``), else 1. Shape ``(B,)``; no
    gradient flows through it."""
    s = tf.stop_gradient(scaled_logits)
    d = int(s.shape[-1])
    p_k = tf.gather(tf.nn.softmax(s, axis=-1), tf.cast(labels, tf.int32), axis=1, batch_dims=1)
    gamma = tf.reduce_max(s, axis=-1) - tf.reduce_min(s, axis=-1)
    saturated = (1.0 - p_k <= rho) & (gamma > 0)
    scale = tf.constant(proposition1_scale(rho, d), s.dtype)
    return tf.where(saturated, scale / tf.where(gamma > 0, gamma, tf.ones_like(gamma)), tf.ones_like(gamma))


def hns_objective(logits: tf.Tensor, gram: tf.Tensor, betas: tf.Tensor) -> tf.Tensor:
    """``β²·sqrt(tr(H G H G))`` for every sample and candidate β, ``H = diag(p) − ppᵀ``, ``p = softmax(β·a)``.

    :param logits: ``(B, d)``; :param gram: ``G = JJᵀ``, ``(B, d, d)``; :param betas: ``(B, K)``.
    :returns: ``(B, K)``, in float64 (``β`` reaches 167.98/γ; float32 would round the tiny ``p``'s).
    """
    a, g, b = (tf.cast(t, tf.float64) for t in (logits, gram, betas))
    p = tf.nn.softmax(b[:, :, None] * a[:, None, :], axis=-1)  # (B, K, d)
    h = tf.linalg.diag(p) - p[..., :, None] * p[..., None, :]  # (B, K, d, d)
    hg = tf.matmul(h, g[:, None])  # (B, K, d, d)
    trace = tf.reduce_sum(hg * tf.linalg.matrix_transpose(hg), axis=[-2, -1])  # tr(HG HG) = Σ_ij (HG)_ij (HG)_ji
    return b**2 * tf.sqrt(tf.maximum(trace, 0.0))


def hns_beta(logits: tf.Tensor, jacobians: tf.Tensor, grid: int = HNS_GRID) -> tf.Tensor:
    """Per-sample ``β*`` of Algorithm 2 at the clean images: ``logits`` ``(B, d)``, ``jacobians`` ``(B, d, N)``.

    The grid is ``grid`` linearly spaced β in ``[c_lo/γ, c_hi/γ]`` (:func:`hns_grid_bounds`), ``γ`` =
    top-1 − top-2 logit; the first maximiser wins ties. A sample whose two top logits tie (γ = 0,
    on the decision boundary: no finite grid) gets β* = 1. Returns float32 ``(B,)``.
    """
    a = tf.cast(logits, tf.float64)
    j = tf.cast(jacobians, tf.float64)
    d = int(a.shape[-1])
    top2 = tf.math.top_k(a, k=2).values
    gamma = top2[:, 0] - top2[:, 1]
    tied = gamma <= 0
    gamma = tf.where(tied, tf.ones_like(gamma), gamma)
    lo, hi = hns_grid_bounds(d)
    betas = tf.cast(tf.linspace(lo, hi, grid), tf.float64)[None, :] / gamma[:, None]  # (B, K)
    objective = hns_objective(a, tf.matmul(j, j, transpose_b=True), betas)
    best = tf.gather(betas, tf.argmax(objective, axis=1), axis=1, batch_dims=1)
    return tf.cast(tf.where(tied, tf.ones_like(best), best), tf.float32)
