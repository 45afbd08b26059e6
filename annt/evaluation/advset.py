"""Adversarial sets on disk (SPEC §8): one ``.npz`` readable with ``np.load(allow_pickle=False)``.

Keys: ANNT's ``images`` (adversarial, float32 NHWC in [0, 1]), ``labels`` (true class) and
``image_index`` (position in the dataset split's original array), plus ``clean_images``,
``clean_pred``, ``adv_pred``, ``target`` (-1 when untargeted) and ``metadata`` (a JSON string:
attack and params, source model, seed, dataset and split, versions). ANNT's own 3-key files,
with MNIST images shaped (N, 28, 28), load too (their missing fields are ``None``).
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annt.errors import AnntError
from annt.io import atomic_save_npz


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
        sets = sorted(path.glob("adversarial*.npz"))
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
    missing = [k for k in ("images", "labels", "image_index") if k not in data]
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
