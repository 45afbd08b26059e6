"""Adversarial sets on disk (SPEC §8): the one module that knows their layout and metadata.

A set is one ``.npz`` readable with ``np.load(allow_pickle=False)``. Keys: ANNT's ``images``
(adversarial, float32 NHWC in [0, 1]), ``labels`` (true class) and ``image_index`` (position in
the dataset split's original array), plus ``clean_images``, ``clean_pred``, ``adv_pred``,
``target`` (-1 when untargeted) and ``metadata`` (a JSON string, :func:`make_metadata`: attack and
params, source model, seed, dataset and split, selection, versions). ANNT's own 3-key files, with
MNIST images shaped (N, 28, 28), load too (their missing fields are ``None``).

**Several rows per image.** A set is a list of rows, not of images: with the target rule
``all_other`` (metadata ``target_rule: "all_other"``, Galloway et al.'s Table 3) each attacked image
gives one row per other class, image-major (:func:`expand_all_other`): ``image_index``, ``labels`` and
``clean_images`` repeat, ``target`` holds the class each row was pushed to. Everything that reads sets
row by row (infer, transfer, report) counts pairs; :func:`all_other_summary` adds the per-image view.

An attack run folder holds one set per run, ``adversarial_run{r}.npz`` (:func:`set_name`);
:func:`set_files` lists the sets of a file or run folder in run order.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annt.errors import AnntError
from annt.io import atomic_save_npz


FORMAT = "annt-adversarial-v1"
REQUIRED_KEYS = ("images", "labels", "image_index")


def set_name(run: int) -> str:
    """File name of run ``run``'s set in an attack run folder."""
    return f"adversarial_run{run}.npz"


def set_files(path) -> list[Path]:
    """The sets at ``path``: the file itself, or an attack run folder's sets in run order."""
    path = Path(path)
    if not path.is_dir():
        return [path]

    def run_number(p: Path) -> int:
        digits = "".join(c for c in p.stem.rsplit("run", 1)[-1] if c.isdigit())
        return int(digits) if digits else 0

    return sorted(path.glob("adversarial*.npz"), key=run_number)


def read_header(path) -> tuple[dict, tuple | None]:
    """``(metadata, image shape)`` of one set file without decompressing its images (the shape comes
    from the ``.npy`` header; ANNT's (H, W) gets a channel axis). Shape is None when the file lacks
    :data:`REQUIRED_KEYS`. Raises ``OSError``/``ValueError``/``zipfile.BadZipFile`` on unreadable files."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["metadata"])) if "metadata" in z.files else {}
        shape = None
        if set(REQUIRED_KEYS) <= set(z.files):
            with z.zip.open("images.npy") as member:
                version = np.lib.format.read_magic(member)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape = tuple(read(member)[0][1:])
    if shape is not None and len(shape) == 2:
        shape = shape + (1,)
    return (meta if isinstance(meta, dict) else {}), shape


def expand_all_other(x: np.ndarray, y: np.ndarray, index: np.ndarray, nb_classes: int = 10):
    """One row per (image, other class), image-major, classes increasing: ``(x, y, index, target)``
    with ``len(y) * (nb_classes - 1)`` rows and ``target != y`` in every row."""
    y = np.asarray(y).astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() >= nb_classes):
        raise ValueError(f"labels must lie in [0, {nb_classes})")
    others = np.array([[c for c in range(nb_classes) if c != label] for label in y], dtype=np.int64)
    rows = np.repeat(np.arange(len(y)), nb_classes - 1)
    return (np.asarray(x)[rows], y[rows], np.asarray(index)[rows],
            others.reshape(-1) if len(y) else np.zeros(0, np.int64))


def all_other_summary(s: "AdversarialSet") -> dict:
    """Galloway et al.'s Table 3 counting for a set of ``all_other`` rows, over every row (pair) and per image.

    Pairs (the paper's numbers, as its CleverHans code counts them: accuracy on the n·(C−1)
    adversarials against their true labels, mean L2 over all of them):
    ``pair_accuracy`` (adversarial classified as its true label), ``pair_success_rate`` (classified
    as its target), ``mean_l2`` over all pairs and ``mean_l2_success`` over pairs reaching the target.
    Per image (rows grouped by ``image_index``): ``image_accuracy_any_target`` (no target of the image
    reached), ``image_all_targets_reached``, and ``image_accuracy_worst`` (every adversarial of the
    image still classified as its true label: the worst case over targets).
    """
    d = (np.asarray(s.images, np.float64) - np.asarray(s.clean_images, np.float64)).reshape(len(s), -1)
    l2 = np.linalg.norm(d, axis=1) if len(s) else np.zeros(0)
    reached = s.adv_pred == s.target
    kept = s.adv_pred == s.labels
    images, inverse = np.unique(s.image_index, return_inverse=True)
    nan = float("nan")

    def per_image(flags, how):
        return float(np.mean([how(flags[inverse == i]) for i in range(len(images))])) if len(images) else nan

    return {
        "images": int(len(images)), "pairs": int(len(s)),
        "pair_accuracy": float(kept.mean()) if len(s) else nan,
        "pair_success_rate": float(reached.mean()) if len(s) else nan,
        "mean_l2": float(l2.mean()) if len(s) else nan,
        "mean_l2_success": float(l2[reached].mean()) if reached.any() else nan,
        "image_accuracy_any_target": per_image(reached, lambda f: not f.any()),
        "image_all_targets_reached": per_image(reached, lambda f: bool(f.all())),
        "image_accuracy_worst": per_image(kept, lambda f: bool(f.all())),
    }


def make_metadata(*, attack: str, params: dict, targeted: bool, target_rule, card: dict, checkpoint: str, seed: int,
                  dataset, selection: dict) -> dict:
    """The metadata every annt set carries (without ``run``/``fooling_rate``, which its run adds)."""
    from annt.runs import versions

    return {
        "format": FORMAT, "attack": attack, "params": params, "targeted": targeted,
        "target_rule": target_rule if not isinstance(target_rule, list) else "per-sample list",
        "source_model": {"arch": card.get("arch"), "bits": card.get("bits"), "checkpoint": checkpoint,
                         "test_accuracy": card.get("test_accuracy")},
        "seed": seed, "dataset": dataset.name, "split": dataset.split, "data_source": dataset.source,
        "selection": selection, "versions": versions(),
    }


@dataclass
class AdversarialSet:
    images: np.ndarray
    labels: np.ndarray
    image_index: np.ndarray
    clean_images: np.ndarray | None = None
    clean_pred: np.ndarray | None = None
    adv_pred: np.ndarray | None = None
    target: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)
    path: str | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def dataset(self) -> str | None:
        return self.metadata.get("dataset")

    @property
    def prefiltered(self) -> bool:
        """True when only images the source classified correctly were attacked."""
        return bool(self.metadata.get("selection", {}).get("only_correct", False))


def save_adversarial_set(path, s: AdversarialSet) -> Path:
    arrays = {"images": s.images.astype(np.float32), "labels": s.labels.astype(np.int64),
              "image_index": s.image_index.astype(np.int64),
              "metadata": np.array(json.dumps(s.metadata, default=str))}
    for key in ("clean_images", "clean_pred", "adv_pred", "target"):
        value = getattr(s, key)
        if value is not None:
            arrays[key] = value.astype(np.float32 if key == "clean_images" else np.int64)
    return atomic_save_npz(path, **arrays)


def load_adversarial_set(path) -> AdversarialSet:
    """Load an annt adversarial set, an ANNT 3-key ``.npz``, or the first set in an attack run folder.

    Images come back as float32 NHWC (a channel axis is added to (N, H, W) arrays).
    """
    path = Path(path)
    if path.is_dir():
        sets = set_files(path)
        if not sets:
            raise AnntError(f"{path}: no adversarial*.npz in this folder")
        path = sets[0]
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise AnntError(f"{path}: adversarial set not found") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise AnntError(f"{path}: not a readable .npz without pickle ({str(e).splitlines()[0][:100]})") from None
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise AnntError(f"{path}: not an adversarial set (missing {', '.join(missing)}; has {', '.join(data) or 'nothing'})")

    def nhwc(x):
        x = np.asarray(x, dtype=np.float32)
        return x[..., None] if x.ndim == 3 else x

    images = nhwc(data["images"])
    n = len(images)
    labels = np.asarray(data["labels"]).astype(np.int64).reshape(-1)
    if labels.ndim == 1 and len(labels) != n:
        raise AnntError(f"{path}: {n} images but {len(labels)} labels")
    try:
        meta = json.loads(str(data["metadata"])) if "metadata" in data else {"format": "annt-v0 (ANNT 3-key)"}
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise AnntError(f"{path}: 'metadata' is not a JSON object")
    return AdversarialSet(
        images=images, labels=labels, image_index=np.asarray(data["image_index"]).astype(np.int64).reshape(-1),
        clean_images=nhwc(data["clean_images"]) if "clean_images" in data else None,
        clean_pred=data["clean_pred"].astype(np.int64) if "clean_pred" in data else None,
        adv_pred=data["adv_pred"].astype(np.int64) if "adv_pred" in data else None,
        target=data["target"].astype(np.int64) if "target" in data else None,
        metadata=meta, path=str(path))
