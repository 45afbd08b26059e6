"""Tables of the paper pages (wiki/Panda2019.md, wiki/Galloway2018.md) from the finished grids of their packs.

    python wiki/examples/paper_tables.py panda2019 > tables.md
    python wiki/examples/paper_tables.py galloway2018

One table per paper table: per model and eps, FGSM accuracy ours | paper | difference (and clean accuracy,
where the paper's CSV has it), then the two "is it real?" columns: PGD-40 on the same models (Panda: with
BPDA, on the FGSM grid's images; Galloway: the robust grid's first 500 images) and the worst case of SPEC
§12's ensemble (the robust grid, 500 images; blank where that grid has not run). Panda's page adds the
breakthrough sweep: PGD-40 accuracy against eps, BPDA on and off, per model. Seeds pool (mean over the
model's seed folders, ± their std where there are several). Reads only runs/grid-<pack>-*/ (cheap).
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
#: per pack: (title, FGSM grid, "is it real?" grid (pgd and ensemble cells), paper CSV)
TABLES = {
    "panda2019": [
        ("Table V (no adversarial training; the paper's numbers are FCN1, ours FCN2)",
         "grid-panda2019-tableV-fgsm", "grid-panda2019-tableV-worst", "tableV_paper.csv"),
        ("Tables II and VI (R-FGSM training at eps 0.3; Table VI's BNN row is FCN1 in the paper)",
         "grid-panda2019-tableII-VI-fgsm", "grid-panda2019-tableII-VI-worst", "tableII_VI_paper.csv"),
    ],
    "galloway2018": [
        ("Table 1 (FGSM on the 10,000 test images, mean ± std over seeds 0 and 1; PGD-40 and the worst case on the "
         "first 500, seed 0)",
         "grid-galloway2018-table1-fgsm", "grid-galloway2018-table1-robust", "table1_paper.csv"),
    ],
}


def _rows(grid: str) -> list[dict]:
    path = RUNS / grid / "long.csv"
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _values(rows: list[dict], metric: str) -> list[float]:
    return [float(r[metric]) for r in rows if r.get(metric) not in (None, "")]


def _mean(vals: list[float]) -> str:
    """The mean over the seeds' cells, with ± their std where there are several."""
    if not vals:
        return ""
    return f"{np.mean(vals):.3f}" + (f" ± {np.std(vals):.3f}" if len(vals) > 1 else "")


def _diff(vals: list[float], paper: float) -> str:
    return f"{np.mean(vals) - paper:+.3f}" if vals else ""


def paper_vs_ours(pack: str, title: str, fgsm_grid: str, worst_grid: str, paper_csv: str) -> str:
    by = defaultdict(list)  # (model without seed, eps, attack) -> long-table rows
    for grid in (fgsm_grid, worst_grid):
        for r in _rows(grid):
            by[(_match_value("model", r["model"]), _match_value("eps", r["eps"]), r["attack"])].append(r)
    _, _, paper = read_paper(ROOT / "configs" / "papers" / pack / paper_csv)
    body = []
    for p in paper:
        key = (p["model"], _match_value("eps", p["eps"]))
        fgsm, pgd, worst = (by.get((*key, a), []) for a in ("fgsm", "pgd", "ensemble"))
        if not fgsm:
            continue  # rows the pack does not run (CIFAR-10, other K)
        clean = []
        if p.get("clean_accuracy") not in (None, ""):
            ours, paper_clean = _values(fgsm, "clean_accuracy"), float(p["clean_accuracy"])
            clean = [_mean(ours), f"{paper_clean:.3f}", _diff(ours, paper_clean)]
        adv, paper_adv = _values(fgsm, "adversarial_accuracy"), float(p["adversarial_accuracy"])
        body.append([p["model"], p["eps"], *clean, _mean(adv), f"{paper_adv:.3f}", _diff(adv, paper_adv),
                     _mean(_values(pgd, "adversarial_accuracy")), _mean(_values(worst, "adversarial_accuracy"))])
    has_clean = bool(body) and len(body[0]) == 10
    header = ["model", "eps", *(["clean ours", "paper", "diff"] if has_clean else []), "FGSM ours", "paper", "diff",
              "PGD-40 BPDA" if pack == "panda2019" else "PGD-40", "**worst case**"]
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
    if len(sys.argv) != 2 or sys.argv[1] not in TABLES:
        sys.stderr.write(f"usage: python wiki/examples/paper_tables.py {{{','.join(TABLES)}}}\n")
        return 2
    pack = sys.argv[1]
    parts = [paper_vs_ours(pack, *t) for t in TABLES[pack]] + ([breakthrough()] if pack == "panda2019" else [])
    sys.stdout.write("\n".join(p for p in parts if p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
