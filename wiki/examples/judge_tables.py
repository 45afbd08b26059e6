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


def load(run_dir: Path) -> dict:
    res = json.loads((run_dir / "results.json").read_text())
    r = res["runs"][0]
    src = res["source_model"]
    return {"model": Path(src["checkpoint"]).name, "arch": src["arch"], "bits": src["bits"],
            "eps": res["params"]["eps"], "n": r["n"], "members": {m["name"]: m["adversarial_accuracy"]
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
        header = ["model", "bits", "clean (test set)", "samples", *members, "**worst case**"]
        body = [[f"`{r['model']}`", bitwidths.label(r["bits"]), fmt(r["model_clean"], 4), r["n"],
                 *(fmt(r["members"].get(m), 3) for m in members), f"**{fmt(r['worst'], 3)}**"] for r in rs]
        out.append(f"### {family}, L∞ eps {eps:g}\n\n" + markdown(header, body))
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(tables([load(Path(p)) for p in sys.argv[1:]]))
