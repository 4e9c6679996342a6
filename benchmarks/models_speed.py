"""How much slower are companion.models' readable LSTM and GRU than torch.nn's fused ones?

Times one forward and backward pass (the loss is the sum of the outputs) of ``companion.models``
and of ``torch.nn`` with identical weights on the CPU, interleaving the two so that background
load hits both alike, and prints the medians and their ratio next to the goals of the benchmark
issue. Not part of the test suite: timings on a shared machine are too noisy to assert.

    python benchmarks/models_speed.py [--repeats 15] [--warmup 3] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from companion import models
from companion.device import environment_summary

#: (batch N, length L, input H_in, hidden H)
CONFIGS = [(32, 100, 32, 128), (64, 50, 64, 256)]
#: ours / torch.nn forward+backward time we aim to stay under, per kind and config.
GOALS = {("LSTM", 0): 2.5, ("LSTM", 1): 1.5, ("GRU", 0): 1.2, ("GRU", 1): 1.2}


def forward_backward_seconds(module: nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    output, _ = module(x)
    output.sum().backward()
    return time.perf_counter() - start


def compare(kind: str, config: tuple[int, int, int, int], repeats: int, warmup: int) -> tuple[float, float]:
    """Median forward+backward seconds of (ours, torch.nn's) for one kind and config."""
    batch, length, input_size, hidden_size = config
    reference = getattr(nn, kind)(input_size, hidden_size)
    ours = getattr(models, kind)(input_size, hidden_size)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(length, batch, input_size)
    times: dict[str, list[float]] = {"ours": [], "torch": []}
    for i in range(warmup + repeats):
        # Alternate who goes first, so neither always runs on a warmer cache.
        pair = [("ours", ours), ("torch", reference)]
        for name, module in pair if i % 2 == 0 else pair[::-1]:
            module.zero_grad(set_to_none=True)
            seconds = forward_backward_seconds(module, x)
            if i >= warmup:
                times[name].append(seconds)
    return statistics.median(times["ours"]), statistics.median(times["torch"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per module (median taken)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(environment_summary("cpu"))
    print(f"forward+backward, median of {args.repeats} after {args.warmup} warm-up runs")
    print(f"{'kind':5} {'N, L, H_in, H':>18} {'ours ms':>9} {'torch ms':>9} {'ratio':>6} {'goal':>5}")
    for kind in ["LSTM", "GRU"]:
        for index, config in enumerate(CONFIGS):
            ours, reference = compare(kind, config, args.repeats, args.warmup)
            ratio, goal = ours / reference, GOALS[kind, index]
            verdict = "ok" if ratio <= goal else "over"
            print(
                f"{kind:5} {str(config):>18} {ours * 1e3:9.1f} {reference * 1e3:9.1f} "
                f"{ratio:6.2f} {goal:5.1f} {verdict}"
            )


if __name__ == "__main__":
    main()
