"""Where cells run: ``inline`` (this process), ``local`` (worker processes) or ``ray`` (a Ray cluster).

Every executor runs the same function, :func:`run_cell`, on a *job* (a plain dict: the cell folder,
its ``cell.yaml``, task and thread cap) and gets back a plain dict (``status`` done | failed |
interrupted, ``run_dir``, ``error``). :func:`run_cell` imports TensorFlow capped to ``threads``
CPU threads (once per process), resumes the cell's unfinished run folder when the task can resume
(attack, train), else calls :func:`annt.api.run_config` on ``cell.yaml``, with the run's console
output going to ``console.txt`` in the cell folder. So a cell run by any executor is the same run.

Executors share one small interface, driven by :mod:`annt.grid.schedule`: ``start()`` (raise
:class:`~annt.errors.AnntError` when it cannot start), ``free()`` (how many more cells it takes
now), ``submit(label, job)``, ``wait(timeout) -> [(label, outcome)]``, ``interrupt()`` (stop running
cells the way Ctrl-C stops a run: finished batches stay) and ``close()``.

* ``local``: ``jobs`` worker processes (spawned, started when the first cell is submitted, kept for
  the next cells so TensorFlow is imported once per worker), each capped to ``threads`` CPU threads
  (default: cores // jobs), in their own process group so that Ctrl-C reaches only the grid, which
  forwards it. A worker that dies (killed, out of memory) loses its cell: the outcome is ``died``
  and the scheduler runs the cell once more (it resumes where the dead worker's last batch ended).
* ``ray``: ``ray.init(address)`` of an existing cluster, or a local Ray instance with ``num_cpus``
  when no address is given; each cell is a Ray task with ``num_cpus = threads`` and
  ``max_retries = 1`` (Ray reruns a cell whose worker died). Cells read and write the grid folder
  directly, so every node needs it at the same path (a shared filesystem; wiki/Scaling.md).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import sys
import time
import traceback
from pathlib import Path

from annt.errors import AnntError, Interrupted

EXECUTORS = ("local", "ray", "inline")
_PREPARED: dict = {}  # per process: the thread cap TensorFlow was imported with


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def one_line(text: str) -> str:
    return " ".join(str(text).split())


# --------------------------------------------------------------------------- the cell function
def prepare_process(threads: int | None) -> None:
    """Cap this process's CPU threads (BLAS/OpenMP env and TensorFlow's pools) and import TensorFlow,
    once; a later call with another cap leaves the first in place (TensorFlow cannot change it)."""
    if "threads" in _PREPARED:
        return
    _PREPARED["threads"] = threads
    if threads is not None and "tensorflow" not in sys.modules:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                    "TF_NUM_INTEROP_THREADS"):
            os.environ[var] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules:
        from annt.cli import prepare_tensorflow

        prepare_tensorflow(threads)


@contextlib.contextmanager
def console_to(path: Path):
    """Send this process's stdout and stderr (file descriptors 1 and 2: Python, tqdm, TensorFlow's C++
    logs alike) to ``path`` (appended) while the block runs, then put them back. At the descriptor
    level, so that a library that kept ``sys.stderr`` (ART's logging, absl) never holds a closed file."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in saved:
            os.close(f)


def run_cell(job: dict) -> dict:
    """Run one cell (see the module docstring). Never raises for a failing cell: the outcome says it."""
    from annt import api
    from annt.grid.cells import cell_state, run_folders

    t0 = time.time()
    folder = Path(job["folder"])
    state = cell_state(folder)
    if state.status == "done":  # e.g. Ray reran a cell whose first attempt finished
        return {"status": "done", "run_dir": str(state.run_dir), "resumed": False, "seconds": 0.0}
    prepare_process(job.get("threads"))
    resume = str(state.run_dir) if state.status == "unfinished" and job["task"] in api.RESUMABLE_TASKS else None
    from annt.io import atomic_write_json

    started = dt.datetime.now().astimezone().isoformat(timespec="milliseconds")
    atomic_write_json(folder / "worker.json", {"pid": os.getpid(), "host": socket.gethostname(), "started": started,
                                               "resume": resume})
    out: dict = {"resumed": resume is not None}
    with console_to(folder / "console.txt"):
        print(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()} on {socket.gethostname()}"
              f"{' resuming ' + resume if resume else ''}", flush=True)
        try:
            res = api.run_config(job["config"], resume=resume)
            out.update(status="done", run_dir=res["run_dir"])
        except Interrupted as e:
            out.update(status="interrupted", run_dir=str(e.run_dir))
        except KeyboardInterrupt:
            out.update(status="interrupted")
        except AnntError as e:
            out.update(status="failed", error=one_line(e))
        except Exception as e:  # a bug or a library error: the traceback goes to console.txt
            traceback.print_exc()
            out.update(status="failed", error=one_line(f"{type(e).__name__}: {e}"))
    if "run_dir" not in out:
        runs = run_folders(folder)
        out["run_dir"] = str(runs[-1]) if runs else None
    out["seconds"] = round(time.time() - t0, 2)
    return out


# --------------------------------------------------------------------------- inline
class InlineExecutor:
    """Cells one at a time in this process (debugging, tests): no thread cap, no isolation."""

    name = "inline"

    def __init__(self, jobs: int = 1, threads: int | None = None):
        self._queue: list[tuple[str, dict]] = []

    def start(self) -> None:
        pass

    def free(self) -> int:
        return 0 if self._queue else 1

    def submit(self, label: str, job: dict) -> None:
        self._queue.append((label, job))

    def running(self) -> list[str]:
        return [label for label, _ in self._queue]

    def wait(self, timeout: float) -> list[tuple[str, dict]]:
        if not self._queue:
            return []
        label, job = self._queue[0]
        job = {**job, "threads": None}  # this process's TensorFlow: no cap of its own
        outcome = run_cell(job)
        self._queue.pop(0)
        if outcome["status"] == "interrupted":
            raise KeyboardInterrupt
        return [(label, outcome)]

    def interrupt(self, grace: float = 30.0) -> list[tuple[str, dict]]:
        self._queue.clear()
        return []

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- local processes
def _worker_main(conn, threads: int | None) -> None:
    """A local worker: its own process group (Ctrl-C at the terminal reaches the grid only, which
    forwards it), then cells from ``conn`` until None or the grid goes away."""
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        try:
            job = conn.recv()
        except KeyboardInterrupt:  # a forwarded Ctrl-C that arrived between cells
            continue
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            outcome = run_cell({**job, "threads": threads})
        except KeyboardInterrupt:
            outcome = {"status": "interrupted", "run_dir": None}
        try:
            conn.send(outcome)
        except (BrokenPipeError, OSError):
            return


class LocalExecutor:
    """``jobs`` spawned worker processes on this machine (see the module docstring)."""

    name = "local"

    def __init__(self, jobs: int, threads: int | None):
        self.jobs, self.threads = jobs, threads
        self._workers: list[dict] = []  # {"proc", "conn", "label"}

    def start(self) -> None:
        pass  # workers start with the first cell, so a grid whose cells are all done starts none

    def _spawn(self) -> dict:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker_main, args=(child, self.threads), daemon=True, name="annt-grid-worker")
        proc.start()
        child.close()
        w = {"proc": proc, "conn": parent, "label": None}
        self._workers.append(w)
        return w

    def free(self) -> int:
        busy = sum(1 for w in self._workers if w["label"] is not None)
        return self.jobs - busy

    def running(self) -> list[str]:
        return [w["label"] for w in self._workers if w["label"] is not None]

    def submit(self, label: str, job: dict) -> None:
        idle = [w for w in self._workers if w["label"] is None and w["proc"].is_alive()]
        w = idle[0] if idle else self._spawn()
        w["conn"].send(job)
        w["label"] = label

    def wait(self, timeout: float) -> list[tuple[str, dict]]:
        from multiprocessing.connection import wait

        busy = [w for w in self._workers if w["label"] is not None]
        if not busy:
            time.sleep(min(timeout, 0.05))
            return []
        ready = wait([w["conn"] for w in busy] + [w["proc"].sentinel for w in busy], timeout)
        out = []
        for w in busy:
            if w["conn"] in ready or w["proc"].sentinel in ready:
                outcome = None
                try:
                    if w["conn"].poll():
                        outcome = w["conn"].recv()
                except (EOFError, OSError):
                    outcome = None
                if outcome is None:
                    if w["proc"].is_alive():
                        continue
                    w["proc"].join(1)
                    outcome = {"status": "died", "error": f"worker process {w['proc'].pid} died "
                               f"(exit code {w['proc'].exitcode})", "run_dir": None}
                    self._workers.remove(w)
                out.append((w["label"], outcome))
                w["label"] = None
        return out

    def interrupt(self, grace: float = 60.0) -> list[tuple[str, dict]]:
        """Forward Ctrl-C to every busy worker and collect what they report (up to ``grace`` s)."""
        for w in self._workers:
            if w["label"] is not None and w["proc"].is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w["proc"].pid, signal.SIGINT)
        out, deadline = [], time.time() + grace
        while any(w["label"] is not None for w in self._workers) and time.time() < deadline:
            out += self.wait(0.5)
        for w in self._workers:
            if w["label"] is not None:  # did not stop in time
                w["proc"].terminate()
                out.append((w["label"], {"status": "interrupted", "run_dir": None}))
                w["label"] = None
        return out

    def close(self) -> None:
        for w in self._workers:
            with contextlib.suppress(OSError, BrokenPipeError):
                w["conn"].send(None)
        for w in self._workers:
            w["proc"].join(10)
            if w["proc"].is_alive():
                w["proc"].terminate()
                w["proc"].join(5)
        self._workers.clear()


# --------------------------------------------------------------------------- ray
def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def check_ray(address: str | None, timeout: float = 5.0) -> None:
    """Raise :class:`AnntError` (one line) when Ray is not installed or ``address`` does not answer;
    nothing is started. ``auto`` is left to ``ray.init``."""
    if not ray_available():
        raise AnntError("grid.executor = ray: Ray is not installed; install it with pip install -r "
                        "requirements-ray.txt (or pip install 'annt[ray]'), or use executor local")
    if not address or address in ("auto", "local"):
        return
    host_port = address.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise AnntError(f"grid.ray.address = {address!r}: expected HOST:PORT (or ray://HOST:PORT, or auto)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise AnntError(f"grid.ray.address = {address!r}: cannot reach a Ray cluster there "
                        f"({e.strerror or type(e).__name__}); start one with `ray start --head` or leave the address "
                        "out for a local Ray instance") from None


class RayExecutor:
    """Cells as Ray tasks (see the module docstring)."""

    name = "ray"

    def __init__(self, jobs: int, threads: int | None, address: str | None = None, num_cpus: int | None = None):
        self.jobs, self.threads, self.address, self.num_cpus = jobs, threads or 1, address, num_cpus
        self._refs: dict = {}  # ObjectRef -> label
        self._ray = None

    def start(self) -> None:
        check_ray(self.address)
        import ray

        kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        if not self.address:
            kwargs["num_cpus"] = self.num_cpus or cores()
        try:
            ray.init(address=self.address or None, **kwargs)
        except Exception as e:  # ConnectionError, RuntimeError ...: one line, nothing started
            raise AnntError(f"grid.executor = ray: cannot start Ray ({one_line(f'{type(e).__name__}: {e}')})") from None
        self._ray = ray
        self._remote = ray.remote(max_retries=1)(run_cell)

    def free(self) -> int:
        return self.jobs - len(self._refs)

    def running(self) -> list[str]:
        return list(self._refs.values())

    def submit(self, label: str, job: dict) -> None:
        ref = self._remote.options(num_cpus=self.threads, name=f"annt-cell-{label}").remote({**job, "threads": self.threads})
        self._refs[ref] = label

    def wait(self, timeout: float) -> list[tuple[str, dict]]:
        if not self._refs:
            time.sleep(min(timeout, 0.05))
            return []
        ready, _ = self._ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            label = self._refs.pop(ref)
            try:
                outcome = self._ray.get(ref)
            except self._ray.exceptions.TaskCancelledError:
                outcome = {"status": "interrupted", "run_dir": None}
            except self._ray.exceptions.RayError as e:  # the worker died twice, or Ray itself failed
                outcome = {"status": "failed", "error": one_line(f"{type(e).__name__}: {e}")[:500], "run_dir": None}
            out.append((label, outcome))
        return out

    def interrupt(self, grace: float = 60.0) -> list[tuple[str, dict]]:
        for ref in list(self._refs):
            with contextlib.suppress(Exception):
                self._ray.cancel(ref)  # KeyboardInterrupt inside the task: finished batches stay
        out, deadline = [], time.time() + grace
        while self._refs and time.time() < deadline:
            out += self.wait(0.5)
        out += [(label, {"status": "interrupted", "run_dir": None}) for label in self._refs.values()]
        self._refs.clear()
        return out

    def close(self) -> None:
        if self._ray is not None:
            self._ray.shutdown()  # stops a local instance; only disconnects from a cluster
            self._ray = None


def make_executor(g: dict):
    """The executor ``grid`` (a resolved ``grid:`` section) asks for, not yet started."""
    jobs = g["jobs"]
    threads = g["threads"] or max(1, cores() // jobs)
    if g["executor"] == "inline":
        return InlineExecutor(jobs, threads)
    if g["executor"] == "ray":
        return RayExecutor(jobs, threads, g["ray"]["address"], g["ray"]["num_cpus"])
    return LocalExecutor(jobs, threads)


def read_worker(folder: Path) -> dict:
    try:
        return json.loads((Path(folder) / "worker.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
