"""EOT (gradients averaged over stochastic passes) and BPDA (non-differentiable layers as the identity in the
backward pass) on toy layers whose answers are known by hand."""
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from annt.attacks.adaptive import identity_backward
from annt.attacks.estimator import make_classifier
from annt.attacks.runner import generate


class BernoulliMask(keras.layers.Layer):
    """Keeps each input with probability ``keep`` on every pass, inference included (no rescaling)."""

    annt_stochastic = True

    def __init__(self, keep=0.5, **kwargs):
        super().__init__(**kwargs)
        self.keep = keep
        self.seed_generator = keras.random.SeedGenerator(1)

    def call(self, x):
        draw = keras.random.uniform(keras.ops.shape(x), seed=self.seed_generator)
        return x * keras.ops.cast(draw < self.keep, x.dtype)


class Round(keras.layers.Layer):
    """round(x * levels) / levels: piecewise constant, zero gradient almost everywhere."""

    annt_bpda = True

    def __init__(self, levels=4, **kwargs):
        super().__init__(**kwargs)
        self.levels = levels

    def call(self, x):
        return keras.ops.round(x * self.levels) / self.levels


KERNEL = np.array([[1.0, -2.0, 0.5], [0.3, 0.8, -1.5], [-1.2, 0.4, 1.0], [2.0, -0.6, -0.3]])
BIAS = np.array([0.2, -0.1, 0.0])


def dense_model(first=None, shape=(4,)):
    inputs = keras.Input(shape)
    h = first(inputs) if first is not None else inputs
    dense = keras.layers.Dense(3)
    model = keras.Model(inputs, dense(h))
    dense.set_weights([KERNEL.astype(np.float32), BIAS.astype(np.float32)])
    return model


def softmax(a):
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def xy():
    x = np.random.default_rng(0).random((5, 4), dtype=np.float32)
    return x, np.array([0, 1, 2, 0, 1])


# ----------------------------------------------------------------------------- EOT
def mask_gradients(x, y, keep=0.5):
    """Every mask m in {0,1}^4: its probability and the loss gradient m * (K (p(m) - y)) per sample."""
    masks = np.array(list(itertools.product([0.0, 1.0], repeat=4)))
    prob = np.prod(np.where(masks == 1, keep, 1 - keep), axis=1)
    grads = []
    for m in masks:
        p = softmax((x * m) @ KERNEL + BIAS)
        grads.append(m * ((p - np.eye(3)[y]) @ KERNEL.T))
    return prob, np.array(grads)  # (16,), (16, B, 4)


def test_eot_gradient_with_many_passes_approaches_the_expected_gradient(xy):
    x, y = xy
    keras.utils.set_random_seed(0)
    model = dense_model(BernoulliMask(0.5))
    prob, grads = mask_gradients(x, y)
    expected = np.einsum("m,mbn->bn", prob, grads)
    std = np.sqrt(np.einsum("m,mbn->bn", prob, (grads - expected) ** 2))
    n = 4000
    clf = make_classifier(model, nb_classes=3, eot_samples=n)
    assert [type(layer) for layer in clf.stochastic_layers] == [BernoulliMask]
    got = clf.loss_gradient(x, np.eye(3)[y])
    assert (np.abs(got - expected) <= 5 * std / np.sqrt(n) + 1e-6).all()
    # class gradients: E[d a_c / dx] = keep * K[:, c]
    np.testing.assert_allclose(clf.class_gradient(x), np.broadcast_to(0.5 * KERNEL.T, (5, 3, 4)), atol=0.06)
    np.testing.assert_allclose(clf.class_gradient(x, label=y)[:, 0], 0.5 * KERNEL.T[y], atol=0.06)


def test_one_pass_is_a_single_noisy_draw(xy):
    x, y = xy
    keras.utils.set_random_seed(0)
    model = dense_model(BernoulliMask(0.5))
    _, grads = mask_gradients(x, y)
    clf = make_classifier(model, nb_classes=3)
    draws = [clf.loss_gradient(x, np.eye(3)[y]) for _ in range(2)]
    for g in draws:  # each row is the gradient of one of the 16 masks
        for b in range(len(x)):
            assert np.isclose(grads[:, b], g[b], rtol=1e-5, atol=1e-7).all(axis=1).any()
    assert not np.allclose(draws[0], draws[1])


def test_eot_on_a_deterministic_model_equals_one_pass(xy):
    x, y = xy
    model = dense_model()
    one, many = make_classifier(model, nb_classes=3), make_classifier(model, nb_classes=3, eot_samples=7)
    assert many.stochastic_layers == []
    np.testing.assert_allclose(many.loss_gradient(x, y), one.loss_gradient(x, y), rtol=1e-6)
    np.testing.assert_allclose(many.class_gradient(x), one.class_gradient(x), rtol=1e-6)


def test_eot_works_with_the_temperature(xy):
    """Each pass applies the temperature to its own logits: beta * mean of the per-mask CE gradients at beta."""
    x, y = xy
    keras.utils.set_random_seed(0)
    model = dense_model(BernoulliMask(0.5))
    masks = np.array(list(itertools.product([0.0, 1.0], repeat=4)))
    expected = sum(0.5**4 * 3.0 * m * ((softmax(3.0 * ((x * m) @ KERNEL + BIAS)) - np.eye(3)[y]) @ KERNEL.T) for m in masks)
    got = make_classifier(model, nb_classes=3, eot_samples=4000, temperature=3.0).loss_gradient(x, y)
    np.testing.assert_allclose(got, expected, atol=0.15)


# ----------------------------------------------------------------------------- BPDA
def test_rounding_layer_masks_the_gradient_without_bpda_and_is_the_identity_with_it(xy):
    x, y = xy
    model = dense_model(Round(4))
    masked = make_classifier(model, nb_classes=3, bpda=False)
    bpda = make_classifier(model, nb_classes=3, bpda=True)
    assert [type(layer) for layer in bpda.bpda_layers] == [Round]
    assert (masked.loss_gradient(x, y) == 0).all() and (masked.class_gradient(x) == 0).all()
    # BPDA: the gradient of the model without the rounding layer, taken at the rounded input
    x_round = np.round(x * 4) / 4
    plain = make_classifier(dense_model(), nb_classes=3)
    np.testing.assert_allclose(bpda.loss_gradient(x, y), plain.loss_gradient(x_round, y), rtol=1e-5, atol=1e-7)
    p = softmax(x_round @ KERNEL + BIAS)
    np.testing.assert_allclose(bpda.loss_gradient(x, y), (p - np.eye(3)[y]) @ KERNEL.T, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(bpda.class_gradient(x), np.broadcast_to(KERNEL.T, (5, 3, 4)), rtol=1e-6)


def test_predictions_are_identical_with_and_without_bpda(xy):
    x, _ = xy
    model = dense_model(Round(4))
    on, off = make_classifier(model, nb_classes=3, bpda=True), make_classifier(model, nb_classes=3, bpda=False)
    on.class_gradient(x)  # gradient graphs traced first: tracing must not leak into predictions
    want = model(x, training=False).numpy()
    np.testing.assert_array_equal(on.predict(x), want)
    np.testing.assert_array_equal(off.predict(x), want)
    np.testing.assert_allclose(want, np.round(x * 4) / 4 @ KERNEL + BIAS, rtol=1e-6)


def test_bpda_in_the_middle_of_a_network_is_a_straight_through_step():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((6, 6, 1))
    conv = keras.layers.Conv2D(2, 3, activation="tanh")
    dense = keras.layers.Dense(3)
    model = keras.Model(inputs, dense(keras.layers.Flatten()(Round(2)(conv(inputs)))))
    x = tf.constant(np.random.default_rng(2).random((3, 6, 6, 1), dtype=np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        h = conv(x)
        out = dense(keras.layers.Flatten()(h + tf.stop_gradient(tf.round(h * 2) / 2 - h)))
        picked = tf.reduce_sum(out[:, 1])
    want = tape.gradient(picked, x).numpy()
    got = make_classifier(model, nb_classes=3).class_gradient(x.numpy(), label=1)[:, 0]
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_identity_backward_restores_the_layers():
    layer = Round(4)
    model = dense_model(layer)
    with identity_backward(model) as patched:
        assert patched == [layer] and "call" in layer.__dict__
    assert "call" not in layer.__dict__
    x = tf.constant(np.full((1, 4), 0.3, np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tf.reduce_sum(model(x))
    assert tape.gradient(out, x, unconnected_gradients="zero").numpy().tolist() == [[0.0] * 4]


def test_bpda_refuses_a_layer_that_changes_the_shape():
    class Pool(keras.layers.Layer):
        annt_bpda = True

        def call(self, x):
            return x[:, :2]

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(Pool()(inputs)))
    with pytest.raises(ValueError, match="shape-preserving"):
        make_classifier(model, nb_classes=3).class_gradient(np.zeros((1, 4), np.float32))


# ----------------------------------------------------------------------------- through the runner
def test_fgsm_needs_bpda_to_move_through_a_rounding_layer(xy):
    rng = np.random.default_rng(3)
    x = rng.random((30, 4), dtype=np.float32)
    model = dense_model(Round(4))
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    masked = generate(model, x, y, "fgsm", params={"eps": 0.3, "bpda": False}, nb_classes=3)
    np.testing.assert_array_equal(masked.x_adv, x)  # zero gradient: FGSM cannot move
    assert masked.params["bpda"] is False
    bpda = generate(model, x, y, "fgsm", params={"eps": 0.3}, nb_classes=3)
    assert np.abs(bpda.x_adv - x).max() == pytest.approx(0.3, abs=1e-6)
    assert bpda.evaded.mean() > 0.3


def test_pgd_with_eot_runs_through_the_runner(xy):
    x, y = xy
    keras.utils.set_random_seed(0)
    model = dense_model(BernoulliMask(0.9))
    out = generate(model, x, y, "pgd", params={"eps": 0.2, "eps_step": 0.05, "max_iter": 3, "eot_samples": 5}, nb_classes=3)
    assert out.params["eot_samples"] == 5
    assert np.abs(out.x_adv - x).max() <= 0.2 + 1e-6
