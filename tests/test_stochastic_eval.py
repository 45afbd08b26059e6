"""Models random at inference (a layer marked ``annt_stochastic``): seeded, repeatable predictions; accuracies
as means over passes; the vote as a sample's label (annt.evaluation.predict and evaluate)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from annt.evaluation.advset import AdversarialSet
from annt.evaluation.evaluate import evaluate
from annt.evaluation.predict import (is_stochastic, pass_accuracy, predict_labels, predict_passes,
                                     predict_with_accuracy, vote)


class FlipSome(keras.layers.Layer):
    """Swaps the two logits of exactly ``flips`` samples of every batch, chosen at random on each call."""

    annt_stochastic = True

    def __init__(self, flips, **kwargs):
        super().__init__(**kwargs)
        self.flips = flips
        self.seed_generator = keras.random.SeedGenerator(0)

    def call(self, x):
        u = keras.random.uniform((keras.ops.shape(x)[0],), seed=self.seed_generator)
        flip = keras.ops.cast(keras.ops.argsort(keras.ops.argsort(u)) < self.flips, x.dtype)[:, None]
        return x * (1 - flip) + keras.ops.flip(x, axis=1) * flip


class GlobalNoise(keras.layers.Layer):
    """Adds noise from TensorFlow's global generator (no seed of its own)."""

    annt_stochastic = True

    def call(self, x):
        return x + tf.random.normal(tf.shape(x), stddev=2.0)


def flip_model(flips):
    inputs = keras.Input((2,))
    return keras.Model(inputs, FlipSome(flips)(inputs))


Y = np.array([0, 1, 0, 1, 1, 0, 0, 1])
CLEAN = np.eye(2, dtype=np.float32)[Y] * 3.0  # logits that classify every sample correctly


def test_stochastic_layers_are_found_without_a_card():
    assert is_stochastic(flip_model(1))
    inputs = keras.Input((2,))
    assert not is_stochastic(keras.Model(inputs, keras.layers.Dense(2)(inputs)))


def test_same_seed_same_predictions_other_seed_other_draws():
    for model in (flip_model(3), keras.Sequential([keras.Input((2,)), GlobalNoise()])):
        a = predict_passes(model, CLEAN, passes=6, seed=5)
        assert a.shape == (6, len(Y))
        np.testing.assert_array_equal(a, predict_passes(model, CLEAN, passes=6, seed=5))
        assert len({row.tobytes() for row in a}) > 1  # the passes really are different draws
        assert not np.array_equal(a, predict_passes(model, CLEAN, passes=6, seed=6))


def test_seeding_leaves_numpy_and_python_random_state_alone():
    np.random.seed(123)
    expect = np.random.random_sample()
    np.random.seed(123)
    predict_passes(flip_model(2), CLEAN, passes=3, seed=1)
    assert np.random.random_sample() == expect


def test_accuracy_is_the_mean_over_passes_of_a_known_flip_fraction():
    preds = predict_passes(flip_model(3), CLEAN, passes=7, seed=0)
    assert all(np.sum(row != Y) == 3 for row in preds)  # each pass flips exactly 3 of 8
    labels, acc = predict_with_accuracy(flip_model(3), CLEAN, Y, passes=7, seed=0)
    assert acc == {"mean": 5 / 8, "std": 0.0, "n": 7}
    np.testing.assert_array_equal(labels, vote(preds))


def test_pass_accuracy_and_vote_by_hand():
    passes = np.array([[0, 1, 1, 0], [0, 0, 1, 0], [1, 1, 1, 1]])
    y = np.array([0, 1, 1, 0])
    acc = pass_accuracy(passes, y)  # per pass 1, 0.75, 0.5
    assert acc["mean"] == 0.75 and acc["n"] == 3
    assert acc["std"] == pytest.approx(np.sqrt((0.25 ** 2 + 0 + 0.25 ** 2) / 3))
    assert pass_accuracy(passes, y, mask=[True, False, False, True])["mean"] == pytest.approx(2 / 3)
    np.testing.assert_array_equal(vote(passes), [0, 1, 1, 0])
    np.testing.assert_array_equal(vote(np.array([[2, 1], [1, 2]])), [1, 1])  # ties: the smallest class


def test_deterministic_model_is_one_unseeded_pass():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Identity()(inputs))
    assert predict_passes(model, CLEAN, passes=9, seed=3).shape == (1, len(Y))
    labels, acc = predict_with_accuracy(model, CLEAN, Y, passes=9)
    np.testing.assert_array_equal(labels, Y)
    assert acc == {"mean": 1.0, "std": 0.0, "n": 1}
    np.testing.assert_array_equal(predict_labels(model, CLEAN), Y)


def test_evaluate_reports_means_over_passes_with_the_same_draws_for_clean_and_adversarial():
    model = flip_model(2)
    adv = CLEAN.copy()
    adv[4:] = adv[4:, ::-1]  # the last four adversarials are misclassified unless flipped
    s = AdversarialSet(images=adv, labels=Y, image_index=np.arange(len(Y)), clean_images=CLEAN,
                       clean_pred=Y.copy(), adv_pred=Y.copy(), target=np.full(len(Y), -1), metadata={})
    res = evaluate(model, s, passes=9, seed=4)
    # by hand from the clean passes: pass p flipped exactly the samples it got wrong, and the
    # adversarial pass p (same draws) flips the same ones
    clean = predict_passes(model, CLEAN, passes=9, seed=4)
    flipped = clean != Y
    counted = vote(clean) == Y
    adv_correct = np.where(np.arange(len(Y)) < 4, ~flipped, flipped)
    per_pass = adv_correct[:, counted].mean(axis=1)
    assert res.summary["adversarial_accuracy"] == pytest.approx(per_pass.mean())
    assert res.summary["stochastic"]["adversarial_accuracy"]["std"] == pytest.approx(per_pass.std())
    assert res.summary["stochastic"]["passes"] == 9 and res.summary["stochastic"]["seed"] == 4
    assert res.summary["clean_accuracy"] == pytest.approx((~flipped[:, counted]).mean())
    assert res.summary_all["adversarial_accuracy"] == pytest.approx(adv_correct.mean())
    assert res.summary["transfer_rate"] == pytest.approx(1 - per_pass.mean())
    np.testing.assert_array_equal(res.counted, counted)
    again = evaluate(model, s, passes=9, seed=4)
    assert again.summary == res.summary and np.array_equal(again.adv_pred, res.adv_pred)
