"""C&W-L2 as Carlini and Wagner wrote it: Adam in tanh space, a whole batch in one compiled loop.

``cw_l2`` is ART's ``CarliniL2Method``, which replaces the authors' Adam optimiser with gradient descent and a
line search. Papers that ran the authors' code, or CleverHans's ``CarliniWagnerL2`` (Galloway et al. 2018,
Table 3), used Adam. The two optimisers can differ a lot on quantized and binary networks (flat, stepped loss
surfaces), so this is a separate attack, ``cw_l2_adam``: the algorithm of ``nn_robust_attacks/l2_attack.py``
(Carlini & Wagner 2017), as CleverHans v2-v4 ship it:

* tanh space: ``w0 = arctanh((2 (x - lo)/(hi - lo) - 1) · 0.999999)``; the variable is ``δ`` (zero at the start of
  every binary-search round) and the image ``x' = (tanh(w0 + δ) + 1)/2 · (hi - lo) + lo``. The distance is
  measured to ``x0 = (tanh(w0) + 1)/2 · (hi - lo) + lo``, the image as the tanh map sees it.
* loss per sample: ``||x' - x0||² + c · max(Z_y - max_{j≠y} Z_j + κ, 0)`` (untargeted) or
  ``||x' - x0||² + c · max(max_{j≠t} Z_j - Z_t + κ, 0)`` (targeted); ``Z`` the logits.
* Adam on ``δ`` with TensorFlow 1's ``AdamOptimizer`` defaults (β₁ 0.9, β₂ 0.999, ε 1e-8), state reset every round.
* each iteration's forward pass is judged before its update: with the κ-shifted logits, a success whose distance
  is the smallest so far is kept (its image ``x'`` of that pass).
* early abort (``abort_early``): every ``max(max_iter // 10, 1)`` iterations, the round stops if the loss summed
  over the batch is not below 0.9999 × its value at the previous check (that iteration is not judged). This is the
  authors' rule, so, as in their code, a result can depend on the other samples of its batch (``batch_size``). A
  per-sample rule was tried and dropped: on binary networks a sample's hinge is flat between sign flips while its
  distance grows, so most samples stopped early (targeted B64 of Galloway et al.: 55% success instead of 70%).
* binary search on ``c`` per sample after each round: a success sets ``upper = min(upper, c)`` and
  ``c = (lower + upper)/2``; a failure sets ``lower = max(lower, c)`` and ``c = (lower + upper)/2`` once an upper
  bound exists (``upper < 1e9``), else ``c × 10``. With ``binary_search_steps >= 10`` the last round runs at
  ``c = upper`` (the authors' ``repeat``).
* returns per sample the successful image of smallest distance over all rounds, or ``x`` itself if none.

Gradient options as for every graph attack: ``bpda`` traces the model with the identity backward of ``annt_bpda``
layers; ``eot_samples`` averages the gradient of the ``c · hinge`` term over passes (the logits that judge success
and the loss are the first pass's). ``temperature`` does not apply (logit margins).
"""
from __future__ import annotations

import numpy as np

from annt.attacks.cw_graph import GraphAttackRun, graph_options, model_fn, tanh_space_start

__all__ = ["CW_ADAM_PARAMS", "carlini_wagner_l2", "run_cw_l2_adam"]

#: The cw_l2_adam parameters (the authors' names in brackets): confidence (CONFIDENCE), learning_rate
#: (LEARNING_RATE), binary_search_steps (BINARY_SEARCH_STEPS), max_iter (MAX_ITERATIONS), initial_const
#: (initial_const), abort_early (ABORT_EARLY).
CW_ADAM_PARAMS = ("confidence", "learning_rate", "binary_search_steps", "max_iter", "initial_const", "abort_early")

_BETA1, _BETA2, _EPSILON = 0.9, 0.999, 1e-8  # tf.compat.v1.train.AdamOptimizer's defaults
_NO_UPPER = 1e10  # the authors' initial upper bound on c


def _build(classifier, targeted: bool, clip_min: float, clip_max: float):
    """The compiled round: ``max_iter`` Adam iterations at per-sample constants ``c`` for one batch."""
    import tensorflow as tf

    logits = model_fn(classifier)
    _, eot = graph_options(classifier)
    scale = tf.constant((clip_max - clip_min) / 2, tf.float32)
    lo = tf.constant(clip_min, tf.float32)

    def to_image(w):
        return (tf.tanh(w) + 1) * scale + lo

    def margin(z, onehot, confidence):
        """The hinge's argument per sample, and whether the κ-shifted logits count as success."""
        real = tf.reduce_sum(onehot * z, axis=1)
        other = tf.reduce_max((1 - onehot) * z - onehot * 10000, axis=1)
        if targeted:
            return other - real + confidence, tf.argmax(z - confidence * onehot, axis=1)
        return real - other + confidence, tf.argmax(z + confidence * onehot, axis=1)

    f32 = tf.float32
    dim, k = int(np.prod(classifier.input_shape)), int(classifier.nb_classes)

    @tf.function(autograph=False, input_signature=[  # explicit tf.while_loop: nothing to convert
        tf.TensorSpec([None, dim], f32), tf.TensorSpec([None, k], f32), tf.TensorSpec([None], f32),
        tf.TensorSpec([], f32), tf.TensorSpec([], f32), tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.bool)])
    def round_(w0, onehot, c, confidence, learning_rate, max_iter, abort_early):
        n = tf.shape(w0)[0]
        x0 = to_image(w0)
        label = tf.argmax(onehot, axis=1)
        check_every = tf.maximum(max_iter // 10, 1)
        inf = tf.fill([n], tf.constant(np.inf, tf.float32))

        def body(i, delta, m, v, active, prev, best_l2, best_x):  # active: the round goes on (scalar)
            with tf.GradientTape() as tape:
                tape.watch(delta)
                x_adv = to_image(w0 + delta)
                l2 = tf.reduce_sum(tf.square(x_adv - x0), axis=1)
                z = logits(x_adv)
                arg, pred = margin(z, onehot, confidence)
                hinge = tf.maximum(arg, 0.0)
                attack_term = hinge
                for _ in range(eot - 1):  # EOT: the margin gradient is the mean over passes
                    attack_term += tf.maximum(margin(logits(x_adv), onehot, confidence)[0], 0.0)
                objective = tf.reduce_sum(l2 + c * attack_term / eot)
            grad = tape.gradient(objective, delta)
            loss = l2 + c * hinge
            total = tf.reduce_sum(loss)
            check = abort_early & tf.equal(i % check_every, 0)
            active = ~(check & (total > prev * 0.9999))
            prev = tf.where(check, total, prev)
            success = (tf.equal(pred, label) if targeted else tf.not_equal(pred, label))
            better = active & success & (l2 < best_l2)
            best_l2 = tf.where(better, l2, best_l2)
            best_x = tf.where(better[:, None], x_adv, best_x)
            t = tf.cast(i + 1, tf.float32)
            m_new = _BETA1 * m + (1 - _BETA1) * grad
            v_new = _BETA2 * v + (1 - _BETA2) * tf.square(grad)
            rate = learning_rate * tf.sqrt(1 - _BETA2 ** t) / (1 - _BETA1 ** t)
            step = rate * m_new / (tf.sqrt(v_new) + _EPSILON)
            return i + 1, delta - step, m_new, v_new, active, prev, best_l2, best_x

        zeros = tf.zeros_like(w0)
        state = (tf.constant(0), zeros, zeros, zeros, tf.constant(True), tf.constant(1e6, tf.float32), inf, x0)
        i, _, _, _, _, _, best_l2, best_x = tf.while_loop(
            lambda i, delta, m, v, active, *_: (i < max_iter) & active, body, state)
        return best_l2, best_x, i

    return round_


def carlini_wagner_l2(classifier, x: np.ndarray, y: np.ndarray, *, targeted: bool = False, confidence: float = 0.0,
                      learning_rate: float = 5e-3, binary_search_steps: int = 5, max_iter: int = 1000,
                      initial_const: float = 1e-2, abort_early: bool = True,
                      batch_size: int | None = None) -> tuple[np.ndarray, dict]:
    """Carlini & Wagner's L2 attack (Adam) on ``classifier`` (annt's ``TensorFlowV2Classifier``).

    :param x: float32 images ``(N, *input_shape)`` in the estimator's clip range.
    :param y: one-hot ``(N, nb_classes)``: true labels (untargeted) or targets (targeted).
    :param batch_size: samples per graph call; default all (the early abort looks at the whole batch).
    :return: ``(x_adv, stats)``; ``x_adv[i] = x[i]`` where no adversarial was found. ``stats``:
        ``gradient_rows`` (images through a forward + backward pass), ``samples``.
    """
    import tensorflow as tf

    fn, flat, y, w0_all = tanh_space_start(classifier, "cw_l2_adam", targeted, _build, x, y)
    n = len(flat)
    out = flat.copy()
    stats = {"gradient_rows": 0, "samples": n}
    step = int(batch_size or max(n, 1))
    for start in range(0, n, step):
        sl = slice(start, start + step)
        w0, onehot = tf.constant(w0_all[sl]), tf.constant(y[sl])
        m = len(w0_all[sl])
        c = np.full(m, initial_const, np.float64)
        lower, upper = np.zeros(m), np.full(m, _NO_UPPER)
        best_l2 = np.full(m, np.inf, np.float32)
        for round_index in range(binary_search_steps):
            if binary_search_steps >= 10 and round_index == binary_search_steps - 1:
                c = upper.copy()  # the authors' "repeat": the last round at the upper bound
            l2, x_round, iterations = fn(w0, onehot, tf.constant(c, tf.float32), tf.constant(confidence, tf.float32),
                                         tf.constant(learning_rate, tf.float32), tf.constant(max_iter, tf.int32),
                                         tf.constant(bool(abort_early)))
            l2, x_round = l2.numpy(), x_round.numpy()
            stats["gradient_rows"] += int(iterations) * m
            found = np.isfinite(l2)
            better = found & (l2 < best_l2)
            best_l2[better] = l2[better]
            out[sl][better] = x_round[better]
            upper = np.where(found, np.minimum(upper, c), upper)
            lower = np.where(found, lower, np.maximum(lower, c))
            bounded = upper < 1e9
            c = np.where(bounded, (lower + upper) / 2, c * 10)
    return out.reshape(np.shape(x)), stats


def run_cw_l2_adam(spec, classifier, x, y_onehot, params, targeted, batch_size):
    """Runner of ``cw_l2_adam`` (:mod:`annt.attacks.runner`)."""
    x_adv, stats = carlini_wagner_l2(classifier, x, y_onehot, targeted=targeted, batch_size=batch_size,
                                     **{k: params[k] for k in CW_ADAM_PARAMS})
    return x_adv, GraphAttackRun(stats)
