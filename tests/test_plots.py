"""Figures: what is drawn (cells, annotations, tick labels and their order, lines, grid rows and
titles), checked on the matplotlib Figure before saving; valid PNGs; headless; nothing written on
bad input."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annt import plots
from annt.evaluation.transfer import axis_labels, matrix
from annt.plots import (accuracy_vs_bits, accuracy_vs_bits_figure, image_grid, image_grid_figure, transfer_heatmap,
                        transfer_heatmap_figure)

NAN_GREY = (200, 200, 200)  # plots._NAN_COLOR "#c8c8c8"
ORDER = ["FP", "1", "2", "4", "8", "12", "16"]


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


def _ticks(labels) -> list[str]:
    return [t.get_text() for t in labels]


# --------------------------------------------------------------------------- image_grid
def _grid_axes(fig):
    """{(kind, row): axes} of an image grid (colorbars are matplotlib's "<colorbar>" axes)."""
    out = {}
    for ax in fig.axes:
        if ax.get_label() != "<colorbar>":
            kind, row = ax.get_label().split()
            out[kind, int(row)] = ax
    return out


@pytest.mark.parametrize("shape", [(4, 28, 28), (4, 28, 28, 1), (4, 32, 32, 3)], ids=["NHW", "gray", "rgb"])
def test_image_grid_draws_rows_columns_images_and_captions(shape):
    clean, adv = _pairs(shape)
    fig = image_grid_figure(clean, adv, labels=[3, 1, 4, 1], clean_pred=[3, 1, 4, 7], adv_pred=[8, 1, 9, 7],
                            title="FGSM eps 0.1")
    axes = _grid_axes(fig)
    assert sorted(axes) == sorted((k, r) for k in ("clean", "adversarial", "perturbation") for r in range(4))
    assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == 4  # one perturbation scale per row
    assert fig.get_suptitle() == "FGSM eps 0.1"
    assert axes["clean", 0].get_title() == "clean" and axes["adversarial", 0].get_title() == "adversarial"
    assert [axes["clean", r].get_ylabel() for r in range(4)] == [
        "y=3 clean→3 adv→8", "y=1 clean→1 adv→1", "y=4 clean→4 adv→9", "y=1 clean→7 adv→7"]
    gray = clean.ndim == 3 or clean.shape[-1] == 1
    for r in range(4):
        x = clean[r].reshape(clean.shape[1], clean.shape[2], -1)
        x_adv = adv[r].reshape(x.shape)
        shown_clean = axes["clean", r].images[0].get_array()
        shown_adv = axes["adversarial", r].images[0].get_array()
        np.testing.assert_allclose(shown_clean, x[..., 0] if gray else x)  # row r shows sample r
        np.testing.assert_allclose(shown_adv, x_adv[..., 0] if gray else x_adv)
        delta = (x_adv.astype(np.float64) - x.astype(np.float64))
        linf, l2 = np.abs(delta).max(), np.sqrt((delta ** 2).sum())
        title = axes["perturbation", r].get_title()
        assert title.endswith(f"L∞={linf:.3f}  L2={l2:.3f}")
        assert title.startswith("perturbation δ\n") == (r == 0)
        im = axes["perturbation", r].images[0]
        assert (im.norm.vmin, im.norm.vmax) == pytest.approx((-linf, linf))  # symmetric, scaled to this row
        if gray:
            np.testing.assert_allclose(im.get_array(), delta[..., 0], atol=1e-7)


def test_image_grid_shows_real_mnist_digits(mnist_sample):
    ds = mnist_sample
    adv = np.clip(ds.x[:2] + 0.2 * np.sign(0.5 - ds.x[:2]), 0, 1)
    fig = image_grid_figure(ds.x[:2], adv, labels=ds.y[:2])
    axes = _grid_axes(fig)
    np.testing.assert_array_equal(axes["clean", 1].images[0].get_array(), ds.x[1, ..., 0])
    assert axes["clean", 1].get_ylabel() == f"y={ds.y[1]}"
    assert axes["perturbation", 0].get_title().endswith(f"L∞=0.200  L2={np.sqrt(((adv[0] - ds.x[0]) ** 2).sum()):.3f}")


def test_image_grid_max_rows_caps_the_rows_drawn(tmp_path):
    clean, adv = _pairs((10, 28, 28))
    axes = _grid_axes(image_grid_figure(clean, adv, max_rows=3))
    assert max(r for _, r in axes) == 2 and len(axes) == 9
    assert len(_grid_axes(image_grid_figure(clean[:2], adv[:2], max_rows=8))) == 6
    h_capped = _png(image_grid(tmp_path / "a.png", clean, adv, max_rows=3)).height
    h_eight = _png(image_grid(tmp_path / "c.png", clean, adv, max_rows=8)).height
    assert h_eight > 2 * h_capped


def test_image_grid_unchanged_images_give_white_perturbation(tmp_path):
    clean, _ = _pairs((2, 28, 28, 1))
    fig = image_grid_figure(clean, clean.copy())
    im = _grid_axes(fig)["perturbation", 1].images[0]
    assert not np.any(im.get_array()) and (im.norm.vmin, im.norm.vmax) == (-1.0, 1.0)
    assert _grid_axes(fig)["perturbation", 1].get_title() == "L∞=0.000  L2=0.000"
    _png(image_grid(tmp_path / "same.png", clean, clean.copy()))


def test_image_grid_without_labels_or_title_draws_no_captions():
    clean, adv = _pairs((2, 28, 28))
    fig = image_grid_figure(clean, adv)
    assert fig.get_suptitle() == "" and {ax.get_ylabel() for ax in fig.axes} == {""}


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
def _cells(fig):
    """{(row, col): annotation text} and the drawn matrix of a heat-map figure."""
    ax = fig.axes[0]
    return {(int(t.get_position()[1]), int(t.get_position()[0])): t.get_text() for t in ax.texts}, ax.images[0].get_array()


def test_transfer_heatmap_cells_annotations_and_labels():
    m = np.array([[0.9, 0.25, 0.5], [0.125, 0.75, 0.0]])
    sd = np.array([[0.01, np.nan, 0.0], [0.02, 0.03, 0.04]])
    fig = transfer_heatmap_figure(m, [32, "4"], ["fp", 2, {"weights": 4, "activations": 8}], title="PGD transfer",
                                  std=sd)
    ax = fig.axes[0]
    texts, drawn = _cells(fig)
    np.testing.assert_array_equal(drawn, m)
    assert texts == {(0, 0): "0.90\n± 0.01", (0, 1): "0.25", (0, 2): "0.50\n± 0.00",
                     (1, 0): "0.12\n± 0.02", (1, 1): "0.75\n± 0.03", (1, 2): "0.00\n± 0.04"}
    assert _ticks(ax.get_yticklabels()) == ["FP", "4"]
    assert _ticks(ax.get_xticklabels()) == ["FP", "2", "W4A8"]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("target model bits", "source model bits", "PGD transfer")
    assert fig.axes[1].get_ylabel() == "adversarial accuracy"  # the colorbar
    im = ax.images[0]
    assert (im.norm.vmin, im.norm.vmax) == (0.0, 1.0)  # accuracies: fixed scale, figures compare
    color = {t.get_text(): t.get_color() for t in ax.texts}
    assert color["0.00\n± 0.04"] == "white" and color["0.90\n± 0.01"] == "black"  # readable on dark / bright cells


def test_transfer_heatmap_nan_cell_reads_na_and_is_grey(tmp_path):
    m = np.array([[0.9, np.nan], [0.2, 0.5]])
    fig = transfer_heatmap_figure(m, ["FP", 4], [4, "fp"], title="with gap", fmt="{:.1f}")
    texts, drawn = _cells(fig)
    assert texts == {(0, 0): "0.9", (0, 1): "n/a", (1, 0): "0.2", (1, 1): "0.5"}
    assert drawn.mask.tolist() == [[False, True], [False, False]]
    rgb = np.asarray(_png(transfer_heatmap(tmp_path / "nan.png", m, ["FP", 4], [4, "fp"], title="g")).convert("RGB"))
    assert int(np.all(rgb == NAN_GREY, axis=-1).sum()) > 1000  # a whole grey cell, not a stray pixel


def test_transfer_heatmap_slants_long_column_labels_only():
    names = ["mnist_a-fp", "mnist_a-bn-fp"]
    long = transfer_heatmap_figure(np.eye(2), ["FP", "4"], names, title="t", xlabel="target model").axes[0]
    assert _ticks(long.get_xticklabels()) == names and long.get_xlabel() == "target model"
    assert {t.get_rotation() for t in long.get_xticklabels()} == {30.0}
    short = transfer_heatmap_figure(np.eye(2), ["FP", "4"], ["FP", "16"], title="t").axes[0]
    assert {t.get_rotation() for t in short.get_xticklabels()} == {0.0}


def test_transfer_heatmap_scale_spans_values_outside_unit_range():
    fig = transfer_heatmap_figure(np.array([[1.5, 3.0], [2.0, np.nan]]), [1, 2], [1, 2], title="mean L2",
                                  value_label="L2", xlabel="target model", ylabel="source model")
    ax = fig.axes[0]
    assert (ax.images[0].norm.vmin, ax.images[0].norm.vmax) == (1.5, 3.0)
    assert (ax.get_xlabel(), ax.get_ylabel(), fig.axes[1].get_ylabel()) == ("target model", "source model", "L2")


def test_transfer_matrix_to_heatmap_orders_fp_first_and_omits_single_run_std():
    """Sources and targets given in folder order (fp last) are drawn FP, 1, 2, ... 16."""
    tags = {1: "1bit", 2: "2bit", 4: "4bit", 8: "8bit", 12: "12bit", 16: "16bit", 32: "fp"}
    folder_order = sorted(tags, key=lambda k: tags[k])  # 12bit, 16bit, 1bit, 2bit, 4bit, 8bit, fp

    def facts(k, side):
        return {"path": f"/{side}/mnist_a-{tags[k]}", "bits": {"weights": k, "activations": k},
                "family": ("mnist_a", False, False, False), "model": f"mnist_a-{tags[k]}", "name": f"mnist_a-{tags[k]}"}

    rows = axis_labels([facts(k, "runs") for k in folder_order], "transfer.sources")
    cols = axis_labels([facts(k, "models") for k in folder_order], "transfer.targets")
    cell_rows = [{"source": f"/runs/mnist_a-{tags[s]}", "target": f"/models/mnist_a-{tags[t]}",
                  "adversarial_accuracy_mean": (s % 7) / 10 + (t % 5) / 100, "adversarial_accuracy_std": 0.01,
                  "runs": 1 if s == t else 3} for s in folder_order for t in folder_order]
    mat = matrix(cell_rows, rows=rows, cols=cols)
    assert list(mat.rows.labels) == list(mat.cols.labels) == ORDER
    fig = transfer_heatmap_figure(mat.values, mat.rows.labels, mat.cols.labels, std=mat.std, title="FGSM")
    ax = fig.axes[0]
    assert _ticks(ax.get_xticklabels()) == _ticks(ax.get_yticklabels()) == ORDER
    texts, drawn = _cells(fig)
    widths = [32, 1, 2, 4, 8, 12, 16]
    for i, s in enumerate(widths):
        for j, t in enumerate(widths):
            value = (s % 7) / 10 + (t % 5) / 100
            assert drawn[i, j] == value
            assert texts[i, j] == f"{value:.2f}" + ("" if s == t else "\n± 0.01")  # one run: no "± 0.00"


@pytest.mark.parametrize(
    "matrix_, rows, cols, std",
    [
        (np.zeros((2, 3)), [1, 2], [1, 2], None),
        (np.zeros((2, 2)), [1, 2], [1, 2], np.zeros((2, 3))),
        (np.zeros(4), [1, 2], [1, 2], None),
    ],
)
def test_transfer_heatmap_bad_shapes_raise_and_write_nothing(tmp_path, matrix_, rows, cols, std):
    with pytest.raises(ValueError):
        transfer_heatmap(tmp_path / "t.png", matrix_, rows, cols, title="x", std=std)
    assert list(tmp_path.iterdir()) == []


def test_transfer_heatmap_writes_png(tmp_path):
    m = np.random.default_rng(1).random((7, 7))
    out = transfer_heatmap(tmp_path / "t.png", m, ORDER, ORDER, title="PGD transfer", std=m / 10)
    assert out == tmp_path / "t.png"
    rgb = np.asarray(_png(out).convert("RGB"))
    assert int(np.all(rgb == NAN_GREY, axis=-1).sum()) < 100  # no grey cell, only anti-aliased text edges


# --------------------------------------------------------------------------- accuracy_vs_bits
def test_accuracy_vs_bits_lines_points_and_fp_first_axis():
    series = {
        "FGSM": {32: 0.1, 1: 0.4, 2: 0.3, 4: 0.2, 8: 0.15, 12: 0.1, 16: 0.1},
        "PGD": {16: float("nan"), 4: 0.02, "fp": 0.0},
        "CW": {8: 0.0, 1: 0.0},
    }
    fig = accuracy_vs_bits_figure(series, title="Mnist A")
    ax = fig.axes[0]
    assert _ticks(ax.get_xticklabels()) == ORDER
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}
    assert lines == {
        "FGSM": ([0, 1, 2, 3, 4, 5, 6], [0.1, 0.4, 0.3, 0.2, 0.15, 0.1, 0.1]),
        "PGD": ([0, 3], [0.0, 0.02]),  # NaN point skipped, FP first
        "CW": ([1, 4], [0.0, 0.0]),
    }
    assert len(ax.get_lines()) == 3
    assert _ticks(ax.get_legend().get_texts()) == ["FGSM", "PGD", "CW"]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("model bits", "adversarial accuracy", "Mnist A")
    assert ax.get_ylim() == (-0.02, 1.02)


def test_accuracy_vs_bits_axis_holds_only_widths_present_and_mixed_widths():
    fig = accuracy_vs_bits_figure({"CW": {16: 1.2, (2, 4): 2.5, "fp": 1.9, 4: 3.0}},
                                  ylabel="mean L2 (successful)")
    ax = fig.axes[0]
    assert _ticks(ax.get_xticklabels()) == ["FP", "W2A4", "4", "16"]
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [0, 1, 2, 3] and list(line.get_ydata()) == [1.9, 2.5, 3.0, 1.2]
    assert ax.get_ylabel() == "mean L2 (successful)" and ax.get_title() == ""
    assert ax.get_ylim() != (-0.02, 1.02)  # values above 1: the axis follows the data


def test_accuracy_vs_bits_writes_png(tmp_path):
    out = accuracy_vs_bits(tmp_path / "acc.png", {"FGSM": {32: 0.1, 1: 0.4}}, title="t")
    assert out == tmp_path / "acc.png"
    _png(out)


@pytest.mark.parametrize("series", [{}, {"FGSM": {3.5: 0.1}}, {"FGSM": {32: 0.1, "fp": 0.2}}, {"FGSM": [0.1]}])
def test_accuracy_vs_bits_bad_input_raises_and_writes_nothing(tmp_path, series):
    with pytest.raises(ValueError):
        accuracy_vs_bits(tmp_path / "acc.png", series)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- headless
def test_import_does_not_load_pyplot():
    code = "import sys, annt.plots; sys.exit('matplotlib.pyplot' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0
