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
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from art.estimators.classification import TensorFlowV2Classifier
from art.utils import check_and_transform_label_format

__all__ = ["FastTensorFlowV2Classifier", "make_classifier"]


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

    Tensor (non-numpy) inputs to ``loss_gradient`` fall back to the stock eager code.
    """

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
            cache[key] = getattr(self, f"_build_{kind}")(bool(training_mode)).get_concrete_function()
        return cache[key]

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
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(x)
                out = self._model(self._graph_input(x), training=training)
                per_class = [out[:, c] for c in range(out.shape[-1])]
            grads = [tape.gradient(p, x) for p in per_class]
            del tape
            return tf.stack(grads, axis=1)

        return all_class_gradients

    def _build_selected_class_gradient(self, training: bool):
        @tf.function(input_signature=[self._x_spec(), tf.TensorSpec([None], tf.int32)])
        def selected_class_gradient(x, labels):
            # sum_b f_b[labels_b]: one backward pass gives every sample its own class's gradient,
            # where the stock class runs one pass per distinct label.
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = self._model(self._graph_input(x), training=training)
                picked = tf.gather(out, labels, axis=1, batch_dims=1)
                total = tf.reduce_sum(picked)
            return tape.gradient(total, x)

        return selected_class_gradient

    def _build_loss_gradient(self, training: bool):
        y_spec = tf.TensorSpec([None, self.nb_classes], tf.float32)

        @tf.function(input_signature=[self._x_spec(), y_spec])
        def loss_gradient(x, y):
            with tf.GradientTape() as tape:
                tape.watch(x)
                x_in = x
                if self.all_framework_preprocessing and self.preprocessing_operations:
                    x_in, y = self._apply_preprocessing(x, y=y, fit=False)
                out = self._model(x_in, training=training)
                labels = tf.argmax(y, axis=1) if self._reduce_labels else y
                loss = self._loss_object(labels, out)
            return tape.gradient(loss, x)

        return loss_gradient

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
        return state

    # ---------------------------------------------------------------- public API
    def predict(self, x: np.ndarray, batch_size: int = 128, training_mode: bool = False, **kwargs) -> np.ndarray:
        """Logits of ``x`` (after postprocessing), shape ``(N, nb_classes)``, in batches of ``batch_size``.

        Unlike the stock class (one call on all of ``x``), memory stays bounded by ``batch_size``.
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
            grads = self._compiled("all_class_gradients", training_mode)(x_pre).numpy()
        else:
            labels = self._labels_per_sample(label, len(x_np))
            grads = self._compiled("selected_class_gradient", training_mode)(x_pre, labels).numpy()
            grads = grads[:, np.newaxis]
        grads = self._numpy_preprocess_gradient(x_np, grads)
        return grads.astype(x_np.dtype, copy=False) if x_np.dtype.kind == "f" else grads

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
        """Gradient of the loss object w.r.t. ``x``, same shape as ``x``.

        :param y: labels, one-hot ``(B, nb_classes)`` as ART attacks pass them, or indices ``(B,)``.
        """
        if not isinstance(x, np.ndarray):
            return super().loss_gradient(x, y, training_mode=training_mode, **kwargs)
        if self._loss_object is None:
            raise TypeError("The loss function `loss_object` is required for computing loss gradients.")
        y_onehot = check_and_transform_label_format(np.asarray(y), nb_classes=self.nb_classes)
        x_pre, y_pre = self._numpy_preprocess(x.astype(np.float32, copy=False), y_onehot)
        grads = self._compiled("loss_gradient", training_mode)(x_pre, y_pre.astype(np.float32)).numpy()
        grads = self._numpy_preprocess_gradient(x, grads)
        return grads.astype(x.dtype, copy=False) if x.dtype.kind == "f" else grads


def make_classifier(model, *, fast: bool = True, nb_classes: int = 10) -> TensorFlowV2Classifier:
    """Wrap a Keras model (float32 NHWC images in [0, 1] -> logits) as an ART classifier.

    ``clip_values=(0, 1)``: attacks clip adversarial inputs to the pixel range.
    Loss: ``CategoricalCrossentropy(from_logits=True)`` because ART passes one-hot labels to
    ``loss_gradient``; ``reduction="sum"`` so that each sample's gradient is the gradient of its own
    loss, independent of the batch it was attacked in (the Keras default divides by batch size).

    :param fast: ``True`` for :class:`FastTensorFlowV2Classifier`, ``False`` for ART's stock class.
    """
    import keras

    cls = FastTensorFlowV2Classifier if fast else TensorFlowV2Classifier
    loss = keras.losses.CategoricalCrossentropy(from_logits=True, reduction="sum")
    return cls(
        model=model,
        nb_classes=nb_classes,
        input_shape=tuple(int(d) for d in model.input_shape[1:]),
        loss_object=loss,
        clip_values=(0.0, 1.0),
    )
