"""The strong attacks of SPEC §12: apgd, autoattack, square, deepfool, bba (Brendel & Bethge), hopskipjump.

Tiny models on synthetic 8x8 images, as in test_attacks.
Brendel & Bethge's first call per norm and process spends ~15-30 s compiling ART's numba solver; every
other attack here takes well under a second.
"""
import inspect

import keras
import numpy as np
import pytest
from test_attacks import TINY, _synthetic, binary_model, model  # noqa: F401  (fixtures shared with test_attacks)

from annt.attacks import art_attacks, runner
from annt.attacks.estimator import FastTensorFlowV2Classifier, make_classifier
from annt.attacks.registry import ATTACKS, validate_attack_params
from annt.attacks.runner import generate
from annt.errors import ConfigError
from annt.evaluation.metrics import perturbation_norms

NEW = ("apgd", "autoattack", "square", "deepfool", "bba", "hopskipjump")  # tiny settings: test_attacks.TINY


@pytest.fixture(scope="module")
def batch():
    x, y = _synthetic(16, seed=1)
    return x, y


def _accuracy(out, y):
    return float(np.mean(out.adv_pred == y))


# ----------------------------------------------------------------------------- registry
def test_threat_model_fields():
    """gradients / bounded / norm as the ensemble's membership checks need them."""
    expected = {  # name: (gradients, bounded, default threat norm, targeted)
        "apgd": (True, True, "inf", "optional"),
        "autoattack": (True, True, "inf", "never"),
        "square": (False, True, "inf", "never"),
        "deepfool": (True, False, 2, "never"),
        "bba": (True, False, "inf", "optional"),
        "hopskipjump": (False, False, 2, "optional"),
    }
    for name, (gradients, bounded, norm, targeted) in expected.items():
        spec = ATTACKS[name]
        assert (spec.gradients, spec.bounded, spec.threat_norm(spec.defaults()), spec.targeted) == \
            (gradients, bounded, norm, targeted), name
        assert ("eps" in spec.params) == bounded, name  # minimum-norm attacks have no budget
    assert ATTACKS["bba"].threat_norm(validate_attack_params("bba", {"norm": 2})) == 2


def test_defaults_are_the_papers():
    apgd = validate_attack_params("apgd", {})
    assert {k: apgd[k] for k in ("eps", "norm", "loss", "eps_step", "max_iter", "restarts", "keep_adversarial")} == \
        {"eps": 0.3, "norm": "inf", "loss": "ce", "eps_step": None, "max_iter": 100, "restarts": 1, "keep_adversarial": True}
    square = validate_attack_params("square", {})
    assert {k: square[k] for k in ("max_iter", "p_init", "restarts")} == {"max_iter": 5000, "p_init": 0.8, "restarts": 1}
    deepfool = validate_attack_params("deepfool", {})
    assert {k: deepfool[k] for k in ("max_iter", "overshoot", "nb_grads")} == {"max_iter": 100, "overshoot": 0.02, "nb_grads": 10}
    bba = validate_attack_params("bba", {})
    assert {k: bba[k] for k in ("steps", "lr", "lr_decay", "lr_num_decay", "momentum", "overshoot", "binary_search_steps")} \
        == {"steps": 1000, "lr": 1e-3, "lr_decay": 0.5, "lr_num_decay": 20, "momentum": 0.8, "overshoot": 1.1,
            "binary_search_steps": 10}
    hsj = validate_attack_params("hopskipjump", {})
    assert {k: hsj[k] for k in ("norm", "max_iter", "max_eval", "init_eval", "init_size")} == \
        {"norm": 2, "max_iter": 50, "max_eval": 10000, "init_eval": 100, "init_size": 100}
    aa = validate_attack_params("autoattack", {})
    assert {k: aa[k] for k in ("max_iter", "restarts", "queries")} == {"max_iter": 100, "restarts": 5, "queries": 5000}


# ART keyword arguments of each entry's defaults (to_art); the remaining params are annt's own.
ART_KWARGS = {
    "apgd": ({"norm": "inf", "eps": 0.3, "eps_step": 0.6, "max_iter": 100, "nb_random_init": 1,
              "loss_type": "cross_entropy"}, {"keep_adversarial"}),
    "autoattack": ({"norm": "inf", "eps": 0.3, "eps_step": 0.6}, {"max_iter", "restarts", "queries"}),
    "square": ({"eps": 0.3, "norm": "inf", "max_iter": 5000, "p_init": 0.8, "nb_restarts": 1}, set()),
    "deepfool": ({"max_iter": 100, "epsilon": 0.02, "nb_grads": 10}, set()),
    "bba": ({"norm": "inf", "steps": 1000, "lr": 1e-3, "lr_decay": 0.5, "lr_num_decay": 20, "momentum": 0.8,
             "overshoot": 1.1, "binary_search_steps": 10, "init_size": 100}, set()),
    "hopskipjump": ({"norm": 2, "max_iter": 50, "max_eval": 10000, "init_eval": 100, "init_size": 100}, set()),
}


@pytest.mark.parametrize("name", NEW)
def test_params_map_to_art_constructor_arguments(name):
    spec = ATTACKS[name]
    expected, annt_only = ART_KWARGS[name]
    art = spec.to_art(spec.defaults()) if spec.to_art else spec.defaults()
    assert art == expected
    accepted = inspect.signature(runner._import_class(spec.art_class).__init__).parameters
    assert set(art) <= set(accepted)
    renamed = {"nb_random_init": "restarts", "nb_restarts": "restarts", "epsilon": "overshoot", "loss_type": "loss"}
    assert {renamed.get(k, k) for k in art} | annt_only == set(spec.params)


def test_apgd_step_follows_eps_unless_set():
    to_art = ATTACKS["apgd"].to_art
    assert to_art(validate_attack_params("apgd", {"eps": 0.1, "loss": "dlr"}))["eps_step"] == pytest.approx(0.2)
    assert to_art(validate_attack_params("apgd", {"eps": 0.1, "eps_step": 0.01}))["eps_step"] == 0.01
    assert to_art(validate_attack_params("apgd", {"loss": "dlr"}))["loss_type"] == "difference_logits_ratio"


@pytest.mark.parametrize("name, params, message", [
    ("apgd", {"loss": "mse"}, "attack.params.loss = 'mse': allowed: ce, dlr"),
    ("apgd", {"norm": 1}, "attack.params.norm = 1: allowed: inf, 2"),
    ("apgd", {"eps_step": 0}, "attack.params.eps_step = 0: must be a number in (0, inf), or null"),
    ("apgd", {"restarts": 0}, "attack.params.restarts = 0: must be an integer in [1, inf)"),
    ("autoattack", {"norm": 1}, "attack.params.norm = 1: allowed: inf, 2"),
    ("autoattack", {"queries": 2.5}, "attack.params.queries = 2.5: must be an integer in [1, inf)"),
    ("square", {"p_init": 1}, "attack.params.p_init = 1: must be a number in (0, 1)"),
    ("square", {"max_iter": 0}, "attack.params.max_iter = 0: must be an integer in [1, inf)"),
    ("deepfool", {"eps": 0.1}, "attack.params.eps: unknown key in attack.params"),
    ("deepfool", {"overshoot": -0.1}, "attack.params.overshoot = -0.1: must be a number in [0, inf)"),
    ("bba", {"norm": 0}, "attack.params.norm = 0: allowed: inf, 2"),
    ("bba", {"overshoot": 0.5}, "attack.params.overshoot = 0.5: must be a number in [1, inf)"),
    ("bba", {"momentum": 1}, "attack.params.momentum = 1: must be a number in (0, 1)"),
    ("hopskipjump", {"init_eval": 200, "max_eval": 100}, "attack.params.init_eval = 200: must not exceed max_eval (100)"),
    ("hopskipjump", {"norm": 1}, "attack.params.norm = 1: allowed: inf, 2"),
])
def test_bad_params_fail_in_one_line(name, params, message):
    with pytest.raises(ConfigError) as err:
        validate_attack_params(name, params)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["autoattack", "square", "deepfool"])
def test_untargeted_only_attacks_refuse_targeted(model, batch, name):
    with pytest.raises(ConfigError, match=rf"^attack.targeted: {name} has no targeted variant"):
        generate(model, batch[0], batch[1], name, params=TINY[name], targeted=True)


# ----------------------------------------------------------------------------- the compiled estimator
def test_apgd_and_bba_run_on_annts_compiled_estimator(model):
    """ART re-wraps the estimator into a stock eager TensorFlowV2Classifier for APGD with a loss type
    and always for Brendel & Bethge; annt's subclasses keep the compiled one."""
    from art.attacks.evasion import AutoProjectedGradientDescent, BrendelBethgeAttack
    from art.estimators.classification import TensorFlowV2Classifier

    clf = make_classifier(model)
    stock = AutoProjectedGradientDescent(clf, loss_type="difference_logits_ratio", verbose=False)
    assert type(stock.estimator) is TensorFlowV2Classifier  # what annt avoids
    assert type(BrendelBethgeAttack(clf).estimator) is TensorFlowV2Classifier
    for attack, loss in [(art_attacks.apgd_class()(clf, loss_type="difference_logits_ratio"), "difference_logits_ratio"),
                         (art_attacks._bba_class()(clf), "logits_difference")]:
        assert isinstance(attack.estimator, FastTensorFlowV2Classifier)
        assert attack.estimator.model is model and attack.estimator._loss_object.name == loss
    assert clf._loss_object.__class__.__name__ == "CategoricalCrossentropy"  # the original is left as it was


@pytest.mark.parametrize("loss", ["cross_entropy", "difference_logits_ratio", "logits_difference"])
def test_attack_losses_are_per_sample(model, batch, loss):
    """Values by hand; each sample's input gradient is its own loss's, whatever batch it is in."""
    x, y = batch
    clf = art_attacks.with_attack_loss(make_classifier(model), loss)
    onehot = np.eye(10, dtype=np.float32)[y]
    z = model.predict(x, verbose=0).astype(np.float64)
    zy = z[np.arange(len(y)), y]
    other = np.where(onehot > 0, -np.inf, z).max(axis=1)
    top = -np.sort(-z, axis=1)
    by_hand = {"cross_entropy": np.log(np.exp(z).sum(axis=1)) - zy,
               "difference_logits_ratio": -(zy - other) / (top[:, 0] - top[:, 2] + 1e-12),
               "logits_difference": zy - other}[loss]
    np.testing.assert_allclose(clf.compute_loss(x, onehot), by_hand, rtol=1e-4, atol=1e-5)
    whole = clf.loss_gradient(x, onehot)
    alone = np.concatenate([clf.loss_gradient(x[i:i + 1], onehot[i:i + 1]) for i in range(4)])
    np.testing.assert_allclose(whole[:4], alone, rtol=1e-4, atol=1e-7)
    assert np.abs(whole).max() > 0


def test_compute_loss_records_first_adversarial_rows(model, batch):
    x, y = batch
    clf = art_attacks.with_attack_loss(make_classifier(model), "cross_entropy")
    onehot = np.eye(10, dtype=np.float32)[y]
    wrong = np.eye(10, dtype=np.float32)[(y + 1) % 10]
    clf.record = art_attacks.FirstAdversarial(len(x), x.shape[1:], targeted=False)
    clf.compute_loss(x, onehot)  # untargeted: adversarial where the model is wrong
    missed = np.argmax(model.predict(x, verbose=0), axis=1) != y
    np.testing.assert_array_equal(clf.record.found, missed)
    clf.compute_loss(x + 0.5, wrong)  # later iterates: only rows not found before are kept
    assert np.all(clf.record.found)
    np.testing.assert_array_equal(clf.record.kept[missed], x[missed])
    np.testing.assert_array_equal(clf.record.kept[~missed], x[~missed] + 0.5)
    clf.record = art_attacks.FirstAdversarial(3, x.shape[1:], targeted=False)
    clf.compute_loss(x, wrong)  # other rows than the record's: nothing kept
    assert not clf.record.found.any()


# ----------------------------------------------------------------------------- attacks
@pytest.mark.parametrize("name", NEW)
def test_each_new_attack_lowers_accuracy(model, batch, name):
    x, y = batch
    out = generate(model, x, y, name, params=TINY[name], seed=1)
    assert out.x_adv.dtype == np.float32 and out.x_adv.shape == x.shape
    assert out.x_adv.min() >= 0.0 and out.x_adv.max() <= 1.0
    clean = float(np.mean(out.clean_pred == y))
    assert clean >= 0.8
    assert _accuracy(out, y) <= clean - 0.25, f"{name}: {clean:.2f} -> {_accuracy(out, y):.2f}"
    np.testing.assert_array_equal(out.evaded, out.adv_pred != y)


@pytest.mark.parametrize("name, params", [
    ("apgd", {"eps": 0.08, "max_iter": 10}),
    ("apgd", {"eps": 0.08, "max_iter": 10, "loss": "dlr", "restarts": 2}),
    ("square", {"eps": 0.08, "max_iter": 100}),
    ("autoattack", {"eps": 0.08, "max_iter": 5, "restarts": 1, "queries": 20}),
])
def test_linf_attacks_stay_in_the_ball(model, batch, name, params):
    x, y = batch
    out = generate(model, x, y, name, params=params, seed=2)
    assert perturbation_norms(x, out.x_adv)["linf"].max() <= 0.08 + 1e-6
    assert out.evaded.any()


@pytest.mark.parametrize("name, params", [
    ("apgd", {"eps": 0.5, "norm": 2, "max_iter": 10}),
    ("apgd", {"eps": 0.5, "norm": 2, "max_iter": 10, "loss": "dlr"}),
    ("square", {"eps": 0.5, "norm": 2, "max_iter": 100}),
    ("autoattack", {"eps": 0.5, "norm": 2, "max_iter": 5, "restarts": 1, "queries": 20}),
])
def test_l2_attacks_stay_in_the_ball(model, batch, name, params):
    x, y = batch
    out = generate(model, x, y, name, params=params, seed=2)
    assert np.all(np.isfinite(out.x_adv))
    assert perturbation_norms(x, out.x_adv)["l2"].max() <= 0.5 + 1e-5
    assert out.evaded.any() and _accuracy(out, y) < np.mean(out.clean_pred == y)


@pytest.mark.parametrize("norm, side", [("inf", 8), (2, 9)])  # L2: at least 3 and odd
def test_square_refuses_squares_larger_than_the_image(model, batch, norm, side):
    """ART would crash drawing the square's corner."""
    with pytest.raises(ConfigError) as err:
        generate(model, batch[0], batch[1], "square", params={"eps": 0.1, "norm": norm, "p_init": 0.99, "max_iter": 5})
    assert str(err.value) == (f"attack.params.p_init = 0.99: square's first square ({side} pixels) must be smaller "
                              "than the 8x8 image; use a smaller p_init")
    assert art_attacks.square_fits(2, 0.05, 4, 4).startswith("square's L2 version needs images at least 5 pixels")
    assert art_attacks.square_fits(2, 0.8, 28, 28) is None and art_attacks.square_fits("inf", 0.8, 8, 8) is None


def test_square_l2_proposal_keeps_norm_eps_and_the_rest_of_the_perturbation(model, batch):
    """The reference update (which ART 1.20.1 gets wrong): the new window gets the norm left over, so
    the candidate has norm eps and, outside the two windows, the perturbation it had."""
    x0 = np.full((6, 8, 8, 1), 0.5, dtype=np.float32)  # far from the pixel bounds: no clipping
    attack = art_attacks.square_class()(make_classifier(model), norm=2, eps=0.4, max_iter=10, verbose=False)
    np.random.seed(0)
    start = attack.propose_start(x0)
    np.testing.assert_allclose(perturbation_norms(x0, start)["l2"], 0.4, rtol=1e-5)
    for i_iter in range(10):
        before = start - x0
        cand = attack.propose(x0, start.astype(np.float32), i_iter)
        np.testing.assert_allclose(perturbation_norms(x0, cand)["l2"], 0.4, rtol=1e-5)
        same = np.isclose(cand - x0, before, atol=1e-6).all(axis=(0, 3))  # pixels no window touched
        assert 0 < same.sum() < 64
        start = cand


@pytest.mark.parametrize("name", NEW)
def test_same_seed_gives_byte_identical_output(model, batch, name):
    x, y = batch[0][:8], batch[1][:8]
    a = generate(model, x, y, name, params=TINY[name], seed=7)
    b = generate(model, x, y, name, params=TINY[name], seed=7)
    assert a.x_adv.tobytes() == b.x_adv.tobytes()
    if name != "deepfool":  # DeepFool draws nothing at random
        c = generate(model, x, y, name, params=TINY[name], seed=8)
        assert a.x_adv.tobytes() != c.x_adv.tobytes()


def test_apgd_keeps_adversarial_iterates_and_restarts_only_add(binary_model, batch):
    """Same seed, same iterates: the kept first adversarial iterate fools wherever ART's last one does,
    and a second start only attacks what the first left unbroken."""
    x, y = batch
    base = {"eps": 0.06, "max_iter": 10}
    kept = generate(binary_model, x, y, "apgd", params=base, seed=3)
    last = generate(binary_model, x, y, "apgd", params={**base, "keep_adversarial": False}, seed=3)
    twice = generate(binary_model, x, y, "apgd", params={**base, "restarts": 3}, seed=3)
    assert np.all(kept.evaded[last.evaded]) and np.all(twice.evaded[kept.evaded])
    np.testing.assert_array_equal(twice.x_adv[kept.evaded], kept.x_adv[kept.evaded])
    assert 0 < kept.evaded.sum() < len(y)
    assert perturbation_norms(x, twice.x_adv)["linf"].max() <= 0.06 + 1e-6


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_targeted_apgd_reaches_the_target(model, batch, loss):
    x, y = batch
    out = generate(model, x, y, "apgd", params={"eps": 0.3, "max_iter": 20, "loss": loss}, targeted=True, target="next")
    np.testing.assert_array_equal(out.target, (y + 1) % 10)
    np.testing.assert_array_equal(out.success, out.adv_pred == (y + 1) % 10)
    assert out.success.mean() >= 0.5
    assert perturbation_norms(x, out.x_adv)["linf"].max() <= 0.3 + 1e-6


def test_autoattack_breaks_at_least_what_its_first_member_breaks(model, batch):
    """AutoAttack's first member is APGD-CE with the same settings and random draws."""
    x, y = batch
    aa = generate(model, x, y, "autoattack", params={"eps": 0.05, "max_iter": 5, "restarts": 1, "queries": 20}, seed=4)
    ce = generate(model, x, y, "apgd", params={"eps": 0.05, "max_iter": 5, "restarts": 1, "eps_step": 0.1}, seed=4)
    assert np.all(aa.evaded[ce.evaded])
    assert perturbation_norms(x, aa.x_adv)["linf"].max() <= 0.05 + 1e-6


def test_deepfool_in_autoattack_is_projected_on_the_ball(model, batch):
    x = batch[0]
    attack = art_attacks._deepfool_in_ball_class()(make_classifier(model), max_iter=20, verbose=False)
    attack.ball = (0.05, "inf")
    out = attack.generate(x)
    assert np.abs(out - x).max() <= 0.05 + 1e-6


# ----------------------------------------------------------------------------- minimum-norm attacks
@pytest.mark.parametrize("name, params", [
    ("deepfool", TINY["deepfool"]),
    ("bba", TINY["bba"]),
    ("bba", {**TINY["bba"], "norm": "inf"}),
    ("hopskipjump", TINY["hopskipjump"]),
    ("hopskipjump", {**TINY["hopskipjump"], "norm": "inf"}),
])
def test_minimum_norm_attacks_succeed_and_report_distances(model, batch, name, params):
    x, y = batch
    out = generate(model, x, y, name, params=params, seed=5)
    d = perturbation_norms(x, out.x_adv)
    key = "l2" if params.get("norm", ATTACKS[name].threat_norm(params)) == 2 else "linf"
    assert out.evaded.mean() >= 0.75
    assert np.all(d[key][out.evaded & (out.clean_pred == y)] > 0)
    # minimum-norm: far closer than the uniform-noise images boundary attacks start from (~0.95 L∞, ~4.5 L2)
    assert np.median(d[key][out.evaded]) < (0.6 if key == "linf" else 2.5)


@pytest.mark.parametrize("norm", [2, "inf"])
def test_bba_results_are_adversarial_in_any_batch(model, batch, norm):
    """BBA ends within float rounding of the boundary; annt pushes it past by a margin that no batch
    composition flips, and not further than 10 %."""
    x, y = batch
    out = generate(model, x, y, "bba", params={**TINY["bba"], "norm": norm}, seed=5)
    clf = make_classifier(model)
    alone = np.concatenate([clf.predict(out.x_adv[i:i + 1]) for i in range(len(x))])
    margin = art_attacks._margin(alone, y, False)
    ran = out.evaded & (out.clean_pred == y)
    assert ran.sum() >= 12 and np.all(margin[ran] < -art_attacks.BOUNDARY_MARGIN)
    np.testing.assert_array_equal(np.argmax(alone, axis=1) != y, out.evaded)
    pushed = art_attacks.past_the_boundary(clf, x, out.x_adv, y, False, 16)
    np.testing.assert_array_equal(pushed[ran], out.x_adv[ran])  # already past: tau = 0


@pytest.mark.parametrize("norm", [2, "inf"])
def test_bba_attacks_each_sample_as_if_alone(model, batch, norm):
    """ART's batched generate couples the rows of a batch (excluded labels, bisection, trust region,
    mean loss); annt's batch gives what each sample gives on its own."""
    x, y = batch
    clf = make_classifier(model)
    np.random.seed(0)
    starts, found = art_attacks.random_starts(clf, x, y, False, 50, 16)
    x, y, starts = x[found], np.eye(10, dtype=np.float32)[y[found]], starts[found]
    attack = art_attacks._bba_class()(clf, norm=norm, steps=10, batch_size=16)
    together = attack.generate(x, y=y, starting_points=starts)
    alone = np.concatenate([attack.generate(x[i:i + 1], y=y[i:i + 1], starting_points=starts[i:i + 1])
                            for i in range(len(x))])
    key = "l2" if norm == 2 else "linf"
    np.testing.assert_allclose(perturbation_norms(x, together)[key], perturbation_norms(x, alone)[key], rtol=1e-2)
    assert attack.lr == 1e-3


@pytest.mark.parametrize("name", ["bba", "hopskipjump"])
def test_boundary_walks_end_closer_than_their_seeded_starts(model, batch, name):
    x, y = batch
    params = validate_attack_params(name, TINY[name])
    keras.utils.set_random_seed(6)
    clf = make_classifier(model)
    clean = np.argmax(clf.predict(x), axis=1)
    starts, found = art_attacks.random_starts(clf, x, y if name == "bba" else clean, False, params["init_size"], 16)
    out = generate(model, x, y, name, params=params, seed=6)
    moved = found & (clean == y)
    assert moved.sum() >= 8
    start_d = perturbation_norms(x[moved], starts[moved])["l2"]
    end_d = perturbation_norms(x[moved], out.x_adv[moved])["l2"]
    assert np.all(end_d < start_d) and np.all(out.evaded[moved])


def test_targeted_bba_and_hopskipjump_reach_the_target(model, batch):
    x, y = batch
    for name in ("bba", "hopskipjump"):
        out = generate(model, x, y, name, params={**TINY[name], "init_size": 100}, targeted=True, target="next", seed=2)
        np.testing.assert_array_equal(out.success, out.adv_pred == (y + 1) % 10)
        assert out.success.mean() >= 0.5, name


def test_random_starts_are_adversarial_and_seeded(model, batch):
    x, y = batch
    clf = make_classifier(model)
    np.random.seed(0)
    starts, found = art_attacks.random_starts(clf, x, y, False, 20, 16)
    np.random.seed(0)
    again, _ = art_attacks.random_starts(clf, x, y, False, 20, 16)
    assert starts.tobytes() == again.tobytes()
    pred = np.argmax(clf.predict(starts), axis=1)
    assert found.mean() >= 0.75 and np.all(pred[found] != y[found])
    np.testing.assert_array_equal(starts[~found], x[~found])
    np.random.seed(0)
    targeted, tfound = art_attacks.random_starts(clf, x, (y + 1) % 10, True, 20, 16)
    assert np.all(np.argmax(clf.predict(targeted), axis=1)[tfound] == ((y + 1) % 10)[tfound])


def test_square_linf_is_arts_algorithm_with_one_forward_pass_per_iteration():
    """Byte for byte ART 1.20.1's L∞ SquareAttack on a model whose rows do not depend on the batch,
    while predicting far fewer images (ART predicts every image, the robust ones, then the candidates)."""
    from art.attacks.evasion import SquareAttack
    from art.estimators.classification.blackbox import BlackBoxClassifierNeuralNetwork

    rng = np.random.default_rng(0)
    weights = rng.normal(size=(64, 10))
    rows = []

    def predict(images):  # a linear model, reduced per row in a fixed order
        rows.append(len(images))
        return (images.reshape(len(images), 64, 1).astype(np.float64) * weights).sum(axis=1).astype(np.float32)

    clf = BlackBoxClassifierNeuralNetwork(predict, input_shape=(8, 8, 1), nb_classes=10, channels_first=False,
                                          clip_values=(0.0, 1.0))
    x = rng.random((40, 8, 8, 1), dtype=np.float32)
    labels = predict(x).argmax(1)
    out, counted = {}, {}
    for name, cls in (("art", SquareAttack), ("annt", art_attacks.square_class())):
        attack = cls(clf, norm=np.inf, eps=0.05, max_iter=60, nb_restarts=2, p_init=0.3, verbose=False)
        rows.clear()
        np.random.seed(11)
        out[name], counted[name] = attack.generate(x, y=np.eye(10)[labels]), sum(rows)
    assert out["annt"].tobytes() == out["art"].tobytes()
    fooled = predict(out["annt"]).argmax(1) != labels
    assert 0 < fooled.sum() < len(x)  # some images broken, some not: both branches of the acceptance ran
    assert counted["annt"] < 0.45 * counted["art"]
