"""Adversarial training inside the compiled train step: FGSM (fixed or Kurakin eps), R-FGSM and PGD.

:class:`AdversarialTrainer` wraps the plain model for ``keras.Model.fit``; its ``train_step`` crafts the
adversarial batch from the current weights with a ``tf.GradientTape`` on the input, then takes one
optimizer step on

    loss = w · CE(f(x), y) + (1 − w) · CE(f(x'), y),        w = ``clean_weight``

Pixels are on [0, 1]; every x' lies in [0, 1] and within its eps of x in L∞. The crafting rules
(``settings`` is a resolved ``train.adversarial`` section, :func:`annt.training.settings.resolve_adversarial`):

* ``fgsm``: x' = clip(x + ε·sign(∇ₓL(x, ŷ)), 0, 1), ε = eps (``fixed``), or per example
  ε = |t|, t ~ N(0, σ²) truncated to [−2σ, 2σ], σ = ceil(eps·255/2)/255 (``truncated_normal``, Kurakin
  et al. 2017: ε ∈ [0, 2σ], and 2σ may exceed eps by up to 2/255);
* ``rfgsm`` (Tramèr et al. 2018): x̃ = clip(x + α·sign(N(0, I)), 0, 1), then
  x' = clip(x̃ + (eps − α)·sign(∇L(x̃, ŷ)), x − eps, x + eps) ∩ [0, 1];
* ``pgd`` (Madry et al. 2018): x₀ = x + U(−eps, eps) (``random_start``) or x, then ``steps`` times
  xₖ₊₁ = Π(xₖ + step_size·sign(∇L(xₖ, ŷ))), Π the projection onto the eps-ball ∩ [0, 1].

ŷ is the model's own prediction on the clean x with ``own_labels`` (no label leaking, Kurakin et al.),
else the true label. Decisions:

* Crafting runs the model in inference mode (``training=False``): BatchNorm uses its moving statistics
  and is not updated by the crafting passes, dropout is off, so the attack sees the deployed model.
  Stochastic layers (``annt_stochastic``) sample as they always do. The training passes on x and x'
  run in training mode.
* Layers marked ``annt_bpda`` (input discretization) are differentiated as the identity while the
  crafting graph is traced (:func:`annt.attacks.adaptive.identity_backward`); otherwise their zero
  gradient would make every step zero. The training passes use the layers unchanged.
* ``last_epochs`` N: epochs E − N … E − 1 (0-based) are adversarial, the others plain; the switch is
  epoch-indexed, so a resumed run keeps the schedule. Adversarial epochs log ``adv_loss`` and
  ``adv_accuracy`` (on x', training mode) beside ``loss`` (the weighted loss above) and ``accuracy``
  (on the clean x); plain epochs log neither, which is how a history shows the schedule.
"""
from __future__ import annotations

from typing import Any, Mapping

import keras
import tensorflow as tf

from annt.attacks.adaptive import identity_backward
from annt.training.settings import kurakin_sigma

_ADV_LOGS = ("adv_loss", "adv_accuracy")


def sample_eps(batch_size, eps: float, distribution: str = "fixed") -> tf.Tensor:
    """Each example's eps, shape (batch_size,): ``eps`` (fixed) or Kurakin's |t|, t ~ N(0, σ²) truncated to ±2σ."""
    if distribution == "fixed":
        return tf.fill([batch_size], tf.constant(eps, tf.float32))
    if distribution == "truncated_normal":
        return tf.abs(tf.random.truncated_normal([batch_size], stddev=kurakin_sigma(eps)))
    raise ValueError(f"eps_distribution must be fixed or truncated_normal, got {distribution!r}")


def random_sign_step(x: tf.Tensor, alpha: float) -> tf.Tensor:
    """R-FGSM's random step x + α·sign(N(0, I)), not clipped: every pixel moves by exactly ±α."""
    return x + alpha * tf.sign(tf.random.normal(tf.shape(x)))


def project(x_adv: tf.Tensor, x: tf.Tensor, eps: tf.Tensor) -> tf.Tensor:
    """x_adv clipped to the L∞ ball of radius ``eps`` (per example, broadcast) around x, then to [0, 1]."""
    return tf.clip_by_value(tf.clip_by_value(x_adv, x - eps, x + eps), 0.0, 1.0)


def input_gradient(model, x: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """∇ₓ Σᵢ CE(f(xᵢ), labelsᵢ) in inference mode, ``annt_bpda`` layers passing the gradient through."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        with identity_backward(model):
            logits = model(x, training=False)
        loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    # a layer with no gradient at all (tf.round, tf.floor) leaves x unconnected: a zero step, not a crash
    return tape.gradient(loss, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)


def crafting_labels(model, x: tf.Tensor, y: tf.Tensor, own_labels: bool) -> tf.Tensor:
    """The labels the attack pushes away from: the model's prediction on the clean x, or the true ones."""
    if not own_labels:
        return tf.cast(tf.reshape(y, [-1]), tf.int64)
    return tf.argmax(model(x, training=False), axis=-1)


def craft(model, x: tf.Tensor, labels: tf.Tensor, settings: Mapping[str, Any]) -> tf.Tensor:
    """The adversarial batch for ``x`` (float32 NHWC on [0, 1]) against ``labels`` (see the module docstring)."""
    x = tf.convert_to_tensor(x, tf.float32)
    method, eps = settings["method"], float(settings["eps"])
    n = tf.shape(x)[0]
    if method == "fgsm":
        radius = tf.reshape(sample_eps(n, eps, settings.get("eps_distribution") or "fixed"), [-1, 1, 1, 1])
        x_adv = x + radius * tf.sign(input_gradient(model, x, labels))
    elif method == "rfgsm":
        alpha = float(settings["alpha"])
        radius = tf.fill([n, 1, 1, 1], eps)
        start = tf.clip_by_value(random_sign_step(x, alpha), 0.0, 1.0)
        x_adv = start + (eps - alpha) * tf.sign(input_gradient(model, start, labels))
    elif method == "pgd":
        radius = tf.fill([n, 1, 1, 1], eps)
        start = x + tf.random.uniform(tf.shape(x), -eps, eps) if settings["random_start"] else x
        step = float(settings["step_size"])

        def body(i, xk):
            return i + 1, project(xk + step * tf.sign(input_gradient(model, xk, labels)), x, radius)

        _, x_adv = tf.while_loop(lambda i, _: i < int(settings["steps"]), body,
                                 (tf.constant(0), project(start, x, radius)))
    else:
        raise ValueError(f"method must be fgsm, rfgsm or pgd, got {method!r}")
    return tf.stop_gradient(project(x_adv, x, radius))


def adversarial_epochs(epochs: int, last_epochs: int | None) -> range:
    """The 0-based epochs that train adversarially: all, or the last ``last_epochs``."""
    return range(0 if last_epochs is None else max(epochs - last_epochs, 0), epochs)


class AdversarialTrainer(keras.Model):
    """Trains ``model`` (logits out) on adversarial batches crafted inside the compiled step.

    Only ``fit`` sees this wrapper; its variables are ``model``'s, so the plain model holds the
    trained weights and is what gets saved. ``call`` is ``model``'s (validation is on clean data).
    """

    def __init__(self, model: keras.Model, settings: Mapping[str, Any], epochs: int, **kwargs):
        super().__init__(**kwargs)
        self.inner = model
        self.settings = dict(settings)
        self.adversarial_epochs = adversarial_epochs(epochs, self.settings.get("last_epochs"))
        self.active = True
        self.adv_loss_tracker = keras.metrics.Mean(name="adv_loss")
        self.adv_accuracy = keras.metrics.SparseCategoricalAccuracy(name="adv_accuracy")
        self.built = True

    def call(self, x, training=None):
        return self.inner(x, training=training)

    def set_epoch(self, epoch: int) -> None:
        """Plain or adversarial for 0-based ``epoch``; retraces the step when that changes."""
        active = epoch in self.adversarial_epochs
        if active != self.active or self.train_function is None:
            self.active = active
            self.make_train_function(force=True)

    def train_step(self, data):
        if not self.active:
            return _without_adv(super().train_step(data))
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        model, w = self.inner, float(self.settings["clean_weight"])
        x_adv = craft(model, x, crafting_labels(model, x, y, self.settings["own_labels"]), self.settings)
        with tf.GradientTape() as tape:
            adv_logits = model(x_adv, training=True)
            adv_loss = self.compute_loss(x=x_adv, y=y, y_pred=adv_logits, sample_weight=sample_weight, training=True)
            if w > 0:
                clean_logits = model(x, training=True)
                clean_loss = self.compute_loss(x=x, y=y, y_pred=clean_logits, sample_weight=sample_weight, training=True)
                loss = w * clean_loss + (1.0 - w) * adv_loss
            else:
                loss = adv_loss
        gradients = tape.gradient(self.optimizer.scale_loss(loss), self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        if w == 0:
            clean_logits = model(x, training=False)  # accuracy stays "on clean inputs" without touching BatchNorm
        self._loss_tracker.update_state(loss, sample_weight=tf.shape(x)[0])
        self.adv_loss_tracker.update_state(adv_loss, sample_weight=tf.shape(x)[0])
        self.adv_accuracy.update_state(y, adv_logits, sample_weight=sample_weight)
        return self.compute_metrics(x, y, clean_logits, sample_weight=sample_weight)

    def test_step(self, data):
        return _without_adv(super().test_step(data))


def _without_adv(logs: dict) -> dict:
    return {k: v for k, v in logs.items() if k not in _ADV_LOGS}


class AdversarialSchedule(keras.callbacks.Callback):
    """Switches the trainer between plain and adversarial steps at every epoch start (epoch-indexed)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.model.set_epoch(epoch)
