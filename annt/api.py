"""Running a task file from Python: what ``main.py`` does, as functions."""
from __future__ import annotations

import copy
from pathlib import Path

from annt import config as _config
from annt.errors import AnntError, Interrupted
from annt.runs import Run, open_run
from annt.tasks import open_run_folder, preflight, task_function

#: Tasks whose interrupted run folder ``--resume`` continues.
RESUMABLE_TASKS = ("attack", "train")


def load_config(path, overrides: list[str] | None = None) -> dict:
    """Validate a task file (plus ``--set`` style overrides); returns the resolved config dict."""
    return _config.load_config(path, overrides)


def run_config(path, overrides: list[str] | None = None, *, resume=None, before_run=None) -> dict:
    """Validate and run a task file. Returns the results dict (with ``run_dir``).

    Validation happens before anything is written; a new run folder is created unless
    ``resume`` names an interrupted run folder to continue. ``before_run`` (no arguments) is
    called once the config is valid, before the run folder is made (the CLI imports TF there).

    A ``KeyboardInterrupt`` once the run folder exists is re-raised as :class:`annt.errors.Interrupted`,
    whose ``run_dir`` is the run folder; for attack and train (``resumable``) the finished work stays in
    it and ``resume=run_dir`` continues it.
    """
    cfg = _config.load_config(path, overrides)
    section = cfg.get(cfg["task"]) or {}
    resume = resume or section.get("resume")
    cfg_given = copy.deepcopy(cfg)
    if before_run is not None:
        before_run()
    if resume is not None:
        func = task_function(cfg["task"])
        if cfg["task"] not in RESUMABLE_TASKS:
            raise AnntError(f"--resume: task {cfg['task']!r} cannot be resumed (only {' and '.join(RESUMABLE_TASKS)})")
        run, cfg = open_run(resume, cfg["task"])
    else:
        func = task_function(cfg["task"])  # fail on an unimplemented task before creating a folder
        preflight(cfg["task"], cfg)  # e.g. a missing dataset: fail before creating a folder
        run = open_run_folder(cfg["task"], cfg, Path(path).read_text(encoding="utf-8"))
    try:
        if resume is not None:
            given = {k: v for k, v in cfg_given.items() if k != "name"}
            stored = {k: v for k, v in cfg.items() if k != "name"}
            for sec in (given, stored):
                (sec.get(sec["task"]) or {}).pop("resume", None)
            if given != stored:
                run.log.warning("--resume: continuing with the configuration stored in %s; the given config "
                                "and --set values differ from it and are ignored", run.path)
        return run_task(cfg, run, func)
    except KeyboardInterrupt as e:
        if isinstance(e, Interrupted):
            raise
        resumable = cfg["task"] in RESUMABLE_TASKS
        run.log.warning("interrupted%s", f"; finished work is kept (resume with --resume {run.path})"
                        if resumable else f"; {run.path} is incomplete")
        raise Interrupted(run.path, resumable=resumable).with_traceback(e.__traceback__) from None
    except Exception as e:
        # Mark the folder as failed (never half-written): reports and transfer globs skip it.
        run.write_results({"task": cfg["task"], "name": cfg["name"], "complete": False,
                           "error": f"{type(e).__name__}: {e}", "run_dir": str(run.path)})
        if isinstance(e, AnntError):
            raise type(e)(f"{e} (run folder {run.path} marked incomplete)") from None
        raise
    finally:
        run.close()


def run_task(cfg: dict, run: Run, func=None) -> dict:
    func = func or task_function(cfg["task"])
    run.log.info("annt %s: %s -> %s", cfg["task"], cfg["name"], run.path)
    results = func(cfg, run)
    results = {"task": cfg["task"], "name": cfg["name"], "complete": True, **results,
               "run_dir": str(run.path)}
    run.write_results(results)
    return results
