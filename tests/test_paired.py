"""Paired comparisons: known answers worked by hand, and each test's failure modes."""

import math

import pytest
import torch

from companion.paired import bootstrap_difference, diebold_mariano, mcnemar


def test_mcnemar_counts_only_the_disagreements():
    # a right on 3 examples where b is wrong, b never alone: p = 2 * (1/2)^3 = 0.25.
    a = [1] * 1000
    b = [1] * 997 + [0] * 3
    result = mcnemar(a, b)
    assert result.p == pytest.approx(0.25)
    assert result.difference == pytest.approx(0.003)
    # The same 3 disagreements among 10 shared errors give the same p: shared errors carry nothing.
    assert mcnemar([0] * 10 + a[10:], [0] * 10 + b[10:]).p == pytest.approx(0.25)


def test_mcnemar_detects_a_clear_difference_and_is_symmetric():
    a = [1] * 100 + [0] * 900
    b = [0] * 1000
    assert mcnemar(a, b).p < 1e-20
    assert mcnemar(b, a).p == mcnemar(a, b).p
    assert mcnemar(b, a).difference == -mcnemar(a, b).difference


def test_mcnemar_without_disagreement_is_p_one():
    assert mcnemar([1, 0, 1], [1, 0, 1]).p == 1.0


def test_bootstrap_interval_covers_a_known_shift_and_excludes_zero():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(400, generator=g)
    b = a - 1.0 + 0.1 * torch.randn(400, generator=g)
    result = bootstrap_difference(a, b)
    assert result.low < 1.0 < result.high
    assert result.low > 0.9
    # Blocks of consecutive examples give an interval too, and the same seed the same one.
    assert bootstrap_difference(a, b, block=10) == bootstrap_difference(a, b, block=10)


def test_bootstrap_interval_contains_zero_for_noise():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(400, generator=g), torch.randn(400, generator=g)
    result = bootstrap_difference(a, b)
    assert result.low < 0 < result.high


def test_diebold_mariano_tells_a_better_forecast_from_a_tie():
    g = torch.Generator().manual_seed(3)
    errors = torch.randn(60, generator=g).abs()
    assert diebold_mariano(errors, errors + 0.5).p < 0.001
    tie = diebold_mariano(errors, errors[torch.randperm(60, generator=g)])
    assert tie.p > 0.05
    assert not math.isnan(tie.difference)


@pytest.mark.parametrize(
    "call",
    [
        lambda: mcnemar([1, 0], [1]),
        lambda: bootstrap_difference([], []),
        lambda: bootstrap_difference([1.0, 2.0], [1.0, 2.0], block=3),
        lambda: diebold_mariano([1.0, 2.0], [1.0, 2.0], horizon=2),
    ],
)
def test_bad_input_gets_a_clear_error(call):
    with pytest.raises(ValueError, match="expected"):
        call()
