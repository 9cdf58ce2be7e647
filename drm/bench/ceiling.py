"""The machine's own ceiling beside the update's achieved rate (`python -m drm.bench`).

An update's speed alone says little: 600 ms may be fast on one machine and slow on the next.
Measured in the same process and at the same torch thread count: the single-precision
matrix-multiply rate (the best a dense kernel reaches here), the FLOPs of one update counted by
torch's own counter (conv forward on obs and next_obs, conv backward, trunks and heads), and so
the update's achieved GFLOP/s and its share of that ceiling. `profile_update` says where the
time goes, op by op.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path

# Instruction sets that decide which oneDNN / MKL kernels run (and so their speed and their
# last bits: docs/fidelity.md).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16")


def cpu_info() -> dict:
    """CPU model, logical cores, the ISA flags above that it has, and torch's kernel level."""
    import os

    import torch

    model, flags = platform.processor() or "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    capability = torch.backends.cpu.get_cpu_capability()
    return {"cpu_model": model, "logical_cores": os.cpu_count(),
            "isa": [f for f in ISA_FLAGS if f in flags], "torch_cpu_capability": capability}


def matmul_gflops(n: int = 2048, seconds: float = 2.0) -> float:
    """Best-of GFLOP/s of an n x n x n float32 matmul at torch's current thread count."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)  # warm the kernel and its buffers
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n ** 3 / best / 1e9


def update_flops(agent, batch, step: int) -> dict:
    """FLOPs of one `agent.update(batch, step)`, in total and per op (torch's FlopCounterMode).

    The counter sees every matmul and convolution, forward and backward, including the target's
    forward and the dormant-ratio pass; elementwise ops are not counted (they are memory-bound,
    and the ceiling is a matmul rate). The update runs for real: pass a scratch agent."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        agent.update(batch, step)
    per_op = {str(op).removeprefix("aten."): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    return {"total": int(counter.get_total_flops()), "per_op": per_op}


def profile_update(agent, batch, step: int, reps: int = 3, top: int = 15) -> list[dict]:
    """The ops that take an update's CPU time, by self time, averaged over `reps` updates."""
    from torch.profiler import ProfilerActivity, profile

    agent.update(batch, step)  # warm-up, outside the profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(reps):
            agent.update(batch, step)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return [{"op": e.key, "ms_per_update": e.self_cpu_time_total / 1000 / reps,
             "share_pct": 100.0 * e.self_cpu_time_total / total, "calls_per_update": e.count // reps}
            for e in events[:top]]
