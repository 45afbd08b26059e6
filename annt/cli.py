"""Command line: ``python main.py CONFIG.yaml [--set key.path=value ...] [--check] [--resume RUN_DIR]``.

A thin wrapper over :func:`annt.run_config`. User errors print one line and exit 2; an
interrupted run exits 130 and says how to resume.
"""
from __future__ import annotations

import argparse
import os
import sys

import yaml

from .errors import AnntError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


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
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="CPU threads TensorFlow may use (default: all cores); e.g. --threads 1 for each of "
                        "two jobs run side by side on a 2-core machine")
    return p


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"--threads must be a whole number >= 1, got {text!r}")
    return n


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ banner is noise for users
    from . import api

    try:
        if args.check:
            cfg = api.load_config(args.config, args.overrides)
            sys.stdout.write(yaml.safe_dump(cfg, sort_keys=False))
            print(f"# {args.config}: OK ({cfg['task']})", file=sys.stderr)
            return 0
        result = api.run_config(args.config, args.overrides, resume=args.resume,
                                before_run=lambda: prepare_tensorflow(args.threads))  # after validation, before the task
    except AnntError as e:
        one_line = str(e).replace("\r", "\\r").replace("\n", "\\n")  # a key or path may hold a newline
        print(f"annt: error: {one_line}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        run_dir = getattr(api, "_last_run_dir", None)
        hint = f"; resume with: python main.py {args.config} --resume {run_dir}" if run_dir else ""
        print(f"annt: interrupted{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"run folder: {result['run_dir']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
