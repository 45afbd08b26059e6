"""ART estimator for annt's Keras models, with compiled gradients.

ART's stock :class:`~art.estimators.classification.TensorFlowV2Classifier` computes
``class_gradient`` and ``loss_gradient`` eagerly: every call re-runs the Keras model op by op
in Python and, for ``label=None``, runs one forward pass per class. Iterative attacks call these
methods thousands of times on small batches (C&W-L2 once per step and sample, JSMA once per
pixel pair), so that overhead dominates. :class:`FastTensorFlowV2Classifier` computes the same
quantities inside ``tf.function`` graphs traced once per input signature (batch dimension
``None``, so a ragged last batch does not retrace).

Quantities (``f(x)`` = logits of the model, ``P`` = the estimator's preprocessing, identity by
default; all on the [0, 1] pixel scale):

* ``class_gradient(x, label)[b, j] = d f(P(x_b))[c_j] / d x_b`` where ``c`` is every class
  (``label=None``, shape ``(B, nb_classes, *input_shape)``) or the given class, one for all
  samples (``int``) or one per sample (array), shape ``(B, 1, *input_shape)``.
* ``loss_gradient(x, y)[b] = d L(y, f(P(x))) / d x_b`` with ``L`` the estimator's loss object.

``make_classifier`` builds the estimator annt uses everywhere: logits in, ``clip_values=(0, 1)``,
categorical cross-entropy on logits with ``reduction="sum"``.

Gradient options (:class:`GradientOptions`, the attack parameters of
:data:`annt.attacks.registry.GRADIENT_OPTIONS`; fixed per estimator, :meth:`~FastTensorFlowV2Classifier.with_gradient_options`
derives one with others that shares the model):

* ``temperature`` β: ``loss_gradient`` differentiates ``L(y, β·f(P(x)))`` (:mod:`annt.attacks.temperature`:
  a fixed number, or ``"njs"`` / ``"hns"``, calibrated per attacked batch by
  :meth:`~FastTensorFlowV2Classifier.calibrate`). ``predict`` and ``class_gradient`` are unchanged.
* ``eot_samples`` n: ``class_gradient`` and ``loss_gradient`` are the mean over n forward/backward
  passes, for models with stochastic layers (:mod:`annt.attacks.adaptive`). ``predict`` is one pass.
* ``bpda``: layers marked non-differentiable are the identity in every gradient graph; predictions
  are computed without that substitution, so they are identical either way.
"""
from __future__ import annotations

import contextlib
import math
import numbers
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import tensorflow as tf
from art.estimators.classification import TensorFlowV2Classifier
from art.utils import check_and_transform_label_format

from annt.attacks import temperature as temp
from annt.attacks.adaptive import NON_DIFFERENTIABLE, STOCHASTIC, identity_backward, marked_layers
from annt.attacks.registry import TEMPERATURE_RULES

__all__ = ["FastTensorFlowV2Classifier", "GradientOptions", "make_classifier"]

# graphs that differentiate the model: traced with BPDA's identity backward when bpda is on
_GRADIENT_KINDS = ("all_class_gradients", "selected_class_gradient", "loss_gradient", "scaled_loss_gradient")
_ZERO = tf.UnconnectedGradients.ZERO  # a masked (non-differentiable) path gives 0, not None
_NEAREST_CHUNK = 1 << 24  # elements of the (rows x anchors x pixels) difference tensor per call (64 MB)


@dataclass(frozen=True)
class GradientOptions:
    """How an estimator differentiates the model (see the module docstring).

    :ivar temperature: ``None`` (β = 1), a float β > 0, ``"njs"`` or ``"hns"``.
    :ivar eot_samples: passes averaged per gradient (>= 1).
    :ivar bpda: differentiate ``annt_bpda`` layers as the identity.
    """

    temperature: float | str | None = None
    eot_samples: int = 1
    bpda: bool = True

    def __post_init__(self):
        t = self.temperature
        if isinstance(t, numbers.Real) and not isinstance(t, bool):
            if not (math.isfinite(t) and t > 0):
                raise ValueError(f"temperature must be a number > 0, 'njs', 'hns' or None, got {t!r}")
            object.__setattr__(self, "temperature", float(t))
        elif t is not None and t not in TEMPERATURE_RULES:
            raise ValueError(f"temperature must be a number > 0, 'njs', 'hns' or None, got {t!r}")
        if isinstance(self.eot_samples, bool) or not isinstance(self.eot_samples, numbers.Integral) or self.eot_samples < 1:
            raise ValueError(f"eot_samples must be an integer >= 1, got {self.eot_samples!r}")
        object.__setattr__(self, "eot_samples", int(self.eot_samples))
        object.__setattr__(self, "bpda", bool(self.bpda))


class FastTensorFlowV2Classifier(TensorFlowV2Classifier):
    """``TensorFlowV2Classifier`` whose ``predict``, ``class_gradient`` and ``loss_gradient`` run as
    compiled ``tf.function`` graphs.

    Same constructor, same return shapes and values as the stock class (up to float rounding;
    ``tests/test_estimator.py`` pins this). Inputs are cast to float32, ART's working dtype.

    Preprocessing: TensorFlow preprocessors (the default identity ``StandardisationMeanStd``
    included) are traced into the graph, so gradients are taken w.r.t. the raw input ``x``. Numpy
    preprocessors run outside the graph and their backward pass is applied afterwards, as the
    stock class does. One deliberate difference: for ``label=None`` the stock class differentiates
    w.r.t. the *preprocessed* input (missing a ``1/std`` factor under non-trivial standardisation);
    here every label form differentiates w.r.t. ``x``. With annt's identity preprocessing both agree.

    Tensor (non-numpy) inputs to ``loss_gradient`` fall back to the stock eager code (without
    gradient options).

    Gradient options (module docstring) are keyword arguments of the constructor:
    ``FastTensorFlowV2Classifier(model, ..., temperature="njs", eot_samples=1, bpda=True)``.
    """

    def __init__(self, *args, temperature: float | str | None = None, eot_samples: int = 1, bpda: bool = True,
                 **kwargs):
        options = GradientOptions(temperature, eot_samples, bpda)
        super().__init__(*args, **kwargs)
        self.__dict__["_annt_options"] = options
        self.__dict__["_annt_calibration"] = None

    # ---------------------------------------------------------------- gradient options
    @property
    def gradient_options(self) -> GradientOptions:
        return self.__dict__.get("_annt_options", GradientOptions())

    @property
    def stochastic_layers(self) -> list:
        """Layers marked ``annt_stochastic``: with any, each forward pass is a fresh draw."""
        return marked_layers(self._model, STOCHASTIC)

    @property
    def bpda_layers(self) -> list:
        """Layers marked ``annt_bpda``: the identity in the backward pass when ``bpda`` is on."""
        return marked_layers(self._model, NON_DIFFERENTIABLE)

    def with_gradient_options(self, **options) -> "FastTensorFlowV2Classifier":
        """This estimator with some gradient options changed (``self`` if none changes).

        The result shares the model, loss and preprocessing, traces its own graphs, and is cached
        here per option set, so asking again (every batch of an attack) reuses its graphs.
        """
        wanted = replace(self.gradient_options, **options)
        if wanted == self.gradient_options:
            return self
        derived = self.__dict__.setdefault("_annt_derived", {})
        if wanted not in derived:
            clone = object.__new__(type(self))
            clone.__dict__.update(self.__getstate__())
            clone.__dict__.update(_annt_options=wanted, _annt_calibration=None, _annt_compiled={}, _annt_derived={})
            derived[wanted] = clone
        return derived[wanted]

    def calibrate(self, x: np.ndarray, y: np.ndarray) -> "FastTensorFlowV2Classifier":
        """Fit the ``njs`` / ``hns`` temperature to the clean batch ``x`` with true labels ``y``
        (indices or one-hot); a no-op for other temperatures. Call it before attacking a new batch
        (:func:`annt.attacks.runner.generate` does); ``loss_gradient`` calibrates on its first call
        otherwise.

        * ``njs``: ``β₁`` = inverse mean singular value of ``J = ∂f/∂x`` over the samples of ``x``
          the model classifies correctly (all of them if none is): the batch plays the paper's
          M calibration samples.
        * ``hns``: ``β*`` per sample of ``x``. Later ``loss_gradient`` calls give each input row the
          ``β*`` of the calibration image nearest to it in L∞, so an iterate keeps its own clean
          image's β* whatever subset or order an attack passes (APGD passes the unbroken samples
          only); that holds while perturbations stay below half the L∞ distance between images.

        ``J`` and the logits are those of the gradient graphs (EOT means, BPDA identity).
        """
        rule = self.gradient_options.temperature
        if rule not in TEMPERATURE_RULES:
            self.__dict__["_annt_calibration"] = None
            return self
        x = np.asarray(x, dtype=np.float32)
        labels = np.asarray(y)
        labels = np.argmax(labels, axis=1) if labels.ndim == 2 else labels.astype(np.int64)
        logits, jac = self._logits_and_jacobian(x)
        jac = jac.reshape(len(x), self.nb_classes, -1)
        if rule == "njs":
            beta1 = float(temp.njs_beta1(jac, np.argmax(logits, axis=1) == labels))
            self.__dict__["_annt_calibration"] = {"rule": rule, "beta1": beta1}
        else:
            beta = temp.hns_beta(logits, jac).numpy()
            self.__dict__["_annt_calibration"] = {"rule": rule, "beta": beta, "anchors": x.reshape(len(x), -1)}
        return self

    @property
    def calibration(self) -> dict | None:
        """What :meth:`calibrate` fitted: ``{"rule": "njs", "beta1"}`` or ``{"rule": "hns", "beta", "anchors"}``."""
        return self.__dict__.get("_annt_calibration")

    def temperatures(self, x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        """The base temperature of each row of ``x`` in ``loss_gradient`` (``(B,)`` float32): the fixed
        β, ``njs``'s ``β₁`` (the per-iteration ``β₂`` is applied inside the graph) or each row's ``hns`` β*."""
        rule = self.gradient_options.temperature
        n = len(x)
        if rule is None:
            return np.ones(n, np.float32)
        if isinstance(rule, float):
            return np.full(n, rule, np.float32)
        if self.calibration is None or self.calibration["rule"] != rule:
            if y is None:
                raise ValueError(f"temperature {rule!r} needs calibrate(x, y) first")
            self.calibrate(x, y)
        cal = self.calibration
        if rule == "njs":
            return np.full(n, cal["beta1"], np.float32)
        flat = np.asarray(x, np.float32).reshape(n, -1)
        anchors = cal["anchors"]
        step = max(1, _NEAREST_CHUNK // max(anchors.size, 1))  # rows per call: bounded (rows x anchors x pixels)
        fn = self._compiled("nearest_anchor", False)
        nearest = np.concatenate([fn(flat[i : i + step], anchors).numpy() for i in range(0, n, step)] or [np.zeros(0, int)])
        return cal["beta"][nearest].astype(np.float32)

    # ---------------------------------------------------------------- compiled graphs
    def _compiled(self, kind: str, training_mode: bool):
        """Return the compiled function ``kind`` for ``training_mode``, tracing it on first use.

        Cached per (kind, training_mode) because ``training`` changes the graph (dropout,
        BatchNorm); ``set_params`` clears the cache since preprocessing is baked into traces.
        """
        cache = self.__dict__.setdefault("_annt_compiled", {})
        key = (kind, bool(training_mode))
        if key not in cache:
            # The input signatures leave only the batch dimension open, so one concrete function
            # serves every call; calling it directly skips tf.function's per-call argument
            # binding and dispatch (~0.3 ms, a fifth of a one-image C&W step).
            fn = getattr(self, f"_build_{kind}")(bool(training_mode))
            # BPDA's identity is substituted while the gradient graphs are traced, never the prediction graph
            bpda = self.gradient_options.bpda and kind in _GRADIENT_KINDS
            with identity_backward(self._model) if bpda else contextlib.nullcontext():
                cache[key] = fn.get_concrete_function()
        return cache[key]

    def _expectation(self, one_pass, *args):
        """``one_pass(*args)`` (a tensor or tuple), averaged over ``eot_samples`` passes in a graph
        loop: stochastic layers draw anew in each."""
        n = self.gradient_options.eot_samples
        first = one_pass(*args)
        if n == 1:
            return first
        _, total = tf.while_loop(lambda i, acc: i < n - 1,
                                 lambda i, acc: (i + 1, tf.nest.map_structure(tf.add, acc, one_pass(*args))),
                                 (tf.constant(0), first))
        return tf.nest.map_structure(lambda t: t / n, total)

    def _x_spec(self) -> tf.TensorSpec:
        return tf.TensorSpec([None, *self.input_shape], tf.float32)

    def _graph_input(self, x: tf.Tensor) -> tf.Tensor:
        """Apply TensorFlow preprocessing inside the traced graph (numpy ones were applied before)."""
        if self.all_framework_preprocessing and self.preprocessing_operations:
            x, _ = self._apply_preprocessing(x, y=None, fit=False)
        return x

    def _build_logits(self, training: bool):
        @tf.function(input_signature=[self._x_spec()])
        def logits(x):
            return self._model(self._graph_input(x), training=training)

        return logits

    def _build_all_class_gradients(self, training: bool):
        @tf.function(input_signature=[self._x_spec()])
        def all_class_gradients(x):
            # One forward pass, one backward pass per class. Samples do not interact in a forward
            # pass (inference mode), so d(sum_b f_b[c])/dx_b = df_b[c]/dx_b: the batch-summed
            # gradient is the per-sample gradient, exactly as the stock class computes it.
            # Returns (logits, gradients): the Jacobian's logits serve the temperature calibration.
            def one_pass(x):
                with tf.GradientTape(persistent=True) as tape:
                    tape.watch(x)
                    out = self._model(self._graph_input(x), training=training)
                    per_class = [out[:, c] for c in range(out.shape[-1])]
                grads = [tape.gradient(p, x, unconnected_gradients=_ZERO) for p in per_class]
                del tape
                return out, tf.stack(grads, axis=1)

            return self._expectation(one_pass, x)

        return all_class_gradients

    def _build_selected_class_gradient(self, training: bool):
        @tf.function(input_signature=[self._x_spec(), tf.TensorSpec([None], tf.int32)])
        def selected_class_gradient(x, labels):
            # sum_b f_b[labels_b]: one backward pass gives every sample its own class's gradient,
            # where the stock class runs one pass per distinct label.
            def one_pass(x):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    out = self._model(self._graph_input(x), training=training)
                    picked = tf.gather(out, labels, axis=1, batch_dims=1)
                    total = tf.reduce_sum(picked)
                return tape.gradient(total, x, unconnected_gradients=_ZERO)

            return self._expectation(one_pass, x)

        return selected_class_gradient

    def _build_loss_gradient(self, training: bool):
        y_spec = tf.TensorSpec([None, self.nb_classes], tf.float32)

        @tf.function(input_signature=[self._x_spec(), y_spec])
        def loss_gradient(x, y):
            return self._expectation(lambda x: self._one_loss_gradient(x, y, None, training), x)

        return loss_gradient

    def _build_scaled_loss_gradient(self, training: bool):
        y_spec = tf.TensorSpec([None, self.nb_classes], tf.float32)

        @tf.function(input_signature=[self._x_spec(), y_spec, tf.TensorSpec([None], tf.float32)])
        def scaled_loss_gradient(x, y, beta):
            return self._expectation(lambda x: self._one_loss_gradient(x, y, beta, training), x)

        return scaled_loss_gradient

    def _one_loss_gradient(self, x, y, beta, training: bool):
        """d L(y, β·f(x)) / dx for one forward pass; ``beta`` ``(B,)`` or None (β = 1). Under ``njs``
        each sample's β is further multiplied by Proposition 1's β₂ at this pass's logits."""
        with tf.GradientTape() as tape:
            tape.watch(x)
            x_in = x
            if self.all_framework_preprocessing and self.preprocessing_operations:
                x_in, y = self._apply_preprocessing(x, y=y, fit=False)
            out = self._model(x_in, training=training)
            if beta is not None:
                scale = beta[:, None]
                if self.gradient_options.temperature == "njs":
                    scale = scale * temp.njs_beta2(scale * out, tf.argmax(y, axis=1))[:, None]
                out = scale * out
            labels = tf.argmax(y, axis=1) if self._reduce_labels else y
            loss = self._loss_object(labels, out)
        return tape.gradient(loss, x, unconnected_gradients=_ZERO)

    def _build_nearest_anchor(self, training: bool):
        flat = tf.TensorSpec([None, int(np.prod(self.input_shape))], tf.float32)

        @tf.function(input_signature=[flat, flat])
        def nearest_anchor(x, anchors):
            # index of the L∞-nearest anchor per row; callers bound rows x anchors x pixels
            return tf.argmin(tf.reduce_max(tf.abs(x[:, None, :] - anchors[None, :, :]), axis=2), axis=1,
                             output_type=tf.int32)

        return nearest_anchor

    # ---------------------------------------------------------------- numpy boundary
    def _numpy_preprocess(self, x: np.ndarray, y: np.ndarray | None = None):
        """Numpy-side preprocessing: only when some preprocessor is not a TensorFlow one."""
        if self.all_framework_preprocessing:
            return x, y
        return self._apply_preprocessing(x, y=y, fit=False)

    def _numpy_preprocess_gradient(self, x: np.ndarray, grads: np.ndarray) -> np.ndarray:
        if self.all_framework_preprocessing:
            return grads
        return self._apply_preprocessing_gradient(x, grads)

    def set_params(self, **kwargs) -> None:
        """As ART's, and drop compiled graphs: they captured the old preprocessing/model."""
        super().set_params(**kwargs)
        self.__dict__["_annt_compiled"] = {}

    def __getstate__(self):
        # tf.function objects cannot be pickled or deep-copied; they are re-traced on demand.
        state = self.__dict__.copy()
        state.pop("_annt_compiled", None)
        state.pop("_annt_derived", None)
        return state

    # ---------------------------------------------------------------- public API
    def predict(self, x: np.ndarray, batch_size: int = 128, training_mode: bool = False, **kwargs) -> np.ndarray:
        """Logits of ``x`` (after postprocessing), shape ``(N, nb_classes)``, in batches of ``batch_size``.

        Unlike the stock class (one call on all of ``x``), memory stays bounded by ``batch_size``.
        One forward pass, whatever the gradient options (temperature and BPDA never change it): for a
        model with stochastic layers each call is a fresh draw, and accuracy must be judged over
        repeated calls (the mode of the predicted classes, or the class of the mean logits), stated
        with the result.
        """
        x = np.asarray(x, dtype=np.float32)
        x_pre, _ = self._numpy_preprocess(x)
        fn = self._compiled("logits", training_mode)
        step = max(int(batch_size), 1)
        if len(x_pre) == 0:
            preds = np.zeros((0, self.nb_classes), dtype=np.float32)
        else:
            preds = np.concatenate([fn(x_pre[i : i + step]).numpy() for i in range(0, len(x_pre), step)])
        return self._apply_postprocessing(preds=preds, fit=False)

    def class_gradient(
        self,
        x: np.ndarray,
        label: int | list[int] | np.ndarray | None = None,
        training_mode: bool = False,
        **kwargs,
    ) -> np.ndarray:
        """Gradient of class logits w.r.t. ``x``; see the module docstring.

        :param label: ``None`` (all classes, output ``(B, nb_classes, *input_shape)``), an int (that
            class for every sample) or a length-``B`` sequence (one class per sample); the last two
            give ``(B, 1, *input_shape)``.
        """
        x_np = np.asarray(x)
        x_pre, _ = self._numpy_preprocess(x_np.astype(np.float32, copy=False))
        if label is None:
            grads = self._compiled("all_class_gradients", training_mode)(x_pre)[1].numpy()
        else:
            labels = self._labels_per_sample(label, len(x_np))
            grads = self._compiled("selected_class_gradient", training_mode)(x_pre, labels).numpy()
            grads = grads[:, np.newaxis]
        grads = self._numpy_preprocess_gradient(x_np, grads)
        return grads.astype(x_np.dtype, copy=False) if x_np.dtype.kind == "f" else grads

    def _logits_and_jacobian(self, x: np.ndarray, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
        """Logits ``(B, d)`` and Jacobian ``(B, d, *input_shape)`` of the gradient graph (EOT means)."""
        x_pre, _ = self._numpy_preprocess(x)
        fn = self._compiled("all_class_gradients", False)
        parts = [fn(x_pre[i : i + batch_size]) for i in range(0, len(x_pre), batch_size)]
        if not parts:
            return np.zeros((0, self.nb_classes), np.float32), np.zeros((0, self.nb_classes, *self.input_shape), np.float32)
        logits = np.concatenate([p[0].numpy() for p in parts])
        jac = self._numpy_preprocess_gradient(x, np.concatenate([p[1].numpy() for p in parts]))
        return logits, jac

    def _labels_per_sample(self, label: Any, n: int) -> np.ndarray:
        if np.ndim(label) == 0:  # int, np.integer or a 0-d array: one class for every sample
            labels = np.full(n, int(label), dtype=np.int32)
        else:
            labels = np.asarray(label).reshape(-1).astype(np.int32)
            if len(labels) != n:
                raise ValueError(f"label has {len(labels)} entries for {n} samples")
        if labels.size and (labels.min() < 0 or labels.max() >= self.nb_classes):
            raise ValueError(f"labels must lie in [0, {self.nb_classes}), got {labels.min()}..{labels.max()}")
        return labels

    def loss_gradient(self, x, y, training_mode: bool = False, **kwargs):
        """Gradient of the loss object w.r.t. ``x``, same shape as ``x``: ``d L(y, β·f(x)) / dx`` with the
        estimator's temperature β (1 without one; see :meth:`temperatures`).

        :param y: labels, one-hot ``(B, nb_classes)`` as ART attacks pass them, or indices ``(B,)``.
            Under ``njs`` the label is the ``k`` of Proposition 1 (for a targeted attack: the target).
        """
        if not isinstance(x, np.ndarray):
            return super().loss_gradient(x, y, training_mode=training_mode, **kwargs)
        if self._loss_object is None:
            raise TypeError("The loss function `loss_object` is required for computing loss gradients.")
        y_onehot = check_and_transform_label_format(np.asarray(y), nb_classes=self.nb_classes)
        x_pre, y_pre = self._numpy_preprocess(x.astype(np.float32, copy=False), y_onehot)
        if self.gradient_options.temperature is None:
            grads = self._compiled("loss_gradient", training_mode)(x_pre, y_pre.astype(np.float32)).numpy()
        else:
            beta = self.temperatures(x, y_onehot)
            grads = self._compiled("scaled_loss_gradient", training_mode)(x_pre, y_pre.astype(np.float32), beta).numpy()
        grads = self._numpy_preprocess_gradient(x, grads)
        return grads.astype(x.dtype, copy=False) if x.dtype.kind == "f" else grads


def make_classifier(model, *, fast: bool = True, nb_classes: int = 10, **gradient_options) -> TensorFlowV2Classifier:
    """Wrap a Keras model (float32 NHWC images in [0, 1] -> logits) as an ART classifier.

    ``clip_values=(0, 1)``: attacks clip adversarial inputs to the pixel range.
    Loss: ``CategoricalCrossentropy(from_logits=True)`` because ART passes one-hot labels to
    ``loss_gradient``; ``reduction="sum"`` so that each sample's gradient is the gradient of its own
    loss, independent of the batch it was attacked in (the Keras default divides by batch size).

    :param fast: ``True`` for :class:`FastTensorFlowV2Classifier`, ``False`` for ART's stock class.
    :param gradient_options: ``temperature``, ``eot_samples``, ``bpda`` (:class:`GradientOptions`);
        only annt's estimator has them.
    """
    import keras

    cls = FastTensorFlowV2Classifier if fast else TensorFlowV2Classifier
    if not fast and GradientOptions(**gradient_options) != GradientOptions():
        raise ValueError("gradient options (temperature, eot_samples, bpda) need fast=True (annt's estimator)")
    loss = keras.losses.CategoricalCrossentropy(from_logits=True, reduction="sum")
    return cls(
        model=model,
        nb_classes=nb_classes,
        input_shape=tuple(int(d) for d in model.input_shape[1:]),
        loss_object=loss,
        clip_values=(0.0, 1.0),
        **(gradient_options if fast else {}),
    )
