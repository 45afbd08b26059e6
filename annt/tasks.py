"""The dispatcher: one small table from task name to the function that runs it.

Each task function takes the resolved config and a :class:`~annt.runs.Run` and returns the
results dict that is written to ``results.json``.
"""
from __future__ import annotations

import importlib

from .errors import AnntError

# task -> "module:function", imported only when the task runs (keeps --check fast).
TASKS = {
    "train": "annt.train_task:run_train",
    "attack": "annt.attack_task:run_attack",
    "infer": "annt.evaluation:run_infer",
    "transfer": "annt.evaluation:run_transfer",
    "report": "annt.report:run_report",
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
