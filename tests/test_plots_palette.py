"""The sequential palette for sweeps keeps clear of the architecture colours."""

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from companion.plots import COLORS, sequential_colors


def _luminance(color: str) -> float:
    r, g, b = to_rgb(color)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@pytest.mark.parametrize("n", [1, 2, 4, 6])
def test_sequential_colors_are_n_distinct_and_darken(n):
    colors = sequential_colors(n)
    assert len(colors) == n == len(set(colors))
    lum = [_luminance(c) for c in colors]
    assert all(a > b for a, b in zip(lum, lum[1:]))


def test_sequential_colors_stay_away_from_rnn_lstm_gru():
    for color in sequential_colors(8):
        for arch in ("rnn", "lstm", "gru"):
            distance = np.linalg.norm(np.subtract(to_rgb(color), to_rgb(COLORS[arch])))
            assert distance > 0.25, (color, arch)


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (0, ValueError, "expected n >= 1, got 0"),
        (-1, ValueError, "expected n >= 1, got -1"),
        (2.5, TypeError, "expected an int n, got float 2.5"),
        (True, TypeError, "expected an int n, got bool True"),
        ("3", TypeError, "expected an int n, got str '3'"),
    ],
)
def test_sequential_colors_rejects_bad_n(bad, error, message):
    with pytest.raises(error, match=f"sequential_colors: {message}"):
        sequential_colors(bad)
