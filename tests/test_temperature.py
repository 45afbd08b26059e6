"""Temperature-scaled attacks (paper 000): NJS and HNS temperatures on hand-made models with known answers,
the temperature-scaled loss gradient, pgd++/fgsm++ and the temperature option's validation."""
import math
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from annt import cli
from annt.attacks import temperature as temp
from annt.attacks.estimator import make_classifier
from annt.attacks.registry import ATTACKS, GRADIENT_OPTIONS, paper_params, validate_attack_params
from annt.attacks.runner import generate
from annt.errors import ConfigError


def linear_model(kernel: np.ndarray, bias: np.ndarray, shape=None) -> keras.Model:
    """f(x) = flatten(x) @ kernel + bias: its Jacobian is kernel.T everywhere."""
    n, d = kernel.shape
    shape = shape or (n,)
    model = keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(d)])
    model.layers[-1].set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return model


def softmax(a):
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def scaled_ce_gradient(kernel, bias, x, beta, y):
    """Hand-computed d CE(softmax(beta * (x @ K + b)), y) / dx = beta * K (p - onehot(y)), per sample."""
    a = x.reshape(len(x), -1).astype(np.float64) @ kernel + bias
    p = softmax(beta[:, None] * a)
    return (beta[:, None] * (p - np.eye(kernel.shape[1])[y])) @ kernel.T


@pytest.fixture(scope="module")
def linear10():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(16, 10)) * 3.0
    bias = rng.normal(size=10)
    x = rng.random((8, 4, 4, 1), dtype=np.float32)
    return kernel, bias, x, linear_model(kernel, bias, (4, 4, 1))


# ----------------------------------------------------------------------------- NJS: beta_1
def test_njs_beta1_on_a_linear_model_is_the_inverse_mean_singular_value_of_its_weights(linear10):
    kernel, bias, x, model = linear10
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    clf = make_classifier(model, temperature="njs").calibrate(x, y)
    want = 1.0 / np.mean(np.linalg.svd(kernel, compute_uv=False))
    assert clf.calibration["rule"] == "njs"
    assert clf.calibration["beta1"] == pytest.approx(want, rel=1e-5)


def test_njs_beta1_averages_over_the_correctly_classified_samples_only():
    rng = np.random.default_rng(1)
    jac = rng.normal(size=(4, 10, 30)) * np.array([1.0, 10.0, 100.0, 1000.0])[:, None, None]
    sv = np.linalg.svd(jac, compute_uv=False)  # (4, 10)
    correct = np.array([True, True, False, True])
    assert float(temp.njs_beta1(jac, correct)) == pytest.approx(3 * 10 / sv[correct].sum(), rel=1e-6)
    assert float(temp.njs_beta1(jac, np.zeros(4, bool))) == pytest.approx(4 * 10 / sv.sum(), rel=1e-6)  # none: all
    assert float(temp.njs_beta1(np.zeros((2, 10, 30)))) == 1.0  # a masked (all-zero) Jacobian cannot be rescaled


def test_calibrate_uses_the_gradient_graph_jacobians_of_the_correct_samples():
    """A ReLU net has a different Jacobian per sample; samples given a wrong label are left out."""
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(20, activation="relu"), keras.layers.Dense(10)])
    x = np.random.default_rng(3).random((10, 12), dtype=np.float32)
    pred = np.argmax(model.predict(x, verbose=0), axis=1)
    y = pred.copy()
    y[::2] = (pred[::2] + 1) % 10  # every other sample misclassified
    clf = make_classifier(model, temperature="njs")
    jac = clf.class_gradient(x)  # (10, 10, 12)
    sv = np.linalg.svd(jac.astype(np.float64), compute_uv=False)
    assert clf.calibrate(x, y).calibration["beta1"] == pytest.approx(1 / sv[1::2].mean(), rel=1e-5)
    assert sv[1::2].mean() != pytest.approx(sv.mean(), rel=1e-3)  # the selection matters here


# ----------------------------------------------------------------------------- NJS: beta_2 (Proposition 1)
RHO = temp.RHO


def test_proposition1_beta2_brings_a_saturated_softmax_back_to_an_error_signal_of_rho():
    rng = np.random.default_rng(2)
    s = rng.normal(size=(200, 10)) * 8.0
    k = np.argmax(s, axis=1)
    s[np.arange(100), k[:100]] += 30.0  # half of them saturated: 1 - p_k <= rho
    p = softmax(s)
    saturated = 1 - p[np.arange(200), k] <= RHO
    assert saturated[:100].all() and not saturated.all()
    beta2 = temp.njs_beta2(tf.constant(s, tf.float32), tf.constant(k)).numpy()
    gamma = s.max(axis=1) - s.min(axis=1)
    bound = -math.log(RHO / (9 * (1 - RHO)))
    np.testing.assert_allclose(beta2[saturated], bound / gamma[saturated], rtol=1e-5)
    np.testing.assert_array_equal(beta2[~saturated], 1.0)
    scaled = softmax(beta2[:, None].astype(np.float64) * s)
    err = 1 - scaled[np.arange(200), k]
    assert (err[saturated] >= RHO * (1 - 1e-4)).all()  # Proposition 1: at least rho once scaled
    assert (err[saturated] < 0.5).all()  # still the same top class


def test_proposition1_bound_is_tight_when_every_other_logit_is_the_minimum():
    s = np.array([[12.0] + [-3.0] * 9, [40.0, -60.0, -60.0, -60.0, -60.0, -60.0, -60.0, -60.0, -60.0, -60.0]])
    k = np.array([0, 0])
    beta2 = temp.njs_beta2(tf.constant(s, tf.float32), tf.constant(k)).numpy()
    p = softmax(beta2[:, None].astype(np.float64) * s)
    np.testing.assert_allclose(1 - p[:, 0], RHO, rtol=1e-5)


def test_hns_grid_bounds_are_proposition1_at_the_papers_rhos():
    lo, hi = temp.hns_grid_bounds(10)
    assert lo == pytest.approx(0.1065, abs=5e-5) and hi == pytest.approx(167.98, abs=5e-3)  # the paper's constants
    for d in (2, 3, 100):
        r_hi, r_lo = 1 - 1 / d - 0.01, 1e-72
        want = (-np.log(r_hi / ((d - 1) * (1 - r_hi))), -np.log(r_lo / ((d - 1) * (1 - r_lo))))
        np.testing.assert_allclose(temp.hns_grid_bounds(d), want, rtol=1e-12)
    with pytest.raises(ValueError):
        temp.proposition1_scale(0.95, 10)


# ----------------------------------------------------------------------------- HNS
def hns_by_hand(kernel, bias, x):
    """argmax over the paper's grid of the Frobenius norm of the loss Hessian beta^2 J^T H J (N x N)."""
    d = kernel.shape[1]
    j = kernel.T.astype(np.float64)  # (d, N)
    out = []
    for a in x.reshape(len(x), -1).astype(np.float64) @ kernel + bias:
        top = np.sort(a)[::-1]
        gamma = top[0] - top[1]
        lo, hi = (-np.log(r / ((d - 1) * (1 - r))) for r in (1 - 1 / d - 0.01, 1e-72))
        grid = np.linspace(lo, hi, 100) / gamma
        norms = []
        for beta in grid:
            p = softmax(beta * a)
            hessian = beta**2 * j.T @ (np.diag(p) - np.outer(p, p)) @ j
            norms.append(np.linalg.norm(hessian, "fro"))
        out.append(grid[int(np.argmax(norms))])
    return np.array(out), grid


@pytest.fixture(scope="module")
def linear3():
    kernel = np.array([[1.0, -0.5, 0.2], [0.3, 0.8, -1.0], [-0.7, 0.1, 0.9], [0.5, 0.5, -0.4]])
    bias = np.array([0.1, -0.2, 0.05])
    x = np.random.default_rng(4).random((6, 4), dtype=np.float32)
    return kernel, bias, x, linear_model(kernel, bias)


def test_hns_returns_the_grid_maximiser_computed_by_hand(linear3):
    kernel, bias, x, model = linear3
    want, _ = hns_by_hand(kernel, bias, x)
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    got = make_classifier(model, nb_classes=3, temperature="hns").calibrate(x, y).calibration["beta"]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    a = x.astype(np.float64) @ kernel + bias
    gamma = np.sort(a)[:, -1] - np.sort(a)[:, -2]
    lo, hi = temp.hns_grid_bounds(3)
    assert ((got > lo / gamma * 1.01) & (got < hi / gamma * 0.99)).all()  # interior maxima: the search matters


def test_hns_cheap_form_equals_the_hessian_frobenius_norm():
    rng = np.random.default_rng(5)
    a, j, betas = rng.normal(size=(3, 10)), rng.normal(size=(3, 10, 50)), rng.random((3, 7)) * 4
    got = temp.hns_objective(a, np.einsum("bdn,ben->bde", j, j), betas).numpy()
    for b in range(3):
        for i, beta in enumerate(betas[b]):
            p = softmax(beta * a[b])
            want = np.linalg.norm(beta**2 * j[b].T @ (np.diag(p) - np.outer(p, p)) @ j[b], "fro")
            assert got[b, i] == pytest.approx(want, rel=1e-9)


def test_hns_tie_between_the_two_top_logits_gives_beta_one():
    beta = temp.hns_beta(np.array([[2.0, 2.0, -1.0]]), np.ones((1, 3, 4))).numpy()
    assert beta.tolist() == [1.0]


# ----------------------------------------------------------------------------- the scaled loss
@pytest.mark.parametrize("temperature", [None, 0.25, 3.0, "njs", "hns"])
def test_predictions_and_class_gradients_never_change_with_the_temperature(linear10, temperature):
    _, _, x, model = linear10
    base = make_classifier(model)
    clf = base.with_gradient_options(temperature=temperature)
    y = np.argmax(base.predict(x), axis=1)
    clf.calibrate(x, y)
    np.testing.assert_array_equal(clf.predict(x), base.predict(x))
    np.testing.assert_array_equal(clf.class_gradient(x), base.class_gradient(x))
    np.testing.assert_array_equal(clf.class_gradient(x, label=y), base.class_gradient(x, label=y))


def test_fixed_temperature_gradient_is_the_scaled_cross_entropy_gradient(linear10):
    kernel, bias, x, model = linear10
    y = np.arange(len(x)) % 10
    for beta in (0.05, 1.0, 7.0):
        got = make_classifier(model, temperature=beta).loss_gradient(x, np.eye(10)[y])
        want = scaled_ce_gradient(kernel, bias, x, np.full(len(x), beta), y)
        np.testing.assert_allclose(got.reshape(len(x), -1), want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(make_classifier(model, temperature=1.0).loss_gradient(x, y),
                               make_classifier(model).loss_gradient(x, y), rtol=1e-6)


def test_njs_gradient_uses_beta1_and_proposition1s_beta2_where_the_softmax_saturates():
    rng = np.random.default_rng(6)
    kernel, bias = rng.normal(size=(16, 10)) * 0.8, np.zeros(10)
    x = rng.random((40, 16), dtype=np.float32)
    model = linear_model(kernel, bias)
    y = np.argmax(x @ kernel, axis=1)
    clf = make_classifier(model, temperature="njs").calibrate(x, y)
    beta1 = 1 / np.mean(np.linalg.svd(kernel, compute_uv=False))
    assert clf.calibration["beta1"] == pytest.approx(beta1, rel=1e-5)
    # beta_1 of a linear model does not depend on x; iterates 30 times larger saturate the softmax
    x = (x * np.where(np.arange(40) % 2, 30.0, 1.0)[:, None]).astype(np.float32)
    s = beta1 * (x.astype(np.float64) @ kernel)
    saturated = 1 - softmax(s)[np.arange(40), y] <= RHO
    assert 5 < saturated.sum() < 35  # both branches of Algorithm 1 are exercised
    beta2 = np.where(saturated, -np.log(RHO / (9 * (1 - RHO))) / (s.max(1) - s.min(1)), 1.0)
    got = clf.loss_gradient(x, np.eye(10)[y])
    np.testing.assert_allclose(got, scaled_ce_gradient(kernel, bias, x, beta1 * beta2, y), rtol=1e-4, atol=1e-7)
    unscaled = scaled_ce_gradient(kernel, bias, x, np.full(40, beta1), y)
    assert not np.allclose(got[saturated], unscaled[saturated], rtol=1e-2)  # beta_2 changed those gradients


def test_hns_gradient_keeps_each_clean_images_beta_for_iterates_subsets_and_any_order(linear3):
    kernel, bias, x, model = linear3
    y = np.argmax(x @ kernel + bias, axis=1)
    beta, _ = hns_by_hand(kernel, bias, x)
    clf = make_classifier(model, nb_classes=3, temperature="hns").calibrate(x, y)
    order = np.array([4, 1, 5])  # a subset, shuffled, perturbed within 0.05 (as APGD passes it)
    x_iter = np.clip(x[order] + np.random.default_rng(7).uniform(-0.05, 0.05, (3, 4)), 0, 1).astype(np.float32)
    np.testing.assert_allclose(clf.temperatures(x_iter), beta[order], rtol=1e-5)
    got = clf.loss_gradient(x_iter, np.eye(3)[y[order]])
    np.testing.assert_allclose(got, scaled_ce_gradient(kernel, bias, x_iter, beta[order], y[order]), rtol=1e-4, atol=1e-7)


def test_loss_gradient_calibrates_on_its_first_call_when_not_calibrated(linear10):
    _, _, x, model = linear10
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    lazy = make_classifier(model, temperature="njs")
    assert lazy.calibration is None
    got = lazy.loss_gradient(x, np.eye(10)[y])
    explicit = make_classifier(model, temperature="njs").calibrate(x, y)
    assert lazy.calibration["beta1"] == explicit.calibration["beta1"]
    np.testing.assert_array_equal(got, explicit.loss_gradient(x, np.eye(10)[y]))


# ----------------------------------------------------------------------------- pgd++ / fgsm++
def test_plus_plus_entries_are_pgd_and_fgsm_with_the_njs_temperature():
    for base in ("fgsm", "pgd"):
        plus = validate_attack_params(base + "++", None)
        assert plus == {**validate_attack_params(base, None), "temperature": "njs"}
        assert ATTACKS[base + "++"].art_class == ATTACKS[base].art_class
        assert validate_attack_params(base + "++", {"temperature": "hns"})["temperature"] == "hns"
    pgd = paper_params("pgd++", "cifar10")
    assert (pgd["eps"], pgd["eps_step"], pgd["max_iter"], pgd["restarts"], pgd["random_start"], pgd["norm"]) == \
        (8 / 255, 2 / 255, 20, 1, True, "inf")
    assert paper_params("fgsm++", "cifar10")["eps"] == 8 / 255


def test_fgsm_plus_plus_breaks_a_saturated_model_where_fgsm_sees_zero_gradients():
    """Logits 1e4 times too large: the float32 softmax is one-hot, the CE gradient exactly 0 (gradient
    masking), so FGSM cannot move; FGSM++'s NJS temperature restores the gradient."""
    rng = np.random.default_rng(8)
    kernel = rng.normal(size=(16, 10))
    x = rng.random((400, 16), dtype=np.float32)
    logits = x @ kernel
    top = np.sort(logits, axis=1)
    keep = (top[:, -1] - top[:, -2]) > 0.1  # scaled gaps > 1000: exactly one-hot in float32
    x, y = x[keep][:60], np.argmax(logits[keep][:60], axis=1)
    model = linear_model(kernel * 1e4, np.zeros(10))
    assert (make_classifier(model).loss_gradient(x, y) == 0).all()
    plain = generate(model, x, y, "fgsm", params={"eps": 0.1})
    np.testing.assert_array_equal(plain.x_adv, x)
    assert not plain.evaded.any()
    plus = generate(model, x, y, "fgsm++", params={"eps": 0.1})
    assert plus.params["temperature"] == "njs"
    assert plus.evaded.mean() > 0.3
    assert np.abs(plus.x_adv - x).max() <= 0.1 + 1e-6


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("params, message", [
    ({"temperature": "nsj"}, "attack.params.temperature = 'nsj': allowed: null, a number > 0, njs or hns (did you mean 'njs'?)"),
    ({"temperature": -2}, "attack.params.temperature = -2: allowed: null, a number > 0, njs or hns"),
    ({"temperature": 0}, "attack.params.temperature = 0: allowed: null, a number > 0, njs or hns"),
    ({"temperature": True}, "attack.params.temperature = true: allowed: null, a number > 0, njs or hns"),
    ({"eot_samples": 0}, "attack.params.eot_samples = 0: must be an integer in [1, inf)"),
    ({"bpda": "yes"}, "attack.params.bpda = 'yes': must be true or false"),
])
def test_gradient_options_are_validated_in_one_line(params, message):
    with pytest.raises(ConfigError) as err:
        validate_attack_params("pgd", params)
    assert str(err.value) == message


def test_gradient_options_are_common_to_every_white_box_attack_and_refused_by_gradient_free_ones():
    for name, spec in ATTACKS.items():
        if spec.gradients:
            resolved = validate_attack_params(name, {"temperature": 2, "eot_samples": 3, "bpda": False,
                                                     **({"eps": 0.1} if name == "ensemble" else {})})
            assert {k: resolved[k] for k in GRADIENT_OPTIONS} == {"temperature": 2.0, "eot_samples": 3, "bpda": False}
            assert not set(GRADIENT_OPTIONS) & set(spec.params)  # defined once, not per attack
        else:
            for key, value in (("temperature", "njs"), ("eot_samples", 4), ("bpda", False)):
                with pytest.raises(ConfigError) as err:
                    validate_attack_params(name, {key: value})
                assert str(err.value) == (f"attack.params.{key} = {value!r}".replace("False", "false") +
                                          f": {name} is gradient-free; {key} applies only to attacks that use gradients")


def test_configuration_page_lists_the_gradient_options_once():
    from annt.docs import configuration_page

    page = configuration_page()
    for key in GRADIENT_OPTIONS:
        assert page.count(f"| `{key}` |") == 1, key
    assert "`pgd++`" in page and "`temperature` defaults to `njs`" in page


CONFIG = """
task: attack
name: t
output_dir: out
data: {dataset: mnist, split: test, source: sample}
model: {arch: mnist_a, bits: 4, checkpoint: models/mnist_a-4bit}
attack: {name: fgsm, params: {eps: 0.1}, samples: 5}
"""


@pytest.mark.parametrize("overrides, line", [
    (["attack.name=boundary", "attack.params={temperature: njs}"],
     "attack.params.temperature = 'njs': boundary is gradient-free; temperature applies only to attacks "
     "that use gradients"),
    (["attack.params={eps: 0.1, eot_samples: 0}"], "attack.params.eot_samples = 0: must be an integer in [1, inf)"),
    (["attack.params={temperature: -1}"], "attack.params.temperature = -1: allowed: null, a number > 0, njs or hns"),
    (["attack.params={temperature: 0}"], "attack.params.temperature = 0: allowed: null, a number > 0, njs or hns"),
    (["attack.name=pgd++", "attack.params={temperature: hsn}"],
     "attack.params.temperature = 'hsn': allowed: null, a number > 0, njs or hns (did you mean 'hns'?)"),
])
def test_bad_gradient_options_exit_2_with_one_line_and_no_run_folder(tmp_path, fake_model_dir, capsys, overrides, line):
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(CONFIG))
    rc = cli.main([str(path), *sum((["--set", o] for o in overrides), [])])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err == [f"annt: error: {path}: {line}"]
    assert not (tmp_path / "out").exists()
