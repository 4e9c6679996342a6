"""The chapters' asserts are real checks: in every chapter, one experiment is broken on purpose so
that a claim of the prose becomes false, and the assert that states the claim must then fail.

Each case changes one line of a notebook (a wrong derivative, a forget gate shut, test data
copied from training data, a model left untrained), runs the notebook from its first cell up to
the cell that asserts the claim, and requires that cell, and no earlier one, to raise an
AssertionError. The unbroken notebooks pass the same asserts in `make test` (test-notebooks and
test-claims), so each assert is shown to separate a true claim from a false one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

BOOK = Path(__file__).resolve().parents[1] / "book"


@dataclass(frozen=True)
class Break:
    """Replace ``old`` by ``new`` (each must occur once in the notebook's code); the first code
    cell containing ``claim`` must then raise an AssertionError."""

    old: str
    new: str
    claim: str
    why: str


BREAKS = {
    "00_setup": Break(
        "sig, tanh = torch.sigmoid(a), torch.tanh(a)",
        "sig, tanh = torch.sigmoid(2 * a), torch.tanh(a)",
        "assert abs(d_sig.max().item() - 0.25) < 1e-4",
        "a steeper sigmoid: its slope exceeds 1/4",
    ),
    "01_recurrent_networks": Break(
        "da = delta * (1 - h**2)",
        "da = delta * (1 - h)",
        "max |by hand - autograd| < 1e-5",
        "a wrong tanh derivative: backprop by hand no longer equals autograd",
    ),
    "02_vanishing_gradients": Break(
        "cell = nn.RNNCell(I, H).to(device)  # PyTorch's default initialisation",
        "cell = nn.RNNCell(I, H).to(device)\ncell.weight_hh.data.mul_(3)",
        "assert diff[-1] < 1e-4 * diff[0]",
        "W_hh three times larger: the first input's effect no longer vanishes",
    ),
    "03_lstm": Break(
        '("LSTM, b_f = 2", 2.0),\n):\n    seed_everything(0)',
        '("LSTM, b_f = 2", None),\n):\n    seed_everything(0)',
        "and leaves[bf2_label] <= 6 * steps_per_epoch",
        "the 'b_f = 2' model left at the default bias: it does not remember",
    ),
    "04_lstm_in_practice": Break(
        "twin.load_state_dict(lstm.state_dict())",
        "pass  # the twin keeps its own random weights",
        "assert torch.allclose(twin_out, out, atol=TOL)",
        "a twin with other weights: it does not agree with nn.LSTM",
    ),
    "05_gru": Break(
        "h_ours = gru_cell(x, h, *weights)",
        "h_ours = gru_cell_cho(x, h, *weights)",
        "assert diff_ours < 1e-5 and diff_companion < 1e-5",
        "Cho's candidate is another function: it does not equal nn.GRUCell",
    ),
    "06_long_range_memory": Break(
        "b = torch.tensor([-K, K, 0.0, K])",
        "b = torch.tensor([-K, -K, 0.0, K])",
        "assert (err < 0.04).all() and err.max() < 0.01",
        "the hand-set forget gate shut: the first value is forgotten",
    ),
    "07_forecasting": Break(
        "gap_test = (observed[so.TEST, None]",
        "gap_test = (observed[so.TRAIN, None][:3]",
        "assert gap_test.min() > 1e-3",
        "'test' waves taken from the training waves: they are not unseen",
    ),
    "08_sentiment": Break(
        '"LSTM", "memory", LONGEST, seed=0, progress=True',
        '"LSTM", "default", LONGEST, seed=0, progress=True',
        "assert lstm_acc > 0.95",
        "the LSTM from PyTorch's default initialisation stays at chance",
    ),
    "09_char_language_model": Break(
        "found = [val_text[s : s + PASSAGE] in train_text for s in starts]",
        "found = [val_text[s : s + PASSAGE] in text for s in starts]",
        "assert leak < 0.01",
        "validation passages searched in a text that contains them: they leak",
    ),
    "10_numpy_lstm": Break(
        "da_f = dc * c_prev * f * (1 - f)",
        "da_f = dc * c_prev * f",
        "all equal to companion's to within 1e-12",
        "the sigmoid's derivative dropped from (10.10): the backward step is wrong",
    ),
    "11_speed": Break(
        'GATE_BLOCKS = {"RNN": 1, "GRU": 3, "LSTM": 4}',
        'GATE_BLOCKS = {"RNN": 1, "GRU": 3, "LSTM": 3}',
        "assert P == cm.count_parameters(getattr(nn, kind)(H_IN, H))",
        "an LSTM with three gate blocks: (11.1) no longer counts its parameters",
    ),
    "12_gated_recurrences_today": Break(
        "shift, level = 2 * shift, level + 1",
        "shift, level = shift + 1, level + 1",
        "assert level == math.ceil(math.log2(L_DEMO))",
        "a scan whose reach grows by one step a round needs T - 1 rounds, not log T",
    ),
    "13_distributed": Break(
        "averaged = [(a + b) / 2 for a, b in zip(g_0, g_1)]",
        "averaged = [a + b for a, b in zip(g_0, g_1)]",
        "assert all(torch.allclose(a, w, atol=TOL) for a, w in zip(averaged, whole))",
        "summed instead of averaged: the halves' gradients are twice the whole batch's",
    ),
}


def test_every_chapter_has_a_broken_case():
    assert sorted(BREAKS) == sorted(p.stem for p in BOOK.glob("*.ipynb"))


def _broken_prefix(name: str, case: Break) -> tuple[nbformat.NotebookNode, int]:
    """The notebook with ``case`` applied, cut after its claim cell; and that cell's index."""
    nb = nbformat.read(BOOK / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    hits = [c for c in code if case.old in c.source]
    assert len(hits) == 1 and hits[0].source.count(case.old) == 1, (
        f"{name}: expected {case.old!r} once in the code, found it in {len(hits)} cells"
    )
    hits[0].source = hits[0].source.replace(case.old, case.new)
    start = code.index(hits[0])
    claim = next((n for n, c in enumerate(code) if n >= start and case.claim in c.source), None)
    assert claim is not None, f"{name}: no cell at or after the change contains {case.claim!r}"
    nb.cells = code[: claim + 1]
    return nb, claim


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_a_false_claim_fails_its_assert(name):
    case = BREAKS[name]
    nb, claim = _broken_prefix(name, case)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=300,
        allow_errors=True,
        resources={"metadata": {"path": str(BOOK)}},
    )
    client.execute()
    errors = [
        (n, o)
        for n, cell in enumerate(nb.cells)
        for o in cell.get("outputs", [])
        if o["output_type"] == "error"
    ]
    assert errors, f"{name}: broken ({case.why}), yet every assert held"
    first, output = errors[0]
    assert (first, output["ename"]) == (claim, "AssertionError"), (
        f"{name}: expected an AssertionError in code cell {claim}, got {output['ename']} "
        f"in cell {first}: {output['evalue'][:300]}"
    )
