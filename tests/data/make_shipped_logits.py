"""Add the reference logits of shipped models that have none to ``tests/data/shipped_logits.npz``.

    python tests/data/make_shipped_logits.py          # adds every models/<name>/ missing from the file
    python tests/data/make_shipped_logits.py --check  # lists what it would add, writes nothing

Entries already in the file are kept exactly as they are (they pin the logits a model gave when it was
added; ``tests/test_shipped.py`` compares today's with them), and so are the image indices: the first
64 images of the shipped MNIST sample. A stochastic model (card ``"stochastic": true``, galloway type S)
is recorded on one seeded pass: :func:`reference_pass` reseeds every random source from
``pass_seed(LOGITS_SEED, 0)`` (:mod:`annt.evaluation.predict`) right before the call, so the draw, and
so the logits, repeat exactly.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "shipped_logits.npz"
#: The run seed of the one pass that records a stochastic model (pass 0 of run seed 0).
LOGITS_SEED = 0


def reference_pass(model, x: np.ndarray) -> np.ndarray:
    """float32 logits of ``model`` on ``x`` in one call (inference mode); reseeded first if it is stochastic."""
    from annt.evaluation.predict import is_stochastic, pass_seed, reseed

    if is_stochastic(model):
        reseed(model, pass_seed(LOGITS_SEED, 0))
    return np.asarray(model(x, training=False), dtype=np.float32)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="list the models that lack logits; write nothing")
    args = p.parse_args(argv)
    from annt.data import load_sample
    from annt.models.folder import load_model_folder

    with np.load(OUT) as ref:
        have = {k: ref[k] for k in ref.files}
    index = have["image_index"]
    # a ".<name>.tmp" folder is an export under way (annt renames it when complete)
    missing = [f for f in sorted(ROOT.glob("models/*/card.json"))
               if f.parent.name not in have and not f.parent.name.startswith(".")]
    if args.check or not missing:
        print("\n".join(f.parent.name for f in missing) or "every shipped model has reference logits")
        return 0
    ds = load_sample()
    if not np.array_equal(ds.index[:len(index)], index):
        sys.exit(f"the shipped MNIST sample's first {len(index)} images are not those of {OUT.name}")
    x = ds.x[:len(index)]
    for card in missing:
        model, _ = load_model_folder(card.parent)
        have[card.parent.name] = reference_pass(model, x)
        print(f"added {card.parent.name}")
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=OUT.parent)
    os.close(fd)
    np.savez_compressed(tmp, **have)
    os.replace(tmp, OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
