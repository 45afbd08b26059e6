"""Input discretization (Panda et al. Eq. 2, SPEC §13): exact bin centres, BPDA's identity gradient and
the masked zero gradient, the model option ``input_bits`` through build, save/load, card and config."""
import json
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from annt import cli
from annt.attacks.estimator import make_classifier
from annt.models.discretize import InputDiscretization, bin_width

LEVELS = np.arange(256)
# every 8-bit value v as the pixel x = v/255, in an image-shaped batch
PIXELS = (LEVELS / 255).astype(np.float32).reshape(1, 16, 16, 1)


def centre_times_510(v, bits):
    """Integer reference: 2·I_δ = 2·⌊v / w⌋·w + w with w = 256 / 2^δ (twice Eq. 2, so it stays an integer)."""
    w = 256 // 2 ** bits
    return 2 * (v // w) * w + w


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_every_8bit_value_maps_to_its_bin_centre(bits):
    out = InputDiscretization(bits)(PIXELS).numpy().reshape(-1).astype(np.float64)
    ref = centre_times_510(LEVELS, bits)
    assert np.array_equal(np.rint(out * 510).astype(int), ref)  # the right bin for all 256 values
    np.testing.assert_allclose(out, ref / 510, rtol=0, atol=3e-8)  # and the centre to float32 precision
    assert bin_width(bits) == 256 // 2 ** bits


def test_two_bits_give_exactly_four_values_64_levels_apart():
    out = InputDiscretization(2)(PIXELS).numpy()
    assert np.allclose(np.unique(out) * 255, [32, 96, 160, 224], atol=1e-5)
    noisy = np.random.default_rng(0).uniform(-0.2, 1.2, (4, 28, 28, 1)).astype(np.float32)  # clipped to the range first
    assert len(np.unique(InputDiscretization(2)(noisy).numpy())) == 4


def test_eight_bits_shift_each_value_to_the_centre_of_its_level():
    out = InputDiscretization(8)(PIXELS).numpy().reshape(-1)
    np.testing.assert_allclose(out * 255, LEVELS + 0.5, atol=1e-4)


def test_a_value_a_rounding_error_below_a_bin_edge_stays_in_its_bin():
    # 64/255 one float32 step low: 255·x ≈ 63.99999, so Eq. 2 without the rounding would give bin 0 (centre 32)
    x = np.nextafter(np.float32(64 / 255), np.float32(0)).reshape(1, 1)
    assert InputDiscretization(2)(x).numpy()[0, 0] * 255 == pytest.approx(96)


def test_bad_bit_depth_is_refused():
    with pytest.raises(ValueError, match="input bits must be one of 1, 2, 3, 4, 8"):
        InputDiscretization(5)


KERNEL = np.array([[1.0, -2.0, 0.5], [0.3, 0.8, -1.5], [-1.2, 0.4, 1.0], [2.0, -0.6, -0.3]], np.float32)
BIAS = np.array([0.2, -0.1, 0.0], np.float32)


def dense_model(bits=None):
    inputs = keras.Input((4,))
    h = InputDiscretization(bits)(inputs) if bits else inputs
    dense = keras.layers.Dense(3)
    model = keras.Model(inputs, dense(h))
    dense.set_weights([KERNEL, BIAS])
    return model


X = np.array([[0.1, 0.5, 0.9, 0.3], [0.7, 0.2, 0.05, 0.95]], np.float32)
Y = np.array([0, 2])


def test_bpda_gradient_is_the_gradient_of_the_model_without_the_layer_at_the_discretized_input():
    with_layer = make_classifier(dense_model(2), nb_classes=3, bpda=True)
    plain = make_classifier(dense_model(None), nb_classes=3)
    xd = InputDiscretization(2)(X).numpy()
    assert not np.allclose(xd, X)
    np.testing.assert_allclose(with_layer.loss_gradient(X, Y), plain.loss_gradient(xd, Y), atol=1e-6)
    # by hand: d CE / dx = K (softmax(z) − onehot(y)), z = K^T x_δ + b
    z = xd @ KERNEL + BIAS
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    np.testing.assert_allclose(with_layer.loss_gradient(X, Y), (p - np.eye(3)[Y]) @ KERNEL.T, atol=1e-5)
    # class gradients of a dense layer: its kernel's columns
    np.testing.assert_allclose(with_layer.class_gradient(X)[0], KERNEL.T, atol=1e-6)
    np.testing.assert_allclose(with_layer.class_gradient(X, label=[1, 2])[:, 0], KERNEL.T[[1, 2]], atol=1e-6)


def test_without_bpda_the_gradient_is_exactly_zero():
    masked = make_classifier(dense_model(2), nb_classes=3, bpda=False)
    for g in (masked.loss_gradient(X, Y), masked.class_gradient(X), masked.class_gradient(X, label=1)):
        assert g is not None and np.all(g == 0)
    # the layer's own gradient is an explicit zero on a plain tape too (no None)
    x = tf.constant(X)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tf.reduce_sum(InputDiscretization(3)(x) * 2.0)
    g = tape.gradient(out, x)
    assert g is not None and np.all(g.numpy() == 0)


def test_predictions_see_the_discretization_with_and_without_bpda():
    xd = InputDiscretization(2)(X).numpy()
    expect = xd @ KERNEL + BIAS
    for bpda in (True, False):
        np.testing.assert_allclose(make_classifier(dense_model(2), nb_classes=3, bpda=bpda).predict(X), expect, atol=1e-5)


def test_build_save_load_keeps_the_layer_its_config_and_the_card(tmp_path):
    from annt.models.architectures import build_model
    from annt.models.folder import load_model_folder, save_model_folder

    keras.utils.set_random_seed(0)
    model = build_model("lenet5", input_bits=2)
    first = model.layers[1]
    assert isinstance(first, InputDiscretization) and first.bits == 2 and first.annt_bpda is True
    assert model.annt_options["input_bits"] == 2
    assert build_model("lenet5").annt_options["input_bits"] is None
    assert not any(isinstance(layer, InputDiscretization) for layer in build_model("lenet5").layers)
    folder = save_model_folder(model, tmp_path / "m", {"dataset": "mnist"})
    card = json.loads((folder / "card.json").read_text())
    assert card["input_bits"] == 2
    loaded, card2 = load_model_folder(folder)
    layer = loaded.layers[1]
    assert isinstance(layer, InputDiscretization) and layer.get_config()["bits"] == 2
    assert loaded.annt_options["input_bits"] == 2
    x = np.random.default_rng(1).uniform(0, 1, (3, 28, 28, 1)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())


GOOD = """
task: attack
output_dir: out
data: {dataset: mnist, split: test, source: sample}
model: {checkpoint: models/mnist_a-4bit}
attack: {name: fgsm, params: {eps: 0.1}, samples: 5}
"""


def one_error_line(tmp_path, capsys, overrides, card_extra=None):
    (tmp_path / "c.yaml").write_text(textwrap.dedent(GOOD))
    assert cli.main([str(tmp_path / "c.yaml"), *sum((["--set", o] for o in overrides), [])]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert not (tmp_path / "out").exists()
    return lines[0]


def test_config_input_bits_5_fails_with_one_line(tmp_path, fake_model_dir, capsys):
    line = one_error_line(tmp_path, capsys, ["model.input_bits=5"])
    assert "model.input_bits = 5 (from --set): allowed: 1, 2, 3, 4, 8" in line


def test_config_input_bits_must_match_the_card(tmp_path, fake_model_dir, capsys):
    # the fixture's card predates input_bits: its model has no discretization
    line = one_error_line(tmp_path, capsys, ["model.input_bits=2"])
    assert "model.input_bits = 2 (from --set): does not match the checkpoint's card (input_bits: None" in line
    card = json.loads((fake_model_dir / "card.json").read_text())
    (fake_model_dir / "card.json").write_text(json.dumps({**card, "input_bits": 4}))
    line = one_error_line(tmp_path, capsys, ["model.input_bits=2"])
    assert "does not match the checkpoint's card (input_bits: 4" in line
    from annt.config import load_config

    (tmp_path / "c.yaml").write_text(textwrap.dedent(GOOD))
    assert load_config(tmp_path / "c.yaml")["model"]["input_bits"] == 4  # null takes the card's value


@pytest.fixture(scope="module")
def two_bit_model(tmp_path_factory):
    """lenet5 with 2-bit inputs, briefly trained on 300 images of the shipped sample."""
    from annt.data import load_sample
    from annt.models.architectures import build_model
    from annt.models.folder import save_model_folder

    ds = load_sample()
    keras.utils.set_random_seed(0)
    m = build_model("lenet5", input_bits=2)
    m.compile(optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(ds.x[:300], ds.y[:300], batch_size=50, epochs=2, verbose=0)
    return save_model_folder(m, tmp_path_factory.mktemp("models") / "lenet5-fp", {"dataset": "mnist", "seed": 0})


def attack_set(tmp_path, model_dir, name, params):
    from annt.api import run_config
    from annt.evaluation.advset import load_adversarial_set

    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(textwrap.dedent(f"""
        task: attack
        output_dir: {tmp_path / 'runs'}
        data: {{dataset: mnist, split: test, source: sample}}
        model: {{checkpoint: {model_dir}, input_bits: 2}}
        attack: {{name: {name}, params: {json.dumps(params)}, samples: 12, only_correct: false, grid_samples: 0}}
        """))
    res = run_config(cfg)
    return res, load_adversarial_set(next((tmp_path / "runs").glob(f"*{name}*/adversarial_run0.npz")))


def discretized(x):
    return InputDiscretization(2)(x).numpy()


def test_attack_task_bpda_moves_the_discretized_input_and_the_masked_view_cannot(tmp_path, two_bit_model):
    _, s = attack_set(tmp_path / "a", two_bit_model, "fgsm", {"eps": 0.1})
    assert np.max(np.abs(s.images - s.clean_images)) <= 0.1 + 1e-6
    pgd = {"eps": 0.3, "eps_step": 0.1, "max_iter": 5, "random_start": False}
    _, masked = attack_set(tmp_path / "b", two_bit_model, "pgd", {**pgd, "bpda": False})
    _, bpda = attack_set(tmp_path / "c", two_bit_model, "pgd", {**pgd, "bpda": True})
    # zero gradient (and no random start): PGD makes no step, so the model sees exactly the clean discretized image
    np.testing.assert_array_equal(masked.images, masked.clean_images)
    np.testing.assert_array_equal(discretized(masked.images), discretized(masked.clean_images))
    assert np.array_equal(masked.adv_pred, masked.clean_pred)
    # identity gradient: the steps cross bin edges (eps 0.3 > half a bin, 32/255)
    moved = np.any(discretized(bpda.images) != discretized(bpda.clean_images), axis=(1, 2, 3))
    assert moved.all()
    assert np.mean(bpda.adv_pred == bpda.labels) <= np.mean(masked.adv_pred == masked.labels)
