"""Model folders (SPEC §8): ``model.keras`` + ``card.json``, and the ANNT/tensorpack LeNet-5 import.

A model folder is what training writes and what attacks and inference load::

    models/mnist_a-4bit/
        model.keras   Keras 3 archive (loaded with safe_mode=True: no arbitrary code)
        card.json     the model card: arch, bits, model options, data, accuracies, versions

Loading always checks the card against what the caller expects, so a config that says
``bits: 4`` can never silently attack a 1-bit model.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import annt.layers  # noqa: F401  registers the annt layers for safe-mode loading
from annt.architectures import build_model
from annt.errors import ModelError
from annt.io import atomic_write_json
from annt.quantize import bits_label, check_bits

MODEL_FILE = "model.keras"
CARD_FILE = "card.json"

#: Card keys the caller is expected to supply (SPEC §8); missing ones are written as null.
CALLER_KEYS = ("dataset", "val_accuracy", "test_accuracy", "epochs", "seed", "data_hash")


def _versions() -> dict[str, str]:
    try:
        from importlib.metadata import version

        annt_version = version("annt")
    except Exception:  # not installed as a distribution (running from a checkout)
        import annt

        annt_version = getattr(annt, "__version__", "unknown")
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "annt": annt_version}


def _card_bits(card: dict) -> tuple[int, int]:
    bits = card.get("bits")
    if isinstance(bits, dict):
        return int(bits["weights"]), int(bits["activations"])
    raise KeyError("bits")


def make_card(model: keras.Model, card: dict[str, Any]) -> dict[str, Any]:
    """The full card: the caller's fields, the model's build options, and package versions.

    Build options come from ``model.annt_options`` (set by :func:`annt.architectures.build_model`);
    a caller field that contradicts them raises ``ModelError`` instead of writing a wrong card.
    ``bits`` is written as ``{"weights": k, "activations": k, "label": "4bit"}`` with 32 = fp.
    """
    card = dict(card)
    options = dict(getattr(model, "annt_options", {}) or {})
    if "bits" in card and isinstance(card["bits"], dict):
        card.setdefault("weight_bits", card["bits"].get("weights"))
        card.setdefault("act_bits", card["bits"].get("activations"))
    for key, value in options.items():
        given = card.get(key)
        if given is not None and given != value and not (key == "input_shape" and list(given) == value):
            raise ModelError(f"model card field {key}={given!r} contradicts the model, which has {key}={value!r}")
        card[key] = value
    for key in ("arch", "weight_bits", "act_bits"):
        if card.get(key) is None:
            raise ModelError(f"model card needs {key!r} (model was not built by annt.build_model)")
    wb = check_bits(card.pop("weight_bits"), "weight_bits")
    ab = check_bits(card.pop("act_bits"), "act_bits")
    card["bits"] = {"weights": wb, "activations": ab, "label": bits_label(wb, ab)}
    if card.get("input_shape") is None:
        card["input_shape"] = [int(d) for d in model.input_shape[1:]]
    if card.get("num_classes") is None:
        card["num_classes"] = int(model.output_shape[-1])
    for key in CALLER_KEYS:
        card.setdefault(key, None)
    card["versions"] = {**_versions(), **(card.get("versions") or {})}
    return card


def save_model_folder(model: keras.Model, folder: str | os.PathLike, card: dict[str, Any]) -> Path:
    """Write ``folder/model.keras`` and ``folder/card.json`` atomically; return the folder.

    Each file is written under a temporary name in the folder and renamed into place, the model
    first: a crash leaves either a complete earlier version or no card (so the folder won't load).
    """
    folder = Path(folder)
    full_card = make_card(model, card)  # validate before touching the disk
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".model.", suffix=".tmp.keras")
    os.close(fd)
    try:
        model.save(tmp, overwrite=True)
        os.replace(tmp, folder / MODEL_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    atomic_write_json(folder / CARD_FILE, full_card)
    return folder


def read_card(folder: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``card.json`` of a model folder; ``ModelError`` if missing or unreadable."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"model folder {folder} does not exist")
    path = folder / CARD_FILE
    if not path.is_file():
        raise ModelError(f"model folder {folder} has no {CARD_FILE}")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(card, dict):
            raise ValueError("not a JSON object")
        card["arch"]
        _card_bits(card)
    except (ValueError, KeyError, TypeError) as err:
        raise ModelError(f"model card {path} is unreadable ({type(err).__name__}: {err})") from None
    return card


def load_model_folder(
    folder: str | os.PathLike,
    expect_arch: str | None = None,
    expect_weight_bits: int | None = None,
    expect_act_bits: int | None = None,
) -> tuple[keras.Model, dict[str, Any]]:
    """Load ``(model, card)`` from a model folder, in Keras safe mode, after checking the card.

    Raises ``ModelError`` (one line) if the folder, card or model file is missing or unreadable,
    or if the card's arch / weight bits / activation bits differ from the expected ones.
    """
    folder = Path(folder)
    card = read_card(folder)
    weight_bits, act_bits = _card_bits(card)
    checks = (("arch", card["arch"], expect_arch), ("weight bits", weight_bits, expect_weight_bits),
              ("activation bits", act_bits, expect_act_bits))
    for what, have, want in checks:
        if want is not None and have != want:
            raise ModelError(f"model card {folder / CARD_FILE} says {what} {have!r}, but {want!r} was expected")
    path = folder / MODEL_FILE
    if not path.is_file():
        raise ModelError(f"model folder {folder} has no {MODEL_FILE}")
    try:
        model = keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as err:  # corrupt zip, unknown layer, unsafe lambda, ...
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelError(f"cannot load {path}: {msg}") from None
    model.annt_options = {
        "arch": card["arch"], "weight_bits": weight_bits, "act_bits": act_bits,
        **{k: card[k] for k in ("quantize_first_last", "batchnorm", "quantize_last_hidden",
                                "input_shape", "num_classes") if k in card},
    }
    return model, card


#: tensorpack variable → (Keras layer, index into layer.get_weights()) for ANNT's LeNet-5.
_TENSORPACK_LENET5 = {
    f"{layer}/{var}": (layer, i)
    for layer in ("conv0", "conv1", "fc0", "fc1", "linear")
    for i, var in enumerate(("W", "b"))
}


def import_tensorpack_lenet5(checkpoint_path: str | os.PathLike) -> keras.Model:
    """Build the fp ``lenet5`` and load an ANNT/tensorpack TF1 checkpoint into it.

    Reads ``conv0/W, conv0/b, conv1/W, conv1/b, fc0/W, fc0/b, fc1/W, fc1/b, linear/W, linear/b``
    with ``tf.train.load_checkpoint`` (a checkpoint prefix or its directory). Layouts match
    Keras exactly: conv kernels are (kh, kw, c_in, c_out), dense kernels (in, out), and
    tensorpack's FullyConnected flattens NHWC in row-major order, the same as ``Flatten`` with
    channels_last, so ``fc0/W`` (400, 120) copies without permutation. Optimizer slots and other
    variables in the checkpoint are ignored.

    Input convention: ANNT fed images of shape (N, 28, 28) in [0, 1] and expanded them to
    (N, 28, 28, 1) inside the graph; the returned model takes (N, 28, 28, 1) in [0, 1].
    Raises ``ModelError`` naming missing variables or shape mismatches.
    """
    try:
        reader = tf.train.load_checkpoint(str(checkpoint_path))
    except Exception as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelError(f"cannot read tensorpack checkpoint {checkpoint_path}: {msg}") from None
    shapes = reader.get_variable_to_shape_map()
    missing = [name for name in _TENSORPACK_LENET5 if name not in shapes]
    if missing:
        raise ModelError(f"checkpoint {checkpoint_path} lacks LeNet-5 variables: {', '.join(missing)}")

    model = build_model("lenet5", (28, 28, 1), 10)
    weights = {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
    bad = []
    for name, (layer, i) in _TENSORPACK_LENET5.items():
        value = reader.get_tensor(name)
        expected = weights[layer][i].shape
        if tuple(value.shape) != tuple(expected):
            bad.append(f"{name} {tuple(value.shape)} != {tuple(expected)}")
        else:
            weights[layer][i] = np.asarray(value, dtype=np.float32)
    if bad:
        raise ModelError(f"checkpoint {checkpoint_path} does not fit lenet5: {'; '.join(bad)}")
    for layer, values in weights.items():
        model.get_layer(layer).set_weights(values)
    return model
