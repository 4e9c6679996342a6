"""companion.ngram: probabilities worked by hand, the cut context, the choice of k, bad input."""

import math

import pytest
import torch

from companion.ngram import NGram


def test_bigram_probabilities_are_add_k_relative_frequencies():
    # text 0 1 0 1 0 2: after 0 come 1, 1, 2; V = 3, k = 1
    model = NGram(2, 3, k=1.0).fit([0, 1, 0, 1, 0, 2])
    assert math.exp(model.log_prob([0], 1)) == pytest.approx((2 + 1) / (3 + 3))
    assert math.exp(model.log_prob([0], 0)) == pytest.approx((0 + 1) / (3 + 3))
    # the probabilities after any context sum to 1
    assert sum(math.exp(model.log_prob([1], c)) for c in range(3)) == pytest.approx(1.0)


def test_the_first_position_of_a_window_uses_no_context_beyond_the_window():
    text = [0, 1, 2] * 50
    model = NGram(3, 3, k=0.01).fit(text)
    # position 1 of a window sees one character: the bigram, not a trigram across the edge
    window = torch.tensor([[2, 0, 1, 2]])
    expected = -(model.log_prob([2], 0) + model.log_prob([2, 0], 1) + model.log_prob([2, 0, 1], 2))
    assert model.nats(window) == pytest.approx(expected / 3)
    # on this periodic text a trigram is nearly certain, a unigram is not
    assert model.nats(window) < 0.1 < NGram(1, 3, k=0.01).fit(text).nats(window)


def test_choose_k_picks_the_lowest_held_out_loss():
    g = torch.Generator().manual_seed(0)
    text = torch.randint(0, 5, (2000,), generator=g)
    held = torch.randint(0, 5, (20, 9), generator=g)
    model = NGram(3, 5).fit(text)
    scores = model.choose_k(held, [0.001, 1.0, 100.0])
    assert model.k == min(scores, key=scores.get)
    # random text: heavy smoothing (towards uniform) beats trusting sparse counts
    assert scores[100.0] < scores[0.001]


@pytest.mark.parametrize(
    "call",
    [
        lambda: NGram(0, 3),
        lambda: NGram(2, 3, k=0.0),
        lambda: NGram(2, 3).fit([0, 5]),
        lambda: NGram(2, 3).nats(torch.tensor([1, 2, 0])),
    ],
)
def test_bad_input_gets_a_clear_error(call):
    with pytest.raises(ValueError, match="expected"):
        call()
