"""Command line: ``annt CONFIG.yaml [--set key.path=value ...] [--check] [--resume RUN_DIR] [--threads N] [--jobs N]``.

The same as ``python main.py ...`` and ``python -m annt ...``. A thin wrapper over
:func:`annt.run_config`. User errors print one line and exit 2 (a grid whose cells partly failed
exits 1, naming them). For a grid (``task: grid``), ``--jobs N`` and ``--threads N`` mean
``--set grid.jobs=N`` and ``--set grid.threads=N`` (threads per cell), and the grid process itself
does not import TensorFlow: its cells do, in their own processes. An interrupted run keeps its
finished work, prints how to resume it, and exits 128 + the signal number, as a shell does:
130 for Ctrl-C (SIGINT) and 143 for SIGTERM (what a batch scheduler sends before killing a job).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

import yaml

from annt.errors import AnntError, Interrupted

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's default prints usage + message; keep it to one line
        print(f"annt: error: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="annt", description="Train, attack and evaluate DoReFa-quantized networks from a YAML task file.")
    p.add_argument("config", help="task file (YAML); see wiki/Configuration.md")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a config value (repeatable), e.g. --set attack.samples=20")
    p.add_argument("--check", action="store_true", help="validate and print the resolved config, then exit")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted train or attack run in RUN_DIR")
    p.add_argument("--threads", type=_positive_int("--threads"), metavar="N",
                   help="CPU threads TensorFlow may use (default: all cores); e.g. --threads 1 for each of "
                        "two jobs run side by side on a 2-core machine; for a grid: threads per cell")
    p.add_argument("--jobs", type=_positive_int("--jobs"), metavar="N",
                   help="grid only: cells run at the same time (same as --set grid.jobs=N)")
    return p


def _positive_int(flag: str):
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise argparse.ArgumentTypeError(f"{flag} must be a whole number >= 1, got {text!r}")
        return n

    return parse


def prepare_tensorflow(threads: int | None = None) -> None:
    """Import TensorFlow quietly and, if ``threads`` is given, limit it to that many CPU threads.

    The limit (intra- and inter-op pools) has to be set before TensorFlow runs its first op,
    so it is set here, right after the import.
    """
    if os.environ.get("ANNT_TF_LOGS"):
        import tensorflow as tf

        _set_threads(tf, threads)
    else:
        _import_tensorflow_quietly(threads)


def _set_threads(tf, threads: int | None) -> None:
    if threads is not None:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def _import_tensorflow_quietly(threads: int | None = None):
    """Import TensorFlow with the C++ start-up banner (oneDNN, CUDA probing) sent to /dev/null.

    TF 2.21 prints those lines from C++ before its log-level settings apply, so they would bury
    annt's own one-line messages. Set ANNT_TF_LOGS=1 to see them. Python errors still surface.
    """
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        _set_threads(tf, threads)
        tf.config.list_physical_devices("GPU")
        _ = (tf.constant(0) + 0).numpy()  # first op: the CUDA probe logs here
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While active, SIGTERM raises ``KeyboardInterrupt`` in the main thread, as Ctrl-C does.

    Yields a dict whose ``"signal"`` is set to the signal number once SIGTERM arrived. The
    previous handler is restored on exit. Outside the main thread (where Python cannot install
    signal handlers) this does nothing.
    """
    received: dict = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        received["signal"] = signum
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)


def _program(argv: list[str] | None) -> str:
    """How the user started annt, for the resume hint: ``annt``, ``python main.py`` or ``python -m annt``."""
    if argv is not None or not sys.argv or not sys.argv[0]:
        return "annt"
    argv0 = sys.argv[0]
    if os.path.basename(argv0) == "__main__.py" and os.path.basename(os.path.dirname(argv0)) == "annt":
        return "python -m annt"
    if argv0.endswith(".py"):
        return f"python {shlex.quote(argv0)}"
    return "annt"


def _given_task(args) -> str | None:
    """The ``task:`` of the config file after ``--set`` (None if it cannot be read: validation says why)."""
    from annt.config.loader import apply_overrides, read_yaml

    try:
        raw = read_yaml(Path(args.config))
        apply_overrides(raw, args.overrides)
    except AnntError:
        return None
    return raw.get("task")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ banner is noise for users
    from annt import api
    from annt.tasks import describe

    try:
        grid = _given_task(args) == "grid"
        if args.jobs is not None and not grid:
            raise AnntError(f"--jobs {args.jobs}: only for a grid (task: grid); {args.config} is not one")
        if grid and args.resume:
            raise AnntError("--resume: a grid continues when you run the same command again, without --resume "
                            "(done cells are reused, unfinished attack and train cells resume)")
        if grid:  # its cells import TensorFlow, each capped to its threads; the grid process does not
            args.overrides += [f"grid.{k}={v}" for k, v in (("jobs", args.jobs), ("threads", args.threads)) if v]
        if args.check:
            cfg = api.load_config(args.config, args.overrides)
            sys.stdout.write(yaml.safe_dump(cfg, sort_keys=False))
            more = describe(cfg["task"], cfg)
            if more:
                sys.stdout.write(more)
            print(f"# {args.config}: OK ({cfg['task']})", file=sys.stderr)
            return 0
        with sigterm_as_interrupt() as received:
            try:
                result = api.run_config(args.config, args.overrides, resume=args.resume,
                                        before_run=None if grid else lambda: prepare_tensorflow(args.threads))
            except KeyboardInterrupt as e:
                return _interrupted(e, received["signal"], args, argv)
    except AnntError as e:
        one_line = str(e).replace("\r", "\\r").replace("\n", "\\n")  # a key or path may hold a newline
        print(f"annt: error: {one_line}", file=sys.stderr)
        return getattr(e, "exit_code", EXIT_USER_ERROR)
    except KeyboardInterrupt:  # Ctrl-C during --check
        print("annt: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"run folder: {result['run_dir']}")
    return 0


def _interrupted(e: KeyboardInterrupt, signum: int | None, args, argv: list[str] | None) -> int:
    """Print what became of an interrupted run (and how to resume it); return the exit code."""
    what = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    if isinstance(e, Interrupted) and e.resumable:
        threads = f" --threads {args.threads}" if args.threads else ""
        hint = (f"; finished work is kept; resume with: {_program(argv)} {shlex.quote(str(args.config))} "
                f"--resume {shlex.quote(str(e.run_dir))}{threads}")
    elif isinstance(e, Interrupted) and e.hint:
        hint = f"; {e.hint}"
    elif isinstance(e, Interrupted):
        hint = f"; run folder {e.run_dir} is incomplete"
    else:
        hint = ""  # stopped before the run folder was made
    print(f"annt: {what}{hint}", file=sys.stderr)
    return EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
