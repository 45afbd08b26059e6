"""Attack registry, parameter validation and the array-level attack on tiny trained models."""
import inspect
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from annt.attacks import registry as attacks, runner
from annt.attacks.registry import ATTACKS, validate_attack_params
from annt.attacks.runner import generate, resolve_targets
from annt.errors import ConfigError
from annt.evaluation.metrics import perturbation_norms

# Tiny settings: every attack finishes in well under a second on 16 8x8 images.
TINY = {
    "fgsm": {"eps": 0.15},
    "pgd": {"eps": 0.15, "eps_step": 0.03, "max_iter": 10, "restarts": 2},
    "fgsm++": {"eps": 0.15},
    "pgd++": {"eps": 0.15, "eps_step": 0.03, "max_iter": 10, "temperature": "hns"},
    "cw_l2": {"max_iter": 5, "binary_search_steps": 3, "initial_const": 1.0, "learning_rate": 0.1},
    "cw_l2_adam": {"max_iter": 20, "binary_search_steps": 2, "initial_const": 1.0, "learning_rate": 0.1},
    "boundary": {"max_iter": 5, "num_trial": 5, "sample_size": 5, "init_size": 20},
    "jsma": {"theta": 1.0, "gamma": 0.2},
    "uap": {"attacker_params": {"eps": 0.1}, "eps": 0.2, "max_iter": 2},
    "apgd": {"eps": 0.1, "max_iter": 10},
    "autoattack": {"eps": 0.1, "max_iter": 5, "restarts": 1, "queries": 20},
    "square": {"eps": 0.15, "max_iter": 100},
    "deepfool": {"max_iter": 20},
    "bba": {"norm": 2, "steps": 10, "init_size": 20},  # its first call per norm compiles ART's numba solver (~15-30 s)
    "hopskipjump": {"max_iter": 3, "max_eval": 100, "init_eval": 10, "init_size": 20},
    "ensemble": {"eps": 0.15, "attacks": [{"name": "fgsm"}, {"name": "pgd", "params": {"max_iter": 5, "eps_step": 0.05}}]},
}


def _synthetic(n, seed):
    """10 random 8x8 prototypes, each sample = 0.35 * prototype + 0.65 * uniform noise."""
    protos = np.random.default_rng(0).random((10, 8, 8, 1), dtype=np.float32)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    return (0.35 * protos[y] + 0.65 * rng.random((n, 8, 8, 1))).astype(np.float32), y


class _Binarize(keras.layers.Layer):
    """1-bit activation round(clip(h, 0, 1)) with a straight-through gradient, as DoReFa's."""

    def call(self, h):
        a = tf.clip_by_value(h, 0.0, 1.0)
        return a + tf.stop_gradient(tf.round(a) - a)


def _train(binary: bool):
    keras.utils.set_random_seed(0)
    x, y = _synthetic(2000, seed=0)
    act = [_Binarize()] if binary else [keras.layers.ReLU()]
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(16 if binary else 8, 3), *act,
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=64, epochs=3, verbose=0)
    return model


@pytest.fixture(scope="module")
def model():
    return _train(binary=False)


@pytest.fixture(scope="module")
def binary_model():
    return _train(binary=True)


@pytest.fixture(scope="module")
def batch():
    return _synthetic(40, seed=1)


def test_tiny_model_is_accurate(model, batch):
    x, y = batch
    assert np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y) >= 0.9


# ----------------------------------------------------------------------------- registry
def test_registry_imports_without_tensorflow_or_art():
    code = "import annt.attacks.registry, sys; assert 'tensorflow' not in sys.modules and 'art' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", sorted(n for n, spec in ATTACKS.items() if spec.art_class))
def test_registry_entry_matches_its_art_class(name):
    spec = ATTACKS[name]
    cls = runner._import_class(spec.art_class)
    art_params = spec.to_art(spec.defaults()) if spec.to_art else spec.defaults()
    accepted = inspect.signature(cls.__init__).parameters
    assert set(runner._art_kwargs(cls, art_params, False, 8)) <= set(accepted)
    for param in spec.params.values():
        assert param.doc and "\n" not in param.doc


def test_paper_settings_are_valid_and_match_spec():
    assert attacks.paper_params("fgsm", "mnist")["eps"] == 0.25
    assert attacks.paper_params("fgsm", "cifar10")["eps"] == 0.05
    assert {k: attacks.paper_params("jsma", "cifar10")[k] for k in ("theta", "gamma")} == {"theta": 0.3, "gamma": 0.05}
    uap = attacks.paper_params("uap", "mnist")
    assert (uap["attacker"], uap["attacker_params"]["eps"], uap["eps"], uap["norm"]) == ("fgsm", 0.1, 0.6, "inf")
    cw = attacks.paper_params("cw_l2", "cifar10")
    assert (cw["confidence"], cw["max_iter"], cw["binary_search_steps"], cw["initial_const"]) == (5.0, 25, 20, 0.01)
    assert attacks.paper_params("boundary", "cifar10")["max_iter"] == 12


# ----------------------------------------------------------------------------- validation
def test_validate_fills_defaults_and_normalises():
    p = validate_attack_params("pgd", {"eps": 1, "norm": 2.0})
    assert p == {"eps": 1.0, "eps_step": 0.01, "max_iter": 40, "norm": 2, "random_start": True,
                 "restarts": 1, "keep_adversarial": True, "temperature": None, "eot_samples": 1, "bpda": True}
    assert validate_attack_params("fgsm", {"norm": float("inf")})["norm"] == "inf"
    assert validate_attack_params("fgsm", None)["eps"] == 0.3


@pytest.mark.parametrize("name, params, message", [
    ("pgd", {"epss": 0.1}, "attack.params.epss: unknown key in attack.params (did you mean 'eps'?); allowed: eps, "),
    ("fgm", {}, f"attack.name = 'fgm': allowed: {', '.join(ATTACKS)} (did you mean 'fgsm'?)"),
    ("pgd", {"eps": "big"}, "attack.params.eps = 'big': must be a number in (0, inf)"),
    ("pgd", {"eps": -1}, "attack.params.eps = -1: must be a number in (0, inf)"),
    ("jsma", {"gamma": 1.5}, "attack.params.gamma = 1.5: must be a number in (0, 1]"),
    ("cw_l2", {"max_iter": 2.5}, "attack.params.max_iter = 2.5: must be an integer in [1, inf)"),
    ("cw_l2", {"max_iter": True}, "attack.params.max_iter = true: must be an integer in [1, inf)"),
    ("pgd", {"norm": 3}, "attack.params.norm = 3: allowed: inf, 1, 2"),
    ("pgd", {"restarts": 3, "random_start": False}, "attack.params.restarts = 3: restarts > 1 need random_start"),
    ("uap", {"attacker_params": {"ep": 0.1}}, "attack.params.attacker_params.ep: unknown key in "
                                              "attack.params.attacker_params (did you mean 'eps'?)"),
    ("boundary", [1, 2], "attack.params = [1, 2]: must be a mapping of keys"),
])
def test_validate_errors_name_the_key_path(name, params, message):
    with pytest.raises(ConfigError) as err:
        validate_attack_params(name, params, "attack")
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_validate_where_prefixes_the_path():
    with pytest.raises(ConfigError, match=r"^transfer\.attack\.params\.eps = 0: must be a number in \(0, inf\)$"):
        validate_attack_params("fgsm", {"eps": 0}, "transfer.attack")


def test_resolve_targets():
    y = np.array([0, 5, 9])
    np.testing.assert_array_equal(resolve_targets(y, "next"), [1, 6, 0])
    r = resolve_targets(np.arange(1000) % 10, "random", seed=3)
    assert np.all(r != np.arange(1000) % 10) and set(r) == set(range(10))
    np.testing.assert_array_equal(r, resolve_targets(np.arange(1000) % 10, "random", seed=3))
    np.testing.assert_array_equal(resolve_targets(y, 4), [4, 4, 4])


# ----------------------------------------------------------------------------- attacks
@pytest.mark.parametrize("name", sorted(n for n, spec in ATTACKS.items() if not spec.holdout))  # substitute: test_substitute
def test_each_attack_changes_predictions(model, batch, name):
    x, y = batch[0][:16], batch[1][:16]
    out = generate(model, x, y, name, params=TINY[name])
    assert out.x_adv.dtype == np.float32 and out.x_adv.shape == x.shape
    assert out.x_adv.min() >= 0.0 and out.x_adv.max() <= 1.0
    np.testing.assert_array_equal(out.evaded, out.adv_pred != y)
    changed = out.adv_pred != out.clean_pred
    assert changed.sum() >= 4, f"{name} changed only {changed.sum()} of 16 predictions"


def test_fgsm_linf_budget_is_exact(model, batch):
    x, y = batch
    out = generate(model, x, y, "fgsm", params={"eps": 0.1})
    linf = perturbation_norms(x, out.x_adv)["linf"]
    assert linf.max() <= 0.1 + 1e-6
    # Pixels away from the [0, 1] bounds move by exactly eps (sign step).
    delta = np.abs(out.x_adv - x)[(x > 0.1) & (x < 0.9)]
    np.testing.assert_allclose(delta[delta > 0], 0.1, atol=1e-6)


@pytest.mark.parametrize("norm, eps, key", [("inf", 0.08, "linf"), (2, 0.5, "l2")])
def test_pgd_respects_its_budget(model, batch, norm, eps, key):
    x, y = batch
    out = generate(model, x, y, "pgd", params={"eps": eps, "eps_step": eps / 4, "max_iter": 10, "norm": norm})
    dist = perturbation_norms(x, out.x_adv)[key]
    assert dist.max() <= eps + 1e-5
    assert out.evaded.any()


def test_pgd_keeps_adversarial_iterates_on_binary_model(binary_model, batch):
    """On a 1-bit model, ART's last iterate misses samples some earlier iterate had fooled."""
    x, y = batch
    base = {"eps": 0.08, "eps_step": 0.08, "max_iter": 8}
    kept = generate(binary_model, x, y, "pgd", params=base)
    last = generate(binary_model, x, y, "pgd", params={**base, "keep_adversarial": False})
    assert np.all(kept.evaded[last.evaded])  # same seed, same iterates: kept ⊇ last
    assert kept.evaded.sum() > last.evaded.sum()
    assert perturbation_norms(x, kept.x_adv)["linf"].max() <= 0.08 + 1e-6


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
def test_targeted_next(model, batch, name):
    x, y = batch
    params = {"eps": 0.3} if name == "fgsm" else {"eps": 0.3, "eps_step": 0.05, "max_iter": 15}
    out = generate(model, x, y, name, params=params, targeted=True, target="next")
    np.testing.assert_array_equal(out.target, (y + 1) % 10)
    np.testing.assert_array_equal(out.success, out.adv_pred == (y + 1) % 10)
    assert out.success.mean() >= 0.25


def test_untargeted_jsma_uses_seeded_random_targets(model, batch):
    x, y = batch[0][:8], batch[1][:8]
    out = generate(model, x, y, "jsma", params=TINY["jsma"], seed=5)
    np.testing.assert_array_equal(out.target, resolve_targets(y, "random", seed=5))
    np.testing.assert_array_equal(out.success, out.adv_pred != y)


def test_uap_returns_one_perturbation_for_all(model, batch):
    x, y = batch
    out = generate(model, x, y, "uap", params=TINY["uap"])
    assert out.perturbation.shape == (1, 8, 8, 1)
    assert np.abs(out.perturbation).max() <= 0.2 + 1e-6
    np.testing.assert_allclose(out.x_adv, np.clip(x + out.perturbation, 0, 1), atol=1e-7)
    assert out.fooling_rate == pytest.approx(np.mean(out.adv_pred != y))


@pytest.mark.parametrize("name", ["pgd", "boundary", "uap"])
def test_same_seed_gives_byte_identical_output(model, batch, name):
    x, y = batch[0][:8], batch[1][:8]
    a = generate(model, x, y, name, params=TINY[name], seed=7)
    b = generate(model, x, y, name, params=TINY[name], seed=7)
    assert a.x_adv.tobytes() == b.x_adv.tobytes()
    c = generate(model, x, y, name, params=TINY[name], seed=8)
    assert a.x_adv.tobytes() != c.x_adv.tobytes()


def test_accepts_an_art_classifier_and_one_hot_labels(model, batch):
    from annt.attacks.estimator import make_classifier

    x, y = batch
    a = generate(make_classifier(model, fast=False), x, np.eye(10)[y], "fgsm", params={"eps": 0.1})
    b = generate(model, x, y, "fgsm", params={"eps": 0.1})
    np.testing.assert_allclose(a.x_adv, b.x_adv, atol=1e-6)


def test_targeted_uap_is_refused(model, batch):
    with pytest.raises(ConfigError, match="attack.targeted"):
        generate(model, batch[0], batch[1], "uap", targeted=True)
