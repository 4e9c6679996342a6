"""Precompute chapter 12's language-model curves: four gated recurrences and a small causal
transformer on tiny Shakespeare, at matched parameter counts, each at its own learning rate,
against CPU time.

Every model reads a character embedding and predicts the next character at every position of a
window of CONTEXT characters; windows start at random offsets of the training split (90%, the
first part of the text) and are scored on VAL_WINDOWS fixed, evenly spaced windows of the
validation split (the last 10%), in nats per character. The models:

- ``GRU``, ``LSTM``: ``torch.nn``'s, two layers;
- ``minGRU``, ``minLSTM``: ``companion.models``', two layers (sequential mode: the same function
  as the scan and faster at this length on one CPU thread);
- ``transformer``: :class:`TinyTransformer`, two pre-norm blocks of causal self-attention.

All have 63,600 to 67,300 parameters (within 6%) and are trained with Adam, clipping at 1, batches
of BATCH windows, on one thread, for a budget of CPU time (``time.process_time``, so other
processes on a shared machine do not shorten a run). Each model's learning rate is chosen from
LR_GRID by the validation loss after TUNE_SECONDS on TUNE_SEED, a seed no compared curve uses;
then CURVE_SEEDS train for CURVE_SECONDS each at that rate. The validation loss is recorded every
EVAL_EVERY steps, so the curves give both views: at equal CPU time and at an equal number of steps.

``measure_generation`` times one generated character against the length of the context already
read, and counts the bytes of what each model keeps between characters: a recurrent state of
fixed size, the transformer's key-value cache (:class:`KVCache`) of size proportional to the
context. It stores every round (wall and thread CPU time per character) and the contention of the
run; the file is read back with ``companion.benchmark.load_results``, which refuses it unless the
run had its core to itself.

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python book/scripts/12_lm_sweep.py --jobs 2
    OMP_NUM_THREADS=1 .venv/bin/python book/scripts/12_lm_sweep.py --generation   # quiet machine
    OMP_NUM_THREADS=1 .venv/bin/python book/scripts/12_lm_sweep.py --generation --tiny --out g.json

About 130 CPU-minutes for the curves (65 minutes with two jobs on two cores). Outputs:
``book/data/12_lm_curves.csv`` and ``12_lm_lr_grid.csv`` (model, seed, init, lr, params, step,
cpu_seconds, val_nats, stop: every recorded point of the compared and the tuning runs) and
``book/data/12_generation_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from companion import benchmark, seed_everything
from companion import models as cm
from companion.char_lm import CharLM
from companion.data import CharVocab, load_tiny_shakespeare
from companion.selection import at_best
from companion.sweep import write_csv

CONTEXT, BATCH, CLIP = 64, 32, 1.0
EVAL_EVERY, VAL_WINDOWS = 100, 256
EMBED = 32
RECURRENT = {"GRU": 76, "LSTM": 64, "minGRU": 146, "minLSTM": 118}  # hidden sizes
TRANSFORMER = {"d_model": 48, "n_layers": 2, "n_heads": 4}
MODELS = (*RECURRENT, "transformer")
DATA = Path(__file__).resolve().parents[1] / "data"
OUT_GENERATION = DATA / "12_generation_cpu.json"


def corpus() -> tuple[CharVocab, torch.Tensor, torch.Tensor, list[str]]:
    """(vocab, train ids, validation windows (VAL_WINDOWS, CONTEXT + 1), their texts)."""
    train, val = load_tiny_shakespeare("train"), load_tiny_shakespeare("val")
    vocab = CharVocab(train)
    val_ids = vocab.encode(val)
    starts = torch.linspace(0, len(val_ids) - CONTEXT - 1, VAL_WINDOWS).long()
    windows = torch.stack([val_ids[s : s + CONTEXT + 1] for s in starts.tolist()])
    texts = [val[s : s + CONTEXT + 1] for s in starts.tolist()]
    return vocab, vocab.encode(train), windows, texts


class RecurrentLM(CharLM):
    """Embedding -> two recurrent layers -> linear head: (N, L) ids -> (N, L, V) scores.

    ``companion.char_lm.CharLM`` with this table's sizes; minGRU and minLSTM run sequentially.
    """

    def __init__(self, kind: str, vocab_size: int, hidden: int | None = None) -> None:
        options = {} if kind in ("GRU", "LSTM") else {"mode": "sequential"}
        super().__init__(kind, vocab_size, EMBED, hidden or RECURRENT[kind], 2, **options)


class KVCache:
    """The keys and values of every position read so far, for one block, in buffers of
    ``capacity`` positions allocated once: appending a position writes one slot. (Growing the
    cache with ``torch.cat`` would copy every earlier entry at every step, a cost that belongs
    to the implementation, not to attention.)"""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.length = capacity, 0
        self.k = self.v = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store (N, heads, L, d_head) keys and values; return views of all kept so far."""
        if self.k is None:
            shape = (*k.shape[:2], self.capacity, k.shape[3])
            self.k, self.v = k.new_empty(shape), v.new_empty(shape)
        end = self.length + k.size(2)
        if end > self.capacity:
            raise ValueError(f"KVCache holds {self.capacity} positions; {end} were appended")
        self.k[:, :, self.length : end], self.v[:, :, self.length : end] = k, v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def kept(self) -> list[torch.Tensor]:
        """The keys and values stored so far (what a model must keep between characters)."""
        return [] if self.k is None else [self.k[:, :, : self.length], self.v[:, :, : self.length]]


class Block(nn.Module):
    """Pre-norm block: x + attention(LN(x)), then x + MLP(LN(x)); the MLP is 4x wide."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        N, L, d = x.shape
        q, k, v = (
            t.view(N, L, self.heads, -1).transpose(1, 2)
            for t in self.qkv(self.ln1(x)).chunk(3, dim=-1)
        )
        if cache is not None:  # generation: keys and values of every earlier position
            k, v = cache.append(k, v)
        # causal when the queries are all the positions; one new query may see every key
        a = F.scaled_dot_product_attention(q, k, v, is_causal=L == k.size(2) and L > 1)
        x = x + self.proj(a.transpose(1, 2).reshape(N, L, d))
        return x + self.mlp(self.ln2(x))


class TinyTransformer(nn.Module):
    """A GPT-style character model: token + learned position embeddings, pre-norm blocks,
    a final LayerNorm and a linear head. (N, L) ids -> (N, L, V) scores."""

    def __init__(
        self, vocab_size: int, d_model: int, n_layers: int, n_heads: int, context: int = CONTEXT
    ):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab_size, d_model), nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.ln, self.head = nn.LayerNorm(d_model), nn.Linear(d_model, vocab_size)

    def forward(self, ids: torch.Tensor, caches: list[KVCache] | None = None, start: int = 0):
        positions = torch.arange(start, start + ids.size(1), device=ids.device)
        x = self.tok(ids) + self.pos(positions)
        for k, block in enumerate(self.blocks):
            x = block(x, None if caches is None else caches[k])
        return self.head(self.ln(x)), caches


def build(kind: str, vocab_size: int) -> nn.Module:
    if kind == "transformer":
        return TinyTransformer(vocab_size, **TRANSFORMER)
    return RecurrentLM(kind, vocab_size)


def val_nats(model: nn.Module, windows: torch.Tensor) -> float:
    """Mean cross-entropy (nats per character) over every position of the windows."""
    model.eval()
    with torch.no_grad():
        scores, _ = model(windows[:, :-1])
        loss = F.cross_entropy(scores.flatten(0, 1), windows[:, 1:].flatten()).item()
    model.train()
    return loss


def train_lm(
    kind: str,
    seed: int,
    lr: float,
    cpu_seconds: float | None = None,
    max_steps: int | None = None,
    data=None,
) -> list[dict]:
    """Train one model with Adam at ``lr`` for ``cpu_seconds`` of CPU time (CURVE_SECONDS when
    None), or exactly ``max_steps`` steps.

    Returns the curve: a dict (step, cpu_seconds, val_nats) at step 0 and every EVAL_EVERY steps,
    and at the last step. With ``max_steps`` the run is deterministic on the CPU: the notebook
    re-runs the first steps of a stored run and compares.
    """
    vocab, train_ids, windows, _ = data or corpus()
    cpu_seconds = CURVE_SECONDS if cpu_seconds is None else cpu_seconds
    seed_everything(seed)
    model = build(kind, len(vocab))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    offsets = torch.Generator().manual_seed(seed)
    curve = [{"step": 0, "cpu_seconds": 0.0, "val_nats": val_nats(model, windows)}]
    used, step = 0.0, 0
    while (used < cpu_seconds) if max_steps is None else (step < max_steps):
        start = time.process_time()
        s = torch.randint(0, len(train_ids) - CONTEXT - 1, (BATCH,), generator=offsets)
        chunk = train_ids[s[:, None] + torch.arange(CONTEXT + 1)]
        scores, _ = model(chunk[:, :-1])
        loss = F.cross_entropy(scores.flatten(0, 1), chunk[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        used += time.process_time() - start
        step += 1
        if step % EVAL_EVERY == 0:
            curve.append({"step": step, "cpu_seconds": used, "val_nats": val_nats(model, windows)})
    if curve[-1]["step"] != step:
        curve.append({"step": step, "cpu_seconds": used, "val_nats": val_nats(model, windows)})
    return curve


def state_bytes(state) -> int:
    """Bytes of all tensors in a (nested) state or cache (a KVCache: the positions it holds)."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, KVCache):
        return state_bytes(state.kept())
    return sum(state_bytes(s) for s in state) if state is not None else 0


def generation_step_sample(
    kind: str, context: int, vocab_size: int = 65, steps: int = 20, seed: int = 0
) -> tuple[float, float, int]:
    """(wall seconds, thread CPU seconds) per generated character over ``steps`` characters,
    and the bytes kept between characters, after a context of ``context`` characters has been
    read. Weights are untrained: the cost does not depend on them. The transformer gets
    position embeddings for the whole context, and its key-value caches (:class:`KVCache`,
    allocated for the context and the characters to write) are filled with random numbers for
    all but the last character of the context, which the model reads (what one step costs
    depends on the cache's size, not its values)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        ids = torch.randint(0, vocab_size, (1, context))
        if kind == "transformer":
            model = TinyTransformer(vocab_size, **TRANSFORMER, context=context + steps).eval()
            d, heads = TRANSFORMER["d_model"], TRANSFORMER["n_heads"]
            memory = [KVCache(context + steps) for _ in model.blocks]
            for cache in memory:  # the entries of the first context - 1 characters
                cache.append(*(torch.randn(1, heads, context - 1, d // heads) for _ in "kv"))
            scores, _ = model(ids[:, -1:], memory, start=context - 1)  # the last one, read
        else:
            model = RecurrentLM(kind, vocab_size).eval()
            scores, memory = model(ids)
        state = {"scores": scores, "memory": memory}

        def generate() -> None:
            for k in range(steps):
                next_id = state["scores"][:, -1:].argmax(-1)
                if kind == "transformer":
                    state["scores"], _ = model(next_id, memory, start=context + k)
                else:
                    state["scores"], state["memory"] = model(next_id, state["memory"])

        wall, cpu = benchmark.timed(generate)
    return wall / steps, cpu / steps, state_bytes(state["memory"])


def generation_step_cost(
    kind: str, context: int, vocab_size: int = 65, steps: int = 20, seed: int = 0
) -> tuple[float, int]:
    """(wall seconds per generated character, bytes kept between characters) after a context
    of ``context`` characters: :func:`generation_step_sample` without the CPU time."""
    wall, _, nbytes = generation_step_sample(kind, context, vocab_size, steps, seed)
    return wall, nbytes


GENERATION_CONTEXTS = (256, 1024, 4096, 16384)
GENERATION_MODELS = ("LSTM", "minGRU", "transformer")
GENERATION_ROUNDS, GENERATION_STEPS = 7, 20


def measure_generation(
    rounds: int = GENERATION_ROUNDS, contexts=GENERATION_CONTEXTS, steps: int = GENERATION_STEPS
) -> dict:
    """The generation results file: per context and model, every round's milliseconds per
    character (rounds interleaved, the first model rotating) and the bytes kept, measured
    under a ContentionMonitor."""
    settings = {
        "rounds": rounds,
        "steps": steps,
        "contexts": list(contexts),
        "clock": "wall (time.perf_counter) and thread CPU (time.thread_time) per character",
    }
    device = {"type": "cpu", "name": benchmark.cpu_name(), "threads": torch.get_num_threads()}
    results = benchmark.new_results("generation", settings, device)
    order = list(GENERATION_MODELS)
    with benchmark.ContentionMonitor() as monitor:
        for context in contexts:
            samples = {k: [] for k in order}
            for r in range(rounds):
                for kind in order[r % len(order) :] + order[: r % len(order)]:
                    samples[kind].append(generation_step_sample(kind, context, steps=steps))
            for kind in order:
                walls, cpus, _ = zip(*samples[kind])
                # the bytes kept after the context and one character written
                nbytes = generation_step_cost(kind, context, steps=1)[1]
                row = {"model": kind, "context": context, "bytes": nbytes}
                results["rows"].append({**row, **benchmark.summarize(walls, cpus)})
                print(context, kind, results["rows"][-1]["median_ms"], "ms", flush=True)
    return benchmark.finish_results(results, monitor)


# Learning curves to CURVE_SECONDS of CPU time, each model at its own learning rate: chosen from
# LR_GRID by the validation loss after TUNE_SECONDS on TUNE_SEED (a seed no compared curve uses).
LR_GRID, TUNE_SEED, TUNE_SECONDS = (1e-3, 3e-3, 1e-2), 100, 120.0
CURVE_SECONDS, CURVE_SEEDS = 240.0, (0, 1, 2, 3, 4)
OUT_CURVES, OUT_CURVES_GRID = DATA / "12_lm_curves.csv", DATA / "12_lm_lr_grid.csv"
# Every model starts from its layers' default initialisation: chapter 9 found that the memory
# starts (b_f = 1, b_z = 1) do not help gated cells on characters, where the context that counts
# is short.
INIT = "default"
CURVE_COLUMNS = ["model", "seed", "init", "lr", "params", "step", "cpu_seconds", "val_nats", "stop"]


def run_curve(kind: str, seed: int, lr: float) -> tuple[list[dict], dict]:
    """(every point of the curve, a summary row), one thread; the tuning seed trains for
    TUNE_SECONDS, a compared seed for CURVE_SECONDS."""
    torch.set_num_threads(1)
    data = corpus()
    seconds = TUNE_SECONDS if seed == TUNE_SEED else CURVE_SECONDS
    curve = train_lm(kind, seed, lr, cpu_seconds=seconds, data=data)
    params = cm.count_parameters(build(kind, len(data[0])))
    points = [
        {"model": kind, "seed": seed, "init": INIT, "lr": lr, "params": params}
        | {**point, "stop": "budget"}
        for point in curve
    ]
    last = curve[-1]
    return points, {
        "model": kind,
        "seed": seed,
        "lr": lr,
        "val_loss": last["val_nats"],
        "step": last["step"],
        "cpu_seconds": last["cpu_seconds"],
    }


def describe_curve(row: dict) -> str:
    """One line per finished curve."""
    return (
        f"{row['model']:11s} seed {row['seed']:3d} lr {row['lr']:g}: {row['step']} steps, "
        f"{row['val_loss']:.3f} nats after {row['cpu_seconds']:.0f} s CPU"
    )


def curves(jobs: int) -> None:
    """Every model at its rate, CURVE_SEEDS, to CURVE_SECONDS: writes OUT_CURVES and the tuning
    runs' curves to OUT_CURVES_GRID."""
    arms = [(kind,) for kind in MODELS]

    grid, chosen, results = at_best(
        arms,
        run_curve,
        grid=LR_GRID,
        tune_seed=TUNE_SEED,
        seeds=CURVE_SEEDS,
        jobs=jobs,
        describe=describe_curve,
    )
    print("rates chosen:", {arm[0]: lr for arm, lr in chosen.items()})
    order = sorted(results, key=lambda k: (arms.index(k[0]), k[1]))
    write_csv([p for run in order for p in results[run][0]], OUT_CURVES, CURVE_COLUMNS)
    tuning = sorted(grid, key=lambda k: (arms.index(k[0]), k[1]))
    write_csv([p for run in tuning for p in grid[run][0]], OUT_CURVES_GRID, CURVE_COLUMNS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generation", action="store_true", help="only the generation costs")
    parser.add_argument("--jobs", type=int, default=1, help="curves: runs in parallel")
    parser.add_argument("--params", action="store_true", help="print parameter counts, exit")
    parser.add_argument("--tiny", action="store_true", help="generation: 2 contexts, 3 rounds")
    parser.add_argument("--note", action="append", default=[], help="a sentence for the notes")
    parser.add_argument("--out", type=Path, default=OUT_GENERATION, help="generation: the file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.params:
        for kind in MODELS:
            print(kind, cm.count_parameters(build(kind, 65)))
    elif args.generation:
        result = measure_generation(3, (256, 1024)) if args.tiny else measure_generation()
        result["notes"] += args.note
        print(benchmark.conditions_report(result))
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print("wrote", args.out)
    else:
        curves(args.jobs)


if __name__ == "__main__":
    main()
