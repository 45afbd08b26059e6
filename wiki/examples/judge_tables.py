"""Tables of wiki/JudgingRobustness.md from finished ensemble attack runs (configs/robustness/).

    python wiki/examples/judge_tables.py RUN_DIR [RUN_DIR ...] > tables.md

Each run folder is one model at one eps: an ``ensemble`` attack whose members are the single
attacks users quote (FGSM, PGD-20, PGD++ NJS/HNS) and the SPEC §12 ensemble (APGD-CE, APGD-DLR,
Square). Every member ran on the same samples, so its column is that attack's own accuracy; the
worst-case column is per sample over all members. One table per (family, eps), rows by bit width
(FP first).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from annt import bits as bitwidths
from annt.tables import fmt, markdown

#: ANNT's Table 6 (paper 003), Mnist A, FGSM at eps 0.25: adversarial accuracy per bit width.
ANNT_FGSM_025 = {"fp": 0.337, "1bit": 0.845, "2bit": 0.750, "4bit": 0.715, "8bit": 0.678, "12bit": 0.493, "16bit": 0.480}


def short(label: str) -> str:
    """Column name of an ensemble member label (``pgd(max_iter=20, ..., temperature=njs)`` -> ``PGD++ NJS``)."""
    if label.startswith("fgsm"):
        return "FGSM"
    if label.startswith("pgd"):
        for t in ("njs", "hns"):
            if f"temperature={t}" in label:
                return f"PGD++ {t.upper()}"
        return "PGD-20"
    if label.startswith("apgd"):
        return "APGD-DLR" if "loss=dlr" in label else "APGD-CE"
    return label.split("(")[0].capitalize()


def load(run_dir: Path) -> dict:
    res = json.loads((run_dir / "results.json").read_text())
    r = res["runs"][0]
    src = res["source_model"]
    return {"model": Path(src["checkpoint"]).name, "arch": src["arch"], "bits": src["bits"],
            "eps": res["params"]["eps"], "n": r["n"], "members": {short(m["name"]): m["adversarial_accuracy"]
                                                                  for m in r["ensemble"]["members"]},
            "worst": r["ensemble"]["worst_case_accuracy"], "model_clean": res["model_clean_accuracy"]}


def tables(rows: list[dict]) -> str:
    out = []
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        family = r["model"].rsplit("-", 1)[0]  # mnist_a-bn-4bit -> mnist_a-bn
        groups.setdefault((family, r["eps"]), []).append(r)
    for (family, eps), rs in sorted(groups.items()):
        rs.sort(key=lambda r: bitwidths.sort_key(r["bits"]))
        members = list(rs[0]["members"])
        annt = family == "mnist_a" and eps == 0.25
        header = ["model", "bits", "clean (test set)", "samples", *(["ANNT FGSM (paper)"] if annt else []), *members,
                  "**worst case**"]
        body = [[f"`{r['model']}`", bitwidths.label(r["bits"]), fmt(r["model_clean"], 4), r["n"],
                 *([fmt(ANNT_FGSM_025.get(bitwidths.tag(r["bits"])), 3)] if annt else []),
                 *(fmt(r["members"].get(m), 3) for m in members), f"**{fmt(r['worst'], 3)}**"] for r in rs]
        out.append(f"### {family}, L∞ eps {eps:g}\n\n" + markdown(header, body))
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(tables([load(Path(p)) for p in sys.argv[1:]]))
