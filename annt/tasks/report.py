"""The ``report`` task: collect finished attack runs into one table and plot, per attack,
adversarial accuracy vs bitwidth and the mean L2 of successful samples vs bitwidth.

Rules (also written at the top of ``report.md``):

* one table row per attack run folder: the mean over its runs, ``± std`` when it has more than one;
* the ``model`` column is the architecture, or the model's folder name when two models of the
  report share the architecture and bits (``mnist_a-4bit`` and ``mnist_a-bn-4bit``: then every
  model of that architecture); plot lines are split the same way (``mnist_a`` and ``mnist_a-bn``:
  the folder name without its bits tag);
* several run folders for one plot point (same attack, setting, model and bits): the table lists
  each, the plots show the newest (latest start time, read from the run-folder name), and
  ``report.md`` and the log say which one that is. Runs are not pooled across folders: they may
  repeat the same seed and samples.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from annt import bits as bitwidths
from annt.errors import AnntError
from annt.io import atomic_write_text
from annt.runs import Run
from annt.tables import fmt, markdown, pm, to_csv
from annt.config.schema import REQUIRED, Key
from annt.config.sections import expand_paths, unfinished_run

HEADER = (
    "# Attack report\n\n"
    "One row per attack run folder: the mean over its runs (± std when it has more than one). "
    "*model* is the architecture, or the model's folder name when two models share architecture and bits "
    "(then for every model of that architecture). "
    "When several run folders match one plot point (same attack, setting, model and bits), every one is listed "
    "and the plots show the newest (latest start time in the folder name): column *plotted*.\n\n"
)

#: report.csv columns, in order.
FIELDS = ("attack", "setting", "model", "arch", "bits", "weights", "activations", "runs", "samples",
          "adversarial_accuracy", "adversarial_accuracy_std", "success_rate", "l0_successful_mean",
          "l2_successful_mean", "linf_successful_mean", "plotted", "run", "run_dir", "checkpoint")

USES = ("report",)  # the config sections this task reads
SECTION = {
    "runs": Key("list", REQUIRED, "Run folders or globs to collect (e.g. runs/*-attack-*).", item="path"),
}


def check(ctx, cfg) -> None:
    """Checks across keys, run after every key has been validated (TF-free)."""
    runs = expand_paths(ctx, "report.runs", cfg["report"]["runs"], lambda p: not unfinished_run(p) and (p / "results.json").is_file(),
                   "is not a finished run folder (needs a results.json marked complete)")
    import json

    tasks = {json.loads((Path(p) / "results.json").read_text(encoding="utf-8")).get("task") for p in runs}
    if "attack" not in tasks:
        raise ctx.fail("report.runs", cfg["report"]["runs"], "none of these run folders is an attack run")
    cfg["report"]["runs"] = runs



def collect(run_dirs) -> list[dict]:
    """One row per finished attack run folder (mean ± std over its runs); other tasks' folders are skipped.
    ``model`` is filled in by :func:`label_models`."""
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
        rows.append({"run_dir": str(d), "run": d.resolve().name, "attack": res["attack"], "setting": _setting(res),
                     "arch": src.get("arch"), "checkpoint": src.get("checkpoint"),
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
    try:
        return bitwidths.label({"weights": row["weights"], "activations": row["activations"]})
    except (ValueError, TypeError):
        return row["bits"]


def _bits_order(row) -> tuple:
    try:
        return bitwidths.sort_key({"weights": row["weights"], "activations": row["activations"]})
    except (ValueError, TypeError):
        return (len(bitwidths.WIDTHS), 0)


def _model_id(row) -> str:
    """What identifies the attacked model: its checkpoint folder (resolved), else arch and bits."""
    ck = row.get("checkpoint")
    return str(Path(ck).resolve()) if ck else f"{row['arch']} {_bits_key(row)}"


def label_models(rows: list[dict]) -> None:
    """Fill each row's ``model`` (table label) and ``family`` (plot line).

    ``model`` is the architecture, unless two models in ``rows`` share that architecture and some
    bit width: then every model of that architecture is named by its checkpoint's folder name (its
    path, if two such folders share a name), so ``mnist_a-bn-fp`` is never shown as just ``mnist_a``.
    ``family`` is the architecture, or for such an architecture the folder name without its
    ``-<bits tag>`` suffix (``mnist_a-bn-4bit`` -> ``mnist_a-bn``); models that would still meet on
    one point of one line get a line of their own (their ``model`` label)."""
    by_arch_bits: dict[tuple, set[str]] = {}
    for r in rows:
        by_arch_bits.setdefault((r["arch"], _bits_key(r)), set()).add(_model_id(r))
    shared_archs = {arch for (arch, _), ids in by_arch_bits.items() if len(ids) > 1}
    names: dict[str, set[str]] = {}
    for r in rows:
        if r.get("checkpoint"):
            names.setdefault(Path(r["checkpoint"]).name, set()).add(_model_id(r))
    for r in rows:
        r["model"], r["family"] = r["arch"], r["arch"]
        if r["arch"] in shared_archs and r.get("checkpoint"):
            name = Path(r["checkpoint"]).name
            r["model"] = name if len(names[name]) == 1 else r["checkpoint"]
            r["family"] = re.sub(rf"-{re.escape(str(r['bits']))}$", "", name)
    points: dict[tuple, set[str]] = {}
    for r in rows:
        points.setdefault((r["attack"], r["setting"], r["family"], _bits_key(r)), set()).add(_model_id(r))
    for r in rows:
        if len(points[(r["attack"], r["setting"], r["family"], _bits_key(r))]) > 1:
            r["family"] = r["model"]


def _started(row) -> tuple:
    """Sort key for "newest": the ``YYYYMMDD-HHMMSS`` start time a run folder's name begins with,
    then the name (``...-2`` for a second run started in the same second)."""
    m = re.match(r"\d{8}-\d{6}", row["run"])
    return (m.group(0) if m else "", len(row["run"]), row["run"])


def choose_plotted(rows: list[dict]) -> list[dict]:
    """Set ``plotted`` on every row: True for the newest run folder of each plot point (attack,
    setting, model, bits). Returns one dict per point with several folders: ``point``, ``plotted``
    and ``others`` (run folder names)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["attack"], r["setting"], _model_id(r), _bits_key(r)), []).append(r)
    several = []
    for (attack, setting, _, bits), rs in groups.items():
        newest = max(rs, key=_started)
        for r in rs:
            r["plotted"] = r is newest
        if len(rs) > 1:
            point = " ".join(x for x in (attack, setting, newest["model"], bits) if x)
            several.append({"point": point, "plotted": newest["run"],
                            "others": sorted((r["run"] for r in rs if r is not newest), reverse=True)})
    return several


def markdown_table(rows: list[dict]) -> str:
    header = ["attack", "setting", "model", "bits", "runs", "samples", "adversarial accuracy", "success rate",
              "mean L0 (succ.)", "mean L2 (succ.)", "mean L∞ (succ.)", "plotted", "run folder"]
    body = [[r["attack"], r["setting"], r["model"], r["bits"], r["runs"], r["samples"],
             pm({"mean": r["adversarial_accuracy"], "std": r["adversarial_accuracy_std"], "n": r["runs"]}),
             fmt(r["success_rate"]), fmt(r["l0_successful_mean"]), fmt(r["l2_successful_mean"]),
             fmt(r["linf_successful_mean"]), "yes" if r.get("plotted", True) else "no", r["run"]] for r in rows]
    return markdown(header, body)


def several_text(several: list[dict]) -> str:
    if not several:
        return ""
    lines = [f"- {s['point']}: plotted `{s['plotted']}`; not plotted: {', '.join(f'`{o}`' for o in s['others'])}"
             for s in several]
    return "\n## Several run folders for one point\n\n" + "\n".join(lines) + "\n"


def series_for(rows: list[dict], key: str) -> dict[str, dict]:
    """``{line name: {(weights, activations): value}}`` of the plotted rows, for
    :func:`annt.plots.accuracy_vs_bits` (line name: attack, setting and model family)."""
    series: dict[str, dict] = {}
    for r in rows:
        v = r[key]
        if not r.get("plotted", True) or v is None or np.isnan(v) or _bits_order(r)[0] == len(bitwidths.WIDTHS):
            continue  # no value, or no bit width to place it at (the table still lists it)
        name = " ".join(x for x in (r["attack"], r["setting"], f"({r['family']})") if x)
        series.setdefault(name, {})[(r["weights"], r["activations"])] = v
    return series


def run_report(cfg: dict, run: Run) -> dict:
    from annt.plots import accuracy_vs_bits

    rows = collect(cfg["report"]["runs"])
    if not rows:
        raise AnntError("report.runs: none of the run folders is a finished attack run")
    label_models(rows)
    several = choose_plotted(rows)
    rows.sort(key=lambda r: (r["attack"], r["setting"], r["family"], _bits_order(r), r["model"], _started(r)))
    for s in several:
        run.log.warning("%d run folders for %s: plotting the newest, %s (not plotted: %s)", len(s["others"]) + 1,
                        s["point"], s["plotted"], ", ".join(s["others"]))
    atomic_write_text(run.file("report.csv"), to_csv(rows, FIELDS))
    md = HEADER + markdown_table(rows) + several_text(several)
    atomic_write_text(run.file("report.md"), md)
    plots = {}
    for key, ylabel, fname in (("adversarial_accuracy", "adversarial accuracy", "accuracy_vs_bits.png"),
                               ("l2_successful_mean", "mean L2 of successful samples", "l2_vs_bits.png")):
        series = series_for(rows, key)
        if series:
            accuracy_vs_bits(run.file(fname), series, ylabel=ylabel, title=f"{ylabel} vs bitwidth")
            plots[key] = fname
    run.log.info("\n%s", markdown_table(rows) + several_text(several))
    return {"rows": rows, "plots": plots, "several_runs_for_one_point": several}
