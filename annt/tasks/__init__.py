"""The dispatcher: one small table from task name to the module that runs it.

A task module (``annt/tasks/<task>.py``) has ``run_<task>(cfg, run)``, which takes the resolved
config and a :class:`~annt.runs.Run` and returns the results dict written to ``results.json``,
and optionally ``preflight(cfg)``: checks that need more than the config file (is the dataset
there?), run before the run folder is created so a failure leaves nothing behind;
``describe(cfg)``: more text for ``--check`` to print (a grid's cells and which are done); and
``run_folder(cfg, config_text)``: the task's own folder instead of a new time-stamped one (a grid
reopens the same folder every time, so that the same command continues it).
"""
from __future__ import annotations

import importlib

from annt.errors import AnntError

# task -> "module:function", imported only when the task runs (keeps --check fast).
TASKS = {
    "train": "annt.tasks.train:run_train",
    "attack": "annt.tasks.attack:run_attack",
    "infer": "annt.tasks.infer:run_infer",
    "transfer": "annt.tasks.transfer:run_transfer",
    "report": "annt.tasks.report:run_report",
    "diagnose": "annt.tasks.diagnose:run_diagnose",
    "grid": "annt.tasks.grid:run_grid",
}


def task_function(task: str):
    module, func = TASKS[task].split(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise AnntError(f"task {task!r} is not implemented yet in this version of annt") from None
        raise
    return getattr(mod, func)


def preflight(task: str, cfg: dict) -> None:
    """Run the task's ``preflight(cfg)`` if it has one (raises :class:`AnntError` on a fault)."""
    module = importlib.import_module(TASKS[task].split(":")[0])
    check = getattr(module, "preflight", None)
    if check is not None:
        check(cfg)


def describe(task: str, cfg: dict) -> str | None:
    """The task's ``describe(cfg)`` text for ``--check``, or None if it has none."""
    module = importlib.import_module(TASKS[task].split(":")[0])
    func = getattr(module, "describe", None)
    return func(cfg) if func is not None else None


def open_run_folder(task: str, cfg: dict, config_text: str | None):
    """The task's ``run_folder(cfg, config_text)`` if it has one, else a new run folder (:func:`annt.runs.create_run`)."""
    from annt.runs import create_run

    module = importlib.import_module(TASKS[task].split(":")[0])
    func = getattr(module, "run_folder", None)
    return func(cfg, config_text) if func is not None else create_run(cfg, config_text)
