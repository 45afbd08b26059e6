"""Grids (SPEC §14): one config expands to many ordinary runs, reused, resumed, run in parallel.

The ``grid`` task (:mod:`annt.tasks.grid`) is the entry point; the parts, one idea each:

* :mod:`annt.grid.expand`: base config × axes -> cells, each validated by the task-file loader;
  transfer cells over the grid's own attack cells;
* :mod:`annt.grid.identity`: a cell's hash (resolved config, model and data fingerprints, code version);
* :mod:`annt.grid.cells`: a cell, its folder, and its state on disk (done, unfinished, new);
* :mod:`annt.grid.executors`: where cells run (local processes, Ray, inline) and the one cell function;
* :mod:`annt.grid.schedule`: running the cells (dependencies, progress, faults, Ctrl-C);
* :mod:`annt.grid.aggregate`: ``cells.csv``, the long table, pivot tables, the paper beside ours, plots.

Nothing here imports TensorFlow at import time; a cell's process does, when it runs the cell.
"""
