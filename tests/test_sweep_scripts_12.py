"""The sweep scripts of chapter 12 (their models' "remember" biases), and the tables every sweep
script of chapters 6, 8 and 12 stores: byte for byte what `companion.sweep.write_csv` writes.

Nothing here trains a model; the sweeps themselves are run by hand and their results stored in
book/data.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from companion.book import load_script
from companion.init import BIAS_BLOCKS
from companion.sweep import write_csv

BOOK = Path(__file__).resolve().parents[1] / "book"
accuracy_sweep = load_script("accuracy_sweep", "scripts/12_accuracy_sweep.py", BOOK)
slstm_sweep = load_script("slstm_sweep", "scripts/12_slstm_sweep.py", BOOK)
scan_accuracy = load_script("scan_accuracy", "scripts/12_scan_accuracy.py", BOOK)


def gate_bias(layer: torch.nn.Module, gate: str) -> list[torch.Tensor]:
    """The total bias of ``gate`` in every layer of ``layer`` (bias_ih + bias_hh, or the one
    bias), one (H,) tensor per layer."""
    H = layer.hidden_size
    k = BIAS_BLOCKS[type(layer).__name__].index(gate)
    totals: dict[str, torch.Tensor] = {}
    for name, p in layer.named_parameters():
        if name.rsplit(".", 1)[-1].startswith("bias"):
            where = name.replace("bias_ih", "").replace("bias_hh", "").replace("bias", "")
            totals[where] = totals.get(where, 0) + p.detach()[k * H : (k + 1) * H]
    return list(totals.values())


@pytest.mark.parametrize("model", accuracy_sweep.HIDDEN)
def test_chapter_12_models_start_with_the_remember_bias(model: str) -> None:
    gate, value = accuracy_sweep.REMEMBER[model]
    net = accuracy_sweep.make_net(model)
    totals = gate_bias(net.rnn, gate)
    assert len(totals) == accuracy_sweep.LAYERS
    assert all(torch.all(b == value) for b in totals)
    # minGRU's z writes the candidate: its "remember" bias is negative, the others' positive
    assert (value < 0) == (model == "minGRU")
    assert net(torch.zeros(3, 5, 2)).shape == (3, 1)


@pytest.mark.parametrize("model", slstm_sweep.MODELS)
def test_slstm_sweep_models_start_with_a_forget_bias_of_one(model: str) -> None:
    net = slstm_sweep.last_step(model)
    (b_f,) = gate_bias(net.rnn, "f")
    assert torch.all(b_f == 1.0)
    (b_i,) = gate_bias(net.rnn, "i")
    assert b_i.abs().max() < 1  # the other gates keep their random start


@pytest.mark.parametrize("gate_bias_value", scan_accuracy.GATE_BIASES)
def test_scan_accuracy_sets_minlstm_gates_in_opposite_directions(gate_bias_value: float) -> None:
    layer = scan_accuracy.build("minLSTM", "parallel", gate_bias_value, 0, torch.float64)
    assert torch.all(gate_bias(layer, "f")[0] == -gate_bias_value)
    assert torch.all(gate_bias(layer, "i")[0] == gate_bias_value)
    gru = scan_accuracy.build("minGRU", "parallel", gate_bias_value, 0, torch.float64)
    assert torch.all(gate_bias(gru, "z")[0] == gate_bias_value)


STORED = sorted(p for p in (BOOK / "data").glob("*.csv") if p.name[:3] in ("06_", "08_", "12_"))


@pytest.mark.parametrize("path", STORED, ids=lambda p: p.name)
def test_stored_tables_are_what_write_csv_writes(path: Path, tmp_path: Path) -> None:
    """Rewriting a stored table with the rows as the scripts hold them gives the same bytes."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = list(rows[0])

    # chapters 6 and 8, and chapter 12's sweeps run at each model's best (the tables with a
    # stop column), format their scores themselves and keep the learning rate a float; chapter
    # 12's other scripts keep every real number a float, which write_csv formats
    formats_itself = not path.name.startswith("12_") or "stop" in columns

    def as_script_holds(column: str, text: str):
        if formats_itself and column != "lr":
            return text
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text  # a name: the cell, the model, the task

    typed = [{k: as_script_holds(k, v) for k, v in row.items()} for row in rows]
    out = write_csv(typed, tmp_path / path.name, columns)
    assert out.read_bytes() == path.read_bytes()


lm_sweep = load_script("lm_sweep", "scripts/12_lm_sweep.py", BOOK)


def test_the_transformer_generates_from_its_cache_what_it_computes_from_the_whole_text() -> None:
    torch.manual_seed(0)
    model = lm_sweep.TinyTransformer(65, **lm_sweep.TRANSFORMER, context=12).eval()
    ids = torch.randint(0, 65, (2, 12))
    with torch.no_grad():
        whole, _ = model(ids)
        caches = [lm_sweep.KVCache(12) for _ in model.blocks]
        first, _ = model(ids[:, :5], caches)  # a prompt, then one character at a time
        steps = [model(ids[:, t : t + 1], caches, start=t)[0] for t in range(5, 12)]
    torch.testing.assert_close(torch.cat([first, *steps], 1), whole, atol=1e-5, rtol=1e-5)
    d, heads = lm_sweep.TRANSFORMER["d_model"], lm_sweep.TRANSFORMER["n_heads"]
    assert lm_sweep.state_bytes(caches) == 2 * len(caches) * 2 * 12 * d * 4  # k, v; N = 2
    assert caches[0].kept()[0].shape == (2, heads, 12, d // heads)
    with pytest.raises(ValueError, match="holds 12 positions; 13 were appended"):
        model(ids[:, :1], caches, start=11)


def test_generation_keeps_the_cache_of_the_context_and_what_it_wrote() -> None:
    d, layers = lm_sweep.TRANSFORMER["d_model"], lm_sweep.TRANSFORMER["n_layers"]
    expected = {"transformer": 2 * layers * (40 + 3) * d * 4, "LSTM": 2 * 2 * 64 * 4}
    for kind in expected:
        _, _, nbytes = lm_sweep.generation_step_sample(kind, 40, steps=3)
        assert nbytes == expected[kind]
