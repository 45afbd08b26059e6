"""Reading and validating a task file (SPEC §5).

The schema is assembled, never repeated: the top-level keys here, the shared ``data:`` and
``model:`` sections from :mod:`annt.config.sections`, and each task's own section (``SECTION``),
the sections it reads (``USES``) and its cross-key checks (``check``) from its module in
:mod:`annt.tasks`. ``describe_schema`` (the wiki's reference page) walks the same schema.

A task file is YAML (``yaml.safe_load`` only). :func:`load_config` reads it, applies ``--set``
overrides, fills defaults, checks every value and resolves paths relative to the config file
(overrides given on the command line resolve relative to the working directory). Any problem
raises :class:`~annt.errors.ConfigError` whose message is ONE line naming the file, the key path,
the bad value and what is allowed. Nothing is created on disk before validation passes.

The resolved config is a plain nested ``dict``; ``model.bits`` becomes
``{"weights": k, "activations": k}`` with 32 meaning full precision.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml

from annt import bits as bitwidths
from annt.config.schema import REQUIRED, Context, Key, fmt_value, walk
from annt.config.sections import DATA, MODEL
from annt.errors import ConfigError
from annt.tasks import TASKS

SCHEMA: dict[str, Any] = {
    "task": Key("choice", REQUIRED, "What to do.", choices=tuple(TASKS)),
    "name": Key("str", None, "Run name in the run-folder name; may use {arch}, {bits}, {attack}, {dataset}; "
                 "default: the config file's stem.", nullable=True),
    "seed": Key("int", 0, "Seed for data splits, sample selection, weight init and attacks.", min=0, max=2**32 - 1),
    "output_dir": Key("path", None, "Parent folder of run folders; default: ./runs in the working directory.", nullable=True),
    "description": Key("str", "", "Free text copied into results.json."),
    "data": DATA,
    "model": MODEL,
}
_TASK_MODULES = {task: importlib.import_module(TASKS[task].split(":")[0]) for task in TASKS}
SCHEMA.update({task: module.SECTION for task, module in _TASK_MODULES.items()})
#: Which sections each task reads; the others must be absent (or null) in its file.
TASK_SECTIONS = {task: module.USES for task, module in _TASK_MODULES.items()}

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
    except yaml.YAMLError as e:
        if raw.strip()[:1] in "[{":  # meant as a list or mapping: a plain string would fail later, obscurely
            problem = getattr(e, "problem", None) or "not valid YAML"
            raise ConfigError(f"--set {text!r}: the value does not parse as a YAML list or mapping ({problem}); "
                              f"quote items that hold brackets or commas, e.g. {key.strip()}='[\"models/a-[0-9]*bit\"]'")
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
    for section in ("data", "model", *TASKS):
        if cfg[section] is not None and section not in allowed:
            raise ConfigError(f"{file}: {section}: section not used by task {task!r} "
                              f"(it uses: {', '.join(allowed)})")
        if cfg[section] is None and section in allowed:
            cfg[section] = walk(ctx, SCHEMA[section], {}, section + ".")
    cfg["output_dir"] = cfg["output_dir"] or str(Path.cwd() / "runs")
    _TASK_MODULES[task].check(ctx, cfg)
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
