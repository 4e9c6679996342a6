"""The book's figures, with one colour per architecture throughout.

Every function takes plain data (lists, NumPy arrays or tensors on any device), draws with
matplotlib, labels its axes and returns the Axes it drew on (or a Figure when it makes several
panels), so a notebook can restyle or save it. Functions that take ``ax=None`` create a new
figure with ``plt.subplots`` when no Axes is given.

The vanilla RNN is always red, the LSTM blue and the GRU green (:data:`COLORS`,
:func:`color_for`), so a reader can compare figures across chapters at a glance.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Union

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from companion._checks import check_int
from companion.gates import SIGMOID_GATES, TANH_GATES

__all__ = [
    "COLORS",
    "color_for",
    "sequential_colors",
    "plot_history",
    "plot_losses",
    "plot_grad_norms",
    "plot_gate_heatmap",
    "plot_forecast",
    "plot_seeds",
]

ArrayLike = Union[torch.Tensor, np.ndarray, Sequence[float]]

#: One colour per architecture and role, shared by every figure of the book (tab10 shades).
COLORS: dict[str, str] = {
    "rnn": "#d62728",  # red
    "lstm": "#1f77b4",  # blue
    "gru": "#2ca02c",  # green
    "truth": "#333333",  # near black: the data
    "prediction": "#ff7f0e",  # orange: what a model says
    "baseline": "#7f7f7f",  # grey: a reference level, e.g. predicting the mean
    "sigmoid": "#e377c2",  # pink: a sigmoid gate in a cell diagram
    "tanh": "#bcbd22",  # olive: a tanh layer in a cell diagram
}

#: The colour map of sweeps over a quantity (a spectral radius, an input scale): one hue, light to
#: dark, far from the red, blue and green that mean RNN, LSTM and GRU.
SEQUENTIAL_CMAP = "Purples"

# Architectures are matched by substring in this order, so "GRU-RNN hybrid" is a GRU and
# "bi-LSTM" an LSTM; "rnn" comes last because it is part of many names.
_ARCHITECTURES = ("lstm", "gru", "rnn")

# Sigmoid gates live in [0, 1]; tanh gates and h in [-1, 1]; c is unbounded.
_TANH_ENTRIES = TANH_GATES | {"h"}


def color_for(name: str, fallback_index: int | None = None) -> str:
    """The book's colour for a model or curve name.

    ``"LSTM"``, ``"lstm-2"`` and ``"bi-LSTM"`` are all LSTM blue: names are matched
    case-insensitively, first exactly against :data:`COLORS`, then by the architecture they
    contain (lstm, then gru, then rnn).

    Args:
        name: a model or curve name.
        fallback_index: for names that match nothing, the index into matplotlib's colour cycle
            (colours already in :data:`COLORS` left out); ``None`` picks one from a stable hash of
            the name, so the same name gets the same colour in every figure.

    Returns:
        A matplotlib colour string.
    """
    if not isinstance(name, str):
        raise TypeError(f"color_for: expected a str name, got {type(name).__name__}")
    key = name.strip().lower()
    if key in COLORS:
        return COLORS[key]
    for arch in _ARCHITECTURES:
        if arch in key:
            return COLORS[arch]
    # Cycle entries may be names, hex strings or RGB tuples: compare them as hex.
    reserved = {to_hex(c) for c in COLORS.values()}
    cycle = [to_hex(c) for c in plt.rcParams["axes.prop_cycle"].by_key().get("color", [])]
    cycle = [c for c in cycle if c not in reserved]
    if not cycle:
        cycle = ["#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]
    index = zlib.crc32(key.encode()) if fallback_index is None else fallback_index
    return cycle[index % len(cycle)]


def sequential_colors(n: int, cmap: str = SEQUENTIAL_CMAP) -> list[str]:
    """``n`` colours for a sweep over a quantity, from light (smallest value) to dark (largest).

    A sweep (curves for rho = 0.5, 0.9, 1.0, 1.5, or for growing input scales) is one model seen
    at several settings, so its curves share one hue and darken as the quantity grows; the
    architecture colours of :data:`COLORS` stay reserved for telling RNN, LSTM and GRU apart.

    Args:
        n: how many colours, n >= 1.
        cmap: a sequential matplotlib colour map; its palest quarter is skipped, so that the
            lightest curve still shows on white.

    Returns:
        ``n`` hex colour strings, lightest first.
    """
    n = check_int("sequential_colors", "n", n)
    colormap = plt.get_cmap(cmap)
    positions = [0.95] if n == 1 else np.linspace(0.35, 0.95, int(n))
    return [to_hex(colormap(float(p))) for p in positions]


_LINESTYLES = ("-", "--", ":", "-.")


def _styles_for(names: Sequence[str] | Mapping[str, Any]) -> list[tuple[str, str]]:
    """(colour, line style) for the curves of one figure: the book's colour for known names and
    distinct cycle colours (in order) for the others; curves sharing a colour, such as two RNNs
    with different spectral radii, are told apart by their line style."""
    styles, unknown, seen = [], 0, {}
    for name in names:
        key = name.strip().lower()
        known = key in COLORS or any(arch in key for arch in _ARCHITECTURES)
        color = color_for(name, None if known else unknown)
        unknown += not known
        repeat = seen.get(color, 0)
        seen[color] = repeat + 1
        styles.append((color, _LINESTYLES[repeat % len(_LINESTYLES)]))
    return styles


def _to_1d(values: Any, what: str) -> np.ndarray:
    """A 1-D float array from a list, array or tensor (any device), or a clear error."""
    if isinstance(values, torch.Tensor):
        arr = values.detach().to("cpu", torch.float64).numpy()
    else:
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{what}: expected a 1-D sequence of numbers, got {type(values).__name__}"
            ) from err
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D sequence (L,), got shape {arr.shape}")
    return arr


def _to_array(values: Any, what: str) -> np.ndarray:
    """A float array of any rank from a list, array or tensor (any device)."""
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu", torch.float64).numpy()
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{what}: expected an array or tensor of numbers, got {type(values).__name__}"
        ) from err


def _require_nonempty_dict(value: Any, where: str, what: str) -> None:
    if not isinstance(value, Mapping) or len(value) == 0:
        got = (
            f"an empty {type(value).__name__}"
            if isinstance(value, Mapping)
            else type(value).__name__
        )
        raise ValueError(f"{where}: expected a non-empty dict of {what}, got {got}")


def _new_axes(ax: Axes | None) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.0))
    elif not isinstance(ax, Axes):
        raise TypeError(f"expected ax to be a matplotlib Axes or None, got {type(ax).__name__}")
    return ax


def _finish(ax: Axes, xlabel: str, ylabel: str, title: str, grid_which: str = "major") -> Axes:
    """The book's finish for a line plot: axis labels, title, a light grid and the legend."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3, which=grid_which)
    ax.legend()
    return ax


def _history_series(history: Any, key: str) -> list[float | None] | None:
    """``history[key]`` as a list, or None when the history has no such entry."""
    if isinstance(history, Sequence) and not isinstance(history, (str, bytes)):
        # A list of per-epoch records, the layout History keeps internally.
        if not all(isinstance(r, Mapping) for r in history):
            raise TypeError(
                "plot_history: expected a list of per-epoch dicts, got a list with other items"
            )
        if not any(key in r for r in history):
            return None
        return [r.get(key) for r in history]
    try:
        series = history[key]
    except (KeyError, IndexError):
        return None
    except TypeError as err:
        raise TypeError(
            "plot_history: expected a History, a dict of lists or a list of per-epoch dicts, "
            f"got {type(history).__name__}"
        ) from err
    return None if series is None else list(series)


def plot_history(
    history: Any, ax: Axes | None = None, log: bool = False, label: str | None = None
) -> Axes:
    """Training and validation loss per epoch.

    Args:
        history: a :class:`companion.train.History`, a dict of lists with ``"train_loss"`` and
            optionally ``"val_loss"`` and ``"epoch"``, or a list of per-epoch dicts with those keys.
            Epochs default to 1, 2, ... when there is no ``"epoch"`` entry; missing validation
            values (None or NaN) are left out.
        ax: the Axes to draw on; a new figure when None.
        log: a logarithmic loss axis.
        label: a model name such as ``"LSTM"``: both curves take its colour (:func:`color_for`),
            training solid and validation dashed, and the legend names the model, so several
            histories can share one Axes. Without it, training is C0 and validation C1.

    Returns:
        The Axes.
    """
    train = _history_series(history, "train_loss")
    if train is None or len(train) == 0:
        raise ValueError("plot_history: expected a history with a non-empty 'train_loss', got none")
    val = _history_series(history, "val_loss")
    epochs = _history_series(history, "epoch")
    if epochs is None or len(epochs) != len(train) or any(e is None for e in epochs):
        epochs = list(range(1, len(train) + 1))

    ax = _new_axes(ax)
    x = np.asarray(epochs, dtype=np.float64)
    y_train = np.array([np.nan if v is None else v for v in train], dtype=np.float64)
    train_color = color_for(label) if label else "C0"
    val_color = train_color if label else "C1"
    prefix = f"{label} " if label else ""
    ax.plot(
        x,
        y_train,
        color=train_color,
        marker="o" if len(train) <= 30 else None,
        ms=3,
        label=f"{prefix}training",
    )
    if val is not None and len(val) == len(train):
        y_val = np.array([np.nan if v is None else v for v in val], dtype=np.float64)
        keep = np.isfinite(y_val)
        if keep.any():
            ax.plot(
                x[keep],
                y_val[keep],
                color=val_color,
                ls="--",
                marker="s" if len(train) <= 30 else None,
                ms=3,
                label=f"{prefix}validation",
            )
    if log:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    title = f"{label}: loss during training" if label else "Loss during training"
    return _finish(ax, "epoch", "loss (per example)", title)


def plot_losses(
    curves: Mapping[str, ArrayLike],
    ax: Axes | None = None,
    log: bool = False,
    xlabel: str = "epoch",
    ylabel: str = "loss",
    title: str | None = None,
    baseline: float | tuple[str, float] | None = None,
) -> Axes:
    """Several loss curves on one Axes, one per model, coloured by architecture.

    Args:
        curves: name -> values (L_k,), e.g. ``{"RNN": h1["val_loss"], "LSTM": h2["val_loss"]}``;
            entry k is drawn at x = k + 1 (epochs or steps count from 1).
        ax: the Axes to draw on; a new figure when None.
        log: a logarithmic y axis.
        xlabel, ylabel: axis labels; state the unit, e.g. ``"loss (MSE)"``.
        title: the title; defaults to "Loss by model".
        baseline: a reference level drawn as a grey dashed horizontal line, e.g. the variance of
            the target (the MSE of always predicting the mean): a number (labelled "baseline")
            or a pair (label, value).

    Returns:
        The Axes.
    """
    _require_nonempty_dict(curves, "plot_losses", "name -> values")
    data = {
        str(name): _to_1d(values, f"plot_losses: curve {name!r}") for name, values in curves.items()
    }
    ax = _new_axes(ax)
    for (name, y), (color, ls) in zip(data.items(), _styles_for(data)):
        ax.plot(np.arange(1, len(y) + 1), y, color=color, ls=ls, label=name)
    if baseline is not None:
        if isinstance(baseline, tuple):
            if len(baseline) != 2:
                raise ValueError(
                    "plot_losses: expected baseline as a number or (label, value), got "
                    f"{baseline!r}"
                )
            b_label, b_value = baseline
        else:
            b_label, b_value = "baseline", baseline
        ax.axhline(float(b_value), color=COLORS["baseline"], ls="--", lw=1, label=str(b_label))
    if log:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _finish(ax, xlabel, ylabel, title if title is not None else "Loss by model")


def plot_grad_norms(
    norms: Mapping[str, ArrayLike],
    log: bool = True,
    ax: Axes | None = None,
    x: str = "distance",
    title: str | None = None,
) -> Axes:
    """Vanishing-gradient curves ‖∂𝓛/∂h_t‖, one per model.

    Args:
        norms: name -> curve (T,) indexed by t, as returned by
            :func:`companion.diagnostics.hidden_grad_norms`.
        log: a logarithmic y axis (geometric decay becomes a straight line).
        ax: the Axes to draw on; a new figure when None.
        x: ``"distance"`` puts T - t, the number of steps back from the last one, on the x axis
            (the loss sits at 0, the past to the right); ``"time"`` puts t itself.
        title: the title; defaults to "Gradient reaching h_t from the loss at step T".

    Returns:
        The Axes.
    """
    if x not in ("distance", "time"):
        raise ValueError(f"plot_grad_norms: expected x='distance' or 'time', got {x!r}")
    _require_nonempty_dict(norms, "plot_grad_norms", "name -> curve (L,)")
    data = {
        str(name): _to_1d(values, f"plot_grad_norms: curve {name!r}")
        for name, values in norms.items()
    }
    ax = _new_axes(ax)
    for (name, y), (color, ls) in zip(data.items(), _styles_for(data)):
        t = np.arange(1, len(y) + 1)  # steps are 1-based, as in the equations
        xs = (len(y) - t) if x == "distance" else t
        ax.plot(xs, y, color=color, ls=ls, label=name)
    if log:
        ax.set_yscale("log")
    xlabel = (
        "distance from the last step, $d = T - t$ (steps)"
        if x == "distance"
        else "time step $t$ (steps)"
    )
    return _finish(
        ax,
        xlabel,
        r"$\|\partial \mathcal{L} / \partial h_t\|$ (batch mean)",
        title if title is not None else r"Gradient reaching $h_t$ from the loss at step $T$",
        grid_which="both" if log else "major",
    )


def _gate_arrays(gates: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Each gate as a (T, H) array, all of one length T."""
    _require_nonempty_dict(gates, "plot_gate_heatmap", "gate name -> (L, H)")
    arrays: dict[str, np.ndarray] = {}
    for name, g in gates.items():
        arr = _to_array(g, f"plot_gate_heatmap: gate {name!r}")
        if arr.ndim != 2:
            raise ValueError(
                f"plot_gate_heatmap: expected gate {name!r} with shape (L, H), got shape "
                f"{arr.shape}; select one layer and sequence first, e.g. rec[''][name][0, :, 0]"
            )
        arrays[str(name)] = arr
    lengths = {a.shape[0] for a in arrays.values()}
    if len(lengths) != 1:
        raise ValueError(
            "plot_gate_heatmap: expected every gate to have the same length L, got lengths "
            f"{sorted(lengths)}"
        )
    return arrays


def _unit_indices(units: Any, H: int) -> np.ndarray:
    """The units to draw: all H (None), the first ``units`` (an int), or the listed indices."""
    if units is None:
        return np.arange(H)
    if isinstance(units, (int, np.integer)) and not isinstance(units, bool):
        if not 1 <= units <= H:
            raise ValueError(f"plot_gate_heatmap: expected units between 1 and H={H}, got {units}")
        return np.arange(int(units))
    idx = np.asarray(list(units), dtype=np.int64)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= H:
        raise ValueError(f"plot_gate_heatmap: expected unit indices in [0, {H}), got {list(idx)}")
    return idx


def _colour_scale(name: str, arr: np.ndarray) -> tuple[float, float, str]:
    """(vmin, vmax, colormap): [0, 1] for a σ gate, [-1, 1] for tanh entries, else symmetric
    about 0 around the largest magnitude."""
    key = name.lower()
    if key in SIGMOID_GATES:
        return 0.0, 1.0, "viridis"
    if key in _TANH_ENTRIES:
        return -1.0, 1.0, "RdBu_r"
    bound = float(np.nanmax(np.abs(arr))) if np.isfinite(arr).any() else 1.0
    bound = bound if bound > 0 else 1.0
    return -bound, bound, "RdBu_r"


def plot_gate_heatmap(
    gates: Mapping[str, ArrayLike],
    marks: Sequence[int] | None = None,
    units: int | Sequence[int] | None = None,
    title: str | None = None,
) -> Figure:
    """Gate activations over time as heat maps, one row per gate.

    Args:
        gates: gate name -> activations of one sequence, shape (T, H), e.g.
            ``{k: v[0, :, 0] for k, v in rec[""].items()}`` for layer 0, sample 0 of a
            :func:`companion.models.record_gates` record. σ gates (i, f, o, r, z) are drawn on
            [0, 1], tanh gates (g, n) and h on [-1, 1], anything else (c) symmetric about 0.
        marks: array indices (0-based, along L) to mark with vertical lines on every row, e.g.
            where the markers of the adding problem sit. The x axis shows 1-based time steps, as
            in the equations, so index k is drawn at step t = k + 1.
        units: which hidden units to show: an int k for the first k, or a list of indices;
            ``None`` shows all H.
        title: the figure title; defaults to "Gate activations over time".

    Returns:
        The Figure. ``fig.axes`` holds the heat-map Axes, one per gate in the order of ``gates``,
        followed by their colour bars.
    """
    arrays = _gate_arrays(gates)
    lengths = {a.shape[0] for a in arrays.values()}
    idx = _unit_indices(units, min(a.shape[1] for a in arrays.values()))
    L = next(iter(lengths))
    n = len(arrays)
    fig, axes = plt.subplots(n, 1, figsize=(7.0, 1.2 + 1.6 * n), sharex=True, squeeze=False)
    for row, (ax, (name, arr)) in enumerate(zip(axes[:, 0], arrays.items())):
        vmin, vmax, cmap = _colour_scale(name, arr)
        # Transposed so time runs along x, as in every other time-series figure of the book.
        image = ax.imshow(
            arr[:, idx].T,
            aspect="auto",
            origin="lower",
            interpolation="nearest",
            cmap=cmap,
            vmin=vmin,
            vmax=vmax,
            extent=(0.5, L + 0.5, -0.5, len(idx) - 0.5),
        )
        fig.colorbar(image, ax=ax, label="activation", pad=0.01)
        ax.set_ylabel(f"{name}\nunit")
        if units is not None and not isinstance(units, (int, np.integer)):
            ax.set_yticks(range(len(idx)), [str(i) for i in idx])
        else:
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        for k, m in enumerate(marks or ()):
            ax.axvline(
                m + 1, color="black", ls="--", lw=1.2, label="marked step" if k == 0 else None
            )
        if row == 0 and marks:
            # Above the first row, so it never covers the activations.
            ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    axes[-1, 0].set_xlabel("time step $t$ (steps)")
    fig.suptitle(title if title is not None else "Gate activations over time")
    return fig


def plot_forecast(
    truth: ArrayLike,
    prediction: ArrayLike,
    rollout_start: int,
    ax: Axes | None = None,
    t: ArrayLike | None = None,
    xlabel: str = "time (steps)",
    ylabel: str = "value",
    title: str | None = None,
) -> Axes:
    """A forecast against the truth, with the closed-loop rollout region shaded.

    Before ``rollout_start`` the model reads the true series (teacher forcing); from there on it
    feeds on its own predictions, and the shaded region shows how long that holds up.

    Args:
        truth: the observed series, shape (T,).
        prediction: either aligned with ``truth``, shape (T,) (NaN where there is none), or the
            rollout alone, shape (P,), placed at indices ``rollout_start, ..., rollout_start+P-1``;
            it may run past the end of ``truth`` (a forecast of the future).
        rollout_start: index at which the rollout starts, 0 <= rollout_start < max length.
        ax: the Axes to draw on; a new figure when None.
        t: time values for the x axis (e.g. years), one per index of the longer of the two
            series; ``None`` uses 0, 1, 2, ...
        xlabel, ylabel: axis labels; state the unit, e.g. ``"year"`` and ``"sunspot number"``.
        title: the title; defaults to "Forecast with closed-loop rollout".

    Returns:
        The Axes.
    """
    y_true = _to_1d(truth, "plot_forecast: truth")
    y_pred = _to_1d(prediction, "plot_forecast: prediction")
    if isinstance(rollout_start, bool) or not isinstance(rollout_start, (int, np.integer)):
        raise TypeError(
            f"plot_forecast: expected an int rollout_start, got {type(rollout_start).__name__}"
        )
    offset = 0 if len(y_pred) == len(y_true) else int(rollout_start)
    total = max(len(y_true), offset + len(y_pred))
    if not 0 <= rollout_start < total:
        raise ValueError(
            f"plot_forecast: expected 0 <= rollout_start < {total}, got {rollout_start}"
        )
    if t is None:
        times = np.arange(total, dtype=np.float64)
    else:
        times = _to_1d(t, "plot_forecast: t")
        if len(times) != total:
            raise ValueError(
                f"plot_forecast: expected t with {total} values (truth has {len(y_true)}, "
                f"prediction covers indices {offset}..{offset + len(y_pred) - 1}), got {len(times)}"
            )

    ax = _new_axes(ax)
    step = times[1] - times[0] if total > 1 else 1.0
    ax.axvspan(
        times[rollout_start] - step / 2,
        times[-1] + step / 2,
        color=COLORS["prediction"],
        alpha=0.12,
        lw=0,
        label="closed-loop rollout",
    )
    ax.plot(times[: len(y_true)], y_true, color=COLORS["truth"], lw=1.5, label="truth")
    ax.plot(
        times[offset : offset + len(y_pred)],
        y_pred,
        color=COLORS["prediction"],
        lw=1.5,
        ls="--",
        label="prediction",
    )
    return _finish(
        ax, xlabel, ylabel, title if title is not None else "Forecast with closed-loop rollout"
    )


_SEED_MARKERS = ("o", "s", "^", "D", "v", "P")


def _columns(results: Any, names: Sequence[str]) -> dict[str, list[Any]]:
    """``results`` (a list of row dicts, e.g. from ``csv.DictReader``, or a dict of columns)
    as a dict of equally long columns ``names``, or a clear error naming the missing column."""
    if isinstance(results, Mapping):
        table = {k: list(v) for k, v in results.items()}
    elif isinstance(results, Sequence) and all(isinstance(r, Mapping) for r in results):
        table = {k: [r.get(k) for r in results] for k in {k for r in results for k in r}}
    else:
        raise TypeError(
            "plot_seeds: expected a list of row dicts or a dict of columns, got "
            f"{type(results).__name__}"
        )
    missing = [n for n in names if n not in table]
    if missing:
        raise ValueError(
            f"plot_seeds: expected columns {list(names)}, missing {missing} (have {sorted(table)})"
        )
    if len({len(table[n]) for n in names}) != 1:
        raise ValueError(
            "plot_seeds: expected columns of one length, got "
            + ", ".join(f"{n}: {len(table[n])}" for n in names)
        )
    if not table[names[0]]:
        raise ValueError("plot_seeds: expected at least one row, got none")
    return {n: table[n] for n in names}


def _x_positions(values: list[Any]) -> tuple[np.ndarray, list[Any] | None]:
    """Numeric x values as floats; anything else as categories at 0, 1, ... (in first-seen order),
    returned with the category names for the tick labels."""
    try:
        return np.asarray(values, dtype=np.float64), None
    except (TypeError, ValueError):
        categories = list(dict.fromkeys(values))
        return np.array([categories.index(v) for v in values], dtype=np.float64), categories


def _seeds_and_mean(
    ax: Axes,
    gx: np.ndarray,
    gy: np.ndarray,
    shift: float,
    log_x: bool,
    label: str,
    ls: str,
    style: dict[str, Any],
) -> None:
    """One group of :func:`plot_seeds`: every seed a dot, the mean per x a line, all moved
    sideways by ``shift`` (in log units on a log axis) so that groups do not overlap."""
    at = np.exp(np.log(gx) + shift) if log_x else gx + shift
    ax.scatter(at, gy, s=18, alpha=0.55, lw=0, **style)
    levels = np.unique(gx)
    means = np.array([gy[gx == v].mean() for v in levels])
    line_x = np.exp(np.log(levels) + shift) if log_x else levels + shift
    ax.plot(line_x, means, ls=ls, ms=6, mfc="white", label=label, **style)


def plot_seeds(
    results: Any,
    x: str,
    y: str,
    by: str | Sequence[str] = "model",
    ax: Axes | None = None,
    *,
    log_x: bool = False,
    log_y: bool = False,
    xlabel: str | None = None,
    ylabel: str | None = None,
    title: str | None = None,
    spread: float = 0.25,
    baseline: float | tuple[str, float] | None = None,
) -> Axes:
    """A sweep over seeds: every seed a dot, the mean of each group a line through its x values.

    Args:
        results: one row per run, as a list of dicts (e.g. ``list(csv.DictReader(f))``; strings
            that hold numbers are converted) or a dict of columns; columns ``x``, ``y`` and
            ``by`` are used, anything else (such as ``"seed"``) is ignored.
        x: the swept quantity, e.g. ``"length"``; numbers, or categories drawn at 0, 1, ...
        y: the outcome, e.g. ``"accuracy"``.
        by: the column (or columns, joined by a space in the legend) that names a group, e.g.
            ``"model"`` or ``("model", "init")``. Groups whose name contains rnn, lstm or gru take
            the book's colour (:func:`color_for`); groups that share a colour differ by line
            style; every group has its own marker.
        ax: the Axes to draw on; a new figure when None.
        log_x, log_y: logarithmic axes.
        xlabel, ylabel: axis labels (default: the column names); state the unit.
        title: the title; defaults to "<y> by <x>, every seed a dot".
        spread: how far apart the groups sit at one x, as a fraction of the smallest gap
            between x values (a factor on a log axis), so that overlapping groups, e.g. two
            models both at accuracy 1.0, can be told apart. 0 draws every group at the exact x.
        baseline: a reference level drawn as a grey dashed line: a number or (label, value).

    Returns:
        The Axes. The legend sits to the right of the axes, outside the data.
    """
    keys = [by] if isinstance(by, str) else list(by)
    if not keys:
        raise ValueError("plot_seeds: expected by to name at least one column, got none")
    table = _columns(results, [x, y, *keys])
    xs, categories = _x_positions(table[x])
    ys = _to_1d([float(v) for v in table[y]], f"plot_seeds: column {y!r}")
    names = [
        " ".join(str(row[k]) for k in keys)
        for row in ({k: table[k][i] for k in keys} for i in range(len(ys)))
    ]
    groups = list(dict.fromkeys(names))
    unique_x = np.unique(xs)
    if log_x and (unique_x <= 0).any():
        raise ValueError(
            f"plot_seeds: expected positive {x!r} values for log_x, got {unique_x.min()}"
        )
    gaps = np.diff(np.log(unique_x) if log_x else unique_x)
    gap = float(gaps.min()) if len(gaps) else 1.0

    ax = _new_axes(ax)
    for k, (name, (color, ls)) in enumerate(zip(groups, _styles_for(groups))):
        shift = spread * gap * (k - (len(groups) - 1) / 2) / max(len(groups), 1)
        mine = np.array([n == name for n in names])
        style = {"color": color, "marker": _SEED_MARKERS[k % len(_SEED_MARKERS)]}
        _seeds_and_mean(ax, xs[mine], ys[mine], shift, log_x, f"{name} (mean)", ls, style)
    if baseline is not None:
        b_label, b_value = baseline if isinstance(baseline, tuple) else ("baseline", baseline)
        ax.axhline(float(b_value), color=COLORS["baseline"], ls="--", lw=1, label=str(b_label))
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    if categories is not None:
        ax.set_xticks(range(len(categories)), [str(c) for c in categories])
    elif np.allclose(unique_x, np.round(unique_x)):
        ax.set_xticks(unique_x, [str(int(v)) for v in unique_x])
    ax.set_xlabel(xlabel if xlabel is not None else x)
    ax.set_ylabel(ylabel if ylabel is not None else y)
    ax.set_title(title if title is not None else f"{y} by {x}, every seed a dot")
    ax.grid(True, alpha=0.3)
    # Beside the axes, never on the data: each group's mean line names it, the dots are its seeds.
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    return ax
