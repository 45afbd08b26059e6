"""Run folders (SPEC §8): ``output_dir/<time>-<task>-<name>/``, created exclusively, never reused
except by an explicit resume. Each holds the config as given, the resolved config, the environment,
a log and the task's results; every file is written atomically.
"""
from __future__ import annotations

import datetime as _dt
import itertools
import json
import logging
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from annt.errors import AnntError
from annt.io import atomic_write_json, atomic_write_text

PACKAGES = ("annt", "tensorflow", "keras", "adversarial-robustness-toolbox", "numpy", "PyYAML", "pillow", "matplotlib")
LOGGER_NAME = "annt"  # each run logs to its own child logger, "annt.run.<n>"
_run_ids = itertools.count(1)


def versions() -> dict[str, str]:
    """Installed versions of the packages that determine results (``None`` if not installed).

    The one place annt collects versions: ``environment.json``, attack metadata and model cards
    use it. Reads package metadata only, so it does not import TensorFlow. ``annt`` is the
    imported package's ``__version__`` (a checkout may be newer than an installed copy).
    """
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    from annt import __version__
    out["annt"] = __version__
    return out


def git_commit() -> str | None:
    """The commit of the checkout annt runs from (``-dirty`` if tracked files changed), else None.

    None for an installed copy (``pip install .``): its folder is not a git work tree's root,
    even when site-packages lies inside one (a ``.venv`` in the checkout), so the checkout's
    HEAD, which need not be what was installed, is not reported.
    """
    root = Path(__file__).resolve().parent.parent
    try:
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=5)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != root:
            return None
        r = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        return None
    return r.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def environment() -> dict[str, Any]:
    env = {"versions": versions(), "git_commit": git_commit(), "platform": platform.platform(),
           "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
           "argv": sys.argv, "cwd": os.getcwd(), "time": _dt.datetime.now().astimezone().isoformat()}
    if "tensorflow" in sys.modules:  # only report devices if TF is already loaded (it is for real tasks)
        tf = sys.modules["tensorflow"]
        env["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    return env


class Run:
    """A run folder plus its logger. ``run.path / name`` for artifacts; ``run.log.info`` to log.

    Each run has a logger of its own (``annt.run.<n>``) that writes to its ``log.txt`` and to
    stdout, so runs in one process (threads, a notebook) never log into each other's files.
    :meth:`close` closes its handlers.
    """

    def __init__(self, path: Path, cfg: dict, resumed: bool = False):
        self.path = Path(path)
        self.cfg = cfg
        self.resumed = resumed
        self.log = _make_logger(self.path / "log.txt")

    def file(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, obj: Any) -> Path:
        return atomic_write_json(self.path / name, obj)

    def write_results(self, results: dict) -> Path:
        return self.write_json("results.json", results)

    def close(self) -> None:
        for h in list(self.log.handlers):
            self.log.removeHandler(h)
            h.close()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at emit time (notebooks and test capture swap it)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


def _make_logger(logfile: Path) -> logging.Logger:
    """A new logger for one run: its ``log.txt`` (with times) and stdout (message only).

    The logger is made directly rather than through ``logging.getLogger`` so that it is not kept
    in logging's registry for the life of the process: it goes away with its :class:`Run`. It
    does not propagate, so a handler a program puts on the root logger does not print it twice.
    """
    log = logging.Logger(f"{LOGGER_NAME}.run.{next(_run_ids)}", logging.INFO)
    log.propagate = False
    fh = logging.FileHandler(logfile, encoding="utf-8")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    sh = _StdoutHandler()
    sh.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(fh)
    log.addHandler(sh)
    return log


def create_run(cfg: dict, config_text: str | None = None, now: _dt.datetime | None = None) -> Run:
    """Make a new, unique run folder and write the config (as given and resolved) and environment."""
    out = Path(cfg["output_dir"])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AnntError(f"output_dir {out}: cannot create ({e.strerror})") from None
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{cfg['task']}-{cfg['name']}"
    for i in range(1, 1000):
        path = out / (base if i == 1 else f"{base}-{i}")
        try:
            path.mkdir()  # exclusive: fails if another run already took this name
            break
        except FileExistsError:
            continue
    else:
        raise AnntError(f"output_dir {out}: could not find a free run-folder name for {base}")
    if config_text is not None:
        atomic_write_text(path / "config.yaml", config_text)
    atomic_write_text(path / "config.resolved.yaml", yaml.safe_dump(cfg, sort_keys=False))
    atomic_write_json(path / "environment.json", environment())
    return Run(path, cfg)


def open_run(path, task: str) -> tuple[Run, dict]:
    """Reopen an interrupted run folder for ``--resume``; returns the run and its resolved config."""
    path = Path(path)
    resolved = path / "config.resolved.yaml"
    if not resolved.is_file():
        raise AnntError(f"--resume {path}: not a run folder (no config.resolved.yaml)")
    cfg = yaml.safe_load(resolved.read_text(encoding="utf-8"))
    if cfg.get("task") != task:
        raise AnntError(f"--resume {path}: that run is a {cfg.get('task')!r} task, not {task!r}")
    if (path / "results.json").is_file() and json.loads((path / "results.json").read_text()).get("complete"):
        raise AnntError(f"--resume {path}: that run already finished")
    return Run(path, cfg, resumed=True), cfg
