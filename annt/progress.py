"""The one progress bar: tqdm on the current ``sys.stderr`` (test capture and notebooks swap it)."""
from __future__ import annotations

import sys


def progress_bar(total: int, desc: str, unit: str = "batch", enabled: bool = True):
    """A tqdm bar to use as a context manager (closed on errors too); ``enabled=False`` draws nothing."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr, disable=not enabled)
