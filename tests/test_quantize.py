"""DoReFa quantizers: level counts, grids, straight-through gradients, fp identity."""
import numpy as np
import pytest
import tensorflow as tf

from annt.models.quantizers import quantize_activations, quantize_k, quantize_weights

QUANT_BITS = [1, 2, 4, 8, 12, 16]


def _w(shape=(5, 5, 8, 16), seed=0):
    return tf.constant(np.random.default_rng(seed).normal(0, 0.3, shape).astype(np.float32))


def test_quantize_k_rounds_to_grid_and_has_identity_gradient():
    x = tf.constant([0.0, 0.1, 0.2, 0.5, 0.74, 0.84, 1.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        q = quantize_k(x, 2)  # grid {0, 1/3, 2/3, 1}
    np.testing.assert_allclose(q.numpy(), [0, 0, 1 / 3, 2 / 3, 2 / 3, 1, 1], atol=1e-7)
    np.testing.assert_array_equal(tape.gradient(q, x).numpy(), np.ones(7))


@pytest.mark.parametrize("k", QUANT_BITS)
def test_k_bit_weights_have_at_most_2_to_k_levels(k):
    w = _w()
    q = quantize_weights(w, k).numpy()
    levels = np.unique(q)
    assert len(levels) <= 2 ** k
    if k > 1:
        # values 2·i/n − 1 on [−1, 1], n = 2^k − 1; the extremes are hit (max|t| maps to 0 or 1)
        n = 2 ** k - 1
        np.testing.assert_allclose((q + 1) / 2 * n, np.round((q + 1) / 2 * n), atol=1e-3 * n)
        assert q.min() >= -1 and q.max() <= 1
        assert np.isclose(max(abs(q.min()), q.max()), 1.0)
    if k <= 4:
        assert len(levels) > 1


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
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(quantize_weights(w, 1) * 3.0)
    np.testing.assert_allclose(tape.gradient(loss, w).numpy(), np.full((4, 6), 3.0), rtol=1e-6)


@pytest.mark.parametrize("k", [2, 4, 8])
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
def test_activations_lie_on_k_bit_grid_in_unit_interval(k):
    x = tf.constant(np.random.default_rng(k).uniform(-1, 2, 4000).astype(np.float32))
    a = quantize_activations(x, k).numpy()
    assert a.min() == 0.0 and a.max() == 1.0
    n = 2 ** k - 1
    scaled = a.astype(np.float64) * n
    np.testing.assert_allclose(scaled, np.round(scaled), atol=1e-6 * n)
    assert len(np.unique(a)) <= 2 ** k
    # same values as the composed formula quantize_k(clip(x, 0, 1))
    np.testing.assert_array_equal(a, quantize_k(tf.clip_by_value(x, 0.0, 1.0), k).numpy())


def test_activation_gradient_is_one_inside_unit_interval_and_zero_outside():
    x = tf.constant([-0.5, -1e-3, 0.0, 0.3, 0.5, 1.0, 1.001, 3.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(quantize_activations(x, 2) * 2.0)
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [0, 0, 2, 2, 2, 2, 0, 0])


def test_full_precision_is_identity_without_clip():
    x = tf.constant([-3.0, -0.2, 0.37, 1.5, 40.0])
    np.testing.assert_array_equal(quantize_activations(x, 32).numpy(), x.numpy())
    np.testing.assert_array_equal(quantize_weights(x, 32).numpy(), x.numpy())
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(quantize_activations(x, 32))
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), np.ones(5))
