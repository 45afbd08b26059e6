"""Quantizers: the DoReFa-Net formulas and the registry layers take them from.

A quantizer is a function ``tensor -> tensor``. Layers take it as a *spec*, a registered name
plus parameters, e.g. ``("dorefa_weights", {"bits": 4})`` (larq's design, not its package):
the spec is plain JSON in the layer config, so saved models load in Keras safe mode, and
``None`` is the identity. Adding a quantizer is one function plus its registered name::

    @register_quantizer("ste_sign")
    def ste_sign(x):
        ...

DoReFa (Zhou et al. 2016; tensorpack ``examples/DoReFa-Net/dorefa.py``): gradients are never
quantized; every rounding step uses the straight-through estimator (STE), i.e. the backward
pass treats ``round`` (and ``sign``) as the identity. Bit widths are ints in {1, 2, 4, 8, 12, 16,
32}; ``32`` means full precision and every DoReFa quantizer is then the identity (for
activations: no clip either, SPEC §4).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import tensorflow as tf

from annt import bits as bitwidths

FULL_PRECISION = bitwidths.FP

#: registered name -> (function ``f(x, **params)``, per-parameter checks ``{param: check(value) -> value}``)
QUANTIZERS: dict[str, tuple[Callable[..., tf.Tensor], Mapping[str, Callable[[Any], Any]]]] = {}


def register_quantizer(name: str, **checks: Callable[[Any], Any]):
    """Register ``f(x, **params) -> tensor`` under ``name``; ``checks`` validate (and normalise) a
    parameter when a layer is built, e.g. ``bits=annt.bits.check``. Returns ``f`` unchanged."""
    def register(fn):
        if name in QUANTIZERS:
            raise ValueError(f"quantizer {name!r} is already registered")
        QUANTIZERS[name] = (fn, dict(checks))
        return fn

    return register


class Quantizer:
    """A registered quantizer with its parameters bound: ``q(x) == f(x, **params)``.

    ``get_config()`` is the JSON spec ``{"name": ..., "params": {...}}`` a layer stores."""

    def __init__(self, name: str, params: Mapping[str, Any] | None = None):
        if name not in QUANTIZERS:
            raise ValueError(f"unknown quantizer {name!r}; registered: {', '.join(sorted(QUANTIZERS))}")
        fn, checks = QUANTIZERS[name]
        params = dict(params or {})
        accepted = list(inspect.signature(fn).parameters.values())[1:]  # after the tensor
        unknown = sorted(set(params) - {p.name for p in accepted})
        if unknown:
            raise ValueError(f"quantizer {name!r} has no parameter {unknown[0]!r} "
                             f"(parameters: {', '.join(p.name for p in accepted) or 'none'})")
        missing = [p.name for p in accepted if p.default is inspect.Parameter.empty and p.name not in params]
        if missing:
            raise ValueError(f"quantizer {name!r} needs parameter {missing[0]!r}")
        for key, check in checks.items():
            if key in params:
                params[key] = check(params[key])
        self.name, self.params, self._fn = name, params, fn

    def __call__(self, x):
        return self._fn(x, **self.params)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}

    def __eq__(self, other):
        return isinstance(other, Quantizer) and self.get_config() == other.get_config()

    def __repr__(self):
        return f"Quantizer({self.name!r}, {self.params!r})"


def get_quantizer(spec) -> Quantizer | None:
    """The quantizer a spec names. ``spec`` is ``None`` (identity: returns None), a name, ``(name,
    params)``, the stored ``{"name": ..., "params": {...}}`` or a :class:`Quantizer`.
    ``ValueError`` for an unknown name or bad parameters."""
    if spec is None or isinstance(spec, Quantizer):
        return spec
    if isinstance(spec, str):
        return Quantizer(spec)
    if isinstance(spec, Mapping) and set(spec) <= {"name", "params"} and "name" in spec:
        return Quantizer(spec["name"], spec.get("params"))
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[1], Mapping):
        return Quantizer(spec[0], spec[1])
    raise ValueError(f"not a quantizer spec: {spec!r} (expected None, a name, (name, params) "
                     f"or {{'name': ..., 'params': {{...}}}})")


def serialize_quantizer(quantizer: Quantizer | None) -> dict[str, Any] | None:
    """The JSON spec of a quantizer (None for the identity)."""
    return None if quantizer is None else quantizer.get_config()


# --- DoReFa ----------------------------------------------------------------------------------

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


@register_quantizer("dorefa_weights", bits=bitwidths.check)
def quantize_weights(w: tf.Tensor, bits: int) -> tf.Tensor:
    """DoReFa weight quantizer ``fw`` at k = ``bits``.

    * k = 32: identity.
    * k = 1:  w_q = sign(w) · E(|w|), E = mean of |w| over the whole tensor (one scale per layer),
      no gradient through E; sign(0) := +1 so there are exactly two levels ±E. Straight-through
      as in tensorpack's ``sign(w / E) · E`` with Sign -> Identity: ∂w_q/∂w = 1.
    * k > 1:  t = tanh(w);  w_q = 2 · quantize_k(t / (2·max|t|) + 0.5, k) − 1,
      values on 2^k levels in [−1, 1]; the gradient flows through tanh and max|t| exactly as
      in tensorpack (only the rounding is straight-through).
    """
    k = bits
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


@register_quantizer("dorefa_activations", bits=bitwidths.check)
def quantize_activations(x: tf.Tensor, bits: int) -> tf.Tensor:
    """DoReFa activation quantizer ``fa`` at k = ``bits``.

    * k = 32: identity — no clip, the layer's nonlinearity alone shapes the activation.
    * else:   a_q = quantize_k(clip(x, 0, 1), k) = round(clip(x, 0, 1) · n) / n,  n = 2^k − 1;
      ∂a_q/∂x = 1 for 0 ≤ x ≤ 1 and 0 outside (the clip's gradient; rounding is straight-through).
    """
    if bits == FULL_PRECISION:
        return x
    n = float(2 ** bits - 1)

    # Same values and gradient as quantize_k(tf.clip_by_value(x, 0, 1), k), written as one op
    # with a hand-made gradient: activations are the large tensors, and the composed version
    # costs ~10 elementwise passes per layer per step against ~6 here (benchmarks/).
    @tf.custom_gradient
    def _fa(x):
        def grad(dy):
            return tf.where((x >= 0.0) & (x <= 1.0), dy, 0.0)

        return tf.round(tf.clip_by_value(x, 0.0, 1.0) * n) / n, grad

    return _fa(x)


# --- binary (BinaryNet; Galloway et al. 2018) -------------------------------------------------

def _hardtanh_ste(x, forward: Callable[[tf.Tensor], tf.Tensor]) -> tf.Tensor:
    """``forward(x)`` in the forward pass; backward ∂/∂x = 1 where |x| ≤ 1, else 0 (the gradient of
    hard tanh: BinaryNet's straight-through estimator, Courbariaux, Hubara et al. 2016). One op with
    a hand-made gradient, as :func:`quantize_activations` (binary activations are large tensors)."""
    @tf.custom_gradient
    def _ste(x):
        def grad(dy):
            return tf.where(tf.abs(x) <= 1.0, dy, tf.zeros_like(dy))

        return forward(x), grad

    return _ste(tf.convert_to_tensor(x))


def _pm_one(positive: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    return tf.where(positive, tf.ones_like(like), -tf.ones_like(like))


@register_quantizer("sign")
def binary_sign(x: tf.Tensor) -> tf.Tensor:
    """Deterministic binarization, for weights and activations alike.

        forward:  s = +1 if x ≥ 0 else −1   (sign(0) := +1, so the values are exactly ±1)
        backward: ∂s/∂x = 1 if |x| ≤ 1 else 0   (hard-tanh straight-through estimator)

    No scale: binary weights are ±1 (unlike DoReFa's 1-bit ``±E(|w|)``).
    """
    return _hardtanh_ste(x, lambda t: _pm_one(t >= 0, t))


@register_quantizer("stochastic_sign")
def stochastic_sign(x: tf.Tensor) -> tf.Tensor:
    """Stochastic binarization, sampled on every call (training and inference alike):

        forward:  s = 2·Bernoulli(p) − 1,   p = hard_sigmoid(x) = clip((x + 1)/2, 0, 1)
                  (s = +1 where u < p for u ~ U[0, 1): always +1 at x ≥ 1, always −1 at x ≤ −1)
        backward: ∂s/∂x = 1 if |x| ≤ 1 else 0   (as :func:`binary_sign`)

    E[s] = clip(x, −1, 1). The draw comes from TensorFlow's global random state (``tf.random.uniform``
    without an op seed), so ``keras.utils.set_random_seed(s)`` / ``tf.random.set_seed(s)`` before a
    pass makes it repeatable, in eager calls and in traced functions alike. A layer whose kernel
    uses it reports ``annt_stochastic`` (:mod:`annt.attacks.adaptive`: attacks then use EOT).
    """
    def sample(t):
        p = tf.clip_by_value((t + 1.0) / 2.0, 0.0, 1.0)
        return _pm_one(tf.random.uniform(tf.shape(t), dtype=t.dtype) < p, t)

    return _hardtanh_ste(x, sample)


#: Quantizers that draw at random on every call; layers using one are stochastic at inference.
STOCHASTIC_QUANTIZERS = frozenset({"stochastic_sign"})
