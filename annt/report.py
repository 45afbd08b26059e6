"""The ``report`` task: collect finished attack runs into one table and plot, per attack,
adversarial accuracy vs bitwidth and the mean L2 of successful samples vs bitwidth."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import AnntError
from .io import atomic_write_text
from .runs import Run


def collect(run_dirs) -> list[dict]:
    """One row per finished attack run folder (mean ± std over its runs)."""
    rows = []
    for d in run_dirs:
        d = Path(d)
        try:
            res = json.loads((d / "results.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise AnntError(f"{d}: unreadable results.json ({type(e).__name__})") from None
        if res.get("task") != "attack":
            continue
        agg, src = res["aggregate"], res.get("source_model") or {}
        bits = src.get("bits") or {}
        rows.append({"run_dir": str(d), "attack": res["attack"], "setting": _setting(res), "arch": src.get("arch"),
                     "bits": bits.get("label") or "?", "weights": bits.get("weights"), "activations": bits.get("activations"),
                     "runs": len(res["runs"]), "samples": sum(r["n"] for r in res["runs"]),
                     "adversarial_accuracy": agg["adversarial_accuracy"]["mean"],
                     "adversarial_accuracy_std": agg["adversarial_accuracy"]["std"],
                     "success_rate": agg["success_rate"]["mean"],
                     "l2_successful_mean": agg["l2_successful_mean"]["mean"],
                     "linf_successful_mean": agg["linf_successful_mean"]["mean"],
                     "l0_successful_mean": agg["l0_successful_mean"]["mean"]})
    return rows


SETTING_KEYS = ("eps", "norm", "max_iter", "restarts", "confidence", "theta", "gamma")


def _setting(res: dict) -> str:
    """Short label of the parameters that tell runs of one attack apart (e.g. ``eps=0.25``)."""
    p = res.get("params") or {}
    parts = [f"{k}={p[k]}" for k in SETTING_KEYS if k in p and not (k == "norm" and p[k] == "inf")]
    if res.get("targeted"):
        parts.append("targeted")
    if res.get("dataset") and res["dataset"] != "mnist":
        parts.append(res["dataset"])
    return ", ".join(parts)


def _bits_key(row) -> str:
    from .plots import bits_label

    try:
        return bits_label({"weights": row["weights"], "activations": row["activations"]})
    except (ValueError, TypeError):
        return row["bits"]


def markdown(rows: list[dict]) -> str:
    def f(v):
        return "n/a" if v is None or v != v else f"{v:.4f}"

    out = ("| attack | setting | model | bits | runs | samples | adversarial accuracy | success rate | mean L0 (succ.) | mean L2 (succ.) | mean L∞ (succ.) |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        out += (f"| {r['attack']} | {r['setting']} | {r['arch']} | {r['bits']} | {r['runs']} | {r['samples']} | "
                f"{f(r['adversarial_accuracy'])} ± {f(r['adversarial_accuracy_std'])} | {f(r['success_rate'])} | "
                f"{f(r['l0_successful_mean'])} | {f(r['l2_successful_mean'])} | {f(r['linf_successful_mean'])} |\n")
    return out


def run_report(cfg: dict, run: Run) -> dict:
    from .evaluation import rows_csv
    from .plots import accuracy_vs_bits

    rows = collect(cfg["report"]["runs"])
    if not rows:
        raise AnntError("report.runs: none of the run folders is a finished attack run")
    rows.sort(key=lambda r: (r["attack"], r["setting"], r["arch"] or "", 0 if r["weights"] == 32 else (r["weights"] or 0)))  # FP first
    atomic_write_text(run.file("report.csv"), rows_csv(rows))
    atomic_write_text(run.file("report.md"), "# Attack report\n\nMean over each folder's runs (± std).\n\n" + markdown(rows))
    plots = {}
    for key, ylabel, fname in (("adversarial_accuracy", "adversarial accuracy", "accuracy_vs_bits.png"),
                               ("l2_successful_mean", "mean L2 of successful samples", "l2_vs_bits.png")):
        series: dict[str, dict] = {}
        for r in rows:
            name = f"{r['attack']} {r['setting']} ({r['arch']})".replace("  ", " ")
            v = r[key]
            if v is not None and not np.isnan(v):
                series.setdefault(name, {})[_bits_key(r)] = v
        if series:
            accuracy_vs_bits(run.file(fname), series, ylabel=ylabel, title=f"{ylabel} vs bitwidth")
            plots[key] = fname
    run.log.info("\n%s", markdown(rows))
    return {"rows": rows, "plots": plots}
