"""companion.char_lm: the one character language model draws the same weights from a seed as the
three copies it replaced (chapter 9's script, chapter 12's sweep, the benchmark), keeps their
parameter names (chapter 9's stored checkpoint still loads) and computes what they computed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import variants  # benchmarks/variants.py, on pytest's pythonpath (pyproject.toml)
from torch import nn

from companion import models as cm
from companion.book import load_script
from companion.char_lm import LAYERS, CharLM
from companion.checkpoints import load_checkpoint

BOOK = Path(__file__).resolve().parents[1] / "book"
V, E = 65, 32


# The copies as they were before companion.char_lm, kept as the reference (like test_init.py).
class CharLM09(nn.Module):  # book/scripts/09_char_models.py
    def __init__(self, cell, vocab_size, embed_size=32, hidden_size=128, num_layers=1):
        super().__init__()
        cells = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}
        self.embed = nn.Embedding(vocab_size, embed_size)
        self.rnn = cells[cell](embed_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, x, state=None):
        out, state = self.rnn(self.embed(x), state)
        return self.head(out), state


class RecurrentLM12(nn.Module):  # book/scripts/12_lm_sweep.py
    def __init__(self, kind, vocab_size, hidden):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, E)
        if kind in ("GRU", "LSTM"):
            self.rnn = getattr(nn, kind)(E, hidden, 2, batch_first=True)
        else:
            layer = cm.MinGRU if kind == "minGRU" else cm.MinLSTM
            self.rnn = layer(E, hidden, 2, batch_first=True, mode="sequential")
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, ids, state=None):
        out, state = self.rnn(self.embed(ids), state)
        return self.head(out), state


class CharLMBench(nn.Module):  # benchmarks/variants.py
    def __init__(self, layer, vocab, embedding, hidden):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embedding)
        self.layer = layer
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids):
        e = self.embedding(ids.t())
        return self.head(self.layer(e)).transpose(0, 1)


def seeded(build, seed=3):
    torch.manual_seed(seed)
    return build()


def assert_same_weights(old: nn.Module, new: nn.Module) -> None:
    a, b = old.state_dict(), new.state_dict()
    assert list(a) == list(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name


def assert_same_scores(old: nn.Module, new: nn.Module) -> None:
    ids = torch.randint(0, V, (3, 7))
    with torch.no_grad():
        (s_old, h_old), (s_new, h_new) = old(ids), new(ids)
        assert torch.equal(s_old, s_new)
        # the state goes on: a second chunk from the first one's state
        assert torch.equal(old(ids, h_old)[0], new(ids, h_new)[0])


@pytest.fixture(scope="module")
def ch9():
    return load_script("char_models", "scripts/09_char_models.py", BOOK)


@pytest.fixture(scope="module")
def ch12():
    return load_script("lm_sweep", "scripts/12_lm_sweep.py", BOOK)


@pytest.mark.parametrize("cell", ["RNN", "LSTM", "GRU"])
def test_chapter_9_model_draws_what_it_drew(ch9, cell: str) -> None:
    H = ch9.HIDDEN[cell]
    old = seeded(lambda: CharLM09(cell, V, hidden_size=H))
    for new in [
        seeded(lambda: ch9.CharLM(cell, V, hidden_size=H)),
        seeded(lambda: CharLM(cell, V, hidden_size=H)),
    ]:
        assert_same_weights(old, new)
        assert_same_scores(old, new)
    # two layers, the settings the long run passes by position
    old = seeded(lambda: CharLM09(cell, V, 16, 24, 2))
    assert_same_weights(old, seeded(lambda: ch9.CharLM(cell, V, 16, 24, 2)))


@pytest.mark.parametrize("kind", ["GRU", "LSTM", "minGRU", "minLSTM"])
def test_chapter_12_model_draws_what_it_drew(ch12, kind: str) -> None:
    H = ch12.RECURRENT[kind]
    old = seeded(lambda: RecurrentLM12(kind, V, H))
    new = seeded(lambda: ch12.RecurrentLM(kind, V))
    assert isinstance(new, CharLM)
    assert_same_weights(old, new)
    assert_same_scores(old, new)
    assert_same_weights(
        seeded(lambda: RecurrentLM12(kind, V, 20)), seeded(lambda: ch12.RecurrentLM(kind, V, 20))
    )


def test_chapter_9_checkpoint_still_loads(ch9) -> None:
    path = BOOK / "data" / "09_long_run_lstm.pt"
    config = torch.load(path, map_location="cpu", weights_only=False)["config"]
    args = ("LSTM", config["vocab_size"], config["embed"], config["hidden"], config["layers"])
    for model in [CharLM(*args), ch9.CharLM(*args)]:
        before = model.head.weight.clone()
        load_checkpoint(path, model, map_location="cpu")
        assert not torch.equal(before, model.head.weight)  # the stored weights came in


def test_benchmark_model_draws_and_computes_what_it_did() -> None:
    layer = variants.OutputOnly(nn.LSTM(E, 16))  # time-major, returns the output only
    old = seeded(lambda: CharLMBench(layer, V, E, 16))
    new = seeded(lambda: variants.CharLM(layer, V, E, 16))
    assert isinstance(new, CharLM)
    a, b = old.state_dict(), new.state_dict()
    renamed = {"embedding": "embed", "layer": "rnn", "head": "head"}
    assert [renamed[k.split(".")[0]] + k[k.index(".") :] for k in a] == list(b)
    for x, y in zip(a.values(), b.values()):
        assert torch.equal(x, y)
    ids = torch.randint(0, V, (3, 7))
    with torch.no_grad():
        assert torch.equal(old(ids), new(ids))


def test_every_named_layer_builds_and_runs() -> None:
    for cell in LAYERS:
        scores, _ = CharLM(cell, V, 8, 12, num_layers=2)(torch.randint(0, V, (2, 5)))
        assert scores.shape == (2, 5, V)


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        (("lstm", V), {}, ValueError, r"expected cell in \('RNN'.*got 'lstm'"),
        ((["LSTM"], V), {}, ValueError, r"or an nn.Module, got a list of length 1"),
        (("LSTM", 0), {}, ValueError, r"CharLM: expected vocab_size >= 1, got 0"),
        (("LSTM", V, 32.0), {}, TypeError, r"CharLM: expected an int embed_size"),
        ((nn.LSTM(E, 8), V), {"num_layers": 2}, ValueError, r"num_layers and layer options"),
    ],
)
def test_bad_arguments_are_refused_by_name(args, kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        CharLM(*args, **kwargs)
