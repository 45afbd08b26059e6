"""fit(): learning, best-on-validation checkpoint, resume, divergence guard, schedules."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from annt.models.architectures import build_model
from annt.errors import AnntError
from annt.training.fit import augment_cifar, augment_digits, augmentation_for, fit, learning_rate_at
from annt.training.settings import default_train_settings


def quadrant_set(n, shape=(28, 28, 1), seed=0):
    """Learnable toy task: class c ∈ {0..3} has a bright patch in quadrant c, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.random((n, *shape), dtype=np.float32) * 0.3
    h, w = shape[0] // 2, shape[1] // 2
    for i, c in enumerate(y):
        r, col = divmod(int(c), 2)
        x[i, r * h:(r + 1) * h, col * w:(col + 1) * w, :] += 0.6
    return x, y


@pytest.fixture(scope="module")
def data():
    x, y = quadrant_set(320)
    return x[:256], y[:256], x[256:], y[256:]


def test_fit_lowers_loss_and_keeps_best_validation_checkpoint(tmp_path, data):
    model = build_model("lenet5", weight_bits=4, act_bits=4)
    result = fit(model, *data, epochs=4, batch_size=32, checkpoint_dir=tmp_path / "ckpt", verbose=0, seed=1,
                 log_dir=tmp_path / "tb")
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))  # TensorBoard logs written
    tmp_path = tmp_path / "ckpt"
    losses = [h["loss"] for h in result["history"]]
    assert len(losses) == 4 and losses[-1] < 0.5 * losses[0]
    assert result["best_val_accuracy"] == max(h["val_accuracy"] for h in result["history"])
    assert result["history"][result["best_epoch"] - 1]["val_accuracy"] == result["best_val_accuracy"]
    assert result["best_val_accuracy"] > 0.9
    assert json.loads((tmp_path / "best.json").read_text())["epoch"] == result["best_epoch"]
    assert (tmp_path / "best.weights.h5").is_file()
    assert not (tmp_path / "backup").exists()  # a finished run leaves no resume state
    # the model ends with the best weights
    _, acc = model.evaluate(data[2], data[3], verbose=0)
    assert acc == pytest.approx(result["best_val_accuracy"])
    # cosine schedule: lr at epoch e is lr0 · ½(1 + cos(π e / E))
    lrs = [h["learning_rate"] for h in result["history"]]
    np.testing.assert_allclose(lrs, [1e-3 * 0.5 * (1 + np.cos(np.pi * e / 4)) for e in range(4)], rtol=1e-6)


def test_interrupted_run_resumes_from_last_finished_epoch(tmp_path, data, interrupt_at):
    keras.utils.set_random_seed(0)
    model = build_model("lenet5")
    with pytest.raises(KeyboardInterrupt):
        fit(model, *data, epochs=4, batch_size=64, checkpoint_dir=tmp_path, verbose=0, callbacks=[interrupt_at(2)])
    assert (tmp_path / "backup").is_dir()
    assert [h["epoch"] for h in json.loads((tmp_path / "history.json").read_text())] == [1, 2]

    keras.utils.set_random_seed(0)
    fresh = build_model("lenet5")
    result = fit(fresh, *data, epochs=4, batch_size=64, checkpoint_dir=tmp_path, verbose=0, restore_best=False)
    assert result["epochs_run"] == 2  # epochs 3 and 4 only
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3, 4]
    assert fresh.optimizer.iterations.numpy() == 4 * 4  # optimizer state came back too (4 steps/epoch)
    assert result["history"][-1]["loss"] < result["history"][0]["loss"]


def test_poisoned_input_raises_one_line_anntError(tmp_path, data):
    x, y, xv, yv = data
    x = x.copy()
    x[5] = np.nan  # tanh and average pooling carry the NaN into the loss
    with pytest.raises(AnntError, match=r"^training diverged at epoch 1 \(loss=nan\); lower train.learning_rate"):
        fit(build_model("lenet5"), x, y, xv, yv, epochs=2, batch_size=64, checkpoint_dir=tmp_path, verbose=0)
    assert not (tmp_path / "best.weights.h5").exists()


def test_huge_learning_rate_raises_anntError(tmp_path, data):
    with pytest.raises(AnntError, match=r"training diverged at epoch \d+ \(loss=(nan|inf)\)") as err:
        fit(build_model("mnist_a"), *data, epochs=3, batch_size=64, learning_rate=1e30, checkpoint_dir=tmp_path,
            verbose=0)
    assert "\n" not in str(err.value)


class _PoisonLastBatch(keras.callbacks.Callback):
    """Makes the weights NaN after the loss of the epoch's last batch was already computed."""

    def on_train_batch_end(self, batch, logs=None):
        if batch == 3:
            bias = self.model.get_layer("linear").bias
            bias.assign(np.full(bias.shape, np.nan, np.float32))


def test_nan_weights_with_finite_loss_are_caught_at_epoch_end(tmp_path, data):
    with pytest.raises(AnntError, match=r"diverged at epoch 1 \(loss=[0-9.]+, weights not finite\)"):
        fit(build_model("lenet5"), *data, epochs=2, batch_size=64, checkpoint_dir=tmp_path, verbose=0,
            callbacks=[_PoisonLastBatch()])
    assert not (tmp_path / "best.weights.h5").exists()


def test_resnet20_learns_a_cifar_shaped_pattern(tmp_path):
    x, y = quadrant_set(64, shape=(32, 32, 3), seed=3)
    model = build_model("resnet20", (32, 32, 3), weight_bits=4, act_bits=4)
    result = fit(model, x, y, x[:16], y[:16], epochs=3, batch_size=32, optimizer="sgd", learning_rate=0.05,
                 lr_schedule="constant", weight_decay=1e-4, augment=True, checkpoint_dir=tmp_path, verbose=0)
    losses = [h["loss"] for h in result["history"]]
    assert losses[-1] < 0.8 * losses[0]  # measured: 2.38 → 1.61


def test_augment_crops_within_padding_and_flips():
    img = tf.reshape(tf.range(2 * 32 * 32 * 3, dtype=tf.float32), (2, 32, 32, 3)) + 1.0
    tf.random.set_seed(0)
    out, _ = augment_cifar(img, tf.constant([0, 1]))
    assert out.shape == (2, 32, 32, 3)
    for i in range(2):
        o, src = out[i].numpy(), img[i].numpy()
        padded = np.pad(src, ((4, 4), (4, 4), (0, 0)))
        found = any(np.array_equal(o, c[:, ::f]) for dy in range(9) for dx in range(9)
                    for c in [padded[dy:dy + 32, dx:dx + 32]] for f in (1, -1))
        assert found


def test_digit_augmentation_shifts_at_most_two_pixels_and_never_flips():
    img = tf.reshape(tf.range(64 * 28 * 28, dtype=tf.float32), (64, 28, 28, 1)) + 1.0
    tf.random.set_seed(1)
    out, labels = augment_digits(img, tf.range(64))
    assert out.shape == (64, 28, 28, 1) and labels.numpy().tolist() == list(range(64))
    shifts = set()
    for i in range(64):
        o, padded = out[i].numpy(), np.pad(img[i].numpy(), ((2, 2), (2, 2), (0, 0)))
        match = [(dy, dx) for dy in range(5) for dx in range(5) if np.array_equal(o, padded[dy:dy + 28, dx:dx + 28])]
        assert len(match) == 1  # a shifted copy, not a mirrored one (pixel values are all distinct)
        shifts.add(match[0])
    assert len(shifts) > 10  # per-image offsets, not one for the whole batch
    assert augmentation_for((28, 28, 1)) is augment_digits and augmentation_for((32, 32, 3)) is augment_cifar


def test_step_schedule_and_defaults():
    kw = dict(epochs=160, learning_rate=0.1, lr_schedule="step", lr_decay_epochs=[80, 120], lr_decay_factor=0.1)
    assert [learning_rate_at(e, **kw) for e in (0, 79, 80, 119, 120)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])
    assert learning_rate_at(5, epochs=10, learning_rate=0.1, lr_schedule="constant") == 0.1
    with pytest.raises(ValueError):
        learning_rate_at(0, epochs=1, learning_rate=0.1, lr_schedule="linear")
    assert default_train_settings("resnet20")["optimizer"] == "sgd"
    assert default_train_settings("resnet20")["augment"] is True
    assert default_train_settings("mnist_a")["lr_schedule"] == "cosine"


def test_l2_dense_adds_tensorpacks_penalty_on_the_dense_kernels_to_the_training_loss(tmp_path, data):
    """ANNT's recipe: regularize_cost('fc.*/W', l2_regularizer(s)) = s·Σw²/2 over the fc kernels only."""
    def train(l2_dense, folder):
        model = build_model("lenet5", weight_bits=4, act_bits=4)
        # one step at a vanishing rate: the weights stay, so the logged loss can be recomputed after
        result = fit(model, *data, epochs=1, batch_size=256, learning_rate=1e-9, lr_schedule="constant",
                     checkpoint_dir=tmp_path / folder, verbose=0, l2_dense=l2_dense)
        ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(data[1], model(data[0], training=True))
        return model, result["history"][0]["loss"] - float(ce)

    model, extra = train(0.5, "l2")
    dense = [l.kernel.numpy() for l in model.layers if isinstance(l, keras.layers.Dense)]
    convs = [l.kernel for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    penalty = 0.5 * sum(float(np.sum(np.square(k))) for k in dense) / 2
    assert len(dense) == 3 and convs and all(k.regularizer is None for k in convs)
    assert float(sum(model.losses)) == pytest.approx(penalty, rel=1e-5)
    assert extra == pytest.approx(penalty, rel=1e-4)  # measured: 105.77 over a cross-entropy of 2.35
    plain, extra = train(0.0, "plain")
    assert not plain.losses and extra == pytest.approx(0.0, abs=1e-5)
