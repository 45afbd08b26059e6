"""cw_l2 in the graph (annt.attacks.cw_graph) pinned against ART 1.20.1's CarliniL2Method on tiny models."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from art.attacks.evasion import CarliniL2Method

from annt.attacks.cw_graph import carlini_l2
from annt.attacks.estimator import make_classifier
from annt.attacks.registry import validate_attack_params
from annt.attacks.runner import attack, batch_seed, generate
from annt.errors import ConfigError

# binary search from a small c: on the tiny float model 75% of untargeted and 18% of targeted attacks succeed
SETTINGS = {"confidence": 3.0, "learning_rate": 0.05, "binary_search_steps": 4, "max_iter": 10, "initial_const": 0.01}
# the 4-level model needs a larger c to be broken at all
QUANTIZED = {"confidence": 2.0, "learning_rate": 0.1, "binary_search_steps": 5, "max_iter": 10, "initial_const": 0.03}


def _synthetic(n, seed):
    """10 random 8x8 prototypes, each sample = 0.35 * prototype + 0.65 * uniform noise."""
    protos = np.random.default_rng(0).random((10, 8, 8, 1), dtype=np.float32)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    return (0.35 * protos[y] + 0.65 * rng.random((n, 8, 8, 1))).astype(np.float32), y


class _Quantize(keras.layers.Layer):
    """4-level activation round(3 clip(h, 0, 1)) / 3, straight-through gradient (DoReFa's)."""

    def call(self, h):
        a = tf.clip_by_value(h, 0.0, 1.0)
        return a + tf.stop_gradient(tf.round(3 * a) / 3 - a)


class _RoundInput(keras.layers.Layer):
    """Input discretisation to 8 levels with its true (zero) gradient, declared for BPDA."""

    annt_bpda = True

    def call(self, x):
        return tf.round(7 * x) / 7


def _train(*front, act=None):
    keras.utils.set_random_seed(0)
    x, y = _synthetic(2000, seed=0)
    model = keras.Sequential([keras.Input((8, 8, 1)), *front, keras.layers.Conv2D(8, 3),
                              act or keras.layers.ReLU(), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=64, epochs=3, verbose=0)
    return model


@pytest.fixture(scope="module")
def float_model():
    return _train()


@pytest.fixture(scope="module")
def quantized_model():
    return _train(act=_Quantize())


@pytest.fixture(scope="module")
def data():
    return _synthetic(40, seed=1)


def _l2(x, x_adv):
    return np.sqrt(((x_adv - x) ** 2).reshape(len(x), -1).sum(axis=1))


def _both(model, x, y, targeted=False, **settings):
    """(graph x_adv, ART x_adv, classifier) on the same estimator, samples and settings."""
    clf = make_classifier(model)
    labels = (y + 1) % 10 if targeted else y
    onehot = np.eye(10, dtype=np.float32)[labels]
    graph, _ = carlini_l2(clf, x, onehot, targeted=targeted, **settings)
    art = CarliniL2Method(clf, targeted=targeted, batch_size=len(x), verbose=False, **settings).generate(x, onehot)
    return graph, art, clf


@pytest.mark.parametrize("targeted", [False, True])
def test_float_model_matches_art_sample_by_sample(float_model, data, targeted):
    """Same algorithm, same float model: each sample's outcome and distance equal ART's up to float rounding.
    (ART's own results move by a sample now and then with its batch size: a line-search try that meets the
    margin but not the loss is judged on float64 - float32 distances. One sample of 40 may differ.)"""
    x, y = data
    graph, art, clf = _both(float_model, x, y, targeted, **SETTINGS)
    wanted = (y + 1) % 10 if targeted else y
    hit_graph = (clf.predict(graph).argmax(1) == wanted) if targeted else (clf.predict(graph).argmax(1) != wanted)
    hit_art = (clf.predict(art).argmax(1) == wanted) if targeted else (clf.predict(art).argmax(1) != wanted)
    assert 0.1 < hit_art.mean() < 1.0  # settings where the binary search matters: some samples fail
    assert np.sum(hit_graph != hit_art) <= 1
    assert np.sum(~np.isclose(_l2(x, graph), _l2(x, art), rtol=1e-3, atol=1e-5)) <= 1
    failed = ~hit_art & ~hit_graph
    np.testing.assert_array_equal(graph[failed], x[failed])  # failures come back unchanged, as in ART


def test_quantized_model_agrees_with_art_within_tolerance(quantized_model, data):
    """Rounding boundaries make float order matter: success within 2 samples of 40, mean L2 within 5%."""
    x, y = data
    graph, art, clf = _both(quantized_model, x, y, **QUANTIZED)
    hit_graph, hit_art = clf.predict(graph).argmax(1) != y, clf.predict(art).argmax(1) != y
    assert abs(int(hit_graph.sum()) - int(hit_art.sum())) <= 2 and hit_art.sum() >= 10
    assert _l2(x, graph)[hit_graph].mean() == pytest.approx(_l2(x, art)[hit_art].mean(), rel=0.05)
    assert np.mean(hit_graph == hit_art) >= 0.9


def test_binary_search_and_line_search_work_as_art_counts(float_model, data):
    """Every binary-search round runs max_iter gradient passes (no sample reaches c's upper bound);
    the line search forwards at least one try per sample and iteration."""
    x, y = data
    _, stats = carlini_l2(make_classifier(float_model), x, np.eye(10, dtype=np.float32)[y], **SETTINGS)
    iterations = SETTINGS["binary_search_steps"] * SETTINGS["max_iter"]
    assert stats["gradient_rows"] == iterations * len(x)
    assert iterations * len(x) < stats["forward_rows"] < 12 * iterations * len(x)


def test_generate_runs_the_graph_by_default_and_art_on_request(float_model, data):
    x, y = data
    params = {**SETTINGS, "max_iter": 5, "binary_search_steps": 3}
    out = generate(float_model, x, y, "cw_l2", params=params)
    art = generate(float_model, x, y, "cw_l2", params={**params, "implementation": "art"})
    assert out.params["implementation"] == "graph" and art.params["implementation"] == "art"
    direct = CarliniL2Method(make_classifier(float_model), batch_size=len(x), verbose=False, **params).generate(
        x, np.eye(10, dtype=np.float32)[y])
    assert art.x_adv.tobytes() == direct.tobytes()  # implementation: art is ART's class, untouched
    assert out.x_adv.min() >= 0.0 and out.x_adv.max() <= 1.0 and out.x_adv.dtype == np.float32
    np.testing.assert_array_equal(out.evaded, art.evaded)


def test_same_input_gives_byte_identical_output_and_batches_resume(quantized_model, data):
    x, y = data
    params = {**SETTINGS, "max_iter": 5, "binary_search_steps": 3}
    a = generate(quantized_model, x, y, "cw_l2", params=params, seed=3)
    b = generate(quantized_model, x, y, "cw_l2", params=params, seed=3)
    assert a.x_adv.tobytes() == b.x_adv.tobytes()
    # resume recomputes an unfinished batch alone, with its batch seed: the same bytes as the uninterrupted run
    whole = attack(quantized_model, x, y, "cw_l2", batch_size=16, seed=0, **params)
    second = generate(quantized_model, x[16:32], y[16:32], "cw_l2", params=params, seed=batch_seed(0, 0, 1))
    assert second.x_adv.tobytes() == whole.x_adv[16:32].tobytes()


def test_bpda_option_reaches_the_graph():
    """A non-differentiable input layer declared annt_bpda: with bpda the graph's gradient passes through
    it and C&W succeeds; without, the gradient is zero, the line search never moves and nothing changes."""
    model = _train(_RoundInput())
    x, y = _synthetic(12, seed=2)
    params = {**SETTINGS, "max_iter": 10, "binary_search_steps": 3, "initial_const": 1.0}
    with_bpda = generate(model, x, y, "cw_l2", params=params)
    without = generate(model, x, y, "cw_l2", params={**params, "bpda": False})
    assert with_bpda.evaded.sum() >= 6
    np.testing.assert_array_equal(without.x_adv, x)


def test_eot_mean_of_identical_passes_and_the_stock_estimator_give_the_same_bytes(float_model, data):
    """EOT's loop runs (on a deterministic model its mean of two equal gradients is the gradient, exactly), and
    ART's stock estimator builds the same graph as annt's."""
    x, y = data
    onehot = np.eye(10, dtype=np.float32)[y]
    settings = {**SETTINGS, "max_iter": 4, "binary_search_steps": 2, "initial_const": 1.0}
    base, _ = carlini_l2(make_classifier(float_model), x, onehot, **settings)
    eot, _ = carlini_l2(make_classifier(float_model, eot_samples=2), x, onehot, **settings)
    stock, _ = carlini_l2(make_classifier(float_model, fast=False), x, onehot, **settings)
    assert eot.tobytes() == base.tobytes() and stock.tobytes() == base.tobytes()
    assert np.any(base != x, axis=(1, 2, 3)).sum() >= 10  # not vacuous: attacks succeeded


def test_bad_implementation_is_one_line():
    with pytest.raises(ConfigError) as err:
        validate_attack_params("cw_l2", {"implementation": "grpah"})
    assert str(err.value).startswith("attack.params.implementation = 'grpah': allowed: graph, art")
    assert "\n" not in str(err.value)


def test_graph_refuses_an_estimator_it_cannot_compile(data):
    from art.estimators.classification import SklearnClassifier
    from sklearn.linear_model import LogisticRegression

    x, y = data
    flat = x.reshape(len(x), -1)
    clf = SklearnClassifier(LogisticRegression(max_iter=50).fit(flat, y), clip_values=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"^the graph implementation needs a TensorFlowV2Classifier .*; use "
                                         r"implementation: art$"):
        carlini_l2(clf, flat, np.eye(10, dtype=np.float32)[y])


def test_uap_inner_carlini_gets_only_arts_parameters():
    p = validate_attack_params("uap", {"attacker": "carlini", "attacker_params": {"max_iter": 3}})
    assert "implementation" not in p["attacker_params"] and p["attacker_params"]["max_iter"] == 3
