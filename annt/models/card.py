"""The model card (SPEC §8): the one place that writes, reads and validates ``card.json``.

A model folder holds ``model.keras`` and ``card.json``. The card records what the graph is
(``arch``, ``bits`` as ``{"weights", "activations", "label"}`` with 32 = fp, the model options
:data:`OPTIONS`, the family's own ``options`` such as galloway's ``{"type": "C", "filters": 64}``,
``"stochastic": true`` for a model random at inference, ``input_shape``, ``num_classes``), how it was trained (``dataset``, accuracies,
``epochs``, ``seed``, ``data_hash``, split sizes, ``train_settings``) and the package versions.
Pure Python and JSON: config validation reads cards without importing TensorFlow.

A card for a model annt did not build (``annt.save_model`` on your own Keras model) needs
``arch`` (any name), ``weight_bits`` and ``act_bits`` (32 for a float model); see wiki/Library.md.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from annt import bits as bitwidths
from annt.errors import ModelError

MODEL_FILE = "model.keras"
CARD_FILE = "card.json"

#: Graph options every annt architecture records (a config may not contradict them).
OPTIONS = ("quantize_first_last", "batchnorm", "quantize_last_hidden")
#: Card keys the caller is expected to supply (SPEC §8); missing ones are written as null.
CALLER_KEYS = ("dataset", "val_accuracy", "test_accuracy", "epochs", "seed", "data_hash")


def make_card(model, card: dict[str, Any]) -> dict[str, Any]:
    """The full card: the caller's fields, the model's build options, and package versions.

    Build options come from ``model.annt_options`` (set by :func:`annt.models.build_model`);
    a caller field that contradicts them raises ``ModelError`` instead of writing a wrong card.
    ``bits`` is written as ``{"weights": k, "activations": k, "label": "4bit"}`` with 32 = fp.
    A model with a layer that samples at inference (``annt_stochastic``, e.g. galloway type S) gets
    ``"stochastic": true``, found on the layers themselves, so a loaded model re-saved keeps it.
    """
    from annt.runs import versions

    card = dict(card)
    options = dict(getattr(model, "annt_options", {}) or {})
    if isinstance(card.get("bits"), dict):
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
    try:
        wb = bitwidths.check(card.pop("weight_bits"), "weight_bits")
        ab = bitwidths.check(card.pop("act_bits"), "act_bits")
    except ValueError as e:
        raise ModelError(f"model card: {e}") from None
    card["bits"] = {"weights": wb, "activations": ab, "label": bitwidths.tag({"weights": wb, "activations": ab})}
    if card.get("input_shape") is None:
        card["input_shape"] = [int(d) for d in model.input_shape[1:]]
    if card.get("num_classes") is None:
        card["num_classes"] = int(model.output_shape[-1])
    if _has_stochastic_layers(model):
        card["stochastic"] = True
    for key in CALLER_KEYS:
        card.setdefault(key, None)
    v = versions()
    card["versions"] = {"tensorflow": v.get("tensorflow"), "keras": v.get("keras"), "annt": v.get("annt"),
                        **(card.get("versions") or {})}
    return card


def _has_stochastic_layers(model) -> bool:
    from annt.attacks.adaptive import STOCHASTIC, marked_layers  # TF-free module

    return bool(marked_layers(model, STOCHASTIC))


def check_options(card: dict[str, Any], given: dict[str, Any] | None) -> tuple[str, Any, str] | None:
    """The first of ``given`` (a config's ``model.options``, possibly partial) that contradicts the
    card's ``options``, as ``(name, value, why)``; None when every given option equals the card's."""
    have = card.get("options") or {}
    for name, value in (given or {}).items():
        if name not in have:
            return name, value, f"the checkpoint's card has no option {name!r} (its options: {have or 'none'})"
        if have[name] != value:
            return name, value, f"does not match the checkpoint's card ({name}: {have[name]!r})"
    return None


def read_card(folder: str | os.PathLike) -> dict[str, Any]:
    """The validated card of a model folder. Raises ``ModelError`` (one line) if the folder or card
    is missing, the card is not JSON, or ``arch``/``bits`` are missing or invalid."""
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
        if not isinstance(card.get("arch"), str):
            raise KeyError("arch")
        card_bits(card)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ModelError(f"model card {path} is unreadable ({type(err).__name__}: {err})") from None
    return card


def card_bits(card: dict) -> dict[str, int]:
    """``{"weights": k, "activations": k}`` of a card; ``ValueError``/``KeyError`` if invalid."""
    b = card.get("bits")
    if not isinstance(b, dict):
        raise KeyError("bits")
    return {"weights": bitwidths.check(b["weights"]), "activations": bitwidths.check(b["activations"])}


def read_card_json(folder) -> dict | None:
    """The card as stored, or None when it cannot be read (for optional lookups)."""
    try:
        return read_card(folder)
    except ModelError:
        return None


def check_model_file(folder: str | os.PathLike) -> None:
    """Refuse, before any work, a ``model.keras`` that is missing or not a complete Keras archive
    (a truncated copy fails here, not minutes later as "File not found")."""
    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise ModelError(f"model folder {folder} has no {MODEL_FILE}")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        size = path.stat().st_size if path.exists() else 0
        raise ModelError(f"{path} is not a complete Keras archive ({size} bytes; truncated or corrupt copy?): "
                         f"{str(e) or type(e).__name__}") from None
    missing = {"config.json", "model.weights.h5"} - names
    if missing:
        raise ModelError(f"{path} is not a Keras model archive (missing {', '.join(sorted(missing))})")
