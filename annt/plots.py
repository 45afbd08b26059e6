"""PNG figures: adversarial image grids, accuracy vs bitwidth, transfer heat-maps.

Headless by construction: figures are built from :class:`matplotlib.figure.Figure` with an Agg
canvas, never through ``pyplot``, so no global state or display is touched and the module is safe
in worker processes. Each plot comes in two parts: ``*_figure(...)`` builds and returns the
:class:`~matplotlib.figure.Figure` (what tests inspect: cell values, annotations, tick labels,
lines), and the function of the plain name writes it as a PNG with
:func:`annt.io.atomic_write_bytes`. Invalid input raises ``ValueError`` before anything is drawn
or written, so a failed call leaves no file behind.

Bit widths are shown with :func:`annt.bits.label` and ordered by :data:`annt.bits.WIDTHS`: full
precision **first** (the reference model), then the quantized widths in increasing precision:
FP, 1, 2, 4, 8, 12, 16 (the paper's tables use this order).

Images are on the pixel scale [0, 1]; distances in captions are on that scale (SPEC §7):
L2 = ‖δ‖₂ and L∞ = max|δ| with δ = x_adv − x flattened over pixels and channels.
"""
from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from annt import bits as bitwidths
from annt.io import atomic_write_bytes

__all__ = [
    "image_grid",
    "image_grid_figure",
    "transfer_heatmap",
    "transfer_heatmap_figure",
    "accuracy_vs_bits",
    "accuracy_vs_bits_figure",
    "curves",
    "curves_figure",
]

DPI = 120
FONT_SIZE = 10
SMALL_FONT_SIZE = 9
_DELTA_CMAP = "RdBu_r"  # diverging: blue = darker than clean, red = brighter, white = unchanged
_HEATMAP_CMAP = "viridis"
_NAN_COLOR = "#c8c8c8"


# --------------------------------------------------------------------------- bitwidth labels


def _axis_label(value: Any) -> str:
    """Bitwidth label when ``value`` is one, else ``str(value)`` (e.g. a model name)."""
    try:
        return bitwidths.label(value)
    except ValueError:
        return str(value)


# --------------------------------------------------------------------------- saving


def _new_figure(figsize) -> Figure:
    """A figure on its own Agg canvas (no pyplot), ready to draw and to inspect."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)  # attaches itself to the figure
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return atomic_write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------- image grid


def _as_nhwc(name: str, images: Any) -> np.ndarray:
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:  # (N, H, W) grayscale
        x = x[..., np.newaxis]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must be (N, H, W), (N, H, W, 1) or (N, H, W, 3); got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} holds no images")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _as_vector(name: str, values: Any, n: int) -> np.ndarray | None:
    if values is None:
        return None
    v = np.asarray(values).reshape(-1)
    if v.shape[0] != n:
        raise ValueError(f"{name} has {v.shape[0]} entries for {n} images")
    return v


def _row_caption(i: int, labels, clean_pred, adv_pred) -> str:
    parts = []
    if labels is not None:
        parts.append(f"y={labels[i]}")
    if clean_pred is not None:
        parts.append(f"clean→{clean_pred[i]}")
    if adv_pred is not None:
        parts.append(f"adv→{adv_pred[i]}")
    return " ".join(parts)


def _signed_max_channel(delta: np.ndarray) -> np.ndarray:
    """(H, W, C) → (H, W): per pixel, the channel value with the largest |δ|, sign kept."""
    idx = np.argmax(np.abs(delta), axis=-1)[..., np.newaxis]
    return np.take_along_axis(delta, idx, axis=-1)[..., 0]


def image_grid_figure(
    clean: Any,
    adversarial: Any,
    *,
    labels: Sequence | None = None,
    clean_pred: Sequence | None = None,
    adv_pred: Sequence | None = None,
    max_rows: int = 8,
    title: str | None = None,
) -> Figure:
    """Grid of the first ``max_rows`` samples: columns clean | adversarial | perturbation.

    Images are float NHWC on [0, 1] with 1 (gray) or 3 (RGB) channels; (N, H, W) is read as gray.
    Displayed pixels are clipped to [0, 1]. The perturbation δ = adversarial − clean is drawn
    with a diverging colormap symmetric around 0, scaled per row to that row's max|δ| (the
    colorbar gives the scale), captioned with L∞ = max|δ| and L2 = ‖δ‖₂ over all elements.
    For RGB, each pixel shows the channel with the largest |δ| (sign kept), so the colour
    extremes are the row's L∞. Row captions read "y=3 clean→3 adv→8" from whichever of
    ``labels``, ``clean_pred``, ``adv_pred`` are given.

    The image axes carry the labels ``"clean <i>"``, ``"adversarial <i>"`` and ``"perturbation <i>"``
    (row ``i``; :meth:`~matplotlib.artist.Artist.get_label`), their colorbars matplotlib's
    ``"<colorbar>"``.
    """
    x = _as_nhwc("clean", clean)
    x_adv = _as_nhwc("adversarial", adversarial)
    if x.shape != x_adv.shape:
        raise ValueError(f"clean {x.shape} and adversarial {x_adv.shape} shapes differ")
    if int(max_rows) < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    n = x.shape[0]
    labels = _as_vector("labels", labels, n)
    clean_pred = _as_vector("clean_pred", clean_pred, n)
    adv_pred = _as_vector("adv_pred", adv_pred, n)

    rows = min(n, int(max_rows))
    gray = x.shape[-1] == 1
    cell = 2.0
    fig = _new_figure((3 * cell + 0.6, rows * cell + (0.5 if title else 0.2)))
    axes = fig.subplots(rows, 3, squeeze=False)
    headings = ("clean", "adversarial", "perturbation δ")

    for i in range(rows):
        delta = x_adv[i].astype(np.float64) - x[i].astype(np.float64)
        linf = float(np.max(np.abs(delta)))
        l2 = float(np.sqrt(np.sum(delta**2)))
        ax_clean, ax_adv, ax_delta = axes[i]
        for ax, img in ((ax_clean, x[i]), (ax_adv, x_adv[i])):
            img = np.clip(img, 0.0, 1.0)
            if gray:
                ax.imshow(img[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            else:
                ax.imshow(img, interpolation="nearest")
        shown = delta[..., 0] if gray else _signed_max_channel(delta)
        scale = linf if linf > 0 else 1.0  # an unchanged row stays white
        im = ax_delta.imshow(shown, cmap=_DELTA_CMAP, vmin=-scale, vmax=scale, interpolation="nearest")
        cbar = fig.colorbar(im, ax=ax_delta, fraction=0.046, pad=0.04)
        cbar.ax.tick_params(labelsize=SMALL_FONT_SIZE)

        for ax, kind in zip(axes[i], ("clean", "adversarial", "perturbation")):
            ax.set_label(f"{kind} {i}")
            ax.set_xticks([])
            ax.set_yticks([])
        norms = f"L∞={linf:.3f}  L2={l2:.3f}"
        if i == 0:
            ax_clean.set_title(headings[0], fontsize=FONT_SIZE)
            ax_adv.set_title(headings[1], fontsize=FONT_SIZE)
            ax_delta.set_title(f"{headings[2]}\n{norms}", fontsize=SMALL_FONT_SIZE)
        else:
            ax_delta.set_title(norms, fontsize=SMALL_FONT_SIZE)
        caption = _row_caption(i, labels, clean_pred, adv_pred)
        if caption:
            ax_clean.set_ylabel(caption, fontsize=FONT_SIZE)

    if title:
        fig.suptitle(title, fontsize=FONT_SIZE + 1)
    fig.tight_layout()
    return fig


def image_grid(path: str | os.PathLike, clean: Any, adversarial: Any, **kwargs) -> Path:
    """Write :func:`image_grid_figure` (same arguments) as a PNG at ``path``; returns ``path``."""
    return _save(image_grid_figure(clean, adversarial, **kwargs), path)


# --------------------------------------------------------------------------- transfer heat-map


def _text_color(rgba) -> str:
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def transfer_heatmap_figure(
    matrix: Any,
    row_labels: Sequence,
    col_labels: Sequence,
    *,
    title: str,
    value_label: str = "adversarial accuracy",
    fmt: str = "{:.2f}",
    std: Any = None,
    xlabel: str = "target model bits",
    ylabel: str = "source model bits",
) -> Figure:
    """Heat-map of ``matrix[source, target]``: rows = source model, columns = target model, in the
    order given (:func:`annt.evaluation.transfer.matrix` orders them by bit width, FP first).

    Labels go through :func:`annt.bits.label` when they are bitwidths (32 → "FP"), else ``str``
    (e.g. folder names; then pass ``xlabel``/``ylabel`` such as "target model").
    Each cell is annotated with ``fmt`` of its value, plus "± std" when ``std`` (same shape)
    is given and finite there (pass NaN where a cell has a single run: no "± 0.00").
    NaN cells are grey and read "n/a". When every finite value lies in [0, 1] (accuracies,
    rates) the colour scale is fixed to [0, 1] so figures compare; otherwise it spans the data.
    The first axes is the heat-map, the second its colorbar.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"matrix must be a non-empty 2-D array, got shape {m.shape}")
    if len(row_labels) != m.shape[0] or len(col_labels) != m.shape[1]:
        raise ValueError(
            f"{len(row_labels)} row and {len(col_labels)} column labels for a matrix of shape {m.shape}"
        )
    s = None
    if std is not None:
        s = np.asarray(std, dtype=np.float64)
        if s.shape != m.shape:
            raise ValueError(f"std shape {s.shape} differs from matrix shape {m.shape}")
    fmt.format(0.5)  # a bad format string fails here, before anything is drawn

    finite = m[np.isfinite(m)]
    if finite.size == 0 or (finite.min() >= 0.0 and finite.max() <= 1.0):
        vmin, vmax = 0.0, 1.0
    else:
        vmin, vmax = float(finite.min()), float(finite.max())
        if vmin == vmax:
            vmin, vmax = vmin - 0.5, vmax + 0.5

    n_rows, n_cols = m.shape
    fig = _new_figure((max(4.5, 0.9 * n_cols + 2.6), max(3.5, 0.6 * n_rows + 1.8)))
    ax = fig.subplots()
    norm = Normalize(vmin=vmin, vmax=vmax)
    cmap = matplotlib.colormaps[_HEATMAP_CMAP].with_extremes(bad=_NAN_COLOR)
    im = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, norm=norm, aspect="auto")
    cbar = fig.colorbar(im, ax=ax)
    cbar.set_label(value_label, fontsize=FONT_SIZE)
    cbar.ax.tick_params(labelsize=SMALL_FONT_SIZE)

    with_std = s is not None
    for r in range(n_rows):
        for c in range(n_cols):
            v = m[r, c]
            if not np.isfinite(v):
                ax.text(c, r, "n/a", ha="center", va="center", fontsize=SMALL_FONT_SIZE, color="black")
                continue
            text = fmt.format(v)
            if with_std and np.isfinite(s[r, c]):
                text += "\n± " + fmt.format(s[r, c])
            color = _text_color(cmap(norm(v)))
            ax.text(c, r, text, ha="center", va="center", fontsize=SMALL_FONT_SIZE, color=color)

    cols = [_axis_label(v) for v in col_labels]
    ax.set_xticks(range(n_cols), cols, fontsize=FONT_SIZE)
    if max(map(len, cols)) > 4:  # folder names, not bit widths: slanted so neighbours do not overlap
        ax.tick_params(axis="x", labelrotation=30)
        for t in ax.get_xticklabels():
            t.set_horizontalalignment("right")
    ax.set_yticks(range(n_rows), [_axis_label(v) for v in row_labels], fontsize=FONT_SIZE)
    ax.set_xlabel(xlabel, fontsize=FONT_SIZE)
    ax.set_ylabel(ylabel, fontsize=FONT_SIZE)
    ax.set_title(title, fontsize=FONT_SIZE + 1)
    fig.tight_layout()
    return fig


def transfer_heatmap(path: str | os.PathLike, matrix: Any, row_labels: Sequence, col_labels: Sequence,
                     **kwargs) -> Path:
    """Write :func:`transfer_heatmap_figure` (same arguments) as a PNG at ``path``; returns ``path``."""
    return _save(transfer_heatmap_figure(matrix, row_labels, col_labels, **kwargs), path)


# --------------------------------------------------------------------------- accuracy vs bits


def accuracy_vs_bits_figure(
    series: Mapping[str, Mapping[Any, float]],
    *,
    ylabel: str = "adversarial accuracy",
    title: str | None = None,
) -> Figure:
    """One line per series (attack name) of value against bitwidth.

    ``series`` maps a name to ``{bits: value}``; bits are anything :func:`annt.bits.label` accepts,
    or a ``(weights, activations)`` pair for mixed widths.
    The x axis is categorical with equal spacing, in :data:`annt.bits.WIDTHS` order (FP first) over the
    bitwidths present in any series; labels outside that order follow in first-seen order.
    Missing or NaN points are skipped (the line joins the points present). Also used for other
    per-bitwidth quantities (e.g. mean L2 of successful samples) through ``ylabel``; when every
    value lies in [0, 1] the y axis is fixed to [0, 1]. One ``Line2D`` per series, labelled
    with its name (the legend), x = position of its bit widths on the axis.
    """
    if not series:
        raise ValueError("no series to plot")
    labelled: dict[str, dict[str, float]] = {}
    first_seen: dict[str, int] = {}
    for name, points in series.items():
        if not isinstance(points, Mapping):
            raise ValueError(f"series {name!r} must map bitwidth to value")
        row: dict[str, float] = {}
        for bits, value in points.items():
            if isinstance(bits, tuple) and len(bits) == 2:  # (weights, activations): dicts cannot be keys
                bits = {"weights": bits[0], "activations": bits[1]}
            label = bitwidths.label(bits)
            if label in row:
                raise ValueError(f"series {name!r} has bitwidth {label} twice")
            row[label] = float(value) if value is not None else math.nan
            first_seen.setdefault(label, len(first_seen))
        labelled[str(name)] = row
    categories = bitwidths.label_order(list(first_seen))
    position = {lab: i for i, lab in enumerate(categories)}

    fig = _new_figure((max(5.0, 0.8 * len(categories) + 2.5), 3.8))
    ax = fig.subplots()
    markers = ("o", "s", "^", "D", "v", "P", "X", "*")
    all_values = []
    for k, (name, row) in enumerate(labelled.items()):
        pts = [(position[lab], v) for lab, v in row.items() if math.isfinite(v)]
        pts.sort()
        all_values.extend(v for _, v in pts)
        xs = [p for p, _ in pts]
        ys = [v for _, v in pts]
        ax.plot(xs, ys, marker=markers[k % len(markers)], linewidth=1.5, markersize=6, label=name)

    ax.set_xticks(range(len(categories)), categories, fontsize=FONT_SIZE)
    ax.set_xlim(-0.5, len(categories) - 0.5)
    if all_values and min(all_values) >= 0.0 and max(all_values) <= 1.0:
        ax.set_ylim(-0.02, 1.02)
    ax.tick_params(axis="y", labelsize=SMALL_FONT_SIZE)
    return _finish_lines(fig, ax, "model bits", ylabel, title)


def _finish_lines(fig: Figure, ax, xlabel: str, ylabel: str, title: str | None) -> Figure:
    """Axis labels, title, grid and legend of a line plot; the figure laid out."""
    ax.set_xlabel(xlabel, fontsize=FONT_SIZE)
    ax.set_ylabel(ylabel, fontsize=FONT_SIZE)
    if title:
        ax.set_title(title, fontsize=FONT_SIZE + 1)
    ax.grid(True, alpha=0.4)
    ax.legend(fontsize=SMALL_FONT_SIZE, loc="best")
    fig.tight_layout()
    return fig


def accuracy_vs_bits(path: str | os.PathLike, series: Mapping[str, Mapping[Any, float]], **kwargs) -> Path:
    """Write :func:`accuracy_vs_bits_figure` (same arguments) as a PNG at ``path``; returns ``path``."""
    return _save(accuracy_vs_bits_figure(series, **kwargs), path)


# --------------------------------------------------------------------------- curves over a numeric axis


def curves_figure(
    series: Mapping[str, Mapping[float, float]],
    *,
    xlabel: str,
    ylabel: str = "accuracy",
    title: str | None = None,
    log_x: bool = False,
) -> Figure:
    """One line per series of value against a numeric x (eps, iterations, thresholds).

    ``series`` maps a name to ``{x: value}``; points are drawn in increasing x, NaN values skipped.
    With ``log_x`` the x axis is logarithmic (iterations). When every value lies in [0, 1] the y
    axis is fixed to [0, 1]. One ``Line2D`` per series, labelled with its name.
    """
    if not series:
        raise ValueError("no series to plot")
    fig = _new_figure((6.0, 3.8))
    ax = fig.subplots()
    markers = ("o", "s", "^", "D", "v", "P", "X", "*")
    values = []
    for k, (name, points) in enumerate(series.items()):
        pts = sorted((float(x), float(v)) for x, v in points.items() if v is not None and math.isfinite(float(v)))
        values.extend(v for _, v in pts)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=markers[k % len(markers)], linewidth=1.5,
                markersize=5, label=str(name))
    if log_x:
        ax.set_xscale("log")
    if values and min(values) >= 0.0 and max(values) <= 1.0:
        ax.set_ylim(-0.02, 1.02)
    ax.tick_params(labelsize=SMALL_FONT_SIZE)
    return _finish_lines(fig, ax, xlabel, ylabel, title)


def curves(path: str | os.PathLike, series: Mapping[str, Mapping[float, float]], **kwargs) -> Path:
    """Write :func:`curves_figure` (same arguments) as a PNG at ``path``; returns ``path``."""
    return _save(curves_figure(series, **kwargs), path)
