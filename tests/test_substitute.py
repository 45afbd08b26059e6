"""Papernot et al.'s substitute black-box attack (annt.attacks.substitute): labels only, held-out images never
attacked, Jacobian augmentation by hand, set growth, seeding; tiny models on synthetic 8x8 images."""
import json

import keras
import numpy as np
import pytest
from test_attacks import _synthetic, model  # noqa: F401  (the tiny trained target shared with test_attacks)
from test_pipeline import attack_cfg, only_run, run_main

from annt.attacks import substitute as sub
from annt.attacks.estimator import make_classifier
from annt.attacks.registry import ATTACKS, validate_attack_params
from annt.attacks.runner import generate
from annt.errors import AnntError, ConfigError
from annt.evaluation.advset import load_adversarial_set

TINY_SUB = {"holdout": 12, "rounds": 3, "epochs_per_round": 2, "hidden": [16], "batch_size": 8,
            "learning_rate": 0.01, "inner_params": {"eps": 0.2}}


@pytest.fixture(scope="module")
def data():
    x, y = _synthetic(28, seed=4)
    return x[:16], y[:16], x[16:]  # attacked images, their labels, held-out images


def _label_only_target(model, predict=None):
    """The target's estimator with every gradient and loss method raising; ``predict`` may be replaced."""
    clf = make_classifier(model)

    def boom(*args, **kwargs):
        raise AssertionError("the substitute attack queried the target's gradients or loss")

    for name in ("loss_gradient", "class_gradient", "compute_loss", "custom_loss_gradient", "get_activations"):
        setattr(clf, name, boom)
    if predict is not None:
        clf.predict = predict
    return clf


# ----------------------------------------------------------------------------- pieces
def test_label_oracle_passes_only_the_argmax_and_counts_queries():
    oracle = sub.LabelOracle(lambda x: np.array([[0.1, 5.0, -3.0], [7.0, 1.0, 2.0]])[: len(x)])
    np.testing.assert_array_equal(oracle(np.zeros((2, 1))), [1, 0])
    oracle(np.zeros((1, 1)))
    assert oracle.queries == 3


def test_step_size_constant_or_periodic():
    assert [sub.step_size(0.1, None, r) for r in range(4)] == [0.1] * 4
    assert [sub.step_size(0.1, 3, r) for r in range(7)] == [0.1, 0.1, 0.1, -0.1, -0.1, -0.1, 0.1]


def test_jacobian_augmentation_matches_hand_computation_on_a_linear_substitute():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    b = rng.normal(size=3).astype(np.float32)
    linear = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    linear.layers[-1].set_weights([w, b])
    x = np.array([[0.5, 0.95, 0.02, 0.3], [0.7, 0.1, 0.99, 0.5]], dtype=np.float32)
    labels = np.array([2, 0])
    # softmax p of z = x W + b; d p_k / d x = p_k (W[:, k] - W p)
    z = x.astype(np.float64) @ w + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    grad = np.stack([p[i, k] * (w[:, k] - w @ p[i]) for i, k in enumerate(labels)])
    assert np.all(np.abs(grad) > 1e-6)
    expected = np.clip(x + 0.1 * np.sign(grad), 0, 1)
    got = sub.jacobian_augmentation(linear, x.reshape(2, 2, 2, 1), labels, 0.1)
    np.testing.assert_allclose(got.reshape(2, 4), expected, atol=1e-7)
    assert got.max() <= 1.0 and got.min() >= 0.0 and np.any(got.reshape(2, 4) != x + 0.1 * np.sign(grad))  # clipped


def test_augmented_set_doubles_between_rounds_and_is_labelled_by_the_oracle(data):
    x_hold = data[2]
    oracle = sub.LabelOracle(lambda z: np.eye(10)[(np.round(z.reshape(len(z), -1).sum(1)) % 10).astype(int)])
    t = sub.train_substitute(oracle, x_hold, hidden=(16,), rounds=4, epochs_per_round=1, batch_size=8, tau=2, seed=1)
    assert len(t.x) == len(x_hold) * 2 ** 3 == oracle.queries  # holdout * 2^(rounds - 1) label queries
    np.testing.assert_array_equal(t.x[: len(x_hold)], x_hold)  # the held-out images start the set
    np.testing.assert_array_equal(t.labels, np.round(t.x.reshape(len(t.x), -1).sum(1)) % 10)
    assert [r["set_size"] for r in t.rounds] == [12, 24, 48, 96]
    assert [r.get("lambda") for r in t.rounds] == [0.1, 0.1, -0.1, None]
    assert t.x.min() >= 0 and t.x.max() <= 1
    assert [layer.units for layer in t.model.layers if hasattr(layer, "units")] == [16, 10]


def test_holdout_positions_never_overlap_the_attacked_ones():
    runs = [np.array([3, 7, 1]), np.array([0, 9, 4])]
    for select in ("random", "first"):
        held = sub.holdout_positions(12, runs, 5, select=select, seed=2)
        assert len(held) == 5 and not set(held) & set(np.concatenate(runs))
    np.testing.assert_array_equal(sub.holdout_positions(12, runs, 4, select="first"), [2, 5, 6, 8])
    np.testing.assert_array_equal(sub.holdout_positions(12, runs, 5, seed=2), sub.holdout_positions(12, runs, 5, seed=2))
    with pytest.raises(AnntError, match="only 6 images of the split are not attacked"):
        sub.holdout_positions(12, runs, 7)


# ----------------------------------------------------------------------------- the attack
def test_registry_entry_and_validation():
    spec = ATTACKS["substitute"]
    assert (spec.gradients, spec.per_batch, spec.targeted, spec.holdout) == (False, False, "never", "holdout")
    p = validate_attack_params("substitute", {"inner": "pgd", "inner_params": {"eps": 0.1, "norm": 2}})
    assert p["inner_params"]["max_iter"] == 40 and spec.threat_norm(p) == 2
    assert (p["holdout"], p["rounds"], p["epochs_per_round"], p["lambda_"], p["hidden"]) == (150, 6, 10, 0.1, [200, 200])
    with pytest.raises(ConfigError, match=r"attack.params.inner_params.eps = -1"):
        validate_attack_params("substitute", {"inner_params": {"eps": -1}})
    with pytest.raises(ConfigError, match=r"attack.params.inner = 'substitute'"):
        validate_attack_params("substitute", {"inner": "substitute"})


def test_only_target_labels_are_used(model, data):  # noqa: F811
    x, y, x_hold = data
    plain = generate(_label_only_target(model), x, y, "substitute", params=TINY_SUB, seed=3, holdout=x_hold)
    # the same labels behind other scores (one-hot of the argmax): the same substitute, the same adversarials
    base = make_classifier(model)
    onehot = _label_only_target(model, lambda z, batch_size=128, **kw: np.eye(10)[np.argmax(base.predict(z), 1)])
    same = generate(onehot, x, y, "substitute", params=TINY_SUB, seed=3, holdout=x_hold)
    assert plain.x_adv.tobytes() == same.x_adv.tobytes()
    assert np.abs(plain.x_adv - x).max() <= 0.2 + 1e-6  # inside the inner FGSM's budget
    info = plain.info
    assert info["training_set_size"] == 12 * 4 == info["oracle_queries"]
    assert 0 <= info["agreement_with_target"] <= 1 and 0 <= info["substitute_accuracy"] <= 1
    np.testing.assert_array_equal(plain.evaded, plain.adv_pred != y)  # judged on the target
    with pytest.raises(ValueError, match="held-out"):
        generate(model, x, y, "substitute", params=TINY_SUB)


def test_same_seed_same_arrays(model, data):  # noqa: F811
    x, y, x_hold = data
    a = generate(model, x, y, "substitute", params=TINY_SUB, seed=5, holdout=x_hold)
    b = generate(model, x, y, "substitute", params=TINY_SUB, seed=5, holdout=x_hold)
    c = generate(model, x, y, "substitute", params=TINY_SUB, seed=6, holdout=x_hold)
    assert a.x_adv.tobytes() == b.x_adv.tobytes() and a.info == b.info
    assert a.x_adv.tobytes() != c.x_adv.tobytes()


# ----------------------------------------------------------------------------- the attack task
def test_task_holds_out_images_that_no_run_attacks(tmp_path, tiny_models):
    cfg = attack_cfg(tmp_path, tiny_models["fp"], name="sub")
    params = "{holdout: 20, rounds: 2, epochs_per_round: 1, hidden: [32], inner_labels: substitute}"
    assert run_main([cfg, "--set", "attack.name=substitute", "--set", f"attack.params={params}"]) == 0
    run = only_run(tmp_path, "attack")
    res = json.loads((run / "results.json").read_text())
    attacked = [set(load_adversarial_set(run / f"adversarial_run{r}.npz").image_index.tolist()) for r in range(2)]
    for r, summary in enumerate(res["runs"]):
        info = summary["attack_info"]
        held = set(info["holdout_index"])
        assert len(held) == 20 and not held & (attacked[0] | attacked[1])
        assert info["training_set_size"] == 40 and 0 <= info["agreement_with_target"] <= 1
        assert load_adversarial_set(run / f"adversarial_run{r}.npz").metadata["attack_info"] == info
    assert res["runs"][0]["attack_info"]["holdout_index"] == res["runs"][1]["attack_info"]["holdout_index"]
    # the attacked images are those any other attack with this seed gets
    assert run_main([attack_cfg(tmp_path, tiny_models["fp"], name="fgsm")]) == 0
    fgsm = next(d for d in (tmp_path / "runs").iterdir() if d.name.endswith("-attack-fgsm"))
    assert set(load_adversarial_set(fgsm).image_index.tolist()) == attacked[0]


def test_task_refuses_a_holdout_the_split_cannot_spare(tmp_path, tiny_models, capsys):
    cfg = attack_cfg(tmp_path, tiny_models["fp"], name="sub")
    rc = run_main([cfg, "--check", "--set", "attack.name=substitute", "--set", "attack.samples=450",
                   "--set", "attack.params={holdout: 150}"])
    assert rc == 2
    assert "attack.params.holdout = 150: samples x runs + holdout = 1050" in capsys.readouterr().err
