"""FastTensorFlowV2Classifier computes what ART's stock TensorFlowV2Classifier computes."""
import keras
import numpy as np
import pytest
import tensorflow as tf
from art.estimators.classification import TensorFlowV2Classifier

from annt.attacks.estimator import FastTensorFlowV2Classifier, make_classifier

RTOL, ATOL = 1e-5, 1e-7


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    return keras.Sequential([
        keras.Input((10, 10, 1)),
        keras.layers.Conv2D(6, 3, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.5),  # must be inactive: gradients are taken in inference mode
        keras.layers.Dense(10),
    ])


@pytest.fixture(scope="module")
def pair(model):
    return make_classifier(model, fast=True), make_classifier(model, fast=False)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).random((5, 10, 10, 1), dtype=np.float32)


def test_make_classifier_configuration(pair, model):
    fast, stock = pair
    assert type(fast) is FastTensorFlowV2Classifier and type(stock) is TensorFlowV2Classifier
    for clf in pair:
        assert clf.input_shape == (10, 10, 1) and clf.nb_classes == 10
        np.testing.assert_array_equal(clf.clip_values, [0.0, 1.0])
        assert clf.loss_object.get_config()["from_logits"] is True


def test_predict_equals_stock(pair, x):
    fast, stock = pair
    np.testing.assert_allclose(fast.predict(x, batch_size=2), stock.predict(x), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("label", [None, 3, np.int64(7), np.array([0, 9, 3, 3, 1]), [2, 2, 2, 2, 2]],
                         ids=["all", "int", "np-int", "array", "list"])
def test_class_gradient_equals_stock(pair, x, label):
    fast, stock = pair
    got = fast.class_gradient(x, label=label)
    # ART's stock code takes only Python ints down its int branch; an np.int64 is the same request
    want = stock.class_gradient(x, label=int(label) if isinstance(label, np.integer) else label)
    assert got.shape == want.shape == ((5, 10, 10, 10, 1) if label is None else (5, 1, 10, 10, 1))
    assert got.dtype == np.float32
    assert np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_class_gradient_per_sample_labels_pick_rows_of_all_class_gradient(pair, x):
    fast, _ = pair
    labels = np.array([4, 0, 9, 4, 2])
    full = fast.class_gradient(x)
    np.testing.assert_allclose(fast.class_gradient(x, label=labels)[:, 0], full[np.arange(5), labels],
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("onehot", [True, False], ids=["one-hot", "index"])
def test_loss_gradient_equals_stock(pair, x, onehot):
    fast, stock = pair
    idx = np.array([1, 2, 3, 4, 5])
    y = np.eye(10, dtype=np.float32)[idx]
    got = fast.loss_gradient(x, y if onehot else idx)
    want = stock.loss_gradient(x, y)
    assert got.shape == x.shape and np.abs(want).max() > 0
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_loss_is_summed_so_sample_gradients_do_not_depend_on_batch(pair, x):
    fast, _ = pair
    y = np.eye(10, dtype=np.float32)[[1, 2, 3, 4, 5]]
    np.testing.assert_allclose(fast.loss_gradient(x[:1], y[:1]), fast.loss_gradient(x, y)[:1], rtol=RTOL, atol=ATOL)


def test_standardisation_preprocessing_is_differentiated(model, x):
    """With (x - 0.5) / 0.25 preprocessing, gradients w.r.t. x carry the 1/0.25 factor, as ART's do."""
    kw = dict(nb_classes=10, input_shape=(10, 10, 1), clip_values=(0, 1), preprocessing=(0.5, 0.25),
              loss_object=keras.losses.CategoricalCrossentropy(from_logits=True))
    fast, stock = FastTensorFlowV2Classifier(model, **kw), TensorFlowV2Classifier(model, **kw)
    np.testing.assert_allclose(fast.predict(x), stock.predict(x), rtol=RTOL, atol=ATOL)
    labels = np.array([0, 1, 2, 3, 4])
    np.testing.assert_allclose(fast.class_gradient(x, label=labels), stock.class_gradient(x, label=labels),
                               rtol=RTOL, atol=ATOL)
    y = np.eye(10, dtype=np.float32)[labels]
    np.testing.assert_allclose(fast.loss_gradient(x, y), stock.loss_gradient(x, y), rtol=RTOL, atol=ATOL)
    identity = make_classifier(model)
    np.testing.assert_allclose(fast.class_gradient(x, label=2),
                               identity.class_gradient((x - 0.5) / 0.25, label=2) / 0.25,
                               rtol=RTOL, atol=ATOL)


def test_one_graph_serves_every_batch_size(model, x):
    fast = make_classifier(model)
    grads = [fast.class_gradient(x[:n], label=np.zeros(n, int)) for n in (1, 2, 5)]
    assert [g.shape[0] for g in grads] == [1, 2, 5]
    fn = fast._compiled("selected_class_gradient", False)
    assert isinstance(fn, tf.types.experimental.ConcreteFunction)
    assert fn.structured_input_signature[0][0].shape.as_list() == [None, 10, 10, 1]


def test_bad_labels_raise(pair, x):
    fast, _ = pair
    with pytest.raises(ValueError):
        fast.class_gradient(x, label=10)
    with pytest.raises(ValueError):
        fast.class_gradient(x, label=[1, 2])


# ----------------------------------------------------------------------------- gradient options
def test_default_gradient_options_change_nothing(model):
    from annt.attacks.estimator import GradientOptions

    clf = make_classifier(model)
    assert clf.gradient_options == GradientOptions(temperature=None, eot_samples=1, bpda=True)
    assert clf.with_gradient_options() is clf and clf.with_gradient_options(bpda=True) is clf
    assert clf.bpda_layers == [] and clf.stochastic_layers == []


def test_with_gradient_options_derives_one_cached_estimator_per_option_set(model, x):
    base = make_classifier(model)
    hot = base.with_gradient_options(temperature=2)
    assert hot is base.with_gradient_options(temperature=2.0)  # cached: graphs traced once per option set
    assert hot is not base.with_gradient_options(temperature=2.0, eot_samples=2)
    assert hot._model is base._model and hot.gradient_options.temperature == 2.0
    assert base.gradient_options.temperature is None  # the base is untouched
    np.testing.assert_array_equal(hot.predict(x), base.predict(x))
    y = np.eye(10, dtype=np.float32)[[1, 2, 3, 4, 5]]
    assert not np.allclose(hot.loss_gradient(x, y), base.loss_gradient(x, y))


def test_runner_caches_one_estimator_per_model_and_option_set(model):
    from annt.attacks import runner

    njs = {"temperature": "njs", "eot_samples": 1, "bpda": True}
    plain = {"temperature": None, "eot_samples": 1, "bpda": True}
    first = runner._as_classifier(model, 10, njs)
    assert runner._as_classifier(model, 10, dict(njs)) is first
    assert runner._as_classifier(model, 10, plain) is runner._as_classifier(model, 10) is not first
    assert first.gradient_options.temperature == "njs"


def test_gradient_options_need_annts_estimator(model):
    from annt.attacks import runner

    with pytest.raises(ValueError, match="need fast=True"):
        make_classifier(model, fast=False, temperature=2.0)
    stock = make_classifier(model, fast=False)
    assert runner._as_classifier(stock, 10, {"temperature": None, "eot_samples": 1, "bpda": True}) is stock
    with pytest.raises(ValueError, match="need annt's estimator"):
        runner._as_classifier(stock, 10, {"temperature": None, "eot_samples": 4, "bpda": True})


@pytest.mark.parametrize("options", [{"temperature": 0}, {"temperature": -1.0}, {"temperature": "nsj"},
                                     {"temperature": True}, {"temperature": float("inf")}, {"eot_samples": 0},
                                     {"eot_samples": 2.5}])
def test_bad_gradient_options_raise(model, options):
    with pytest.raises(ValueError):
        make_classifier(model, **options)
