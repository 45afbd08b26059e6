"""Model folders (SPEC §8): ``model.keras`` + ``card.json`` (the card: :mod:`annt.models.card`).

A model folder is what training writes and what attacks and inference load::

    models/mnist_a-4bit/
        model.keras   Keras 3 archive (loaded with safe_mode=True: no arbitrary code)
        card.json     the model card: arch, bits, model options, data, accuracies, versions

Loading always checks the card against what the caller expects, so a config that says
``bits: 4`` can never silently attack a 1-bit model.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import keras

import annt.models.layers  # noqa: F401  registers the annt layers for safe-mode loading
import annt.models.discretize  # noqa: F401  registers InputDiscretization likewise
from annt.errors import ModelError
from annt.io import atomic_path, atomic_write_json
from annt.models.card import CARD_FILE, MODEL_FILE, card_bits, check_model_file, make_card, read_card


def save_model_folder(model: keras.Model, folder: str | os.PathLike, card: dict[str, Any]) -> Path:
    """Write ``folder/model.keras`` and ``folder/card.json`` atomically; return the folder.

    Each file is written under a temporary name in the folder and renamed into place, the model
    first: a crash leaves either a complete earlier version or no card (so the folder won't load).
    """
    folder = Path(folder)
    full_card = make_card(model, card)  # validate before touching the disk
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / MODEL_FILE, suffix=".keras") as tmp:  # respects the umask, as every result file
        _inference_copy(model).save(tmp, overwrite=True)
    atomic_write_json(folder / CARD_FILE, full_card)
    return folder


def _inference_copy(model: keras.Model) -> keras.Model:
    """``model`` without its training state: a compiled model's file would also hold the optimizer's
    variables (Adam: twice the weights again), which nothing reads back (training resumes from its run
    folder's checkpoints). The copy is rebuilt from the config with the same weights; a model that
    cannot be rebuilt that way (a subclassed user model) is saved as it is."""
    if getattr(model, "optimizer", None) is None:
        return model
    try:
        copy = model.__class__.from_config(model.get_config())
        copy.set_weights(model.get_weights())
    except Exception:  # noqa: BLE001 - any rebuild failure: keep the original, optimizer and all
        return model
    return copy


def _root_cause(err: Exception) -> str:
    """One line naming the fault: Keras wraps a layer's error in one "could not be deserialized"
    paragraph per nesting level, each ending with ``Exception encountered: <inner error>``."""
    text = str(err)
    marker = "Exception encountered: "
    if marker in text:
        text = text.rsplit(marker, 1)[1]
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0].strip() if lines else type(err).__name__


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
    b = card_bits(card)
    weight_bits, act_bits = b["weights"], b["activations"]
    checks = (("arch", card["arch"], expect_arch), ("weight bits", weight_bits, expect_weight_bits),
              ("activation bits", act_bits, expect_act_bits))
    for what, have, want in checks:
        if want is not None and have != want:
            raise ModelError(f"model card {folder / CARD_FILE} says {what} {have!r}, but {want!r} was expected")
    check_model_file(folder)
    path = folder / MODEL_FILE
    try:
        model = keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as err:  # corrupt weights, unknown layer or quantizer, unsafe lambda, ...
        raise ModelError(f"cannot load {path}: {_root_cause(err)}") from None
    model.annt_options = {
        "arch": card["arch"], "weight_bits": weight_bits, "act_bits": act_bits,
        **{k: card[k] for k in ("quantize_first_last", "batchnorm", "quantize_last_hidden",
                                "input_shape", "num_classes", "input_bits", "options") if k in card},
    }
    return model, card


def load_configured_model(model_cfg: dict):
    """``(model, card)`` for a validated ``model:`` config section: its checkpoint, checked against
    the section's arch and bits."""
    return load_model_folder(model_cfg["checkpoint"], expect_arch=model_cfg["arch"],
                             expect_weight_bits=model_cfg["bits"]["weights"],
                             expect_act_bits=model_cfg["bits"]["activations"])
