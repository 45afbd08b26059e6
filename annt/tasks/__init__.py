"""The dispatcher: one small table from task name to the function that runs it.

Each task function takes the resolved config and a :class:`~annt.runs.Run` and returns the
results dict that is written to ``results.json``.
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
