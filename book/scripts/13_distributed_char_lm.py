"""Train chapter 9's character model with `companion.train.fit` on one process or on several.

The model, data and settings are chapter 9's (`book/scripts/09_char_models.py`): an LSTM of 128
units reading an embedding of 32, on tiny Shakespeare cut into 32 rows of 32 characters per step,
Adam at 1e-2, gradients clipped at 1. To stay short it reads the first `--chars` characters of the
training text once, in `--parts` consecutive parts (one `fit` of one epoch each, so the history
has a record per part), and validates on the first `--val-chars` of the validation text after
each part. The same file runs on one process or under `torchrun`; every rank trains on its
own rows of each global batch (`companion.distributed.shard_batches`), so the optimisation is the
same whatever the number of processes. Rank 0 writes a JSON record of the run and a checkpoint.

One process, then two on the CPU (gloo), as appendix 13 runs them (from the repository root):

    OMP_NUM_THREADS=1 python book/scripts/13_distributed_char_lm.py --device cpu --out one.json
    torchrun --standalone --nproc-per-node=2 book/scripts/13_distributed_char_lm.py \\
        --device cpu --out two.json

N GPUs of one machine (NCCL, one process per GPU), with a global batch worth spreading:

    torchrun --standalone --nproc-per-node=N book/scripts/13_distributed_char_lm.py \\
        --batch 256 --out gpus.json

Several machines: the same command on each, with `--nnodes=M --node-rank=K
--rdzv-backend=c10d --rdzv-endpoint=HOST:29500` (HOST: a machine every node can reach) in place of
`--standalone`.

The JSON holds world_size, backend, device, threads (per process), global_batch, steps, the
characters per step, seconds (of training alone, after every rank is ready), chars_per_second,
and train_loss and val_loss per part (nats per character).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from companion import distributed, seed_everything
from companion.book import load_script
from companion.data import lm_batches
from companion.distributed import shard_batches
from companion.train import fit

HERE = Path(__file__).resolve().parent
CHARS, VAL_CHARS, PARTS = 600_000, 40_000, 4


def start(device: str) -> torch.device:
    """Join the process group if torchrun started us (it sets RANK); pick this rank's device."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":  # one GPU per process: the one torchrun numbered LOCAL_RANK
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        where = torch.device("cuda", local_rank)
    else:
        where = torch.device("cpu")
    if "RANK" in os.environ:
        dist.init_process_group("nccl" if where.type == "cuda" else "gloo")
    return where


def train(args: argparse.Namespace, device: torch.device) -> dict:
    """Run `fit` on this rank's rows; returns the record of the run (the same on every rank)."""
    ch9 = load_script("char_models", args.char_models.name, root=args.char_models.parent)
    vocab, train_ids, val_ids = ch9.corpus()
    size = args.chars // args.parts
    parts = [
        shard_batches(lm_batches(train_ids[k * size : (k + 1) * size].to(device), args.batch, 32))
        for k in range(args.parts)
    ]
    val_batches = shard_batches(lm_batches(val_ids[: args.val_chars].to(device), args.batch, 32))
    seed_everything(0)  # every rank: the same weights (DDP also copies rank 0's)
    model = ch9.CharLM("LSTM", len(vocab), hidden_size=ch9.HIDDEN["LSTM"]).to(device)
    with torch.no_grad():  # a rounding-sized change of the start, to see how far rounding goes
        for p in model.parameters():
            p.mul_(1 + args.nudge)
    optimizer = torch.optim.Adam(model.parameters(), lr=ch9.LR)
    together = dist.is_initialized()
    ddp_model = distributed.wrap(model) if together else model
    if together:
        dist.barrier()  # time the training, not the start of the slowest process
    begin, history = time.perf_counter(), None
    for part in parts:
        history = fit(
            ddp_model,
            part,
            loss_fn=ch9.lm_loss,
            optimizer=optimizer,
            epochs=1,
            val_data=val_batches,
            clip_grad_norm=ch9.CLIP,
            stateful=True,
            progress=False,
            history=history,
        )
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - begin
    if args.checkpoint is not None:
        distributed.save_checkpoint(args.checkpoint, ddp_model, optimizer, history, data=parts[0])
    steps, rows = sum(len(p) for p in parts), parts[0].global_batch
    return {
        "world_size": dist.get_world_size() if together else 1,
        "backend": dist.get_backend() if together else None,
        "device": device.type,
        "threads": torch.get_num_threads(),
        "global_batch": rows,
        "steps": steps,
        "chars_per_step": rows * 32,
        "seconds": seconds,
        "chars_per_second": steps * rows * 32 / seconds,
        "train_loss": history["train_loss"],
        "val_loss": history["val_loss"],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options (see --help); the appendix calls it with a list to train in its own process."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--batch", type=int, default=32, help="rows per step, all ranks together")
    parser.add_argument("--chars", type=int, default=CHARS, help="training characters")
    parser.add_argument("--val-chars", type=int, default=VAL_CHARS)
    parser.add_argument("--parts", type=int, default=PARTS, help="records in the history")
    parser.add_argument("--out", type=Path, help="where rank 0 writes the JSON record")
    parser.add_argument("--checkpoint", type=Path, help="where rank 0 saves the trained run")
    parser.add_argument(
        "--char-models", type=Path, default=HERE / "09_char_models.py", help="chapter 9's script"
    )
    parser.add_argument(
        "--nudge", type=float, default=0.0, help="scale the initial weights by 1 + nudge"
    )
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = start(args.device)
    try:
        record = train(args, device)
        if args.out is not None and (not dist.is_initialized() or dist.get_rank() == 0):
            args.out.write_text(json.dumps(record, indent=1) + "\n")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
