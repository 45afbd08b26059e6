"""The batched Boundary walk (annt.attacks.boundary_batched) against ART's BoundaryAttack on tiny models."""
import numpy as np
import pytest

from annt.attacks.art_attacks import random_starts
from annt.attacks.boundary_batched import boundary
from annt.attacks.estimator import make_classifier
from annt.attacks.registry import validate_attack_params
from annt.attacks.runner import attack, batch_seed, generate
from annt.errors import ConfigError
from test_cw_graph import _Quantize, _l2, _synthetic, _train


@pytest.fixture(scope="module")
def models():
    return {"float": _train(), "quantized": _train(act=_Quantize())}


@pytest.fixture(scope="module")
def data():
    return _synthetic(40, seed=1)


def _counted(clf):
    """The estimator with ``predict`` counting the images it classifies (ART's walk queries only predict)."""
    real, rows = clf.predict, [0]

    def predict(x, *args, **kwargs):
        rows[0] += len(x)
        return real(x, *args, **kwargs)

    clf.predict = predict
    return rows


@pytest.mark.parametrize("kind", ["float", "quantized"])
def test_walk_agrees_with_art_at_equal_iterations(models, data, kind):
    """Same starts (seeded), same iterations: same success, mean L2 within 5%, and as many model queries
    per iteration (the trials and step-size adaptation behave as ART's)."""
    x, y = data
    params = {"max_iter": 10}
    clf = make_classifier(models[kind])
    rows = _counted(clf)
    art = generate(clf, x, y, "boundary", params={**params, "implementation": "art"}, seed=0)
    art_rows, rows[0] = rows[0], 0
    graph = generate(clf, x, y, "boundary", params=params, seed=0)
    outside = rows[0]  # starts and predictions: the same calls in both
    np.testing.assert_array_equal(graph.evaded, art.evaded)
    assert graph.evaded.all()
    assert _l2(x, graph.x_adv).mean() == pytest.approx(_l2(x, art.x_adv).mean(), rel=0.05)

    clean = clf.predict(x).argmax(1)
    np.random.seed(0)
    start, found = random_starts(clf, x, clean, False, 100, len(x))
    _, stats = boundary(clf, x, start, found, clean, max_iter=10, seed=0)
    per_iteration = {"graph": stats["forward_rows"], "art": art_rows - outside}
    assert per_iteration["graph"] == pytest.approx(per_iteration["art"], rel=0.15), per_iteration


def test_every_walk_stays_adversarial_and_gets_closer(models, data):
    x, y = data
    clf = make_classifier(models["float"])
    clean = clf.predict(x).argmax(1)
    np.random.seed(0)
    start, found = random_starts(clf, x, clean, False, 100, len(x))
    x_adv, _ = boundary(clf, x, start, found, clean, max_iter=10, seed=1)
    assert found.all() and x_adv.dtype == np.float32 and x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert np.all(clf.predict(x_adv).argmax(1) != clean)
    assert np.all(_l2(x, x_adv) < _l2(x, start)) and _l2(x, x_adv).mean() < 0.6 * _l2(x, start).mean()


def test_samples_not_walking_come_back_as_their_start(models, data):
    x, y = data
    clf = make_classifier(models["float"])
    clean = clf.predict(x).argmax(1)
    np.random.seed(0)
    start, found = random_starts(clf, x, clean, False, 100, len(x))
    walking = np.arange(len(x)) % 2 == 0
    x_adv, _ = boundary(clf, x, start, walking, clean, max_iter=3, seed=1)
    np.testing.assert_array_equal(x_adv[~walking], start[~walking])
    assert np.all(x_adv[walking] != start[walking])


def test_targeted_walk_ends_on_the_target_or_returns_x_without_a_start(models, data):
    """init_size 1: most samples draw no start of the target class and are returned unchanged."""
    x, y = data
    out = generate(models["float"], x, y, "boundary", params={"max_iter": 5, "init_size": 1}, targeted=True, seed=2)
    on_target = out.adv_pred == out.target
    unchanged = np.all(out.x_adv == x, axis=(1, 2, 3))
    assert np.all(on_target | unchanged) and on_target.sum() >= 1 and unchanged.sum() >= 10
    np.testing.assert_array_equal(out.success, on_target)


def test_same_seed_same_bytes_and_a_batch_recomputed_alone(models, data):
    x, y = data
    params = {"max_iter": 4}
    a = generate(models["quantized"], x, y, "boundary", params=params, seed=5)
    b = generate(models["quantized"], x, y, "boundary", params=params, seed=5)
    c = generate(models["quantized"], x, y, "boundary", params=params, seed=6)
    assert a.x_adv.tobytes() == b.x_adv.tobytes() and a.x_adv.tobytes() != c.x_adv.tobytes()
    whole = attack(models["quantized"], x, y, "boundary", batch_size=16, seed=0, **params)
    second = generate(models["quantized"], x[16:32], y[16:32], "boundary", params=params, seed=batch_seed(0, 0, 1))
    assert second.x_adv.tobytes() == whole.x_adv[16:32].tobytes()


def test_bad_params_are_one_line():
    for params, message in (({"implementation": "batched"}, "attack.params.implementation = 'batched': allowed: "
                                                             "graph, art"),
                            ({"step_adapt": 1.5}, "attack.params.step_adapt = 1.5: must be a number in (0, 1)")):
        with pytest.raises(ConfigError) as err:
            validate_attack_params("boundary", params)
        assert str(err.value).startswith(message) and "\n" not in str(err.value)
