"""Figures: valid PNGs, headless, exact bitwidth labels, nothing written on bad input."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annt import plots
from annt.plots import accuracy_vs_bits, image_grid, transfer_heatmap

NAN_GREY = (200, 200, 200)  # plots._NAN_COLOR "#c8c8c8"


def _png(path: Path) -> Image.Image:
    assert path.is_file() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(path)
    img.load()
    assert img.format == "PNG"
    assert img.mode in ("RGB", "RGBA")
    assert img.width > 100 and img.height > 100
    return img


def _pairs(shape, seed=0, eps=0.1):
    rng = np.random.default_rng(seed)
    clean = rng.random(shape, dtype=np.float32)
    delta = rng.uniform(-eps, eps, size=shape).astype(np.float32)
    return clean, np.clip(clean + delta, 0, 1).astype(np.float32)


# --------------------------------------------------------------------------- image_grid


@pytest.mark.parametrize("shape", [(4, 28, 28), (4, 28, 28, 1), (4, 32, 32, 3)], ids=["NHW", "gray", "rgb"])
def test_image_grid_writes_png_for_gray_rgb_and_nhw(tmp_path, shape):
    clean, adv = _pairs(shape)
    out = image_grid(
        tmp_path / "grid.png", clean, adv,
        labels=[3, 1, 4, 1], clean_pred=[3, 1, 4, 7], adv_pred=[8, 1, 9, 7], title="FGSM eps 0.1",
    )
    assert out == tmp_path / "grid.png"
    img = _png(out)
    assert img.height > img.width  # 4 rows of 3 columns


def test_image_grid_height_follows_max_rows(tmp_path):
    clean, adv = _pairs((10, 28, 28))
    h_capped = _png(image_grid(tmp_path / "a.png", clean, adv, max_rows=3)).height
    h_three = _png(image_grid(tmp_path / "b.png", clean[:3], adv[:3], max_rows=8)).height
    h_eight = _png(image_grid(tmp_path / "c.png", clean, adv, max_rows=8)).height
    assert h_capped == h_three
    assert h_eight > 2 * h_three


def test_image_grid_accepts_unchanged_images(tmp_path):
    clean, _ = _pairs((2, 28, 28, 1))
    _png(image_grid(tmp_path / "same.png", clean, clean.copy()))


def test_rgb_perturbation_keeps_sign_of_largest_channel():
    delta = np.array([[[0.1, -0.3, 0.2], [0.05, 0.0, -0.01]]])
    np.testing.assert_allclose(plots._signed_max_channel(delta), [[-0.3, 0.05]])


def test_row_caption_reads_label_and_predictions():
    assert plots._row_caption(0, [3], [3], [8]) == "y=3 clean→3 adv→8"
    assert plots._row_caption(0, None, None, [8]) == "adv→8"


@pytest.mark.parametrize(
    "clean_shape, adv_shape, kwargs",
    [
        ((4, 28, 28), (4, 28, 27), {}),
        ((4, 28, 28, 1), (3, 28, 28, 1), {}),
        ((4, 28, 28, 3), (4, 28, 28, 1), {}),
        ((4, 28, 28, 2), (4, 28, 28, 2), {}),
        ((0, 28, 28), (0, 28, 28), {}),
        ((4, 28, 28), (4, 28, 28), {"labels": [1, 2, 3]}),
        ((4, 28, 28), (4, 28, 28), {"max_rows": 0}),
    ],
)
def test_image_grid_bad_input_raises_and_writes_nothing(tmp_path, clean_shape, adv_shape, kwargs):
    clean = np.zeros(clean_shape, np.float32)
    adv = np.zeros(adv_shape, np.float32)
    with pytest.raises(ValueError):
        image_grid(tmp_path / "grid.png", clean, adv, **kwargs)
    assert list(tmp_path.iterdir()) == []  # neither the PNG nor a temp file


# --------------------------------------------------------------------------- transfer_heatmap

LABELS = [1, 2, 4, 8, 12, 16, 32]


def _grey_pixels(img: Image.Image) -> int:
    rgb = np.asarray(img.convert("RGB"))
    return int(np.all(rgb == NAN_GREY, axis=-1).sum())


def test_transfer_heatmap_writes_png_with_std(tmp_path):
    rng = np.random.default_rng(1)
    m = rng.random((7, 7))
    img = _png(transfer_heatmap(
        tmp_path / "t.png", m, LABELS, LABELS, title="PGD transfer", std=m / 10,
    ))
    assert _grey_pixels(img) < 100  # only anti-aliased text edges, no grey cell


def test_transfer_heatmap_nan_cell_is_grey(tmp_path):
    m = np.array([[0.9, np.nan], [0.2, 0.5]])
    img = _png(transfer_heatmap(tmp_path / "nan.png", m, ["FP", 4], [4, "fp"], title="with gap"))
    assert _grey_pixels(img) > 1000  # a whole cell, not a stray pixel


def test_transfer_heatmap_accepts_values_outside_unit_range(tmp_path):
    m = np.array([[1.5, 3.0], [2.0, np.nan]])
    _png(transfer_heatmap(tmp_path / "l2.png", m, [1, 2], [1, 2], title="mean L2", value_label="L2"))


@pytest.mark.parametrize(
    "matrix, rows, cols, std",
    [
        (np.zeros((2, 3)), [1, 2], [1, 2], None),
        (np.zeros((2, 2)), [1, 2], [1, 2], np.zeros((2, 3))),
        (np.zeros(4), [1, 2], [1, 2], None),
    ],
)
def test_transfer_heatmap_bad_shapes_raise_and_write_nothing(tmp_path, matrix, rows, cols, std):
    with pytest.raises(ValueError):
        transfer_heatmap(tmp_path / "t.png", matrix, rows, cols, title="x", std=std)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- accuracy_vs_bits


def test_accuracy_vs_bits_writes_png_with_missing_points(tmp_path):
    series = {
        "FGSM": {32: 0.1, 1: 0.4, 2: 0.3, 4: 0.2, 8: 0.15, 12: 0.1, 16: 0.1},
        "PGD": {"fp": 0.0, 4: 0.02, 16: float("nan")},
        "CW": {1: 0.0, 8: 0.0},
    }
    _png(accuracy_vs_bits(tmp_path / "acc.png", series, title="Mnist A"))


def test_accuracy_vs_bits_other_quantity(tmp_path):
    _png(accuracy_vs_bits(tmp_path / "l2.png", {"CW": {1: 1.2, 4: 2.5, "fp": 1.9}}, ylabel="mean L2 (successful)"))


@pytest.mark.parametrize("series", [{}, {"FGSM": {3.5: 0.1}}, {"FGSM": {32: 0.1, "fp": 0.2}}])
def test_accuracy_vs_bits_bad_input_raises_and_writes_nothing(tmp_path, series):
    with pytest.raises(ValueError):
        accuracy_vs_bits(tmp_path / "acc.png", series)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- headless


def test_import_does_not_load_pyplot():
    code = "import sys, annt.plots; sys.exit('matplotlib.pyplot' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0
