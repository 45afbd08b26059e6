"""Running a grid's cells on an executor: order, progress, faults and interruption.

:func:`run_cells` starts nothing for a cell that is already done (it is *reused*), hands every other
cell to the executor as soon as a slot is free and its sources (transfer cells) are done, and shows
one progress bar (cells done / total, ETA) with the running cells beside it. A failing cell is
reported in one line with its folder and the others go on; a transfer cell whose sources failed is
*skipped*. A cell whose worker process died is run once more (it resumes where the dead worker's
last batch ended). Ctrl-C (or SIGTERM under the CLI) stops the running cells the way it stops a
single run (finished batches stay), and ``KeyboardInterrupt`` propagates; running the same command
again continues.
"""
from __future__ import annotations

import time
from pathlib import Path

import yaml

from annt.grid.cells import Cell, cell_state
from annt.grid.expand import transfer_config
from annt.io import atomic_write_json, atomic_write_text

#: How often a cell whose worker died is run again.
RETRIES_AFTER_DEATH = 1


def write_cell_files(cell: Cell) -> Path:
    """``cell.yaml`` (the complete task config) and ``identity.json`` in the cell folder; returns ``cell.yaml``."""
    cell.folder.mkdir(parents=True, exist_ok=True)
    path = cell.folder / "cell.yaml"
    atomic_write_text(path, yaml.safe_dump(cell.config, sort_keys=False))
    atomic_write_json(cell.folder / "identity.json", {"label": cell.label, "hash": cell.hash, **cell.identity})
    return path


def run_cells(cells: list[Cell], executor, *, log, progress: bool = True) -> dict[str, dict]:
    """Run what is not done yet; returns ``{label: outcome}`` for every cell that was done before
    (``status`` done, ``reused`` True) or ended now (done, failed, skipped); cells left out were
    not reached (interrupted). ``log(msg)`` reports cell events one line each."""
    from annt.progress import progress_bar

    by_label = {c.label: c for c in cells}
    result: dict[str, dict] = {}
    for c in cells:
        st = cell_state(c.folder)
        if st.status == "done":
            result[c.label] = {"status": "done", "run_dir": str(st.run_dir), "reused": True}
    todo = [c for c in cells if c.label not in result]
    if not todo:
        return result
    deaths: dict[str, int] = {}
    started: dict[str, float] = {}
    executor.start()
    bar = progress_bar(len(cells), "grid", unit="cell", enabled=progress)
    bar.update(len(result))
    try:
        while todo or executor.running():
            for c in list(todo):
                if executor.free() <= 0:
                    break
                deps = [result.get(d) for d in c.depends]
                if any(d is not None and d["status"] != "done" for d in deps):
                    bad = [d for d, o in zip(c.depends, deps) if o is not None and o["status"] != "done"]
                    result[c.label] = {"status": "skipped", "error": f"sources not done: {', '.join(bad)}",
                                       "run_dir": None}
                    log(f"skipped {c.label}: its sources {', '.join(bad)} did not finish")
                    todo.remove(c)
                    bar.update(1)
                    continue
                if any(d is None for d in deps):
                    continue  # sources still running
                try:
                    if c.task == "transfer" and c.config is None:
                        c.config = transfer_config(c, [result[d]["run_dir"] for d in c.depends])
                    config = write_cell_files(c)
                except Exception as e:  # an invalid transfer config: this cell fails, the others go on
                    result[c.label] = {"status": "failed", "error": " ".join(str(e).split()), "run_dir": None}
                    log(f"FAILED {c.label}: {result[c.label]['error']} (folder {c.folder})")
                    todo.remove(c)
                    bar.update(1)
                    continue
                executor.submit(c.label, {"label": c.label, "folder": str(c.folder), "config": str(config),
                                          "task": c.task})
                todo.remove(c)
                started[c.label] = time.time()
            _show_running(bar, executor.running())
            for label, outcome in executor.wait(0.5):
                c = by_label[label]
                if outcome["status"] == "died" and deaths.get(label, 0) < RETRIES_AFTER_DEATH:
                    deaths[label] = deaths.get(label, 0) + 1
                    log(f"worker died running {label} ({outcome['error']}); running it again")
                    todo.insert(0, c)
                    continue
                outcome = {**outcome, "status": "failed" if outcome["status"] == "died" else outcome["status"]}
                if outcome["status"] == "interrupted":  # a worker saw the interrupt first
                    raise KeyboardInterrupt
                result[label] = outcome
                took = time.time() - started.get(label, time.time())
                if outcome["status"] == "done":
                    log(f"done {label} ({took:.1f} s{', resumed' if outcome.get('resumed') else ''})")
                else:
                    where = outcome.get("run_dir") or c.folder
                    log(f"FAILED {label}: {outcome.get('error')} (folder {where})")
                bar.update(1)
    except KeyboardInterrupt:
        for label, outcome in executor.interrupt():
            if outcome["status"] == "done":
                result[label] = outcome
        raise
    finally:
        bar.close()
        executor.close()
    return result


def _show_running(bar, running: list[str]) -> None:
    if not running:
        text = ""
    else:
        text = "running: " + ", ".join(running[:3]) + (f" (+{len(running) - 3})" if len(running) > 3 else "")
    if getattr(bar, "_annt_postfix", None) != text:
        bar.set_postfix_str(text, refresh=True)
        bar._annt_postfix = text


def describe(cells: list[Cell], grid_dir: Path) -> str:
    """What ``--check`` prints: every cell with its state and folder, then the counts."""
    from annt.grid.cells import run_folders

    lines, counts = [], {"done": 0, "unfinished": 0, "new": 0}
    width = max((len(c.label) for c in cells), default=10)
    for c in cells:
        st = cell_state(c.folder)
        counts[st.status] += 1
        what = {"done": "done", "unfinished": "resumes" if c.task in ("attack", "train") else "reruns",
                "new": "to run"}[st.status]
        if st.status == "new" and c.depends:
            what = f"to run after {len(c.depends)} cells"
        where = st.run_dir if st.run_dir is not None else c.folder
        try:
            where = Path(where).relative_to(grid_dir)
        except ValueError:
            pass
        runs = len(run_folders(c.folder))
        extra = f" ({runs} run folders)" if runs > 1 else ""
        lines.append(f"  {what:<20} {c.label:<{width}}  {where}{extra}")
    head = (f"# grid folder {grid_dir}: {len(cells)} cells, {counts['done']} done, {counts['unfinished']} unfinished, "
            f"{counts['new']} not started")
    return "\n".join([head, *lines]) + "\n"
