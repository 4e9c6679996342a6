"""Chapter 9's longer run: what a small LSTM reaches on tiny Shakespeare in a few CPU-minutes.

One LSTM layer of 384 units (embedding 64, about 0.72 million parameters) trained with stateful
truncated BPTT (64 rows of 64 characters per step), Adam with a cosine learning-rate decay and
gradient clipping, on nanoGPT's 90/10 split of the text. Every EVAL_EVERY steps it measures the
loss on the whole validation text (state carried, nats per character); at the steps in
SAMPLE_AT it writes a sample. The model code and the data come from `09_char_models.py`.

Run from the repository root (2 to 4 CPU-minutes on one thread, depending on the machine):

    OMP_NUM_THREADS=1 .venv/bin/python book/scripts/09_long_run.py

It writes `book/data/09_long_run.json` with the keys settings, parameters, steps, val_loss,
train_loss (the mean over each evaluation interval), cpu_seconds (at each evaluation),
samples ({step: text}), init, stop_reason ("budget" after all the steps of SETTINGS, "cpu limit"
if CPU_LIMIT ended it first), best_val_loss, best_step, total_cpu_seconds and wall_seconds; and the
trained weights (the final step's, without the optimizer's state, about 2.9 MB) in
`book/data/09_long_run_lstm.pt`, a companion checkpoint whose config holds SETTINGS, so that the
notebook can score the model in other ways without training it again.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from companion import seed_everything
from companion.checkpoints import save_checkpoint
from companion.data import lm_batches

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("char_models", HERE / "09_char_models.py")
char_models = importlib.util.module_from_spec(spec)
sys.dont_write_bytecode = True  # leave no __pycache__ behind
spec.loader.exec_module(char_models)

SETTINGS = dict(
    embed=64,
    hidden=384,
    layers=1,
    batch=64,
    bptt=64,
    lr=3e-3,
    min_lr=3e-4,
    clip=1.0,
    steps=600,
    eval_every=100,
    seed=0,
)
SAMPLE_AT = (100, 200, 400, 600)
PROMPT, SAMPLE_CHARS, TEMPERATURE = "ROMEO:\n", 300, 0.8
CPU_LIMIT = 14 * 60  # stop early, whatever the step, if the run takes longer than this
OUT = HERE.parent / "data" / "09_long_run.json"
WEIGHTS = HERE.parent / "data" / "09_long_run_lstm.pt"


@torch.no_grad()
def sample(model, vocab, prompt: str, n_chars: int, temperature: float, seed: int = 0) -> str:
    """Generate n_chars characters after `prompt` at `temperature`, with a seeded CPU generator."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    scores, state = model(vocab.encode(prompt)[None])
    drawn = []
    for _ in range(n_chars):
        probs = F.softmax(scores[0, -1] / temperature, dim=-1)
        drawn.append(torch.multinomial(probs, 1, generator=generator).item())
        scores, state = model(torch.tensor([[drawn[-1]]]), state)
    model.train()
    return prompt + vocab.decode(drawn)


def learning_rate(step: int, s: dict) -> float:
    """Cosine decay from lr at step 0 to min_lr at the last step."""
    return s["min_lr"] + 0.5 * (s["lr"] - s["min_lr"]) * (1 + math.cos(math.pi * step / s["steps"]))


def main() -> None:
    torch.set_num_threads(1)
    s = SETTINGS
    vocab, train_ids, val_ids = char_models.corpus()
    train_batches = lm_batches(train_ids, s["batch"], s["bptt"])
    val_batches = lm_batches(val_ids, s["batch"], s["bptt"])
    seed_everything(s["seed"])
    model = char_models.CharLM("LSTM", len(vocab), s["embed"], s["hidden"], s["layers"])
    optimizer = torch.optim.Adam(model.parameters(), lr=s["lr"])
    result = {
        "settings": s,
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": [],
        "val_loss": [],
        "train_loss": [],
        "cpu_seconds": [],
        "samples": {},
    }
    start_cpu, start_wall = time.process_time(), time.perf_counter()
    step, state, interval = 0, None, []
    while step < s["steps"] and time.process_time() - start_cpu < CPU_LIMIT:
        k = step % len(train_batches)
        if k == 0:
            state = None  # a new pass over the text starts from zeros
        x, y = train_batches[k]
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, s)
        scores, state = model(x, state)
        loss = char_models.lm_loss(scores, y)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), s["clip"])
        optimizer.step()
        state = char_models.detach(state)
        interval.append(loss.item())
        step += 1
        if step % s["eval_every"] == 0 or step == s["steps"]:
            result["steps"].append(step)
            result["val_loss"].append(char_models.val_loss(model, val_batches))
            result["train_loss"].append(sum(interval) / len(interval))
            result["cpu_seconds"].append(round(time.process_time() - start_cpu, 1))
            interval = []
            print(
                f"step {step}: train {result['train_loss'][-1]:.3f}, val "
                f"{result['val_loss'][-1]:.3f} nats, {result['cpu_seconds'][-1]} CPU s",
                flush=True,
            )
        if step in SAMPLE_AT:
            result["samples"][step] = sample(model, vocab, PROMPT, SAMPLE_CHARS, TEMPERATURE)
    if step not in SAMPLE_AT:  # stopped by CPU_LIMIT: a sample of the final model too
        result["samples"][step] = sample(model, vocab, PROMPT, SAMPLE_CHARS, TEMPERATURE)
    best = min(range(len(result["val_loss"])), key=result["val_loss"].__getitem__)
    result.update(
        init="default",
        stop_reason="budget" if step == s["steps"] else "cpu limit",
        best_val_loss=result["val_loss"][best],
        best_step=result["steps"][best],
        total_cpu_seconds=round(time.process_time() - start_cpu, 1),
        wall_seconds=round(time.perf_counter() - start_wall, 1),
    )
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    save_checkpoint(WEIGHTS, model, config=dict(s, vocab_size=len(vocab), final_step=step))
    print(f"best validation loss {result['best_val_loss']:.3f} nats at step {result['best_step']}")


if __name__ == "__main__":
    main()
