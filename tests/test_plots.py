"""Tests for companion.plots: returned types, labels, colours, scales and input errors."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere: no display in tests

from collections.abc import Iterator  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from companion.plots import (  # noqa: E402
    COLORS,
    color_for,
    plot_forecast,
    plot_gate_heatmap,
    plot_grad_norms,
    plot_history,
    plot_losses,
    plot_seeds,
)


@pytest.fixture(autouse=True)
def close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def legend_texts(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None, "expected a legend"
    return [t.get_text() for t in legend.get_texts()]


def line_colors(ax: Axes) -> list[str]:
    return [to_hex(line.get_color()) for line in ax.get_lines()]


# --- colours ------------------------------------------------------------------------------


def test_colors_are_distinct_for_the_three_architectures() -> None:
    assert {"rnn", "lstm", "gru"} <= set(COLORS)
    assert len({COLORS["rnn"], COLORS["lstm"], COLORS["gru"]}) == 3


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("LSTM", "lstm"),
        ("lstm-2", "lstm"),
        ("bi-LSTM", "lstm"),
        ("GRU", "gru"),
        (" gru (h=64) ", "gru"),
        ("RNN", "rnn"),
        ("vanilla rnn, tanh", "rnn"),
        ("Truth", "truth"),
    ],
)
def test_color_for_matches_case_insensitively(name: str, key: str) -> None:
    assert color_for(name) == COLORS[key]


def test_color_for_fallback_is_stable_and_avoids_book_colours() -> None:
    reserved = {to_hex(c) for c in COLORS.values()}
    assert color_for("transformer") == color_for("transformer")
    assert to_hex(color_for("transformer")) not in reserved
    assert to_hex(color_for("a", 0)) != to_hex(color_for("b", 1))
    with pytest.raises(TypeError, match="expected a str name, got int"):
        color_for(3)  # type: ignore[arg-type]


# --- plot_history -------------------------------------------------------------------------


class FakeHistory:
    """The interface of companion.train.History that plot_history relies on."""

    def __init__(self, records: list[dict]) -> None:
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: str) -> list:
        if not any(key in r for r in self.records):
            raise KeyError(key)
        return [r.get(key) for r in self.records]


def test_plot_history_with_history_object() -> None:
    history = FakeHistory(
        [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e} for e in range(1, 6)]
    )
    ax = plot_history(history)
    assert isinstance(ax, Axes)
    assert ax.get_xlabel() == "epoch"
    assert "loss" in ax.get_ylabel()
    assert ax.get_title()
    assert legend_texts(ax) == ["training", "validation"]
    assert ax.get_yscale() == "linear"
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [1, 2, 3, 4, 5])


def test_plot_history_without_validation_and_log() -> None:
    ax = plot_history({"train_loss": [3.0, 2.0, 1.0]}, log=True)
    assert ax.get_yscale() == "log"
    assert legend_texts(ax) == ["training"]
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [1, 2, 3])  # epochs count from 1


def test_plot_history_list_of_records_with_missing_val_and_label() -> None:
    records = [
        {"epoch": 0, "train_loss": 2.0, "val_loss": None},
        {"epoch": 1, "train_loss": 1.0, "val_loss": 1.5},
    ]
    fig, ax = plt.subplots()
    assert plot_history(records, ax=ax, label="LSTM") is ax
    plot_history({"train_loss": [2.0, 1.0]}, ax=ax, label="GRU")
    assert legend_texts(ax) == ["LSTM training", "LSTM validation", "GRU training"]
    assert line_colors(ax) == [COLORS["lstm"], COLORS["lstm"], COLORS["gru"]]
    assert ax.get_lines()[1].get_linestyle() == "--"
    assert len(ax.get_lines()[1].get_xdata()) == 1  # the None value is left out


def test_plot_history_with_companion_train_history() -> None:
    train = pytest.importorskip("companion.train")
    history = train.History(
        [
            {"epoch": 1, "train_loss": 2.0},
            {"epoch": 2, "train_loss": 1.0, "val_loss": 1.4},
            {"epoch": 3, "train_loss": 0.5, "val_loss": 0.9},
        ]
    )
    ax = plot_history(history, log=True)
    assert isinstance(ax, Axes) and ax.get_yscale() == "log"
    assert legend_texts(ax) == ["training", "validation"]
    np.testing.assert_allclose(
        ax.get_lines()[1].get_xdata(), [2, 3]
    )  # the epoch without val is left out


def test_plot_history_errors() -> None:
    with pytest.raises(ValueError, match="non-empty 'train_loss'"):
        plot_history({"val_loss": [1.0]})
    with pytest.raises(ValueError, match="non-empty 'train_loss'"):
        plot_history({"train_loss": []})
    with pytest.raises(TypeError, match="History, a dict of lists"):
        plot_history(3.0)
    with pytest.raises(TypeError, match="expected ax to be a matplotlib Axes"):
        plot_history({"train_loss": [1.0]}, ax="left")


# --- plot_losses --------------------------------------------------------------------------


def test_plot_losses_colours_labels_baseline() -> None:
    curves = {"RNN": [1.0, 0.9], "LSTM": np.array([1.0, 0.5, 0.2]), "GRU": torch.tensor([1.0, 0.4])}
    ax = plot_losses(
        curves,
        baseline=("variance of the target", 0.17),
        ylabel="loss (MSE)",
        title="Adding problem",
    )
    assert isinstance(ax, Axes)
    assert line_colors(ax)[:3] == [COLORS["rnn"], COLORS["lstm"], COLORS["gru"]]
    assert len(ax.get_lines()) == 4  # three curves and the baseline
    assert legend_texts(ax) == ["RNN", "LSTM", "GRU", "variance of the target"]
    np.testing.assert_allclose(ax.get_lines()[3].get_ydata(), [0.17, 0.17])
    assert (
        ax.get_ylabel() == "loss (MSE)"
        and ax.get_xlabel() == "epoch"
        and ax.get_title() == "Adding problem"
    )
    assert ax.get_yscale() == "linear"


def test_plot_losses_log_and_plain_baseline_and_unknown_names() -> None:
    ax = plot_losses({"model A": [1.0, 0.1], "model B": [2.0, 0.2]}, log=True, baseline=0.5)
    assert ax.get_yscale() == "log"
    assert legend_texts(ax)[-1] == "baseline"
    a, b = line_colors(ax)[:2]
    assert a != b


def test_plot_losses_errors() -> None:
    with pytest.raises(ValueError, match="non-empty dict of name -> values, got an empty dict"):
        plot_losses({})
    with pytest.raises(
        ValueError, match=r"curve 'RNN': expected a 1-D sequence \(L,\), got shape \(2, 2\)"
    ):
        plot_losses({"RNN": [[1.0, 2.0], [3.0, 4.0]]})
    with pytest.raises(ValueError, match="baseline as a number or"):
        plot_losses({"RNN": [1.0]}, baseline=("a", 1.0, 2.0))  # type: ignore[arg-type]


# --- plot_grad_norms ----------------------------------------------------------------------


def test_plot_grad_norms_distance_axis_and_log_scale() -> None:
    L = 10
    rnn = torch.tensor([0.5 ** (L - 1 - t) for t in range(L)])
    ax = plot_grad_norms({"RNN": rnn, "LSTM": np.ones(L)})
    assert isinstance(ax, Axes)
    assert ax.get_yscale() == "log"
    assert "$d = T - t$" in ax.get_xlabel() and "steps" in ax.get_xlabel()
    assert "h_t" in ax.get_ylabel()
    assert ax.get_title()
    assert line_colors(ax) == [COLORS["rnn"], COLORS["lstm"]]
    line = ax.get_lines()[0]
    # Distance 0 (the last step) carries the largest norm of a vanishing curve.
    np.testing.assert_allclose(line.get_xdata(), np.arange(L - 1, -1, -1))
    assert line.get_ydata()[np.argmin(line.get_xdata())] == pytest.approx(1.0)
    assert legend_texts(ax) == ["RNN", "LSTM"]


def test_plot_grad_norms_same_architecture_differs_by_line_style() -> None:
    ax = plot_grad_norms({"RNN ρ=0.5": [1.0, 2.0], "RNN ρ=0.9": [1.5, 2.0], "LSTM": [2.0, 2.0]})
    assert line_colors(ax) == [COLORS["rnn"], COLORS["rnn"], COLORS["lstm"]]
    assert [line.get_linestyle() for line in ax.get_lines()] == ["-", "--", "-"]


def test_plot_grad_norms_time_axis_linear() -> None:
    ax = plot_grad_norms({"GRU": [1.0, 2.0, 3.0]}, log=False, x="time")
    assert ax.get_yscale() == "linear"
    assert "time step $t$" in ax.get_xlabel()
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [1, 2, 3])  # 1-based steps


def test_plot_grad_norms_errors() -> None:
    with pytest.raises(ValueError, match="non-empty dict"):
        plot_grad_norms({})
    with pytest.raises(ValueError, match="x='distance' or 'time', got 'steps'"):
        plot_grad_norms({"RNN": [1.0]}, x="steps")
    with pytest.raises(ValueError, match=r"1-D sequence \(L,\), got shape \(3, 1\)"):
        plot_grad_norms({"RNN": torch.ones(3, 1)})


# --- plot_gate_heatmap --------------------------------------------------------------------


def test_plot_gate_heatmap_rows_marks_units() -> None:
    L, H = 12, 5
    gates = {
        "i": torch.rand(L, H),
        "f": np.random.default_rng(0).random((L, H)),
        "g": torch.rand(L, H) * 2 - 1,
        "c": torch.randn(L, H) * 3,
    }
    fig = plot_gate_heatmap(gates, marks=[2, 7], units=3)
    assert isinstance(fig, Figure)
    rows = fig.axes[: len(gates)]
    assert len(fig.axes) == 2 * len(gates)  # a heat map and a colour bar per gate
    assert fig.get_suptitle()
    for ax, name in zip(rows, gates):
        image = ax.get_images()[0]
        assert image.get_array().shape == (3, L)  # units on y, time on x
        assert name in ax.get_ylabel()
        # Indices 2 and 7 are the equations' steps 3 and 8.
        assert [line.get_xdata()[0] for line in ax.get_lines()] == [3, 8]
        assert image.get_extent()[:2] == [0.5, L + 0.5]
    assert rows[0].get_images()[0].get_clim() == (0.0, 1.0)  # σ gate
    assert rows[2].get_images()[0].get_clim() == (-1.0, 1.0)  # tanh gate
    assert "time step" in rows[-1].get_xlabel()
    assert legend_texts(rows[0]) == ["marked step"]


def test_plot_gate_heatmap_selected_units() -> None:
    fig = plot_gate_heatmap({"z": torch.rand(6, 8)}, units=[1, 4])
    ax = fig.axes[0]
    assert ax.get_images()[0].get_array().shape == (2, 6)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1", "4"]


def test_plot_gate_heatmap_errors() -> None:
    with pytest.raises(ValueError, match="non-empty dict of gate name"):
        plot_gate_heatmap({})
    with pytest.raises(
        ValueError, match=r"gate 'f' with shape \(L, H\), got shape \(1, 6, 1, 4\).*rec\[''\]"
    ):
        plot_gate_heatmap({"f": torch.rand(1, 6, 1, 4)})
    with pytest.raises(ValueError, match=r"same length L, got lengths \[4, 5\]"):
        plot_gate_heatmap({"f": torch.rand(4, 2), "i": torch.rand(5, 2)})
    with pytest.raises(ValueError, match="units between 1 and H=2, got 3"):
        plot_gate_heatmap({"f": torch.rand(4, 2)}, units=3)
    with pytest.raises(ValueError, match=r"unit indices in \[0, 2\)"):
        plot_gate_heatmap({"f": torch.rand(4, 2)}, units=[0, 2])


# --- plot_forecast ------------------------------------------------------------------------


def test_plot_forecast_aligned_prediction() -> None:
    truth = torch.sin(torch.linspace(0, 6, 50))
    prediction = truth + 0.1
    ax = plot_forecast(truth, prediction, rollout_start=30)
    assert isinstance(ax, Axes)
    assert legend_texts(ax) == ["closed-loop rollout", "truth", "prediction"]
    assert line_colors(ax) == [COLORS["truth"], COLORS["prediction"]]
    span = ax.patches[0]
    x0, x1 = span.get_x(), span.get_x() + span.get_width()
    assert x0 == pytest.approx(29.5) and x1 == pytest.approx(49.5)
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()


def test_plot_forecast_rollout_only_past_the_end_with_time_values() -> None:
    truth = np.arange(10.0)
    rollout = np.arange(8.0, 14.0)  # indices 8..13, four past the end of truth
    years = np.arange(1990, 2004)
    ax = plot_forecast(truth, rollout, rollout_start=8, t=years, xlabel="year", ylabel="count")
    truth_line, pred_line = ax.get_lines()
    np.testing.assert_allclose(truth_line.get_xdata(), years[:10])
    np.testing.assert_allclose(pred_line.get_xdata(), years[8:])
    span = ax.patches[0]
    assert span.get_x() == pytest.approx(1997.5)
    assert ax.get_xlabel() == "year" and ax.get_ylabel() == "count"


def test_plot_forecast_errors() -> None:
    with pytest.raises(ValueError, match=r"expected 0 <= rollout_start < 10, got 10"):
        plot_forecast(np.zeros(10), np.zeros(10), rollout_start=10)
    with pytest.raises(ValueError, match=r"t with 12 values"):
        plot_forecast(np.zeros(10), np.zeros(4), rollout_start=8, t=np.arange(10))
    with pytest.raises(
        ValueError, match=r"truth: expected a 1-D sequence \(L,\), got shape \(10, 1\)"
    ):
        plot_forecast(np.zeros((10, 1)), np.zeros(10), rollout_start=3)
    with pytest.raises(TypeError, match="int rollout_start, got float"):
        plot_forecast(np.zeros(10), np.zeros(10), rollout_start=3.0)  # type: ignore[arg-type]


# --- plot_seeds ---------------------------------------------------------------------------


def seed_rows() -> list[dict[str, str]]:
    """Rows as csv.DictReader gives them: strings, 3 seeds x 2 lengths x 2 models."""
    rows = []
    for model, base in (("LSTM", 1.0), ("GRU", 1.0)):
        for length in (10, 100):
            for seed in range(3):
                rows.append(
                    {
                        "model": model,
                        "length": str(length),
                        "seed": str(seed),
                        "acc": str(base - 0.1 * seed * (length == 100)),
                    }
                )
    return rows


def test_plot_seeds_dots_means_colours_and_offsets() -> None:
    ax = plot_seeds(seed_rows(), "length", "acc")
    assert isinstance(ax, Axes)
    dots = ax.collections
    assert len(dots) == 2 and all(len(d.get_offsets()) == 6 for d in dots)  # every seed a dot
    lstm, gru = ax.get_lines()
    assert [to_hex(lstm.get_color()), to_hex(gru.get_color())] == [COLORS["lstm"], COLORS["gru"]]
    np.testing.assert_allclose(lstm.get_ydata(), [1.0, 0.9])  # the mean over seeds
    # Same values, yet the two groups sit apart on x, and with different markers.
    assert (lstm.get_xdata() < gru.get_xdata()).all()
    assert lstm.get_marker() != gru.get_marker()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10", "100"]
    assert ax.get_xlabel() == "length" and ax.get_ylabel() == "acc" and ax.get_title()


def test_plot_seeds_legend_sits_outside_the_axes() -> None:
    fig, ax = plt.subplots()
    plot_seeds(seed_rows(), "length", "acc", ax=ax, baseline=("chance", 0.5))
    fig.canvas.draw()
    legend_box = ax.get_legend().get_window_extent()
    axes_box = ax.get_window_extent()
    assert legend_box.x0 >= axes_box.x1  # beside the axes, not on the data
    assert legend_texts(ax) == ["LSTM (mean)", "GRU (mean)", "chance"]


def test_plot_seeds_groups_by_two_columns_and_log_axis() -> None:
    rows = [
        {"model": m, "init": i, "T": t, "mse": 0.1 * (k + 1)}
        for k, (m, i) in enumerate([("RNN", "default"), ("RNN", "identity")])
        for t in (10, 100)
        for _ in range(2)
    ]
    ax = plot_seeds(rows, "T", "mse", by=("model", "init"), log_x=True, log_y=True)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    first, second = ax.get_lines()
    assert to_hex(first.get_color()) == to_hex(second.get_color()) == COLORS["rnn"]
    assert first.get_linestyle() != second.get_linestyle()  # same colour, told apart by style
    ratio = second.get_xdata() / first.get_xdata()
    assert (ratio > 1).all() and np.allclose(ratio, ratio[0])  # a constant factor on a log axis
    assert legend_texts(ax) == ["RNN default (mean)", "RNN identity (mean)"]


def test_plot_seeds_categorical_x_and_columns_dict() -> None:
    ax = plot_seeds(
        {"model": ["RNN", "RNN", "GRU"], "init": ["a", "b", "a"], "y": [1, 2, 3]},
        "init",
        "y",
        spread=0,
    )
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), [0, 1])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]


def test_plot_seeds_errors() -> None:
    with pytest.raises(ValueError, match=r"missing \['acc'\]"):
        plot_seeds([{"model": "RNN", "length": 1}], "length", "acc")
    with pytest.raises(TypeError, match="list of row dicts or a dict of columns, got int"):
        plot_seeds(3, "length", "acc")
    with pytest.raises(ValueError, match="at least one row"):
        plot_seeds({"model": [], "x": [], "y": []}, "x", "y")
    with pytest.raises(ValueError, match="positive 'x' values for log_x"):
        plot_seeds({"model": ["a"], "x": [0], "y": [1]}, "x", "y", log_x=True)
