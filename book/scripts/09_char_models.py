"""Precompute chapter 9's comparison: RNN, LSTM and GRU language models on tiny Shakespeare.

For every cell (RNN, LSTM, GRU) and seed in SEEDS (both initialisations in INITS for the seeds in
MEMORY_SEEDS, the default one for the others), train the chapter's character model (embedding 32,
one recurrent layer, about 93,000 parameters each) for one pass over the 1,003,854 training
characters with stateful truncated BPTT, and record the validation loss (nats per character) at
every quarter of the pass, the fraction of steps whose gradient norm exceeded the clipping
threshold, and the CPU time. The notebook `book/09_char_language_model.ipynb` imports
`train_char_lm` from this file, re-runs one point live and asserts that it matches the stored
value.

Run from the repository root (about 8.5 CPU-minutes on one thread; it writes one small JSON file,
after every run, and a stopped sweep resumes where it stopped):

    OMP_NUM_THREADS=1 .venv/bin/python book/scripts/09_char_models.py

`--seeds 4 --out other.json` (and `--inits memory`) run a share of the sweep in a second process;
the stored file merges the shares.

The file is `book/data/09_char_models.json`: a list of runs, each a dict with the keys
cell, init, seed, hidden, parameters, steps, val_steps, val_loss, frac_clipped,
mean_grad_norm, median_grad_norm, cpu_seconds, lr, epochs and stop_reason (every stored run
used LR for one full pass; the last three keys were added to the file when `train_char_lm` began
to record them).
`09_learning_rates.py` runs the same function at a learning rate chosen per cell.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from companion import seed_everything
from companion.char_lm import CharLM  # the chapter's model, which the notebook imports from here
from companion.data import CharVocab, lm_batches, load_tiny_shakespeare
from companion.init import orthogonal_recurrence, set_gate_bias

# The settings of the chapter (the notebook imports them from here).
EMBED, BATCH, BPTT = 32, 32, 32
LR, CLIP, EPOCHS = 1e-2, 1.0, 1
HIDDEN = {"RNN": 256, "LSTM": 128, "GRU": 150}  # about 93,000 parameters each with V = 65
INITS = ("default", "memory")
SEEDS = (0, 1, 2, 3, 4)
MEMORY_SEEDS = (0, 1)  # the "memory" initialisation, a factor, on 2 of the seeds
CELLS = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}
MEMORY_BIAS = 1.0  # the "memory" initialisation: b_f of the LSTM, b_z of the GRU
OUT = Path(__file__).resolve().parents[1] / "data" / "09_char_models.json"


def memory_init(model: CharLM, cell: str) -> None:
    """The initialisation that favours memory, the same idea for every cell.

    LSTM: forget-gate bias b_f = MEMORY_BIAS; GRU: update-gate bias b_z = MEMORY_BIAS (z near 1
    keeps the old state); RNN: orthogonal recurrent weights W_hh (norm-preserving). Both from
    `companion.init`.
    """
    if cell == "RNN":
        orthogonal_recurrence(model.rnn)
    else:
        set_gate_bias(model.rnn, "f" if cell == "LSTM" else "z", MEMORY_BIAS)


def corpus(device="cpu"):
    """(vocab, train_ids, val_ids): nanoGPT's 90/10 split, ids as int64 tensors on `device`."""
    vocab = CharVocab(load_tiny_shakespeare())
    train = vocab.encode(load_tiny_shakespeare("train")).to(device)
    val = vocab.encode(load_tiny_shakespeare("val")).to(device)
    return vocab, train, val


def lm_loss(scores, y):
    """Mean cross-entropy in nats over all N * L predictions."""
    return F.cross_entropy(scores.reshape(-1, scores.shape[-1]), y.reshape(-1))


def detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


@torch.no_grad()
def val_loss(model, batches) -> float:
    """Stateful validation loss in nats per character: the state is carried across chunks."""
    model.eval()
    total, count, state = 0.0, 0, None
    for x, y in batches:
        scores, state = model(x, state)
        total += lm_loss(scores, y).item() * y.numel()
        count += y.numel()
    model.train()
    return total / count


def train_char_lm(
    cell: str,
    seed: int,
    init: str = "default",
    data=None,
    device="cpu",
    evals: int = 4,
    lr: float = LR,
) -> tuple[CharLM, dict]:
    """Train one model for EPOCHS passes; return it and its record (see the module docstring).

    data: the result of `corpus(device)` (made here if None); evals: validation points, evenly
    spaced over training (the last one at the end); lr: Adam's learning rate. The record also
    holds lr, epochs and stop_reason: "budget" after the full EPOCHS passes, "diverged" when a
    training loss stopped being finite (the run then ends there, its validation loss inf).
    """
    vocab, train_ids, val_ids = data if data is not None else corpus(device)
    train_batches = lm_batches(train_ids, BATCH, BPTT)
    val_batches = lm_batches(val_ids, BATCH, BPTT)
    seed_everything(seed)
    model = CharLM(cell, len(vocab), EMBED, HIDDEN[cell]).to(device)
    if init == "memory":
        memory_init(model, cell)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = EPOCHS * len(train_batches)
    val_at = {round(steps * (j + 1) / evals) for j in range(evals)}
    norms, record = [], {"val_steps": [], "val_loss": []}
    start, step, stop_reason = time.process_time(), 0, "budget"
    for _ in range(EPOCHS):
        state = None  # every epoch starts from zeros, as in companion.train.fit
        for x, y in train_batches:
            scores, state = model(x, state)
            loss = lm_loss(scores, y)
            if not math.isfinite(loss.item()):  # a diverged run scores inf, not a made-up number
                stop_reason = "diverged"
                record["val_steps"].append(step)
                record["val_loss"].append(math.inf)
                break
            optimizer.zero_grad()
            loss.backward()
            # the norm before clipping: a step is "clipped" when it exceeds CLIP
            norms.append(nn.utils.clip_grad_norm_(model.parameters(), CLIP).item())
            optimizer.step()
            state = detach(state)
            step += 1
            if step in val_at:
                record["val_steps"].append(step)
                record["val_loss"].append(val_loss(model, val_batches))
        if stop_reason == "diverged":
            break
    norms_t = torch.tensor(norms if norms else [math.nan])
    record.update(
        cell=cell,
        init=init,
        seed=seed,
        hidden=HIDDEN[cell],
        steps=step,  # trained; fewer than planned only when the run diverged
        parameters=sum(p.numel() for p in model.parameters()),
        frac_clipped=(norms_t > CLIP).float().mean().item(),
        mean_grad_norm=norms_t.mean().item(),
        median_grad_norm=norms_t.median().item(),
        cpu_seconds=round(time.process_time() - start, 1),
        lr=lr,
        epochs=step / len(train_batches),
        stop_reason=stop_reason,
    )
    return model, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one seed, LSTM only (a smoke test)")
    parser.add_argument("--seeds", type=int, nargs="*", help="only these seeds (default: all)")
    parser.add_argument("--inits", nargs="*", choices=INITS, help="only these initialisations")
    parser.add_argument(
        "--out", type=Path, default=OUT, help="the JSON file (default: %(default)s)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = corpus()
    out = args.out
    runs = json.loads(out.read_text()) if out.exists() and not args.quick else []
    done = {(r["cell"], r["init"], r["seed"]) for r in runs}
    plan = [("default", SEEDS), ("memory", MEMORY_SEEDS)]  # all default seeds first
    if args.seeds is not None:  # a share of the sweep, e.g. for a second process
        plan = [(init, [s for s in seeds if s in args.seeds]) for init, seeds in plan]
    if args.inits is not None:
        plan = [(init, seeds) for init, seeds in plan if init in args.inits]
    for init, seeds in plan[:1] if args.quick else plan:
        for seed in seeds[:1] if args.quick else seeds:
            for cell in ["LSTM"] if args.quick else CELLS:
                if (cell, init, seed) in done:  # a resumed sweep keeps what it has
                    continue
                _, record = train_char_lm(cell, seed, init, data)
                runs.append(record)
                print(
                    f"{cell:4s} {init:7s} seed {seed}: val {record['val_loss'][-1]:.4f} nats "
                    f"({record['val_loss'][-1] / math.log(2):.3f} bpc), clipped "
                    f"{record['frac_clipped']:.1%}, {record['cpu_seconds']} CPU s",
                    flush=True,
                )
                if not args.quick:  # written after every run, so a stopped sweep keeps its results
                    out.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
