"""cw_l2_adam (annt.attacks.cw_adam): Carlini & Wagner's Adam algorithm, pinned against a float64 numpy
transcription of the authors' l2_attack.py on linear models (where every gradient is exact), and against the
closed-form minimal distance of a linear classifier."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from annt.attacks.cw_adam import carlini_wagner_l2
from annt.attacks.estimator import make_classifier
from annt.attacks.registry import validate_attack_params
from annt.attacks.runner import generate
from annt.errors import ConfigError


def _linear(w, b, front=()):
    """``logits = flatten(x) @ w + b`` on (4, 4, 1) images."""
    model = keras.Sequential([keras.Input((4, 4, 1)), *front, keras.layers.Flatten(), keras.layers.Dense(w.shape[1])])
    model.layers[-1].set_weights([w.astype(np.float32), b.astype(np.float32)])
    return model


def _reference(w, b, x, onehot, *, targeted, confidence, learning_rate, binary_search_steps, max_iter,
               initial_const, abort_early):
    """The authors' algorithm (nn_robust_attacks/l2_attack.py, one batch), float64, analytic gradients."""
    n = len(x)
    w0 = np.arctanh((2 * x - 1) * 0.999999)
    x0 = (np.tanh(w0) + 1) / 2
    c, lower, upper = np.full(n, initial_const), np.zeros(n), np.full(n, 1e10)
    best_overall, out = np.full(n, np.inf), x.copy()
    label = onehot.argmax(1)
    for r in range(binary_search_steps):
        if binary_search_steps >= 10 and r == binary_search_steps - 1:
            c = upper.copy()
        delta, m, v, prev = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x), 1e6
        found = np.zeros(n, bool)
        for i in range(max_iter):
            xa = (np.tanh(w0 + delta) + 1) / 2
            z = xa @ w + b
            l2 = ((xa - x0) ** 2).sum(1)
            masked = (1 - onehot) * z - onehot * 10000
            other = masked.argmax(1)
            gap = masked.max(1) - (onehot * z).sum(1)
            arg = (gap if targeted else -gap) + confidence
            loss = l2 + c * np.maximum(arg, 0)
            if abort_early and i % max(max_iter // 10, 1) == 0:
                if loss.sum() > prev * 0.9999:
                    break
                prev = loss.sum()
            pred = (z - confidence * onehot).argmax(1) if targeted else (z + confidence * onehot).argmax(1)
            success = pred == label if targeted else pred != label
            found |= success
            better = success & (l2 < best_overall)
            best_overall[better], out[better] = l2[better], xa[better]
            direction = w[:, other].T - w[:, label].T  # d(max other - real)/dx per sample
            g = 2 * (xa - x0) + (c * (arg > 0))[:, None] * (direction if targeted else -direction)
            g = g * (1 - np.tanh(w0 + delta) ** 2) / 2
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g ** 2
            rate = learning_rate * np.sqrt(1 - 0.999 ** (i + 1)) / (1 - 0.9 ** (i + 1))
            delta = delta - rate * m / (np.sqrt(v) + 1e-8)
        upper = np.where(found, np.minimum(upper, c), upper)
        lower = np.where(found, lower, np.maximum(lower, c))
        c = np.where(upper < 1e9, (lower + upper) / 2, c * 10)
    return out


@pytest.fixture(scope="module")
def linear():
    rng = np.random.default_rng(0)
    w, b = rng.normal(0, 1, (16, 3)), rng.normal(0, 0.5, 3)
    x = rng.uniform(0.2, 0.8, (24, 16))
    return w, b, x


@pytest.mark.parametrize("targeted,abort_early,learning_rate,max_iter", [(False, True, 0.02, 20), (True, False, 0.01, 60)])
def test_matches_the_authors_algorithm_sample_by_sample(linear, targeted, abort_early, learning_rate, max_iter):
    """Same outcome per sample and the same distance (float32 against float64: 1e-3 relative) as the numpy
    transcription, through the binary search (c moves down on success, up tenfold on failure)."""
    w, b, x = linear
    labels = (x @ w + b).argmax(1)
    wanted = (labels + 1) % 3 if targeted else labels
    onehot = np.eye(3)[wanted]
    settings = dict(targeted=targeted, confidence=2.0, learning_rate=learning_rate, binary_search_steps=4,
                    max_iter=max_iter, initial_const=0.05, abort_early=abort_early)
    ref = _reference(w, b, x, onehot, **settings)
    ours, stats = carlini_wagner_l2(make_classifier(_linear(w, b), nb_classes=3), x.reshape(-1, 4, 4, 1).astype(np.float32),
                                    onehot.astype(np.float32), **settings)
    ours = ours.reshape(len(x), -1).astype(np.float64)
    hit_ref, hit_ours = np.any(ref != x, axis=1), np.any(ours != x.astype(np.float32), axis=1)
    assert 0.2 < hit_ref.mean() < 1.0  # settings where the binary search matters: some samples fail
    assert np.sum(hit_ref != hit_ours) <= 1
    both = hit_ref & hit_ours
    d_ref = np.sqrt(((ref - x) ** 2).sum(1))[both]
    d_ours = np.sqrt(((ours - x) ** 2).sum(1))[both]
    np.testing.assert_allclose(d_ours, d_ref, rtol=1e-3, atol=1e-4)
    if not abort_early:
        assert stats["gradient_rows"] == 4 * max_iter * len(x)


def test_reaches_the_closed_form_minimal_distance_of_a_linear_classifier():
    """Two classes, logits w·x + b: the smallest L2 move across the boundary is |margin| / ||w_1 - w_0||.
    C&W with enough iterations lands just past it, never short of it."""
    rng = np.random.default_rng(1)
    w = rng.normal(0, 1, (16, 2)) * 0.3
    x = np.full((8, 16), 0.5) + rng.uniform(-0.05, 0.05, (8, 16))
    b = np.zeros(2)
    margin = x @ (w[:, 1] - w[:, 0])
    b[0] = margin.max() + 0.3  # every sample is class 0, 0.3 logits or more from the boundary
    d_min = (b[0] - margin) / np.linalg.norm(w[:, 1] - w[:, 0])
    move = d_min[:, None] * np.abs(w[:, 1] - w[:, 0]) / np.linalg.norm(w[:, 1] - w[:, 0])
    assert move.max() < 0.3  # the shortest move keeps every pixel inside (0.1, 0.9): the box never binds
    onehot = np.eye(2, dtype=np.float32)[np.zeros(8, int)]
    adv, _ = carlini_wagner_l2(make_classifier(_linear(w, b), nb_classes=2), x.reshape(-1, 4, 4, 1).astype(np.float32),
                               onehot, learning_rate=0.01, binary_search_steps=9, max_iter=1000, initial_const=1.0)
    d = np.sqrt(((adv.reshape(8, -1) - x.astype(np.float32)) ** 2).sum(1))
    assert np.all(d >= d_min * (1 - 1e-3)) and np.all(d <= d_min * 1.05)


class _RoundInput(keras.layers.Layer):
    """Input discretisation to 4 levels with its true (zero) gradient, declared for BPDA."""

    annt_bpda = True

    def call(self, x):
        return tf.round(3 * x) / 3


def test_bpda_reaches_the_attack_and_failures_come_back_unchanged(linear):
    """Through a rounding layer the true gradient is zero: without BPDA Adam never moves and every image comes
    back unchanged; with BPDA (the default) the attack succeeds."""
    w, b, x = linear
    model = _linear(w, b, front=(_RoundInput(),))
    x = x.reshape(-1, 4, 4, 1).astype(np.float32)
    y = model.predict(x, verbose=0).argmax(1)
    params = {"max_iter": 100, "learning_rate": 0.1, "initial_const": 10.0, "binary_search_steps": 1}
    masked = generate(model, x, y, "cw_l2_adam", params={**params, "bpda": False}, nb_classes=3)
    np.testing.assert_array_equal(masked.x_adv, x)
    assert generate(model, x, y, "cw_l2_adam", params=params, nb_classes=3).evaded.mean() > 0.5


def test_defaults_are_the_authors_and_bad_values_are_one_line():
    p = validate_attack_params("cw_l2_adam", {})
    assert {k: p[k] for k in ("learning_rate", "binary_search_steps", "max_iter", "initial_const", "abort_early",
                              "confidence")} == {"learning_rate": 5e-3, "binary_search_steps": 5, "max_iter": 1000,
                                                 "initial_const": 1e-2, "abort_early": True, "confidence": 0.0}
    with pytest.raises(ConfigError, match="max_iter"):
        validate_attack_params("cw_l2_adam", {"max_iter": 0})
    with pytest.raises(ConfigError, match="line_search|unknown|max_halving"):
        validate_attack_params("cw_l2_adam", {"max_halving": 3})


def test_early_abort_stops_a_stalled_round_as_the_authors_do(linear):
    """With c tiny the loss is almost only the distance, which grows: every max_iter/10 iterations the summed loss
    is checked, and the round stops at the first check (iteration 10 of 100) where it has not fallen."""
    w, b, x = linear
    onehot = np.eye(3)[(x @ w + b).argmax(1)]
    settings = dict(targeted=False, confidence=0.0, learning_rate=0.01, binary_search_steps=2, max_iter=100,
                    initial_const=1e-6)
    clf = make_classifier(_linear(w, b), nb_classes=3)
    x32 = x.reshape(-1, 4, 4, 1).astype(np.float32)
    ours, stopped = carlini_wagner_l2(clf, x32, onehot.astype(np.float32), abort_early=True, **settings)
    _, full = carlini_wagner_l2(clf, x32, onehot.astype(np.float32), abort_early=False, **settings)
    assert full["gradient_rows"] == 2 * 100 * len(x)
    assert stopped["gradient_rows"] <= 2 * 11 * len(x)
    ref = _reference(w, b, x, onehot, abort_early=True, **settings)
    hit_ref, hit_ours = np.any(ref != x, axis=1), np.any(ours.reshape(len(x), -1) != x.astype(np.float32), axis=1)
    assert hit_ref.mean() < 0.5 and np.sum(hit_ref != hit_ours) <= 1
