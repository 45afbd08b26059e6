"""From a grid config to its cells: complete task configs, validated by the one loader, and hashed.

A grid is a **base** task config (``grid.base``, optionally on top of a task file ``grid.base_file``)
and **axes** (``grid.axes``, a mapping of axis -> list of values, expanded as a product in the
order written, the first axis outermost). An axis is one of

* ``model``: model folders or globs; sets ``model.checkpoint`` (attack, infer), ``diagnose.models``
  or ``transfer.targets`` (one model per cell);
* ``attack``: attack names, or ``{name, preset, params}`` entries merged over ``base.attack``; a list
  in an entry's ``params`` is itself an axis (``{name: pgd, params: {eps: [0.1, 0.2]}}`` = two
  cells; to sweep inside one cell, put the list in ``base.attack.params``);
* ``eps``: ``attack.params.eps`` (attack) or ``diagnose.eps``;
* ``seed``: the top-level ``seed``;
* any other key path of the base task's config (``attack.samples``, ``model.bits``, ``data.split``).

Every cell is the base with one value of each axis set, plus ``grid.quick_set`` when ``grid.quick``
is on, validated by :func:`annt.config.loader.validate` like any task file: a cell ``annt`` would
refuse is refused here, in one line naming the cell. Its label joins the axis values
(``fgsm-mnist_a-1bit-eps0.1``); its hash is :mod:`annt.grid.identity`'s.

``grid.transfer`` (attack grids with a model axis) adds one transfer cell per setting of the other
axes: ``all-pairs`` evaluates every model's adversarial set on every model of the grid;
``{sources: [...], targets: [...]}`` takes the sets of the listed grid models onto the listed
model folders. A transfer cell's sources are its attack cells' own run folders, so it never picks
up a stale run; its hash is made of theirs.
"""
from __future__ import annotations

import copy
import itertools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from annt.config.schema import Context, Key, fmt_value
from annt.config.sections import MODEL
from annt.errors import ConfigError
from annt.grid import identity as ident
from annt.grid.cells import Cell

#: Tasks a grid's base may be.
CELL_TASKS = ("attack", "infer", "transfer", "diagnose", "train")
#: Where the ``model`` axis puts a model folder, per task (a list key takes a one-item list).
MODEL_KEY = {"attack": "model.checkpoint", "infer": "model.checkpoint", "diagnose": "diagnose.models",
             "transfer": "transfer.targets"}
#: Where the ``eps`` axis goes, per task.
EPS_KEY = {"attack": "attack.params.eps", "diagnose": "diagnose.eps"}
#: The grid sets these in every cell.
GRID_OWNED = ("name", "output_dir")
SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def is_model_folder(p: Path) -> bool:
    return (p / "card.json").is_file() and (p / "model.keras").is_file()


# --------------------------------------------------------------------------- small helpers
def _resolve(base: Path, value: str) -> str:
    p = Path(os.path.expanduser(value))
    return os.path.normpath(p if p.is_absolute() else base / p)


def absolute_paths(raw: Any, schema: Mapping, base_for, prefix: str = "") -> Any:
    """``raw`` (a task config as read from YAML) with every value of a ``path`` key (or list of
    paths) made absolute: ``base_for(key_path)`` is the folder it is relative to."""
    if not isinstance(raw, Mapping):
        return copy.deepcopy(raw)
    out = {}
    for k, v in raw.items():
        spec = schema.get(k) if isinstance(schema, Mapping) else None
        path = prefix + str(k)
        if isinstance(spec, Mapping):
            out[k] = absolute_paths(v, spec, base_for, path + ".")
        elif isinstance(spec, Key) and spec.kind == "path" and isinstance(v, str) and v:
            out[k] = _resolve(base_for(path), v)
        elif isinstance(spec, Key) and spec.kind == "list" and spec.item == "path" and isinstance(v, (list, str)):
            out[k] = [_resolve(base_for(path), x) if isinstance(x, str) and x else x
                      for x in ([v] if isinstance(v, str) else v)]
        else:
            out[k] = copy.deepcopy(v)
    return out


def deep_merge(under: Mapping, over: Mapping) -> dict:
    """``over`` merged into ``under``: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(dict(under))
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


def set_path(raw: dict, dotted: str, value: Any) -> None:
    """``raw[a][b][c] = value`` for ``"a.b.c"``, making (or replacing null with) mappings on the way."""
    parts = dotted.split(".")
    node = raw
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = copy.deepcopy(value)


def _text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (dict, list)):
        return fmt_value(v)
    return str(v)


def _safe(text: str) -> str:
    out = "".join(c if c in SAFE else "_" for c in text).strip("_")
    return out.lstrip(".") or "x"


def schema_key(schema: Mapping, dotted: str):
    """The schema entry (a :class:`Key` or a section mapping) at ``dotted``, or None."""
    node: Any = schema
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


# --------------------------------------------------------------------------- axes
class Axis:
    """One axis: ``name`` as written, and per value the ``set``-pairs it applies to a cell's raw
    config, its ``label`` (part of the cell label, safe in a folder name) and what tables ``show``."""

    def __init__(self, name: str):
        self.name = name
        self.sets: list[list[tuple[str, Any]]] = []
        self.labels: list[str] = []
        self.shown: list[Any] = []

    def add(self, sets, label: str, shown) -> None:
        self.sets.append(sets)
        self.labels.append(_safe(label))
        self.shown.append(shown)


def _check_list(ctx: Context, path: str, values) -> list:
    if not isinstance(values, list):
        raise ctx.fail(path, values, "an axis is a list of values")
    if not values:
        raise ctx.fail(path, values, "an axis needs at least one value (an empty axis would make no cells)")
    return values


def model_paths(ctx: Context, path: str, values: list) -> list[str]:
    """Model folders and globs (relative to the grid file, or to the working directory for --set)
    as absolute model-folder paths, globs expanded in sorted order; one line on a bad entry."""
    from annt.config.sections import expand_paths

    base = ctx.base_for(path)
    items = []
    for i, v in enumerate(values):
        if not isinstance(v, str) or not v:
            raise ctx.fail(f"{path}[{i}]", v, "must be a model folder path or a glob")
        items.append(_resolve(base, v))
    return expand_paths(ctx, path, items, is_model_folder, "is not a model folder (needs card.json and model.keras)")


def _attack_entries(ctx: Context, path: str, values: list) -> list[dict]:
    """``grid.axes.attack`` as flat entries ``{"name", "preset"?, "params"}``, list params expanded."""
    from annt.attacks.registry import attack_spec

    flat = []
    for i, v in enumerate(values):
        where = f"{path}[{i}]"
        entry = {"name": v} if isinstance(v, str) else v
        if not isinstance(entry, Mapping):
            raise ctx.fail(where, v, "an attack name or a mapping {name, preset, params}")
        unknown = set(entry) - {"name", "preset", "params"}
        if unknown:
            raise ctx.unknown(f"{where}.{sorted(unknown)[0]}", sorted(unknown)[0], ["name", "preset", "params"])
        spec = attack_spec(entry.get("name"), where, ctx)
        params = entry.get("params") or {}
        if not isinstance(params, Mapping):
            raise ctx.fail(f"{where}.params", params, "must be a mapping of attack parameters")
        listed = {k: p for k, p in params.items()
                  if isinstance(p, list) and not (k in spec.params and spec.params[k].kind == "list")}
        for k, p in listed.items():
            if not p:
                raise ctx.fail(f"{where}.params.{k}", p, "a parameter list needs at least one value")
        fixed = {k: p for k, p in params.items() if k not in listed}
        for combo in itertools.product(*listed.values()):
            out = {"name": spec.name, "params": {**fixed, **dict(zip(listed, combo))}}
            if entry.get("preset") is not None:
                out["preset"] = entry["preset"]
            flat.append(out)
    return flat


def _attack_axis(ctx: Context, path: str, values: list) -> Axis:
    entries = _attack_entries(ctx, path, values)
    axis = Axis("attack")
    by_name: dict[str, list[dict]] = {}
    for e in entries:
        by_name.setdefault(e["name"], []).append(e)
    for e in entries:
        same = by_name[e["name"]]
        # the parameters (and preset) that tell this entry from others of the same attack
        keys = sorted({k for o in same for k in o["params"]})
        varying = [k for k in keys if len({_text(o["params"].get(k)) for o in same}) > 1]
        parts = [f"{k}={_text(e['params'].get(k))}" for k in varying if k in e["params"]]
        if len({o.get("preset") for o in same}) > 1:
            parts.insert(0, f"preset={e.get('preset')}")
        sets = [("attack.name", e["name"])]
        if "preset" in e:
            sets.append(("attack.preset", e["preset"]))
        sets += [(f"attack.params.{k}", p) for k, p in e["params"].items()]
        label = e["name"] + "".join(f"-{p.replace('=', '')}" for p in parts)
        axis.add(sets, label, e["name"] + (" " + ", ".join(parts) if parts else ""))
    return axis


def resolve_axes(ctx: Context, axes: Mapping, task: str) -> dict:
    """``grid.axes`` checked and normalised for the resolved config: model globs expanded to
    absolute folders, paths made absolute; one line on a bad axis (before any cell is made)."""
    from annt.config.loader import SCHEMA

    if not isinstance(axes, Mapping):
        raise ctx.fail("grid.axes", axes, "a mapping of axis -> list of values")
    out = {}
    for name, values in axes.items():
        path = f"grid.axes.{name}"
        values = _check_list(ctx, path, values)
        if name == "model":
            if task not in MODEL_KEY:
                raise ctx.fail(path, values, f"task {task} has no model to vary (it builds one: use model.bits or "
                               "model.arch axes)")
            out[name] = model_paths(ctx, path, values)
        elif name == "attack":
            if task != "attack":
                raise ctx.fail(path, values, f"only for a base of task attack (this one is {task})")
            _attack_entries(ctx, path, values)  # checked now, expanded per cell
            out[name] = copy.deepcopy(values)
        elif name == "eps":
            if task not in EPS_KEY:
                raise ctx.fail(path, values, f"only for tasks {' and '.join(EPS_KEY)} (this one is {task})")
            out[name] = copy.deepcopy(values)
        elif name == "seed":
            out[name] = copy.deepcopy(values)
        else:
            spec = schema_key(SCHEMA, name)
            top = name.split(".")[0]
            if spec is None and schema_key(SCHEMA, ".".join(name.split(".")[:2])) is None:
                raise ctx.fail(path, values, "not an axis: use model, attack, eps, seed or a key path of the "
                               f"{task} config (e.g. {task}.<key>, data.split)")
            if isinstance(spec, Mapping):
                raise ctx.fail(path, values, f"{name} is a section; name one of its keys ({name}.<key>)")
            if top in GRID_OWNED:
                raise ctx.fail(path, values, "set by the grid for every cell")
            if isinstance(spec, Key) and spec.kind == "path":
                values = [_resolve(ctx.base_for(path), v) if isinstance(v, str) else v for v in values]
            out[name] = copy.deepcopy(values)
    return out


def _build_axes(ctx: Context, axes: Mapping, task: str) -> list[Axis]:
    built = []
    for name, values in axes.items():
        if name == "model":
            axis = Axis("model")
            for p in values:
                key = MODEL_KEY[task]
                axis.add([(key, [p] if key in ("diagnose.models", "transfer.targets") else p)], Path(p).name, Path(p).name)
        elif name == "attack":
            axis = _attack_axis(ctx, f"grid.axes.{name}", values)
        else:
            key = EPS_KEY[task] if name == "eps" else name
            short = key.rsplit(".", 1)[-1]
            axis = Axis(name)
            for v in values:
                axis.add([(key, v)], f"{short}{_text(v)}", v)
        built.append(axis)
    return built


# --------------------------------------------------------------------------- the base
def resolve_base(ctx: Context, g: dict, seed: int) -> dict:
    """``grid.base_file`` (if any) with ``grid.base`` merged over it, every path absolute; checked
    for a task the grid can run. The result is what every cell starts from."""
    from annt.config.loader import SCHEMA, read_yaml

    base: dict = {}
    if g.get("base_file"):
        folder = Path(g["base_file"]).parent
        base = absolute_paths(read_yaml(Path(g["base_file"])), SCHEMA, lambda _p: folder)
    inline = g.get("base") or {}
    if not isinstance(inline, Mapping):
        raise ctx.fail("grid.base", inline, "must be a mapping: a task config without the axes")
    base = deep_merge(base, absolute_paths(inline, SCHEMA, lambda p: ctx.base_for("grid.base." + p)))
    task = base.get("task")
    if task not in CELL_TASKS:
        hint = " (required)" if task is None else ""
        raise ctx.fail("grid.base.task", task, f"allowed: {', '.join(CELL_TASKS)}{hint}")
    for key in GRID_OWNED:
        if base.get(key) is not None:
            raise ctx.fail(f"grid.base.{key}", base[key], "set by the grid for every cell (cells go to "
                           "<grid folder>/cells); leave it out")
    if task == "train" and (base.get("train") or {}).get("export_to"):
        raise ctx.fail("grid.base.train.export_to", base["train"]["export_to"],
                       "grid cells keep their models in their own run folders; leave it out")
    base.setdefault("seed", seed)
    return base


# --------------------------------------------------------------------------- expansion
def _cell_context(ctx: Context) -> Context:
    """The context cells are validated in: errors name the cell's own key paths (the grid file is
    named by :func:`_validate_cell`); ``--set grid.base.x`` counts as ``--set x``."""
    overridden = {o.removeprefix("grid.base.") for o in ctx.overridden if o.startswith("grid.base.")}
    return Context(None, ctx.base, overridden)


def _validate_cell(ctx: Context, raw: dict, label: str) -> dict:
    from annt.config.loader import validate

    cell_ctx = _cell_context(ctx)
    try:
        return validate(raw, file=None, base=cell_ctx.base, overridden=cell_ctx.overridden, stem=label)
    except ConfigError as e:
        where = f"{ctx.file}: " if ctx.file else ""
        raise ConfigError(f"{where}grid cell {label}: {e}") from None


def expand(cfg: dict, ctx: Context, root: Path) -> list[Cell]:
    """Every cell of a resolved grid config (attack/... cells first, then transfer cells), in
    axis order, each validated and hashed; cell folders go under ``root``. Raises a one-line
    :class:`ConfigError` on a cell the loader refuses or two cells that would collide."""
    g = cfg["grid"]
    base = g["base"]
    task = base["task"]
    axes = _build_axes(ctx, g["axes"], task)
    code = ident.code_version(g["identity"])
    cells: list[Cell] = []
    for combo in itertools.product(*[range(len(a.labels)) for a in axes]):
        raw = copy.deepcopy(base)
        for axis, i in zip(axes, combo):
            for key, value in axis.sets[i]:
                set_path(raw, key, value)
        if g["quick"]:
            for key, value in (g["quick_set"] or {}).items():
                set_path(raw, key, value)
        label = "-".join(a.labels[i] for a, i in zip(axes, combo)) or task
        raw["name"], raw["output_dir"] = label, str(root)
        resolved = _validate_cell(ctx, raw, label)
        material = ident.identity(resolved, code)
        cell = Cell(label=label, task=task, config=resolved, hash=ident.digest(material), identity=material, root=root,
                    axes={a.name: a.shown[i] for a, i in zip(axes, combo)}, meta=_meta(resolved))
        resolved["output_dir"] = str(cell.folder)
        cells.append(cell)
    if g["transfer"] is not None:
        cells += _transfer_cells(ctx, g, base, axes, cells, root, code)
    _check_collisions(ctx, cells)
    return cells


def _meta(cfg: dict) -> dict:
    """What aggregation needs to know of a cell without reading its config again."""
    task = cfg["task"]
    meta: dict = {"task": task}
    if cfg.get("model"):
        meta["model"] = cfg["model"].get("checkpoint")
        meta["bits"] = cfg["model"].get("bits")
        meta["arch"] = cfg["model"].get("arch")
    if task == "attack":
        meta["attack"] = cfg["attack"]["name"]
    return meta


def _check_collisions(ctx: Context, cells: list[Cell]) -> None:
    where = f"{ctx.file}: " if ctx.file else ""
    by_hash: dict[str, str] = {}
    by_label: dict[str, str] = {}
    for c in cells:
        if c.hash in by_hash:
            raise ConfigError(f"{where}grid.axes: cells {by_hash[c.hash]} and {c.label} would be the same run (same "
                              "config and inputs, e.g. a value listed twice or a model named by a glob and a path); "
                              "list each value once")
        if c.label in by_label:
            raise ConfigError(f"{where}grid.axes: two different cells would both be named {c.label!r}; make the "
                              "axis values distinguishable")
        by_hash[c.hash], by_label[c.label] = c.label, c.hash


# --------------------------------------------------------------------------- transfer cells
TRANSFER_KEYS = ("sources", "targets", "batch_size")


def resolve_transfer(ctx: Context, spec: Any, task: str, axes: Mapping) -> Any:
    """``grid.transfer`` checked: ``all-pairs`` or ``{sources, targets, batch_size}`` (model lists or
    globs; sources among the grid's models); returned with absolute model folders."""
    if spec is None:
        return None
    if task != "attack" or "model" not in axes:
        raise ctx.fail("grid.transfer", spec, "needs a base of task attack and a model axis (the sets to transfer "
                       "are the grid's own attack cells)")
    if spec == "all-pairs":
        return spec
    if not isinstance(spec, Mapping):
        raise ctx.fail("grid.transfer", spec, "all-pairs, or a mapping {sources, targets, batch_size}")
    for k in spec:
        if k not in TRANSFER_KEYS:
            raise ctx.unknown(f"grid.transfer.{k}", k, TRANSFER_KEYS)
    out: dict = {"batch_size": 256}
    models = [os.path.realpath(p) for p in axes["model"]]
    for side in ("sources", "targets"):
        values = spec.get(side, "all")
        if values == "all":
            out[side] = list(axes["model"])
            continue
        values = _check_list(ctx, f"grid.transfer.{side}", values)
        out[side] = model_paths(ctx, f"grid.transfer.{side}", values)
        if side == "sources":
            for i, p in enumerate(out[side]):
                if os.path.realpath(p) not in models:
                    raise ctx.fail(f"grid.transfer.sources[{i}]", p, "not one of the grid's models (grid.axes.model); "
                                   "transfer sources are the grid's own attack cells")
    if "batch_size" in spec:
        from annt.config.schema import check

        out["batch_size"] = check(ctx, "grid.transfer.batch_size", Key("int", 256, min=1), spec["batch_size"])
    return out


def _transfer_cells(ctx: Context, g: dict, base: dict, axes: list[Axis], cells: list[Cell], root: Path,
                    code: dict) -> list[Cell]:
    spec = g["transfer"]
    models = g["axes"]["model"]
    if spec == "all-pairs":
        spec = {"sources": models, "targets": models, "batch_size": 256}
    sources = {os.path.realpath(p) for p in spec["sources"]}
    m = [a.name for a in axes].index("model")
    others = [a for a in axes if a.name != "model"]
    groups: dict[tuple, list[Cell]] = {}
    order = [tuple(i for j, i in enumerate(combo) if j != m)
             for combo in itertools.product(*[range(len(a.labels)) for a in axes])]
    for key, cell in zip(order, cells):
        if os.path.realpath(cell.config["model"]["checkpoint"]) in sources:
            groups.setdefault(key, []).append(cell)
    targets = list(spec["targets"])
    out = []
    for key, srcs in groups.items():
        label = "-".join(["transfer", *(a.labels[i] for a, i in zip(others, key))])
        # targets random at inference are predicted in as many passes as the attack cells used
        passes = srcs[0].config["model"].get("stochastic_passes", MODEL["stochastic_passes"].default)
        template = {"task": "transfer", "seed": base["seed"], "data": copy.deepcopy(base.get("data") or {}),
                    "transfer": {"targets": targets, "batch_size": spec["batch_size"], "stochastic_passes": passes}}
        material = {"task": "transfer", "data": srcs[0].identity["data"],
                    "data_section": srcs[0].identity["config"].get("data"),
                    "transfer": {"batch_size": spec["batch_size"], "targets": [ident.fingerprint(t) for t in targets],
                                 **ident.without_defaults({"stochastic_passes": passes}, MODEL)},  # as every cell's
                    "sources": [c.hash for c in srcs], "code": code}
        out.append(Cell(label=label, task="transfer", config=None, hash=ident.digest(material), identity=material,
                        root=root, axes={a.name: a.shown[i] for a, i in zip(others, key)},
                        depends=tuple(c.label for c in srcs), template=template,
                        meta={"task": "transfer", "attack": srcs[0].meta.get("attack")}))
    return out


def transfer_config(cell: Cell, run_dirs: list[str]) -> dict:
    """A transfer cell's complete config once its sources are done (``run_dirs`` in source order),
    validated by the loader like any task file."""
    raw = copy.deepcopy(cell.template)
    raw["transfer"]["sources"] = list(run_dirs)
    raw["name"], raw["output_dir"] = cell.label, str(cell.folder)
    return _validate_cell(Context(), raw, cell.label)
