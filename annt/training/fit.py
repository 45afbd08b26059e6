"""Training loop: ``fit`` a classifier with checkpoint selection on validation accuracy.

``fit`` is ``keras.Model.fit`` plus what a long experiment needs:

* a learning-rate schedule per epoch (cosine, step or constant), decoupled weight decay on
  kernels only (biases and BatchNorm are excluded, as DoReFa/ANNT did not decay them);
* augmentation: for colour images 4-pixel zero padding + random crop + horizontal flip (CIFAR), for
  single-channel images random shifts of up to 2 pixels and no flip (MNIST, Fashion-MNIST);
* ``checkpoint_dir/best.weights.h5``: the weights of the epoch with the best **validation**
  accuracy (the test split is never looked at), with ``best.json`` recording which epoch;
* ``checkpoint_dir/backup/``: a resume state written after every finished epoch
  (``keras.callbacks.BackupAndRestore``, weights + optimizer state), so rerunning the same call
  after an interruption continues from the last finished epoch;
* ``checkpoint_dir/history.json``: per-epoch metrics across resumes;
* a divergence guard: a NaN/inf loss (or NaN/inf weights at an epoch end) stops training
  with a one-line ``AnntError``;
* adversarial training (``adversarial=``, a resolved ``train.adversarial`` section): the model is
  wrapped in :class:`annt.training.adversarial.AdversarialTrainer` for ``fit`` only, with everything
  above unchanged; ``best.weights.h5`` and the model keep the plain architecture.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from annt.errors import AnntError
from annt.io import atomic_write_json
from annt.training.settings import LR_SCHEDULES, OPTIMIZERS

BEST_WEIGHTS = "best.weights.h5"
BEST_JSON = "best.json"
HISTORY_JSON = "history.json"
BACKUP_DIR = "backup"


def learning_rate_at(epoch: int, *, epochs: int, learning_rate: float, lr_schedule: str,
                     lr_decay_epochs: Sequence[int] = (), lr_decay_factor: float = 0.1) -> float:
    """Learning rate for 0-based ``epoch``.

    * constant: lr
    * cosine:   lr · ½ (1 + cos(π · epoch / epochs))      (lr at epoch 0, → 0 at the end)
    * step:     lr · factor^m, m = number of ``lr_decay_epochs`` ≤ epoch
    """
    if lr_schedule == "constant":
        return float(learning_rate)
    if lr_schedule == "cosine":
        return float(learning_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1))))
    if lr_schedule == "step":
        m = sum(1 for e in lr_decay_epochs if epoch >= e)
        return float(learning_rate * lr_decay_factor ** m)
    raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {lr_schedule!r}")


def _optimizer(name: str, learning_rate: float, momentum: float, weight_decay: float):
    # Decoupled weight decay (w ← w − lr·wd·w per step), applied to kernels only.
    wd = float(weight_decay) or None
    name = name.lower()
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    if name == "adam":
        opt = keras.optimizers.Adam(learning_rate, weight_decay=wd)
    elif name == "sgd":
        opt = keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=False, weight_decay=wd)
    else:
        opt = keras.optimizers.RMSprop(learning_rate, momentum=momentum, weight_decay=wd)
    if wd:
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return opt


def penalise_dense_kernels(model: keras.Model, l2_dense: float) -> None:
    """Add ``l2_dense·Σw²/2`` over every dense layer's latent kernel to ``model.losses`` (so to the training
    loss), as tensorpack's ``regularize_cost('fc.*/W', l2_regularizer(l2_dense))`` in ANNT's recipe; 0 removes it."""
    penalty = keras.regularizers.L2(l2_dense / 2) if l2_dense else None  # Keras's L2(l) is l·Σw²
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Dense):
            layer.kernel.regularizer = penalty


def augment_images(images: tf.Tensor, labels: tf.Tensor, *, pad: int, flip: bool):
    """Per image: a random crop back to the original size after ``pad``-pixel zero padding (a shift
    of up to ``pad`` pixels each way), then, if ``flip``, a random horizontal flip."""
    h, w = images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    n = tf.shape(images)[0]
    # tf.image.random_crop would crop the whole batch at one offset; draw one per image and
    # gather rows then columns (batched, no per-image map_fn).
    oy = tf.random.uniform([n], 0, 2 * pad + 1, dtype=tf.int32)
    ox = tf.random.uniform([n], 0, 2 * pad + 1, dtype=tf.int32)
    rows = oy[:, None] + tf.range(h)[None, :]  # (n, h)
    cols = ox[:, None] + tf.range(w)[None, :]  # (n, w)
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    cropped = tf.gather(cropped, cols, axis=2, batch_dims=1)
    if not flip:
        return cropped, labels
    mirror = tf.random.uniform([n, 1, 1, 1]) < 0.5
    return tf.where(mirror, tf.reverse(cropped, axis=[2]), cropped), labels


def augment_cifar(images: tf.Tensor, labels: tf.Tensor):
    """CIFAR: random crop after 4-pixel zero padding, and a random horizontal flip (per image)."""
    return augment_images(images, labels, pad=4, flip=True)


def augment_digits(images: tf.Tensor, labels: tf.Tensor):
    """Greyscale 28x28 sets (MNIST, Fashion-MNIST): random shifts of up to 2 pixels, never a flip
    (a mirrored digit is another symbol, or none)."""
    return augment_images(images, labels, pad=2, flip=False)


def augmentation_for(image_shape) -> Callable:
    """The augmentation ``fit(augment=True)`` applies: shifts for single-channel images, crop + flip otherwise."""
    return augment_digits if image_shape[-1] == 1 else augment_cifar


class _EpochLearningRate(keras.callbacks.Callback):
    """Sets the optimizer's lr at each epoch start (epoch-indexed, so resuming is exact)."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate.assign(self.schedule(epoch))


class _DivergenceGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and remembers where."""

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.diverged: tuple[int, str] | None = None  # (1-based epoch, what went wrong)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged = (self.epoch + 1, f"loss={float(loss)}")
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        # ReLU and max-pooling can map NaN to 0 on CPU (oneDNN), so NaN weights do not always
        # show in the loss; check them once per epoch, before the epoch can become "best".
        if self.diverged is None and not all(
                np.isfinite(w).all() for w in self.model.get_weights()):
            loss = (logs or {}).get("loss", float("nan"))
            self.diverged = (epoch + 1, f"loss={float(loss):.4g}, weights not finite")
            self.model.stop_training = True


def _plain(model: keras.Model) -> keras.Model:
    """The model being trained, without the adversarial-training wrapper."""
    return getattr(model, "inner", model)


class _BestAndHistory(keras.callbacks.Callback):
    """Keeps the best-validation-accuracy weights and a per-epoch history, both across resumes."""

    def __init__(self, folder: Path, guard: _DivergenceGuard):
        super().__init__()
        self.folder = folder
        self.guard = guard
        # Only a run being resumed inherits the earlier best/history; a fresh run starts clean.
        resuming = any((folder / BACKUP_DIR).glob("training_metadata.json*"))
        state = (_read_json(folder / BEST_JSON) or {}) if resuming else {}
        self.best = state.get("val_accuracy", -math.inf)
        self.best_epoch = state.get("epoch")
        self.history: list[dict] = (_read_json(folder / HISTORY_JSON) or []) if resuming else []
        if not resuming:
            for name in (BEST_JSON, BEST_WEIGHTS, HISTORY_JSON):
                (folder / name).unlink(missing_ok=True)

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.diverged is not None:
            return  # a diverged epoch is neither history nor a checkpoint candidate
        logs = {k: float(v) for k, v in (logs or {}).items()}
        logs["learning_rate"] = float(self.model.optimizer.learning_rate.numpy())
        # Drop entries from a run interrupted after this epoch's metrics but before its backup.
        self.history = [h for h in self.history if h["epoch"] < epoch + 1]
        self.history.append({"epoch": epoch + 1, **logs})
        val = logs.get("val_accuracy")
        if val is not None and val > self.best:
            self.best, self.best_epoch = val, epoch + 1
            tmp = self.folder / f".{BEST_WEIGHTS}.tmp.weights.h5"
            _plain(self.model).save_weights(tmp, overwrite=True)
            os.replace(tmp, self.folder / BEST_WEIGHTS)
            atomic_write_json(self.folder / BEST_JSON, {"epoch": self.best_epoch, "val_accuracy": self.best})
        atomic_write_json(self.folder / HISTORY_JSON, self.history)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def fit(
    model: keras.Model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    epochs: int,
    checkpoint_dir: str | os.PathLike,
    batch_size: int = 128,
    optimizer: str = "adam",
    learning_rate: float = 1e-3,
    lr_schedule: str = "cosine",
    lr_decay_epochs: Sequence[int] = (),
    lr_decay_factor: float = 0.1,
    weight_decay: float = 0.0,
    l2_dense: float = 0.0,
    momentum: float = 0.9,
    augment: bool = False,
    seed: int = 0,
    log_dir: str | os.PathLike | None = None,
    verbose: int = 1,
    restore_best: bool = True,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    adversarial: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train ``model`` (logits out) with sparse softmax cross-entropy; select on validation.

    Inputs are float32 NHWC in [0, 1], labels int class ids. Rerunning the same call with the
    same ``checkpoint_dir`` after an interruption resumes from the last finished epoch; a
    finished run's backup is removed, so a new call then trains afresh and replaces ``best.*``. With ``restore_best`` the model ends with the best-validation weights.

    Returns ``{"history": [per-epoch dicts], "best_epoch": int, "best_val_accuracy": float,
    "epochs_run": int}`` (``epochs_run`` counts epochs trained by this call, i.e. after a resume
    fewer than ``epochs``). Raises ``AnntError`` if the loss becomes NaN or infinite, or the
    weights do by the end of an epoch.

    ``adversarial`` (a resolved ``train.adversarial`` section,
    :func:`annt.training.settings.resolve_adversarial`; None = plain training) trains on adversarial
    batches crafted in the step (:mod:`annt.training.adversarial`); validation stays on clean data.
    """
    keras.utils.set_random_seed(seed)
    folder = Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)

    def schedule(epoch):
        return learning_rate_at(epoch, epochs=epochs, learning_rate=learning_rate, lr_schedule=lr_schedule,
                                lr_decay_epochs=lr_decay_epochs, lr_decay_factor=lr_decay_factor)

    schedule(0)  # validate the schedule name before any work
    trained, schedule_cbs = model, []
    if adversarial is not None:
        from annt.training.adversarial import AdversarialSchedule, AdversarialTrainer

        trained, schedule_cbs = AdversarialTrainer(model, adversarial, epochs), [AdversarialSchedule()]
    penalise_dense_kernels(model, l2_dense)
    opt = _optimizer(optimizer, learning_rate, momentum, weight_decay)
    for m in {id(model): model, id(trained): trained}.values():
        # the plain model shares the optimizer, so its saved archive looks as after plain training
        m.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    # Build the optimizer now so BackupAndRestore's load_weights also restores its state
    # (iteration count, Adam moments / SGD momentum); an unbuilt optimizer is skipped silently.
    trained.optimizer.build(trained.trainable_variables)
    guard = _DivergenceGuard()
    best = _BestAndHistory(folder, guard)
    cbs = [_EpochLearningRate(schedule), *schedule_cbs, guard, best,
           # double_checkpoint: Keras writes the backup in place; it keeps the previous one and falls back
           # to it if a crash mid-write left the new one unreadable.
           keras.callbacks.BackupAndRestore(str(folder / BACKUP_DIR), delete_checkpoint=True, double_checkpoint=True)]
    if log_dir is not None:
        cbs.append(keras.callbacks.TensorBoard(log_dir=str(log_dir)))
    cbs.extend(callbacks)

    x_train = np.asarray(x_train, dtype=np.float32)
    y_train = np.asarray(y_train).astype(np.int64)
    val = (np.asarray(x_val, dtype=np.float32), np.asarray(y_val).astype(np.int64))
    if augment:
        train = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
                 .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
                 .batch(batch_size).map(augmentation_for(x_train.shape), num_parallel_calls=tf.data.AUTOTUNE)
                 .prefetch(tf.data.AUTOTUNE))
        fit_kwargs = {"shuffle": False}  # the dataset shuffles itself
    else:
        train, fit_kwargs = x_train, {"y": y_train, "batch_size": batch_size, "shuffle": True}

    hist = trained.fit(train, epochs=epochs, validation_data=val, callbacks=cbs, verbose=verbose, **fit_kwargs)

    if guard.diverged is not None:
        epoch, what = guard.diverged
        raise AnntError(
            f"training diverged at epoch {epoch} ({what}); lower train.learning_rate "
            f"(now {learning_rate:g}) or check the data for NaN/inf"
        )
    if restore_best and (folder / BEST_WEIGHTS).is_file():
        model.load_weights(folder / BEST_WEIGHTS)
    return {
        "history": best.history,
        "best_epoch": best.best_epoch,
        "best_val_accuracy": None if best.best == -math.inf else float(best.best),
        "epochs_run": len(hist.epoch),
    }
