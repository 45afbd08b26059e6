"""Cells: one run of a grid, its folder and its state on disk.

A cell lives in ``<grid folder>/cells/<label>-<hash12>/`` (its *cell folder*): ``cell.yaml`` (the
complete, resolved task config it runs, a file ``annt`` itself accepts), ``identity.json`` (what
its hash was computed from), ``console.txt`` (what the run printed) and one ordinary run folder
``<time>-<task>-<label>/`` made by :func:`annt.api.run_config`, or more than one when a task that
cannot resume was interrupted and run again. Its state, read from disk alone:

* ``done``: a run folder whose ``results.json`` is marked complete (the newest such is the cell's);
* ``unfinished``: run folders, none complete (interrupted or failed): attack and train cells resume
  the newest, other tasks start a new run folder beside it;
* ``new``: no run folder yet.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from annt.config.sections import unfinished_run

#: Characters of the hash kept in a cell folder's name.
HASH_CHARS = 12


@dataclass
class Cell:
    """One expanded cell.

    ``config`` is the resolved task config (for a transfer cell it is completed with its sources'
    run folders once they are done: :func:`annt.grid.expand.transfer_config`); ``axes`` maps each
    axis name to the value shown in tables (a model's folder name, an attack label, an eps ...);
    ``depends`` lists the labels of cells that must be done first; ``identity`` is what ``hash``
    (sha256 hex) was computed from.
    """

    label: str
    task: str
    config: dict | None
    axes: dict
    hash: str
    identity: dict
    root: Path
    depends: tuple[str, ...] = ()
    template: dict | None = field(default=None, repr=False)  # transfer cells: the config without sources
    meta: dict = field(default_factory=dict)  # model folder, attack name ...: what aggregation needs

    @property
    def folder(self) -> Path:
        return self.root / f"{self.label}-{self.hash[:HASH_CHARS]}"


@dataclass(frozen=True)
class CellState:
    status: str  # done | unfinished | new
    run_dir: Path | None  # done: the complete run folder; unfinished: the newest run folder


def run_folders(folder: Path) -> list[Path]:
    """The run folders in a cell folder, oldest first (their names start with the start time)."""
    if not folder.is_dir():
        return []
    return sorted(d for d in folder.iterdir() if d.is_dir() and (d / "config.resolved.yaml").is_file())


def cell_state(folder: Path) -> CellState:
    runs = run_folders(Path(folder))
    done = [d for d in runs if not unfinished_run(d)]
    if done:
        return CellState("done", done[-1])
    if runs:
        return CellState("unfinished", runs[-1])
    return CellState("new", None)
