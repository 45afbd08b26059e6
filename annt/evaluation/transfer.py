"""Transfer attacks (SPEC §7): every source set on every target model, as long rows, per-cell
mean ± std over runs (:mod:`annt.tables`), and the source × target matrix ordered by bit width.

Matrix labels (:func:`check_unique_labels`, read from ``card.json`` and the sets' metadata only):
each axis is labelled by bit width (``FP``, ``4``, ``W2A4``) when every entry has one, all are the
same model family (architecture and graph options) and no two share it; otherwise by model folder
name (``mnist_a-4bit``, ``mnist_a-bn-4bit``: for a source, the folder of the model it was made
on); otherwise by the source's own run folder or file name. Two entries that would still get the
same label (the same folder name twice) are refused with :class:`LabelCollision`. Rows and
columns are ordered by bit width (:func:`annt.bits.label_order`, FP first), then by label
without its bits tag (``mnist_a-4bit`` before ``mnist_a-bn-4bit`` at every width).
"""
from __future__ import annotations

import json

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annt import bits as bitwidths
from annt.errors import AnntError
from annt.evaluation.advset import read_header, set_files
from annt.evaluation.evaluate import attach_clean_images, evaluate, model_label, source_sets
from annt.evaluation.metrics import DISTANCES
from annt.evaluation.predict import DEFAULT_PASSES
from annt.models.card import OPTIONS, read_card_json
from annt.tables import markdown, mean_std, pm


def transfer(sources, targets, *, dataset=None, batch_size: int = 500, log=None,
             records_out: list | None = None, passes: int = DEFAULT_PASSES, seed: int = 0) -> list[dict]:
    """Evaluate every source (npz or attack run folder; each run separately) on every target
    model folder. Returns long-form rows: one per source × target × run. Per-sample records
    (with source, target, run and ``counted``) are appended to ``records_out`` if given.
    ``dataset`` (a Dataset, or a no-argument callable returning one, called at most once) supplies
    the clean images of ANNT 3-key sets. A target random at inference is predicted in ``passes``
    passes seeded from ``seed`` (:func:`annt.evaluation.evaluate.evaluate`): its row's accuracy is the
    mean over passes, ``passes`` says how many (1 for a deterministic target) and
    ``adversarial_accuracy_pass_std`` gives their std (0 for a deterministic target)."""
    from annt.models.folder import load_model_folder

    rows = []
    loaded = [(str(p), source_sets(p)) for p in sources]
    for t in targets:
        model, card = load_model_folder(t)
        for src, sets in loaded:
            for r, s in enumerate(sets):
                if s.dataset and card.get("dataset") and s.dataset != card["dataset"]:
                    raise AnntError(f"{s.path}: set was made on {s.dataset!r} but target {t} was trained on {card['dataset']!r}")
                if s.clean_images is None:
                    if dataset is None:
                        raise AnntError(f"{s.path}: ANNT set without clean images; give the dataset it indexes")
                    if callable(dataset):
                        dataset = dataset()
                    s = attach_clean_images(s, dataset)
                res = evaluate(model, s, batch_size=batch_size, passes=passes, seed=seed)
                if records_out is not None:
                    # the record's own "target" is the attack's target class; "target" here is the model
                    records_out.extend({"source": src, "target": str(t), "run": r,
                                        **{("attack_target" if k == "target" else k): v for k, v in rec.items()}}
                                       for rec in res.records)
                meta = s.metadata.get("source_model") or {}
                row = {"source": src, "source_model": f"{meta.get('arch', '?')} {(meta.get('bits') or {}).get('label', '?')}",
                       "source_bits": _bits_of(meta), "attack": s.metadata.get("attack", "?"),
                       "target": str(t), "target_model": model_label(card), "target_bits": _bits_of(card), "run": r,
                       "n_total": len(s), "n_used": res.summary["n"], "adversarial_accuracy": res.summary["adversarial_accuracy"],
                       "transfer_rate": res.summary["transfer_rate"]}
                over_passes = res.summary.get("stochastic")
                row["passes"] = over_passes["passes"] if over_passes else 1
                row["adversarial_accuracy_pass_std"] = over_passes["adversarial_accuracy"]["std"] if over_passes else 0.0
                for d in DISTANCES:
                    row[f"{d}_successful_mean"] = res.summary[d]["successful"]["mean"]
                    row[f"{d}_successful_median"] = res.summary[d]["successful"]["median"]
                rows.append(row)
                if log:
                    log.info("%s -> %s run %d: %d/%d used, adversarial accuracy %.4f", Path(src).name,
                             Path(t).name, r, row["n_used"], row["n_total"], row["adversarial_accuracy"])
    return rows


#: Per-run numbers of a long row summarised per cell as ``<key>_mean``/``<key>_std`` (see :func:`cells`).
CELL_KEYS = ("adversarial_accuracy", "transfer_rate", "l2_successful_mean", "l0_successful_mean",
             "l0_fraction_successful_mean", "linf_successful_mean", "l2_successful_median")


def cells(rows: list[dict]) -> list[dict]:
    """Per source × target: mean and population std over runs (:func:`annt.tables.mean_std`) of
    adversarial accuracy, transfer rate and the distances; ``runs`` is the number of runs.

    Columns: ``adversarial_accuracy_mean``/``_std``, ``transfer_rate_mean``/``_std``,
    ``l2_successful_mean``/``l2_successful_std`` (mean L2 of successful samples), and for the other
    distances ``<key>_mean``/``<key>_std`` (e.g. ``linf_successful_mean_mean``)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["source"], row["target"]), []).append(row)
    result = []
    for (src, tgt), rs in groups.items():
        stats = {key: mean_std(r[key] for r in rs) for key in CELL_KEYS}
        cell = {"source": src, "source_model": rs[0]["source_model"], "source_bits": rs[0]["source_bits"],
                "attack": rs[0]["attack"], "target": tgt, "target_model": rs[0]["target_model"],
                "target_bits": rs[0]["target_bits"], "runs": len(rs),
                "n_used_mean": mean_std(r["n_used"] for r in rs)["mean"]}
        for key, st in stats.items():
            name = "l2_successful" if key == "l2_successful_mean" else key
            cell[f"{name}_mean"], cell[f"{name}_std"] = st["mean"], st["std"]
        result.append(cell)
    return result


def _bits_of(card_or_meta: dict):
    """The card's bits as ``{"weights", "activations"}``, or None when it has none."""
    b = card_or_meta.get("bits") or {}
    return {"weights": b["weights"], "activations": b["activations"]} if "weights" in b and "activations" in b else None


# --------------------------------------------------------------------------- labels


class LabelCollision(ValueError):
    """Two sources (or two targets) would get the same matrix label. ``key`` is
    ``"transfer.sources"`` or ``"transfer.targets"``, ``value`` the offending paths, ``reason`` the
    rest of the one-line message (for ``Context.fail(key, value, reason)``); ``str()`` is one line."""

    def __init__(self, key: str, value: list[str], reason: str):
        super().__init__(f"{key}: {' and '.join(value)}: {reason}")
        self.key, self.value, self.reason = key, value, reason


@dataclass(frozen=True)
class Axis:
    """One axis of the matrix: ``paths`` (sources or targets as given) and their ``labels``, in
    display order; ``by`` says what the labels are: ``"bits"``, ``"model folder"`` or ``"run folder"``."""

    paths: tuple[str, ...]
    labels: tuple[str, ...]
    by: str

    def label(self, path) -> str:
        return self.labels[self.paths.index(str(path))]

    def title(self, side: str) -> str:
        """Axis title: ``"source model bits"`` when labelled by bits, else ``"source model"``."""
        return f"{side} model bits" if self.by == "bits" else f"{side} model" if self.by == "model folder" else f"{side} set"


def _set_metadata(path: Path) -> dict:
    """The metadata of a set (the first set of a run folder), images not read; {} for ANNT 3-key
    files and anything unreadable (the config check reports those)."""
    files = set_files(path)
    if not files:
        return {}
    try:
        return read_header(files[0])[0]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return {}


def _family(card: dict | None, arch) -> tuple:
    """What besides bits tells two models apart: architecture, graph options, the family's own options (galloway's
    type and filters) and input discretization (unknown: None). Hashable."""
    card = card or {}
    own = json.dumps(card.get("options"), sort_keys=True) if card.get("options") else None
    return (arch, *(card.get(k) for k in OPTIONS), own, card.get("input_bits"))


def _checked_bits(b) -> dict | None:
    try:
        return {"weights": bitwidths.check(b["weights"]), "activations": bitwidths.check(b["activations"])}
    except (TypeError, KeyError, ValueError):
        return None


def source_facts(path) -> dict:
    """What labels a source: bits, model family and model folder of the model it was made on
    (from the set's metadata and, when that folder is still there, its card), and its own name."""
    p = Path(path)
    src = _set_metadata(p).get("source_model") or {}
    ck = src.get("checkpoint")
    card = read_card_json(ck) if ck else None
    return {"path": str(path), "bits": _checked_bits(src.get("bits")), "family": _family(card, src.get("arch")),
            "model": Path(ck).name if ck else None, "name": p.resolve().name}


def target_facts(path) -> dict:
    """What labels a target model folder: its card's bits and family, and the folder name."""
    p = Path(path)
    card = read_card_json(p)
    name = p.resolve().name
    return {"path": str(path), "bits": _checked_bits((card or {}).get("bits")),
            "family": _family(card, (card or {}).get("arch")), "model": name, "name": name}


def _order_key(fact: dict, label: str) -> tuple:
    """Bit width (FP first, unknown last), then the label without its bits tag (so ``mnist_a-4bit``
    comes before ``mnist_a-bn-4bit`` at every width), then the label."""
    if not fact["bits"]:
        return (1, 0, 0, label, label)
    return (0, *bitwidths.sort_key(fact["bits"]), label.removesuffix("-" + bitwidths.tag(fact["bits"])), label)


def axis_labels(facts: list[dict], key: str) -> Axis:
    """Label and order one axis (see the module docstring); :class:`LabelCollision` when even the
    folder names collide or a path is listed twice."""
    seen: dict[str, str] = {}
    for f in facts:
        real = str(Path(f["path"]).resolve())
        if real in seen:
            raise LabelCollision(key, [seen[real], f["path"]], "the same set or model twice; list it once")
        seen[real] = f["path"]
    if not facts:
        return Axis((), (), "bits")
    if all(f["bits"] for f in facts) and len({f["family"] for f in facts}) == 1:
        labels = [bitwidths.label(f["bits"]) for f in facts]
        if len(set(labels)) == len(labels):
            order = bitwidths.label_order(labels)
            pairs = sorted(zip(facts, labels), key=lambda fl: order.index(fl[1]))
            return Axis(tuple(f["path"] for f, _ in pairs), tuple(lab for _, lab in pairs), "bits")
    for by, field in (("model folder", "model"), ("run folder", "name")):
        labels = [f[field] or f["name"] for f in facts]
        if len(set(labels)) == len(labels):
            pairs = sorted(zip(facts, labels), key=lambda fl: _order_key(*fl))
            return Axis(tuple(f["path"] for f, _ in pairs), tuple(lab for _, lab in pairs), by)
    first: dict[str, str] = {}
    for f in facts:
        if f["name"] in first:
            raise LabelCollision(key, [first[f["name"]], f["path"]],
                                 f"both would be labelled {f['name']!r} in the transfer matrix (same folder "
                                 "or file name); list only one, or rename one")
        first[f["name"]] = f["path"]
    raise AssertionError("unreachable: distinct names are unique labels")


def check_unique_labels(sources, targets) -> tuple[Axis, Axis]:
    """The (rows, columns) axes of the transfer matrix for these source sets (npz files or attack
    run folders) and target model folders, from ``card.json`` and set metadata only (no
    TensorFlow, no images loaded). Raises :class:`LabelCollision` (a ``ValueError``, one line)
    when two sources or two targets would get the same label."""
    return (axis_labels([source_facts(s) for s in sources], "transfer.sources"),
            axis_labels([target_facts(t) for t in targets], "transfer.targets"))


# --------------------------------------------------------------------------- matrix


@dataclass
class Matrix:
    """``values[i, j]``: mean over runs of source ``rows.paths[i]`` on target ``cols.paths[j]``;
    ``std`` the population std (NaN where a cell has one run: there is no spread to show);
    ``runs`` the number of runs per cell (0 where a pair was not evaluated)."""

    values: np.ndarray
    std: np.ndarray
    runs: np.ndarray
    rows: Axis
    cols: Axis


def matrix(cell_rows: list[dict], key: str = "adversarial_accuracy", *, rows: Axis | None = None,
           cols: Axis | None = None) -> Matrix:
    """The source × target matrix of ``<key>_mean`` from :func:`cells` output. ``rows``/``cols``
    default to :func:`check_unique_labels` of the sources and targets in ``cell_rows``."""
    if rows is None or cols is None:
        r, c = check_unique_labels(list(dict.fromkeys(x["source"] for x in cell_rows)),
                                   list(dict.fromkeys(x["target"] for x in cell_rows)))
        rows, cols = rows or r, cols or c
    shape = (len(rows.paths), len(cols.paths))
    m, sd, n = np.full(shape, np.nan), np.full(shape, np.nan), np.zeros(shape, dtype=int)
    for x in cell_rows:
        i, j = rows.paths.index(x["source"]), cols.paths.index(x["target"])
        mean, std = x[f"{key}_mean"], x[f"{key}_std"]
        m[i, j] = np.nan if mean is None else mean
        n[i, j] = x["runs"]
        if x["runs"] > 1 and std is not None:
            sd[i, j] = std
    return Matrix(m, sd, n, rows, cols)


def markdown_matrix(mat: Matrix, title: str, digits: int = 3) -> str:
    """A Markdown section: ``### title`` and the matrix, cells ``mean ± std`` (just the mean for one run)."""
    body = [[label, *(pm({"mean": mat.values[i, j], "std": mat.std[i, j], "n": int(mat.runs[i, j])}, digits)
                      for j in range(len(mat.cols.labels)))]
            for i, label in enumerate(mat.rows.labels)]
    return f"### {title}\n\n" + markdown(["source \\ target", *mat.cols.labels], body)
