"""Boundary attack for a whole batch at once: ART 1.20.1's ``BoundaryAttack`` with per-sample step sizes.

ART walks one image at a time (``art/attacks/evasion/boundary.py``), so each of its ~50 model
queries per iteration is a Python round trip on a handful of images. Here every sample of the
batch walks at once inside one compiled TensorFlow loop; what each sample does is ART's:

* start: an adversarial starting point (:func:`annt.attacks.art_attacks.random_starts`, seeded,
  as for ART's path); samples without one, and targeted samples already classified as the
  target, are returned unchanged.
* orthogonal step, up to ``num_trial`` tries: ``sample_size`` candidates
  ``clip(x' + ((1 - h)(x' - x) + η) / h)``, ``h = sqrt(1 + δ²)``, with ``η`` a Gaussian draw scaled to
  ``δ ||x - x'||`` and projected orthogonally to ``x - x'``; ``δ`` shrinks by ``step_adapt`` when
  under 20% of them are adversarial, grows when over 50%; the adversarial ones go on. A sample
  none of whose tries gives any stops there (ART returns its current image).
* step towards the original, up to ``num_trial`` tries on those candidates:
  ``clip(c + ε (x - c))``, ``ε`` adapted the same way; the adversarial one nearest to ``x`` (L2)
  becomes ``x'``. A sample whose tries all fail stops with the nearest orthogonal candidate;
  one whose ``ε`` falls below ``min_epsilon`` stops.

Adversarial: targeted, classified as the target; untargeted, not as the clean prediction (ART's
criterion). The walk is float32, the model's dtype (ART's is float64 after its first step; its model
sees float32 too). Every candidate is forwarded once, in batches across samples; line-search-like
retries forward only the samples still looking.

The Gaussian draws are TensorFlow's stateless ones, keyed by a seed taken from numpy's global
RNG (which ``generate`` seeds) and a counter: same inputs and seed, byte-identical output. They
are not ART's draws (ART's are unseeded), so results agree with ART's in distribution: success
rate and mean distance, not per image. ``delta``, ``epsilon`` and the iteration count mean what
they mean in ART.
"""
from __future__ import annotations

import numpy as np

from annt.attacks.cw_graph import GraphAttackRun, cached_graph, model_fn

__all__ = ["BOUNDARY_ART_PARAMS", "boundary", "run_boundary"]

#: The boundary parameters with ART's meaning (``implementation`` is annt's choice of code).
BOUNDARY_ART_PARAMS = ("delta", "epsilon", "step_adapt", "max_iter", "num_trial", "sample_size", "init_size",
                       "min_epsilon")


def _build_boundary(classifier, targeted: bool, clip_min: float, clip_max: float):
    import tensorflow as tf

    f32 = tf.float32
    dim = int(np.prod(classifier.input_shape))
    logits = model_fn(classifier)
    inf = tf.constant(np.inf, f32)

    def adversarial(points, label):
        """(rows, D) points -> whether each is adversarial for its sample's label."""
        pred = tf.argmax(logits(points), axis=1, output_type=tf.int32)
        return tf.equal(pred, label) if targeted else tf.not_equal(pred, label)

    def adapt(size, ratio, factor, where):
        size = tf.where(where & (ratio < 0.2), size * factor, size)
        return tf.where(where & (ratio > 0.5), size / factor, size)

    @tf.function(autograph=False, input_signature=[  # explicit tf.while_loops: nothing to convert
        tf.TensorSpec([None, dim], f32), tf.TensorSpec([None, dim], f32), tf.TensorSpec([None], tf.bool),
        tf.TensorSpec([None], tf.int32), tf.TensorSpec([], f32), tf.TensorSpec([], f32), tf.TensorSpec([], f32),
        tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32),
        tf.TensorSpec([], f32), tf.TensorSpec([], tf.int64)])
    def walk(x, start, walking, label, delta0, epsilon0, step_adapt, max_iter, num_trial, sample_size, min_epsilon,
             seed):
        n = tf.shape(x)[0]

        def orthogonal_phase(walking, x_adv, delta, draws, forwarded):
            """Up to num_trial rounds of sample_size candidates for every sample still looking."""
            away = x_adv - x
            dist = tf.norm(away, axis=1)

            def cond(t, looking, delta, cands, sat, draws, forwarded):
                return (t < num_trial) & tf.reduce_any(looking)

            def body(t, looking, delta, cands, sat, draws, forwarded):
                rows = tf.where(looking)
                k = tf.shape(rows)[0]
                eta = tf.random.stateless_normal([k, sample_size, dim], tf.stack([seed, draws]))
                d = tf.gather_nd(delta, rows)[:, None, None]
                here_away = tf.gather_nd(away, rows)[:, None, :]
                unit = here_away / tf.gather_nd(dist, rows)[:, None, None]
                eta = eta * (d * tf.gather_nd(dist, rows)[:, None, None] / tf.norm(eta, axis=2, keepdims=True))
                eta = eta - tf.reduce_sum(eta * unit, axis=2, keepdims=True) * unit
                hyp = tf.sqrt(1 + d * d)
                c = tf.clip_by_value(tf.gather_nd(x_adv, rows)[:, None, :] + ((1 - hyp) * here_away + eta) / hyp,
                                     clip_min, clip_max)
                ok = tf.reshape(adversarial(tf.reshape(c, [-1, dim]), tf.repeat(tf.gather_nd(label, rows), sample_size)),
                                [k, sample_size])
                ratio = tf.scatter_nd(rows, tf.reduce_mean(tf.cast(ok, f32), axis=1), [n])
                delta = adapt(delta, ratio, step_adapt, looking)
                got = looking & (ratio > 0)
                cands = tf.tensor_scatter_nd_update(cands, rows, c)
                sat = tf.where(got[:, None], tf.scatter_nd(rows, ok, [n, sample_size]), sat)
                return (t + 1, looking & ~got, delta, cands, sat, draws + 1,
                        forwarded + tf.cast(k * sample_size, tf.int64))

            state = (tf.constant(0), walking, delta, tf.zeros([n, sample_size, dim], f32),
                     tf.zeros([n, sample_size], tf.bool), draws, forwarded)
            _, lost, delta, cands, sat, draws, forwarded = tf.while_loop(cond, body, state)
            return lost, delta, cands, sat, draws, forwarded

        def source_phase(seeking, epsilon, cands, sat, forwarded):
            """Up to num_trial steps of size epsilon from each sample's adversarial candidates towards x;
            the adversarial result nearest to x (the first of equals, as np.argmin) for those that get one."""
            flat = tf.reshape(cands, [-1, dim])
            count = tf.reduce_sum(tf.cast(sat, f32), axis=1)

            def cond(t, seeking, epsilon, best, forwarded):
                return (t < num_trial) & tf.reduce_any(seeking)

            def body(t, seeking, epsilon, best, forwarded):
                rows = tf.where(tf.reshape(sat & seeking[:, None], [-1]))[:, 0]
                sample = tf.cast(rows // tf.cast(sample_size, tf.int64), tf.int32)
                c = tf.gather(flat, rows)
                moved = tf.clip_by_value(c + (tf.gather(x, sample) - c) * tf.gather(epsilon, sample)[:, None],
                                         clip_min, clip_max)
                ok = adversarial(moved, tf.gather(label, sample))
                ratio = tf.math.unsorted_segment_sum(tf.cast(ok, f32), sample, n) / tf.maximum(count, 1)
                epsilon = adapt(epsilon, ratio, step_adapt, seeking)
                got = seeking & (ratio > 0)
                dist = tf.where(ok, tf.norm(tf.gather(x, sample) - moved, axis=1), inf)
                nearest = ok & tf.equal(dist, tf.gather(tf.math.unsorted_segment_min(dist, sample, n), sample))
                k = tf.shape(rows)[0]
                first = tf.math.unsorted_segment_min(tf.where(nearest, tf.range(k), k), sample, n)
                best = tf.where(got[:, None], tf.gather(moved, tf.minimum(first, k - 1)), best)
                return t + 1, seeking & ~got, epsilon, best, forwarded + tf.cast(k, tf.int64)

            _, failed, epsilon, best, forwarded = tf.while_loop(
                cond, body, (tf.constant(0), seeking, epsilon, tf.zeros([n, dim], f32), forwarded))
            return failed, epsilon, best, forwarded

        def nearest_candidate(cands, sat):
            dist = tf.where(sat, tf.norm(x[:, None, :] - cands, axis=2), inf)
            return tf.gather(cands, tf.argmin(dist, axis=1, output_type=tf.int32), axis=1, batch_dims=1)

        def iterate(i, walking, x_adv, delta, epsilon, draws, forwarded):
            lost, delta, cands, sat, draws, forwarded = orthogonal_phase(walking, x_adv, delta, draws, forwarded)
            seeking = walking & ~lost
            failed, epsilon, best, forwarded = source_phase(seeking, epsilon, cands, sat, forwarded)
            stepped = seeking & ~failed
            x_adv = tf.where(stepped[:, None], best, x_adv)
            x_adv = tf.cond(tf.reduce_any(failed), lambda: tf.where(failed[:, None], nearest_candidate(cands, sat), x_adv),
                            lambda: x_adv)
            walking = stepped & (epsilon >= min_epsilon)
            return i + 1, walking, x_adv, delta, epsilon, draws, forwarded

        state = (tf.constant(0), walking, start, tf.fill([n], delta0), tf.fill([n], epsilon0),
                 tf.constant(0, tf.int64), tf.constant(0, tf.int64))
        _, _, x_adv, _, _, _, forwarded = tf.while_loop(
            lambda i, walking, *_: (i < max_iter) & tf.reduce_any(walking), iterate, state)
        return x_adv, forwarded

    return walk


def boundary(classifier, x: np.ndarray, start: np.ndarray, walking: np.ndarray, labels: np.ndarray, *,
             targeted: bool = False, delta: float = 0.01, epsilon: float = 0.01, step_adapt: float = 0.667,
             max_iter: int = 5000, num_trial: int = 25, sample_size: int = 20, min_epsilon: float = 0.0,
             seed: int = 0, batch_size: int | None = None) -> tuple[np.ndarray, dict]:
    """ART's Boundary walk for every sample of ``x`` at once (see the module docstring).

    :param start: adversarial starting points; used where ``walking`` is True.
    :param walking: samples to attack; the others are returned as ``start``.
    :param labels: per sample, the target (targeted) or the clean prediction (untargeted).
    :param seed: keys the Gaussian draws (with a counter): the same seed gives the same walk.
    :param batch_size: samples per graph call; default all (the draws depend on the batching).
    :return: ``(x_adv, stats)``; ``stats["forward_rows"]``: images the model classified.
    """
    import tensorflow as tf

    from annt.attacks.cw_graph import check_estimator

    check_estimator(classifier)
    clip_min, clip_max = (float(v) for v in classifier.clip_values)
    fn = cached_graph(classifier, ("boundary", bool(targeted), clip_min, clip_max),
                      lambda: _build_boundary(classifier, bool(targeted), clip_min, clip_max))
    n = len(x)
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(n, -1)
    starts = np.ascontiguousarray(start, dtype=np.float32).reshape(n, -1)
    out = starts.copy()
    step = int(batch_size or max(n, 1))
    stats = {"forward_rows": 0, "samples": n}
    for b, lo in enumerate(range(0, n, step)):
        sl = slice(lo, lo + step)
        if not np.any(walking[sl]):
            continue
        x_adv, forwarded = fn(
            tf.constant(flat[sl]), tf.constant(starts[sl]), tf.constant(np.asarray(walking[sl], bool)),
            tf.constant(np.asarray(labels[sl], np.int32)), tf.constant(delta, tf.float32),
            tf.constant(epsilon, tf.float32), tf.constant(step_adapt, tf.float32), tf.constant(max_iter, tf.int32),
            tf.constant(num_trial, tf.int32), tf.constant(sample_size, tf.int32), tf.constant(min_epsilon, tf.float32),
            tf.constant(int(seed) * 1_000_003 + b, tf.int64))
        out[sl] = np.where(np.asarray(walking[sl])[:, None], x_adv.numpy(), starts[sl])
        stats["forward_rows"] += int(forwarded)
    return out.reshape(np.shape(x)), stats


def run_boundary(spec, classifier, x, y_onehot, params, targeted, batch_size):
    """Runner of ``boundary`` (:mod:`annt.attacks.runner`): starting points as ART's path
    (:func:`annt.attacks.art_attacks.random_starts`), then the batched walk, or ART's with
    ``implementation: art``."""
    from annt.attacks.art_attacks import random_starts
    from annt.attacks.runner import _run_from_random_starts

    if params["implementation"] == "art":
        return _run_from_random_starts(spec, classifier, x, y_onehot, params, targeted, batch_size)
    clean = np.argmax(classifier.predict(x, batch_size=batch_size), axis=1)
    labels = np.argmax(y_onehot, axis=1) if targeted else clean
    start, found = random_starts(classifier, x, labels, targeted, params["init_size"], batch_size)
    walking = found & ~(labels == clean) if targeted else found  # ART leaves a sample already on target as it is
    seed = int(np.random.randint(0, 2**31 - 1))  # numpy's global RNG, seeded by generate
    x_adv, stats = boundary(classifier, x, np.where(walking.reshape(-1, *[1] * (x.ndim - 1)), start, x), walking,
                            labels, targeted=targeted, seed=seed, batch_size=batch_size,
                            **{k: params[k] for k in BOUNDARY_ART_PARAMS if k != "init_size"})
    return x_adv, GraphAttackRun(stats)
