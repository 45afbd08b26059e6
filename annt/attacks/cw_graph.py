"""C&W-L2 in the graph: ART 1.20.1's ``CarliniL2Method`` for a whole batch in one compiled TensorFlow loop.

ART's algorithm, step for step (``art/attacks/evasion/carlini.py``), with per-sample state
(constant ``c``, its bounds, learning rate, best distance and image) held in tensors and the
binary search, the gradient iterations and the line search written as ``tf.while_loop``\\ s, so a
batch runs without a Python round trip per step:

* tanh space: ``w = arctanh((2 (x - lo)/(hi - lo) - 1) · 0.999999)``, ``x' = (tanh(w) + 1)/2 · (hi - lo) + lo``.
* objective ``L = c · max(Z_y - max_{j≠y} Z_j + κ, 0) + ||x' - x||²`` (targeted: ``max_{j≠t} Z_j - Z_t + κ``),
  ``Z`` the logits; a sample succeeds when ``L - ||x' - x||² <= 0``.
* step direction ``-∂L/∂w`` with ART's chain rule: ``c ∇(Z_add - Z_sub)`` (the margin's gradient even
  where the hinge is inactive) ``+ 2 (x' - x)``, times ``(hi - lo)(1 - tanh²(w)) / (2 · 0.999999)``.
* line search per iteration: try the current rate; while the loss does not decrease, halve it
  (``max_halving`` tries in all); if the first try decreased it, double while the loss keeps
  decreasing (``max_doubling``); move by the best rate found, if any.
* binary search over ``c`` from ``initial_const`` (``binary_search_steps`` rounds, ``max_iter``
  iterations each, every round restarting at ``x``): success halves towards the lower bound,
  failure doubles until a first success, then moves up by half the gap. ART's code makes the
  lower bound the *new* ``c`` on failure (``c_old = c_current`` aliases the array); that is what
  ART runs and what is mirrored here. Samples stop once ``c >= 1e11`` (ART's early abort; its
  loops also end once no sample is active or none needs another halving or doubling try).
* ART's dtypes: image, tanh variable, logits, distances and step direction float32; ``c``,
  learning rates and the loss float64; a line-search try is evaluated in float64 (its distance
  stored rounded to float32), a move is stored in float32. Quirks kept: a sample whose tries all
  failed keeps the last try's loss and distance until its next move, and ART judges success
  (and may record a best image) from those values.

What differs from ART's run, by design: the logits of the point a move reaches are those of the
next iteration's gradient pass (one forward + backward instead of ART's forward then
forward + backward); line-search tries forward only the samples that need them (as ART does),
in one batch. On a float model results agree with ART's to float rounding (different summation
order); on quantized models rounding can flip a trial, so single samples may differ (the tests
and ``benchmarks/bench_attacks.py`` measure the agreement).

Gradient options apply as in annt's estimator: ``bpda`` traces the graph with the identity
backward of ``annt_bpda`` layers (:func:`annt.attacks.adaptive.identity_backward`, forward values
unchanged); ``eot_samples`` averages the margin gradient over passes (the logits that decide
the classes and the loss are the first pass's). ``temperature`` never changes C&W (logit gradients).
"""
from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CW_ART_PARAMS", "GraphAttackRun", "cached_graph", "carlini_l2", "check_estimator", "graph_options",
           "model_fn", "run_cw_l2", "tanh_space_start"]

#: The cw_l2 parameters with ART's meaning (``implementation`` is annt's choice of code).
CW_ART_PARAMS = ("confidence", "learning_rate", "binary_search_steps", "max_iter", "initial_const", "max_halving",
                 "max_doubling")

_TANH_SMOOTHER = 0.999999  # ART's
_C_UPPER_BOUND = 10e10  # ART's

# per classifier: {(kind, targeted, clip): concrete function}; a derived estimator (other gradient
# options) is another object with its own entry
_GRAPHS: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


@dataclass
class GraphAttackRun:
    """What a graph attack did, for ``generate``'s ``attack`` slot and the benchmarks.

    :ivar stats: counts summed over batches, e.g. ``gradient_rows`` (images through a forward +
        backward pass) and ``forward_rows`` (images through a forward pass only); per image they
        are the attack's passes.
    """

    stats: dict = field(default_factory=dict)


def check_estimator(classifier) -> None:
    """Refuse, in one line naming ``implementation: art``, an estimator the graph attacks cannot run in a
    TensorFlow graph: not a ``TensorFlowV2Classifier``, numpy preprocessing, postprocessing, no clip values."""
    from art.estimators.classification import TensorFlowV2Classifier

    if not isinstance(classifier, TensorFlowV2Classifier):
        raise ValueError(f"the graph implementation needs a TensorFlowV2Classifier (annt's estimator), not "
                         f"{type(classifier).__name__}; use implementation: art")
    if classifier.preprocessing_operations and not classifier.all_framework_preprocessing:
        raise ValueError("the graph implementation needs TensorFlow preprocessing only; use implementation: art")
    if classifier.postprocessing_defences:
        raise ValueError("the graph implementation does not apply postprocessing defences; use implementation: art")
    if classifier.clip_values is None:
        raise ValueError("the graph implementation needs an estimator with clip_values")


def model_fn(classifier, training: bool = False):
    """``x_flat (B, D) float32 -> logits``: the estimator's model with its TensorFlow preprocessing."""
    import tensorflow as tf

    shape = tuple(int(d) for d in classifier.input_shape)

    def logits(x_flat):
        x = tf.reshape(x_flat, (-1, *shape))
        if classifier.all_framework_preprocessing and classifier.preprocessing_operations:
            x, _ = classifier._apply_preprocessing(x, y=None, fit=False)
        return classifier._model(x, training=training)

    return logits


def graph_options(classifier) -> tuple[bool, int]:
    """``(bpda, eot_samples)`` of annt's estimator (``(False, 1)`` for ART's stock class)."""
    options = getattr(classifier, "gradient_options", None)
    return (bool(options.bpda), int(options.eot_samples)) if options is not None else (False, 1)


def cached_graph(classifier, key: tuple, build):
    """The concrete function ``build()`` for ``classifier`` and ``key``, traced once (with BPDA's
    identity backward when the estimator asks for it)."""
    from annt.attacks.adaptive import identity_backward

    graphs = _GRAPHS.setdefault(classifier, {})
    if key not in graphs:
        bpda, _ = graph_options(classifier)
        with identity_backward(classifier._model) if bpda else contextlib.nullcontext():
            graphs[key] = build().get_concrete_function()
    return graphs[key]


def _build_cw(classifier, targeted: bool, clip_min: float, clip_max: float):
    import tensorflow as tf

    f32, f64 = tf.float32, tf.float64
    dim = int(np.prod(classifier.input_shape))
    k = int(classifier.nb_classes)
    logits = model_fn(classifier)
    _, eot = graph_options(classifier)
    lo, hi = tf.constant(clip_min, f32), tf.constant(clip_max, f32)
    lo64, hi64 = tf.constant(clip_min, f64), tf.constant(clip_max, f64)

    def other_masked(z, target):
        # ART: z * (1 - t) + (min(z) - 1) * t, so the target class is never the "other" maximum
        return z * (1 - target) + (tf.reduce_min(z, axis=1) - 1)[:, None] * target

    def hinge(z, target, confidence):
        z_target = tf.reduce_sum(z * target, axis=1)
        z_other = tf.reduce_max(other_masked(z, target), axis=1)
        margin = z_other - z_target + confidence if targeted else z_target - z_other + confidence
        return tf.cast(tf.maximum(margin, 0), f64)  # np.maximum(float32, zeros float64): float64

    def to_original32(w):
        return (tf.tanh(w) + 1.0) / 2.0 * (hi - lo) + lo

    @tf.function(autograph=False, input_signature=[  # explicit tf.while_loops: nothing to convert
        tf.TensorSpec([None, dim], f32), tf.TensorSpec([None, dim], f32), tf.TensorSpec([None, k], f32),
        tf.TensorSpec([], f32), tf.TensorSpec([], f64), tf.TensorSpec([], f64),
        tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32),
        tf.TensorSpec([], tf.int32)])
    def cw(x, w0, target, confidence, learning_rate, initial_const, binary_search_steps, max_iter, max_halving,
           max_doubling):
        n = tf.shape(x)[0]
        x64 = tf.cast(x, f64)
        z_clean = logits(x)
        zeros64 = tf.zeros([n], f64)
        false = tf.zeros([n], tf.bool)
        target_idx = tf.argmax(target, axis=1, output_type=tf.int32)

        def margin_gradient(x_adv, z_old, pending):
            """One forward + backward pass at x_adv: the logits, the stored logits merged with them
            where a move is pending, and d(Z_add - Z_sub)/dx (EOT mean over eot passes)."""
            with tf.GradientTape() as tape:
                tape.watch(x_adv)
                out = logits(x_adv)
                z = tf.where(pending[:, None], out, z_old)
                other = tf.argmax(other_masked(z, target), axis=1, output_type=tf.int32)
                i_add, i_sub = (other, target_idx) if targeted else (target_idx, other)
                total = tf.reduce_sum(tf.gather(out, i_add, axis=1, batch_dims=1)
                                      - tf.gather(out, i_sub, axis=1, batch_dims=1))
            grad = tape.gradient(total, x_adv, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            if eot > 1:
                def one_pass(i, acc):
                    with tf.GradientTape() as t2:
                        t2.watch(x_adv)
                        o = logits(x_adv)
                        s = tf.reduce_sum(tf.gather(o, i_add, axis=1, batch_dims=1)
                                          - tf.gather(o, i_sub, axis=1, batch_dims=1))
                    return i + 1, acc + t2.gradient(s, x_adv, unconnected_gradients=tf.UnconnectedGradients.ZERO)

                _, grad = tf.while_loop(lambda i, acc: i < eot - 1, one_pass, (tf.constant(0), grad))
                grad = grad / eot
            return out, z, grad

        def settle(out, z_merged, pending, recompute, c, x_adv, z, l2, loss, success, overall):
            """ART's bookkeeping after a move: logits, distance, loss of the moved samples; success
            re-judged for all (only when some sample moved, as ART does)."""
            l2_moved = tf.reduce_sum(tf.square(x - x_adv), axis=1)
            loss_moved = c * hinge(out, target, confidence) + tf.cast(l2_moved, f64)
            l2 = tf.where(pending, l2_moved, l2)
            loss = tf.where(pending, loss_moved, loss)
            judged = loss - tf.cast(l2, f64) <= 0
            success = tf.where(recompute, judged, success)
            overall = tf.where(recompute, overall | judged, overall)
            return z_merged, l2, loss, success, overall

        def try_rate(mask, lr, w, step, c, l2, loss, forwarded):
            """Evaluate w + lr * step on the masked samples only (float64, as ART's tries)."""
            rows = tf.where(mask)
            w_try = tf.cast(tf.gather_nd(w, rows), f64) + tf.gather_nd(lr, rows)[:, None] * tf.cast(
                tf.gather_nd(step, rows), f64)
            x_try = (tf.tanh(w_try) + 1.0) / 2.0 * (hi64 - lo64) + lo64
            l2_try = tf.reduce_sum(tf.square(tf.gather_nd(x64, rows) - x_try), axis=1)
            z_try = logits(tf.cast(x_try, f32))
            loss_try = tf.gather_nd(c, rows) * hinge(z_try, tf.gather_nd(target, rows), confidence) + l2_try
            l2 = tf.tensor_scatter_nd_update(l2, rows, tf.cast(l2_try, f32))  # ART's l2dist array is float32
            loss = tf.tensor_scatter_nd_update(loss, rows, loss_try)
            return l2, loss, forwarded + tf.shape(rows, out_type=tf.int64)[0]

        def line_search(active, lr, w, step, c, l2, loss, forwarded):
            prev_loss = loss
            halving = tf.zeros([n], tf.int32)

            def halve_cond(h, lr, l2, loss, best_lr, best_loss, halving, forwarded):
                return (h < max_halving) & tf.reduce_any(active & (loss >= prev_loss))

            def halve(h, lr, l2, loss, best_lr, best_loss, halving, forwarded):
                do = active & (loss >= prev_loss)
                l2, loss, forwarded = try_rate(do, lr, w, step, c, l2, loss, forwarded)
                better = loss < best_loss
                best_lr = tf.where(better, lr, best_lr)
                best_loss = tf.where(better, loss, best_loss)
                return (h + 1, tf.where(do, lr / 2, lr), l2, loss, best_lr, best_loss,
                        halving + tf.cast(do, tf.int32), forwarded)

            _, lr, l2, loss, best_lr, best_loss, halving, forwarded = tf.while_loop(
                halve_cond, halve, (tf.constant(0), lr, l2, loss, zeros64, loss, halving, forwarded))
            lr = tf.where(active, lr * 2, lr)

            def double_cond(d, lr, l2, loss, best_lr, best_loss, forwarded):
                return (d < max_doubling) & tf.reduce_any(active & (halving == 1) & (loss <= best_loss))

            def double(d, lr, l2, loss, best_lr, best_loss, forwarded):
                do = active & (halving == 1) & (loss <= best_loss)
                lr = tf.where(do, lr * 2, lr)
                l2, loss, forwarded = try_rate(do, lr, w, step, c, l2, loss, forwarded)
                better = loss < best_loss
                return (d + 1, lr, l2, loss, tf.where(better, lr, best_lr), tf.where(better, loss, best_loss),
                        forwarded)

            _, lr, l2, loss, best_lr, best_loss, forwarded = tf.while_loop(
                double_cond, double, (tf.constant(0), lr, l2, loss, best_lr, best_loss, forwarded))
            lr = tf.where(halving == 1, lr / 2, lr)
            return lr, l2, loss, best_lr, forwarded

        def search_round(b, c, c_lower, c_double, best_l2, best_x, passes, forwarded):
            lr0 = tf.fill([n], learning_rate)
            loss0 = c * hinge(z_clean, target, confidence)  # + ||x - x||² = 0
            l20 = tf.zeros([n], f32)
            success0 = loss0 - tf.cast(l20, f64) <= 0

            def iterate(i, stop, lr, w, x_adv, z, l2, loss, success, overall, best_l2, best_x, pending, recompute,
                        passes, forwarded):
                out, z_merged, grad = margin_gradient(x_adv, z, pending)
                z, l2, loss, success, overall = settle(out, z_merged, pending, recompute, c, x_adv, z, l2, loss,
                                                       success, overall)
                improved = success & (tf.cast(l2, f64) < best_l2)
                best_l2 = tf.where(improved, tf.cast(l2, f64), best_l2)
                best_x = tf.where(improved[:, None], x_adv, best_x)
                active = (c < _C_UPPER_BOUND) & (lr > 0)

                def step_and_move():
                    # ART: loss_gradient *= c (in place, float32), += 2 (x' - x), *= (hi - lo), *= 1 - tanh²(w) / (2 s)
                    g = tf.cast(tf.cast(grad, f64) * c[:, None], f32) + 2 * (x_adv - x)
                    g = g * (hi - lo) * ((1 - tf.square(tf.tanh(w))) / tf.constant(2 * _TANH_SMOOTHER, f32))
                    step = -g
                    lr_new, l2_new, loss_new, best_lr, fwd = line_search(active, lr, w, step, c, l2, loss, forwarded)
                    move = active & (best_lr > 0)
                    w_moved = tf.cast(tf.cast(w, f64) + best_lr[:, None] * tf.cast(step, f64), f32)
                    w_new = tf.where(move[:, None], w_moved, w)
                    x_new = tf.where(move[:, None], to_original32(w_new), x_adv)
                    return lr_new, w_new, x_new, l2_new, loss_new, move, tf.reduce_any(move), fwd

                def no_step():
                    return lr, w, x_adv, l2, loss, false, tf.constant(False), forwarded

                any_active = tf.reduce_any(active)
                lr, w, x_adv, l2, loss, pending, recompute, forwarded = tf.cond(any_active, step_and_move, no_step)
                return (i + 1, ~any_active, lr, w, x_adv, z, l2, loss, success, overall, best_l2, best_x, pending,
                        recompute, passes + 1, forwarded)

            state = (tf.constant(0), tf.constant(False), lr0, w0, x, z_clean, l20, loss0, success0, success0, best_l2,
                     best_x, false, tf.constant(False), passes, forwarded)
            (_, _, _, w, x_adv, z, l2, loss, success, overall, best_l2, best_x, pending, recompute, passes,
             forwarded) = tf.while_loop(lambda i, stop, *_: (i < max_iter) & ~stop, iterate, state)

            def last_settle():
                out = logits(x_adv)
                return settle(out, tf.where(pending[:, None], out, z), pending, recompute, c, x_adv, z, l2, loss,
                              success, overall)[1:]

            l2, loss, success, overall = tf.cond(recompute, last_settle, lambda: (l2, loss, success, overall))
            forwarded = forwarded + tf.where(recompute, tf.cast(n, tf.int64), tf.constant(0, tf.int64))
            improved = success & (tf.cast(l2, f64) < best_l2)
            best_l2 = tf.where(improved, tf.cast(l2, f64), best_l2)
            best_x = tf.where(improved[:, None], x_adv, best_x)

            # ART's binary search on c, including its aliasing of c_old and c_current
            c_double = c_double & ~overall
            c = tf.where(overall, (c_lower + c) / 2, c)
            c = tf.where(~overall & c_double, c * 2, c)
            c = tf.where(~overall & ~c_double, c + (c - c_lower) / 2, c)
            c_lower = tf.where(~overall, c, c_lower)
            return b + 1, c, c_lower, c_double, best_l2, best_x, passes, forwarded

        state = (tf.constant(0), tf.fill([n], initial_const), zeros64, ~false, tf.fill([n], tf.constant(np.inf, f64)),
                 x, tf.constant(0), tf.constant(0, tf.int64))
        _, _, _, _, best_l2, best_x, passes, forwarded = tf.while_loop(
            lambda b, c, *_: (b < binary_search_steps) & tf.reduce_any(c < _C_UPPER_BOUND), search_round, state)
        return best_x, passes, forwarded + tf.cast(n, tf.int64)

    return cw


def tanh_space_start(classifier, kind: str, targeted: bool, build, x: np.ndarray, y: np.ndarray):
    """The common start of the tanh-space attacks (``cw_l2``, ``cw_l2_adam``): refuse an estimator the graph
    cannot run, trace ``build(classifier, targeted, clip_min, clip_max)`` once per estimator, and return
    ``(fn, x flattened float32, y float32, w0)`` with ``w0`` the tanh-space start computed as ART does it
    (numpy, float32: the same function, bit for bit)."""
    from art.utils import original_to_tanh

    check_estimator(classifier)
    clip_min, clip_max = (float(v) for v in classifier.clip_values)
    fn = cached_graph(classifier, (kind, bool(targeted), clip_min, clip_max),
                      lambda: build(classifier, bool(targeted), clip_min, clip_max))
    flat = np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), -1)
    w0 = original_to_tanh(flat, clip_min, clip_max, _TANH_SMOOTHER).astype(np.float32)
    return fn, flat, np.asarray(y, dtype=np.float32), w0


def carlini_l2(classifier, x: np.ndarray, y: np.ndarray, *, targeted: bool = False, confidence: float = 0.0,
               learning_rate: float = 0.01, binary_search_steps: int = 10, max_iter: int = 10,
               initial_const: float = 0.01, max_halving: int = 5, max_doubling: int = 5,
               batch_size: int | None = None) -> tuple[np.ndarray, dict]:
    """ART's C&W-L2 on ``classifier`` (a ``TensorFlowV2Classifier``), each batch in one graph call.

    :param x: float32 images ``(N, *input_shape)`` in the estimator's clip range.
    :param y: one-hot ``(N, nb_classes)``: true labels (untargeted) or targets (targeted), as ART takes them.
    :param batch_size: samples per graph call (ART's ``batch_size``); default all.
    :return: ``(x_adv, stats)``; ``x_adv[i] = x[i]`` where no adversarial was found (as ART).
        ``stats``: ``gradient_rows`` (images through forward + backward: batch size x gradient
        steps) and ``forward_rows`` (images through a forward pass only: line-search tries, clean
        logits, the logits after a round's last move).
    """
    import tensorflow as tf

    fn, flat, y, w0 = tanh_space_start(classifier, "cw_l2", targeted, _build_cw, x, y)
    n = len(flat)
    step = int(batch_size or max(n, 1))
    out = np.empty_like(flat)
    stats = {"gradient_rows": 0, "forward_rows": 0, "samples": n}
    for start in range(0, n, step):
        sl = slice(start, start + step)
        best_x, passes, forwarded = fn(
            tf.constant(flat[sl]), tf.constant(w0[sl]), tf.constant(y[sl]), tf.constant(confidence, tf.float32),
            tf.constant(learning_rate, tf.float64), tf.constant(initial_const, tf.float64),
            tf.constant(binary_search_steps, tf.int32), tf.constant(max_iter, tf.int32),
            tf.constant(max_halving, tf.int32), tf.constant(max_doubling, tf.int32))
        out[sl] = best_x.numpy()
        stats["gradient_rows"] += int(passes) * (min(n, start + step) - start)
        stats["forward_rows"] += int(forwarded)
    return out.reshape(np.shape(x)), stats


def run_cw_l2(spec, classifier, x, y_onehot, params, targeted, batch_size):
    """Runner of ``cw_l2`` (:mod:`annt.attacks.runner`): the graph version, or ART's with ``implementation: art``."""
    from annt.attacks.runner import _run_art

    if params["implementation"] == "art":
        return _run_art(spec, classifier, x, y_onehot, params, targeted, batch_size)
    x_adv, stats = carlini_l2(classifier, x, y_onehot, targeted=targeted, batch_size=batch_size,
                              **{k: params[k] for k in CW_ART_PARAMS})
    return x_adv, GraphAttackRun(stats)
