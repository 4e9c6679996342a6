"""Precompute chapter 12's scan-accuracy figure: float32 error of the two parallel scans by length.

For minGRU and minLSTM, at every length in LENGTHS and gate bias in GATE_BIASES, one float32
layer (H_in = 4, H = 8, batch 1) runs forward and backward in each mode of MODES, and its
float64 twin (the same weights and input, cast) runs in ``mode="sequential"``: the loop of
(12.4)/(12.7) in float64 is the reference. The loss is ``(output * w).sum()`` with a fixed
random ``w`` of both signs, so that the gradients are not all of one sign. Stored per point:

- ``output_error``: the largest relative error of any h_t, max |h - h_ref| / |h_ref| (h > 0);
- ``gate_bias_grad_error``: the relative error of the gate biases' gradient (b_z for minGRU,
  b_f and b_i for minLSTM), ||g - g_ref|| / ||g_ref||;
- ``worst_grad_error``: the same, the worst over the input's and every parameter's gradient.

The gate bias β sets b_z = β (minGRU) or b_i = β, b_f = −β (minLSTM): β = −8 keeps the gates
near 0 (a memory of about e^8 = 3000 steps), β = 8 near 1 (a memory of about one step).

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python book/scripts/12_scan_accuracy.py

Output: ``book/data/12_scan_accuracy.csv``. The chapter imports ``scan_errors`` from this file to
re-run one point live.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from companion import models as cm
from companion.init import set_gate_bias
from companion.sweep import write_csv

LENGTHS = (256, 1024, 4096, 16384)
GATE_BIASES = (-8.0, 0.0, 8.0)
LAYERS = {"minGRU": cm.MinGRU, "minLSTM": cm.MinLSTM}
MODES = ("log-space", "parallel", "sequential")
INPUT, HIDDEN = 4, 8
OUT = Path(__file__).resolve().parents[1] / "data" / "12_scan_accuracy.csv"
FIELDS = (
    "layer", "mode", "length", "gate_bias", "output_error", "gate_bias_grad_error",
    "worst_grad_error",
)  # fmt: skip


def build(name: str, mode: str, gate_bias: float, seed: int, dtype: torch.dtype) -> torch.nn.Module:
    """One layer of LAYERS, seeded, with its gate biases set to ``gate_bias``."""
    torch.manual_seed(seed)
    layer = LAYERS[name](INPUT, HIDDEN, mode=mode, dtype=dtype)
    if name == "minGRU":
        set_gate_bias(layer, "z", gate_bias)
    else:
        set_gate_bias(layer, "f", -gate_bias)
        set_gate_bias(layer, "i", gate_bias)
    return layer


def gradients(layer: torch.nn.Module, x: torch.Tensor, w: torch.Tensor) -> dict[str, torch.Tensor]:
    """The output and the gradients of ``(output * w).sum()``, in float64."""
    x = x.detach().clone().requires_grad_()
    output, _ = layer(x)
    (output * w).sum().backward()
    found = {"output": output.detach(), "x": x.grad}
    found.update({n: p.grad for n, p in layer.named_parameters()})
    gates = 2 * HIDDEN if isinstance(layer, cm.MinLSTM) else HIDDEN
    found["gate_bias"] = layer.bias_l0.grad[:gates]
    return {k: v.double() for k, v in found.items()}


def relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


def scan_errors(name: str, mode: str, length: int, gate_bias: float, seed: int = 0) -> dict:
    """The float32 errors of one layer in ``mode`` against the float64 loop (see the module)."""
    layer = build(name, mode, gate_bias, seed, torch.float32)
    reference = build(name, "sequential", gate_bias, seed, torch.float64)
    reference.load_state_dict({k: v.double() for k, v in layer.state_dict().items()})
    generator = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(length, 1, INPUT, generator=generator)
    w = torch.randn(length, 1, HIDDEN, generator=generator)
    got = gradients(layer, x, w)
    want = gradients(reference, x.double(), w.double())
    output_error = ((got["output"] - want["output"]).abs() / want["output"].abs()).max()
    grads = [k for k in want if k != "output"]
    return {
        "layer": name,
        "mode": mode,
        "length": length,
        "gate_bias": gate_bias,
        "output_error": float(output_error),
        "gate_bias_grad_error": relative(got["gate_bias"], want["gate_bias"]),
        "worst_grad_error": max(relative(got[k], want[k]) for k in grads),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in LAYERS:
        for gate_bias in GATE_BIASES:
            for length in LENGTHS:
                for mode in MODES:
                    start = time.perf_counter()
                    row = scan_errors(name, mode, length, gate_bias)
                    rows.append(row)
                    shown = {k: f"{v:.2e}" for k, v in row.items() if k.endswith("error")}
                    took = time.perf_counter() - start
                    print(name, mode, length, gate_bias, shown, f"{took:.1f}s", flush=True)
    write_csv(rows, args.out, FIELDS)


if __name__ == "__main__":
    main()
