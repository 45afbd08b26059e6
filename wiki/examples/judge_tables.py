"""Tables of wiki/JudgingRobustness.md from finished ensemble attack runs (configs/robustness/).

    python wiki/examples/judge_tables.py RUN_DIR [RUN_DIR ...] > tables.md

A ``task: diagnose`` run folder among the arguments adds one verdict table (a row per model: PGD-20, the
diagnose run's own worst case and each check's verdict in a word).

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


#: A check's verdict in a word: (word when the check found something, word when it did not).
CHECK_WORDS = {"gradients": ("masked", "ok"), "iterations": ("not converged", "ok"),
               "final_vs_best": ("last > best", "ok"), "eps": ("never 0", "ok"),
               "attack_types": ("not white-box", "white-box"), "worst_case": ("overstated", "ok")}


def verdicts(run_dir: Path) -> str:
    """One row per model of a diagnose run: PGD-20, its worst case, and every check in a word."""
    res = json.loads((run_dir / "results.json").read_text())
    header = ["model", "bits", "PGD-20", "**worst case**", *CHECK_WORDS]
    body = []
    for m in res["models"].values():
        checks = {c["name"]: c for c in m["checks"]}
        words = [CHECK_WORDS[n][0 if checks[n]["finding"] else 1] if n in checks else "" for n in CHECK_WORDS]
        if "attack_types" in checks and checks["attack_types"]["finding"]:
            words[list(CHECK_WORDS).index("attack_types")] = _strongest(checks["attack_types"])
        if "gradients" in checks and checks["gradients"]["finding"]:
            words[list(CHECK_WORDS).index("gradients")] = _gradient_word(checks["gradients"])
        body.append([f"`{Path(m['model']).name}`", bitwidths.label(m["bits"]), fmt(m["accuracy_at_eps"].get("pgd-20"), 3),
                     f"**{fmt(m['worst_case_accuracy'], 3)}**", *words])
    return (f"### Diagnose verdicts, {res['norm']} eps {res['eps']:g}, {res['samples']} images per model\n\n"
            + markdown(header, body))


def _gradient_word(check: dict) -> str:
    """What a gradients finding found: zero/vanishing gradients and/or a saturated softmax, with the fractions."""
    zero = max(check["zero_gradient_fraction"], check["vanishing_gradient_fraction"])
    parts = ([f"{zero:.0%} zero"] if zero >= 0.01 else []) + ([f"{check['saturated_fraction']:.0%} saturated"]
                                                              if check["saturated_fraction"] >= 0.01 else [])
    return ", ".join(parts)


def _strongest(check: dict) -> str:
    """Which kind of attack beat white-box in an attack_types finding."""
    kinds = {k: check[k] for k in ("gradient_free", "transfer", "noise") if check.get(k) is not None}
    return min(kinds, key=kinds.get).replace("_", "-") + " wins"


if __name__ == "__main__":
    dirs = [Path(p) for p in sys.argv[1:]]
    diag = [d for d in dirs if json.loads((d / "results.json").read_text()).get("task") == "diagnose"]
    parts = [tables([load(d) for d in dirs if d not in diag])] + [verdicts(d) for d in diag]
    sys.stdout.write("\n".join(p for p in parts if p))
