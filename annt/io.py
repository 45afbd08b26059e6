"""Atomic file writes.

Every result file goes through these helpers: data is written to a temporary file in the
destination folder, flushed to disk, then renamed over the target. A crash at any point
leaves either the old file or the new one, never half of one.

Files get the mode an ordinary ``open()`` would give them (``0o666`` less the umask), not the
``0o600`` of :func:`tempfile.mkstemp`, so colleagues on a shared machine can read the results.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from annt.tables import clean


def _umask_from_proc() -> int | None:
    """The umask from ``/proc/self/status`` (Linux 4.7+), or None where that is not available."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_by_setting() -> int:
    """The umask, read the only portable way: set it and put it back (not thread-safe)."""
    with _UMASK_LOCK:
        old = os.umask(0o022)
        os.umask(old)
        return old


_UMASK_LOCK = threading.Lock()
# Without /proc, read once at import: before a program's threads start writing files.
_UMASK_FALLBACK: int | None = None if _umask_from_proc() is not None else _umask_by_setting()


def current_umask() -> int:
    """The process umask, read without changing it.

    On Linux it comes from ``/proc/self/status`` at each call: no side effect, so it is safe
    with threads, and it follows a later ``os.umask``. Elsewhere it is the umask read once
    when this module was imported (reading it means briefly changing it, which could give
    another thread's new file the wrong mode, so it is not repeated).
    """
    global _UMASK_FALLBACK
    umask = _umask_from_proc()
    if umask is not None:
        return umask
    if _UMASK_FALLBACK is None:
        _UMASK_FALLBACK = _umask_by_setting()
    return _UMASK_FALLBACK


def apply_umask(path: str | os.PathLike) -> None:
    """Give ``path`` the mode a newly created file gets: ``0o666`` less the umask."""
    os.chmod(path, 0o666 & ~current_umask())


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp"):
    """Yield a temporary file name next to ``path``; on success it is renamed over ``path``.

    For writers that want a file name rather than bytes (``model.save``). The temporary file
    already exists (empty) when the name is yielded; the writer may overwrite it. On success it
    gets the umask's mode (see :func:`apply_umask`) and replaces ``path``; on any exception,
    Ctrl-C included, it is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        apply_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename; see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def to_json(obj: Any) -> str:
    """JSON text with numpy scalars/arrays and paths converted; NaN is written as null; floats
    without binary noise (``0.30000000000000004`` -> ``0.3``, :func:`annt.tables.clean`)."""
    return json.dumps(_nan_to_none(clean(obj)), indent=2, default=_json_default, allow_nan=False) + "\n"


def _nan_to_none(obj: Any):
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, np.floating) and np.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, to_json(obj))


def atomic_save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """``np.savez_compressed`` to ``path`` atomically. Arrays must not need pickle."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())
