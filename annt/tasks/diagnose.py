"""The ``diagnose`` task: the gradient-masking report (SPEC §12) for one or many model folders.

For each model it picks ``samples`` images the model classifies correctly (one seeded candidate
order shared by all models), runs :func:`annt.evaluation.diagnose.diagnose` at ``eps`` in ``norm``,
and writes ``results.json`` (every number and verdict), ``report.md`` (one table per model, the
verdicts, the worst case beside PGD-20) and two PNG curves over all models: accuracy vs PGD
iterations and accuracy vs eps.
"""
from __future__ import annotations

import time
from pathlib import Path


from annt.config.schema import REQUIRED, Key
from annt.config.sections import check_data, expand_paths, split_size
from annt.data import load_split, require_data
from annt.io import atomic_write_text
from annt.models.card import read_card_json
from annt.runs import Run
from annt.tables import fmt, markdown

USES = ("data", "diagnose")  # the config sections this task reads
SECTION = {
    "models": Key("list", REQUIRED, "Model folders or glob patterns to diagnose (e.g. models/mnist_a-1bit).", item="path"),
    "samples": Key("int", 200, "Correctly classified images per model (the same candidates for every model).", min=1),
    "eps": Key("float", 0.1, "Budget of the threat model on the [0, 1] scale.", min=0.0, min_open=True),
    "norm": Key("norm", "inf", "Norm of the threat model: inf or 2.", choices=("inf", 2)),
    "iterations": Key("list", [10, 20, 50, 100, 200, 1000], "PGD iteration counts for accuracy vs iterations.", item="int"),
    "eps_curve": Key("list", None, "eps values for accuracy vs eps; null = eps/4, eps/2, eps, 2 eps, 4 eps and 1.0 "
                     "(L∞; 10 in L2), where an attack must reach 0%.", item="float", nullable=True),
    "twin": Key("str", "auto", "Full-precision twin for the transfer check: auto (the folder named like the model with "
                "its bits tag replaced by fp, e.g. mnist_a-bn-1bit -> mnist_a-bn-fp), a folder path, or none. A "
                "model is never its own twin (given the twin's own folder, its transfer check is skipped)."),
    "apgd_iterations": Key("int", 100, "Iterations of APGD-CE and APGD-DLR (Croce & Hein 2020: 100).", min=1),
    "apgd_restarts": Key("int", 1, "Random restarts of APGD-CE and APGD-DLR.", min=1),
    "square_queries": Key("int", 5000, "Query budget of Square, the gradient-free check (its paper: 5000 on MNIST).", min=1),
    "batch_size": Key("int", 200, "Images per attack call.", min=1),
}


def _is_model(p: Path) -> bool:
    return (p / "card.json").is_file() and (p / "model.keras").is_file()


def check(ctx, cfg) -> None:
    """Models exist and are model folders; iteration counts >= 1; eps values positive; twin resolvable."""
    check_data(ctx, cfg)
    g = cfg["diagnose"]
    g["models"] = expand_paths(ctx, "diagnose.models", g["models"], _is_model,
                               "is not a model folder (needs card.json and model.keras)")
    for i, it in enumerate(g["iterations"]):
        if it < 1:
            raise ctx.fail(f"diagnose.iterations[{i}]", it, "must be an integer >= 1")
    if not g["iterations"]:
        raise ctx.fail("diagnose.iterations", [], "needs at least one iteration count")
    for i, e in enumerate(g["eps_curve"] or []):
        if e <= 0:
            raise ctx.fail(f"diagnose.eps_curve[{i}]", e, "must be a number > 0")
    if g["twin"] not in ("auto", "none"):
        twin = Path(g["twin"]) if Path(g["twin"]).is_absolute() else ctx.base_for("diagnose.twin") / g["twin"]
        if not _is_model(twin):
            raise ctx.fail("diagnose.twin", g["twin"], "is not a model folder; use auto, none or a model folder")
        g["twin"] = str(twin)
    available = split_size(cfg["data"])
    if available is not None and g["samples"] > available:
        raise ctx.fail("diagnose.samples", g["samples"], f"the split has only {available} images")


def preflight(cfg: dict) -> None:
    require_data(cfg["data"])


def twin_folder(model_dir: str, setting: str) -> Path | None:
    """The full-precision twin of ``model_dir`` (see ``diagnose.twin``), or None (none found, the model is fp, or the
    given twin is the model itself: transfer from a model to itself is just its own white-box attack)."""
    if setting == "none":
        return None
    if setting != "auto":
        return None if Path(setting).resolve() == Path(model_dir).resolve() else Path(setting)
    card = read_card_json(model_dir) or {}
    tag = (card.get("bits") or {}).get("label")
    folder = Path(model_dir)
    if not tag or tag == "fp" or not folder.name.endswith(f"-{tag}"):
        return None
    twin = folder.with_name(folder.name[: -len(tag)] + "fp")
    return twin if _is_model(twin) else None


def run_diagnose(cfg: dict, run: Run) -> dict:
    from annt.evaluation.diagnose import diagnose
    from annt.evaluation.predict import predict_labels, select_samples
    from annt.models.folder import load_model_folder
    from annt.plots import curves

    g = cfg["diagnose"]
    t0 = time.time()
    ds = load_split(cfg)
    results, md = {}, [f"# Gradient-masking report\n\nThreat model: norm {g['norm']}, eps {g['eps']:g}; "
                       f"{g['samples']} correctly classified {ds.name}/{ds.split} images per model. Accuracies are on "
                       "those images; the worst case is per sample over every attack run at eps.\n"]
    iter_series, eps_series = {}, {}
    for folder in g["models"]:
        model, card = load_model_folder(folder)
        name = Path(folder).name
        pred = predict_labels(model, ds.x)
        pos = select_samples(ds.y, pred, samples=g["samples"], runs=1, seed=cfg["seed"])[0]
        twin_dir = twin_folder(folder, g["twin"])
        twin = load_model_folder(twin_dir)[0] if twin_dir else None
        run.log.info("diagnose %s on %d samples (fp twin: %s)", name, len(pos), twin_dir or "none")
        t1 = time.time()
        d = diagnose(model, ds.x[pos], ds.y[pos], eps=g["eps"], norm=g["norm"], iterations=g["iterations"],
                     eps_curve=g["eps_curve"], twin=twin, apgd_iterations=g["apgd_iterations"],
                     apgd_restarts=g["apgd_restarts"], square_queries=g["square_queries"], seed=cfg["seed"],
                     batch_size=g["batch_size"],
                     progress=lambda msg: run.log.info("  %s: %s", name, msg))
        res = {"model": str(folder), "arch": card.get("arch"), "bits": (card.get("bits") or {}).get("label"),
               "twin": str(twin_dir) if twin_dir else None, "elapsed_s": round(time.time() - t1, 1), **d.to_dict()}
        results[name] = res
        for c in d.checks:
            run.log.info("  %s %s: %s", name, c.name, c.verdict)
        checks = {c["name"]: c for c in res["checks"]}
        iter_series[name] = {int(k): v for k, v in checks["iterations"]["accuracy"].items()}
        eps_series[name] = {float(k): v for k, v in checks["eps"]["accuracy"].items()}
        md.append(_model_section(name, res))
    curves(run.file("accuracy_vs_iterations.png"), iter_series, xlabel="PGD iterations", ylabel="accuracy",
           title=f"accuracy vs PGD iterations (eps {g['eps']:g})", log_x=True)
    curves(run.file("accuracy_vs_eps.png"), eps_series, xlabel="eps", ylabel="accuracy",
           title="accuracy vs eps (PGD)")
    atomic_write_text(run.file("report.md"), "\n".join(md))
    return {"eps": g["eps"], "norm": g["norm"], "samples": g["samples"], "models": results,
            "plots": ["accuracy_vs_iterations.png", "accuracy_vs_eps.png"], "elapsed_s": round(time.time() - t0, 1)}


def _model_section(name: str, res: dict) -> str:
    acc = res["accuracy_at_eps"]
    table = markdown(["attack at eps", "accuracy"], [*((k, fmt(v, 3)) for k, v in acc.items()),
                                                     ("**worst case**", f"**{fmt(res['worst_case_accuracy'], 3)}**")])
    verdicts = "\n".join(f"- **{c['name']}**{' (finding)' if c['finding'] else ''}: {c['verdict']}" for c in res["checks"])
    return f"## {name} ({res['arch']}, {res['bits']})\n\n{table}\n{verdicts}\n"
