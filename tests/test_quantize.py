"""DoReFa quantizers: exact grids and rounding at every width (12 and 16 bits included), level
counts, straight-through gradients, fp identity."""
import numpy as np
import pytest
import tensorflow as tf

from annt.models.quantizers import quantize_activations, quantize_k, quantize_weights

QUANT_BITS = [1, 2, 4, 8, 12, 16]
MULTI_BITS = [2, 4, 8, 12, 16]
# Offsets between grid points, in grid steps: 0.3 rounds down, 0.7 up (far from the 0.5 tie even
# after float32 rounding of x: at 16 bits |x · n − (i + δ)| < 0.01).
OFFSETS = np.array([0.3, 0.7, -0.3, -0.7, 0.0, 0.45, 0.55])


def _w(shape=(5, 5, 8, 16), seed=0):
    return tf.constant(np.random.default_rng(seed).normal(0, 0.3, shape).astype(np.float32))


def _grid_points(k, count=200, seed=0):
    """``count`` grid indices i in [1, n − 1] of the k-bit grid (n = 2^k − 1), both ends included."""
    n = 2 ** k - 1
    i = np.random.default_rng(seed).integers(1, n, count)
    return np.concatenate([[1, n - 1], i]).astype(np.float64), n


def _offgrid(k):
    """Inputs x = (i + δ) / n for every offset δ, with the grid index each must round to."""
    i, n = _grid_points(k)
    x = ((i[:, None] + OFFSETS[None, :]) / n).reshape(-1)
    want = np.round(i[:, None] + OFFSETS[None, :]).reshape(-1)  # no ties: OFFSETS avoid ±0.5
    return x.astype(np.float32), want, n


def _on_grid(q, n):
    """Distance (in grid steps) of values in [0, 1] from the grid {0, 1/n, ..., 1}."""
    s = np.asarray(q, np.float64) * n
    return np.abs(s - np.round(s)).max()


def test_quantize_k_rounds_to_grid_and_has_identity_gradient():
    x = tf.constant([0.0, 0.1, 0.2, 0.5, 0.74, 0.84, 1.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        q = quantize_k(x, 2)  # grid {0, 1/3, 2/3, 1}
    np.testing.assert_allclose(q.numpy(), [0, 0, 1 / 3, 2 / 3, 2 / 3, 1, 1], atol=1e-7)
    np.testing.assert_array_equal(tape.gradient(q, x).numpy(), np.ones(7))


@pytest.mark.parametrize("k", QUANT_BITS)
def test_quantize_k_rounds_points_between_grid_values_to_the_nearest(k):
    # x = (i + δ)/n must come out as exactly round(i + δ)/n (float32 division, as TF computes it).
    x, want, n = _offgrid(k) if k > 1 else (np.float32([0.2, 0.49, 0.51, 0.8]), np.array([0, 0, 1, 1.0]), 1)
    q = quantize_k(tf.constant(x), k).numpy()
    np.testing.assert_array_equal(q, want.astype(np.float32) / np.float32(n))
    assert _on_grid(q, n) < 1e-2  # each value is a grid point, not the input (offsets are ≥ 0.3 steps)


@pytest.mark.parametrize("k", QUANT_BITS)
def test_activations_round_points_between_grid_values_to_the_nearest(k):
    if k == 1:
        x, want, n = np.float32([0.2, 0.49, 0.51, 0.8]), np.array([0, 0, 1, 1.0]), 1
    else:
        x, want, n = _offgrid(k)
    a = quantize_activations(tf.constant(x), k).numpy()
    np.testing.assert_array_equal(a, want.astype(np.float32) / np.float32(n))
    assert _on_grid(a, n) < 1e-2


@pytest.mark.parametrize("k", QUANT_BITS)
def test_activations_hit_exactly_2_to_k_levels_on_the_grid(k):
    # A dense ramp over [-0.5, 1.5] reaches every level; the clip maps everything outside to 0 / 1.
    n = 2 ** k - 1
    x = tf.constant(np.linspace(-0.5, 1.5, 8 * (n + 1) + 1, dtype=np.float32))
    a = quantize_activations(x, k).numpy()
    levels = np.unique(a)
    assert len(levels) == 2 ** k
    np.testing.assert_array_equal(levels, np.arange(n + 1, dtype=np.float32) / np.float32(n))
    # same values as the composed formula quantize_k(clip(x, 0, 1))
    np.testing.assert_array_equal(a, quantize_k(tf.clip_by_value(x, 0.0, 1.0), k).numpy())


def _weights_at(u, k):
    """Weights whose DoReFa input t/(2·max|t|) + 0.5 equals ``u`` (one weight of 1.0 fixes max|t|)."""
    m = np.tanh(1.0)
    w = np.arctanh((2 * np.asarray(u, np.float64) - 1) * m)
    return tf.constant(np.concatenate([[1.0], w]).astype(np.float32))


@pytest.mark.parametrize("k", MULTI_BITS)
def test_multibit_weights_round_to_the_nearest_of_2_to_k_levels(k):
    # w_q = 2·round(u·n)/n − 1 with u = t/(2·max|t|) + 0.5 placed between grid points.
    x, want, n = _offgrid(k)
    q = quantize_weights(_weights_at(x, k), k).numpy()
    assert q[0] == 1.0  # max|t| maps to the top level
    expected = np.float32(2) * (want.astype(np.float32) / np.float32(n)) - np.float32(1)
    np.testing.assert_allclose(q[1:], expected, rtol=0, atol=1e-6)
    assert _on_grid((q.astype(np.float64) + 1) / 2, n) < 1e-2


@pytest.mark.parametrize("k", QUANT_BITS)
def test_weights_hit_exactly_2_to_k_levels(k):
    n = 2 ** k - 1
    if k == 1:
        w = _w()
        e = np.mean(np.abs(w.numpy()))
        np.testing.assert_allclose(np.unique(quantize_weights(w, 1).numpy()), [-e, e], rtol=1e-6)
        return
    u = np.linspace(0.0, 1.0, 8 * (n + 1) + 1)  # dense ramp: every level is reached
    q = quantize_weights(_weights_at(u, k), k).numpy()
    levels = np.unique(q)
    assert len(levels) == 2 ** k
    assert levels[0] == -1.0 and levels[-1] == 1.0
    assert _on_grid((levels.astype(np.float64) + 1) / 2, n) < 1e-2


@pytest.mark.parametrize("k", MULTI_BITS)
def test_random_weights_lie_on_the_k_bit_grid(k):
    q = quantize_weights(_w(), k).numpy()
    n = 2 ** k - 1
    assert _on_grid((q.astype(np.float64) + 1) / 2, n) < 1e-2  # grid steps, not a fraction of n
    assert q.min() >= -1 and q.max() <= 1
    assert np.isclose(max(abs(q.min()), q.max()), 1.0)


def test_one_bit_weights_are_two_values_of_equal_magnitude_mean_abs():
    w = _w()
    q = quantize_weights(w, 1).numpy()
    e = np.mean(np.abs(w.numpy()))
    np.testing.assert_allclose(np.unique(q), [-e, e], rtol=1e-6)
    np.testing.assert_array_equal(np.sign(q), np.where(w.numpy() >= 0, 1, -1))


def test_one_bit_weight_of_zero_maps_to_plus_e():
    q = quantize_weights(tf.constant([0.0, -2.0, 2.0, 0.0]), 1).numpy()
    np.testing.assert_allclose(q, [1.0, -1.0, 1.0, 1.0])  # E(|w|) = 1


def test_one_bit_weight_gradient_is_identity_straight_through():
    # tensorpack: sign(w / E) * E with Sign's gradient overridden by Identity -> d w_q / d w = 1
    w = tf.Variable(_w((4, 6)))
    probe = tf.constant(np.random.default_rng(3).normal(size=(4, 6)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(quantize_weights(w, 1) * probe)
    np.testing.assert_array_equal(tape.gradient(loss, w).numpy(), probe.numpy())


@pytest.mark.parametrize("k", MULTI_BITS)
def test_multibit_weight_gradient_is_that_of_unrounded_tanh_formula(k):
    # STE: the gradient equals the gradient of 2·(t/(2·max|t|) + 0.5) − 1 = t / max|t|.
    w = tf.Variable(_w((3, 7), seed=k))
    probe = tf.constant(np.random.default_rng(9).normal(size=(3, 7)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        got = tf.reduce_sum(quantize_weights(w, k) * probe)
        t = tf.tanh(w)
        want = tf.reduce_sum(t / tf.reduce_max(tf.abs(t)) * probe)
    np.testing.assert_allclose(tape.gradient(got, w).numpy(), tape.gradient(want, w).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k", QUANT_BITS)
def test_activation_gradient_is_one_inside_unit_interval_and_zero_outside(k):
    x = tf.constant([-0.5, -1e-3, 0.0, 0.3, 0.5, 1.0, 1.001, 3.0])
    probe = tf.constant([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = tf.reduce_sum(quantize_activations(x, k) * probe)
        composed = tf.reduce_sum(quantize_k(tf.clip_by_value(x, 0.0, 1.0), k) * probe)
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [0, 0, 3, 4, 5, 6, 0, 0])
    np.testing.assert_array_equal(tape.gradient(composed, x).numpy(), tape.gradient(y, x).numpy())


def test_full_precision_is_identity_without_clip():
    x = tf.constant([-3.0, -0.2, 0.37, 1.5, 40.0])
    np.testing.assert_array_equal(quantize_activations(x, 32).numpy(), x.numpy())
    np.testing.assert_array_equal(quantize_weights(x, 32).numpy(), x.numpy())
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(quantize_activations(x, 32))
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), np.ones(5))
