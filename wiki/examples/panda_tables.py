"""Tables of wiki/Panda2019.md from the finished grids of configs/papers/panda2019/.

    python wiki/examples/panda_tables.py > tables.md

One table per paper table (V; II and VI): per model and eps, clean and FGSM accuracy ours | paper |
difference, then the two "is it real?" columns: PGD-40 with BPDA on the same images (from the FGSM
grid) and the worst case of SPEC §12's ensemble (the *_worst grid, 500 images; blank where that grid
has not run). Then the breakthrough sweep: PGD-40 accuracy against eps, BPDA on and off, per model.
Seeds pool (mean over the model's seed folders). Reads only runs/grid-panda2019-*/ (cheap).
"""
from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from annt.grid.aggregate import _match_value, read_paper
from annt.tables import markdown

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "runs"
PACK = ROOT / "configs" / "papers" / "panda2019"
#: (title, FGSM grid, worst-case grid, paper CSV)
TABLES = [
    ("Table V (no adversarial training; the paper's numbers are FCN1, ours FCN2)",
     "grid-panda2019-tableV-fgsm", "grid-panda2019-tableV-worst", "tableV_paper.csv"),
    ("Tables II and VI (R-FGSM training at eps 0.3; Table VI's BNN row is FCN1 in the paper)",
     "grid-panda2019-tableII-VI-fgsm", "grid-panda2019-tableII-VI-worst", "tableII_VI_paper.csv"),
]


def _rows(grid: str) -> list[dict]:
    path = RUNS / grid / "long.csv"
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _mean(rows: list[dict], metric: str) -> str:
    vals = [float(r[metric]) for r in rows if r.get(metric) not in (None, "")]
    return f"{np.mean(vals):.3f}" if vals else ""


def _diff(ours: str, paper: str) -> str:
    return f"{float(ours) - float(paper):+.3f}" if ours and paper else ""


def paper_vs_ours(title: str, fgsm_grid: str, worst_grid: str, paper_csv: str) -> str:
    by = defaultdict(list)  # (model without seed, eps, attack) -> long-table rows
    for grid in (fgsm_grid, worst_grid):
        for r in _rows(grid):
            by[(_match_value("model", r["model"]), _match_value("eps", r["eps"]), r["attack"])].append(r)
    _, _, paper = read_paper(PACK / paper_csv)
    body = []
    for p in paper:
        key = (p["model"], _match_value("eps", p["eps"]))
        fgsm, pgd, worst = (by.get((*key, a), []) for a in ("fgsm", "pgd", "ensemble"))
        if not fgsm:
            continue  # the paper's CIFAR-10 rows
        clean, adv = _mean(fgsm, "clean_accuracy"), _mean(fgsm, "adversarial_accuracy")
        paper_clean, paper_adv = (f"{float(p[m]):.3f}" for m in ("clean_accuracy", "adversarial_accuracy"))
        body.append([p["model"], p["eps"], clean, paper_clean, _diff(clean, paper_clean),
                     adv, paper_adv, _diff(adv, paper_adv),
                     _mean(pgd, "adversarial_accuracy"), _mean(worst, "adversarial_accuracy")])
    header = ["model", "eps", "clean ours", "paper", "diff", "FGSM ours", "paper", "diff",
              "PGD-40 BPDA", "**worst case**"]
    return f"### {title}\n\n" + markdown(header, body)


def breakthrough(grid: str = "grid-panda2019-breakthrough") -> str:
    cells = RUNS / grid / "cells.csv"
    if not cells.exists():
        return ""
    with open(cells, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "done"]
    body, eps = [], []
    for r in sorted(rows, key=lambda r: (r["model"], r["attack.params.bpda"] != "True")):
        with open(RUNS / grid / r["run_dir"] / "sweep_run0.csv", newline="", encoding="utf-8") as f:
            sweep = list(csv.DictReader(f))
        eps = [s["eps"] for s in sweep]
        acc = [float(s["adversarial_accuracy"]) for s in sweep]
        first = next((e for e, a in zip(eps, acc) if a < 0.5), f"> {eps[-1]}")
        body.append([r["model"], "on" if r["attack.params.bpda"] == "True" else "off",
                     *(f"{a:.3f}" for a in acc), first])
    header = ["model", "BPDA", *(f"ε {e}" for e in eps), "first ε below 0.5"]
    return "### Where PGD-40 breaks through (accuracy vs eps, 1,000 images)\n\n" + markdown(header, body)


def main() -> int:
    parts = [paper_vs_ours(*t) for t in TABLES] + [breakthrough()]
    sys.stdout.write("\n".join(p for p in parts if p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
