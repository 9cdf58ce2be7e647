"""`python -m drm.bench --levers`: each candidate speed-up of the update, timed against the default
and checked against it to the last bit.

For each lever, two DrQ-v2 agents are built from the same seed, one as the harness builds it and
one with the lever applied; they update on the same batches from the same RNG state. Reported:
the median update ms of each (timed alternately, so a busy machine slows both alike), the
saving, the largest parameter difference after `--checks` updates and the relative difference
of the first update's critic loss. A lever with difference 0
changes nothing but speed; any other would have to sit behind a documented switch
(docs/performance.md).
"""
from __future__ import annotations

import argparse
import time

from drm.bench import official, workload


def _agent(seed: int):
    import torch

    torch.manual_seed(seed)
    return workload.drqv2_agent()


def _channels_last(agent) -> None:
    """NHWC weights and activations: oneDNN convolutions then run without reordering to and
    from its blocked format; the features are flattened in the default (NCHW) order."""
    import torch

    from baselines.utils import normalize_pixels

    encoder = agent.encoder.to(memory_format=torch.channels_last)

    def forward(obs):
        h = encoder.convnet(normalize_pixels(obs).contiguous(memory_format=torch.channels_last))
        return h.reshape(h.shape[0], -1)

    encoder.forward = forward


def _bf16_autocast(agent) -> None:
    """The whole update under autocast to bfloat16: convolutions and matmuls in bf16 (oneDNN's
    AVX512_BF16 kernels where the CPU has them). A change of precision, not a reordering."""
    import torch

    update, device = agent.update, torch.device(agent.device).type

    def autocast_update(batch, step):
        with torch.autocast(device, dtype=torch.bfloat16):
            return update(batch, step)

    agent.update = autocast_update


# Levers adopted as defaults since (bitwise equal), so no longer candidates here: the optimizer
# step as `_foreach` ops (baselines.utils.adam), the crop on uint8 images as a view of every
# crop (baselines.utils.RandomShiftsAug), the normalisation and the encoder's ReLUs in place
# (baselines.utils.normalize_pixels); docs/performance.md has their figures.
LEVERS = {
    "adam_fused": ("the optimizer step as one fused kernel per parameter group",
                   lambda a: workload.rebuild_adam(a, fused=True)),
    "channels_last": ("the conv stack in NHWC (no layout reorders around each oneDNN conv)", _channels_last),
    "bf16_autocast": ("the update under autocast to bfloat16 (a precision change: not a `fast` candidate "
                      "under the rule that a switch may only reorder sums)", _bf16_autocast),
}


def differences(apply, batch_size: int, updates: int) -> tuple[float, float]:
    """How far the agent changed by `apply` drifts from the default, both built from one seed
    and updated on the same batches: the largest |default - changed| over every parameter after
    `updates` updates, and the relative difference of the first update's critic loss. The first
    saturates at about 2 x lr after one Adam step, whatever the cause (Adam's first steps are
    ~lr * sign(gradient)); the second tells a reordering (~1e-7) from a loss of precision."""
    import torch

    pair = [_agent(1), _agent(1)]
    apply(pair[1])
    first_critic_loss = []  # per agent (the actor's loss, -Q, starts near 0: no relative measure)
    for step in range(updates):
        batch = workload.random_batch(batch_size, seed=step)
        for agent in pair:
            torch.manual_seed(100 + step)
            metrics = agent.update(batch, 10_000 + step)
            if step == 0:
                first_critic_loss.append(metrics["critic_loss"])
    worst = 0.0
    for net in ("encoder", "actor", "critic", "critic_target"):
        for a, b in zip(getattr(pair[0], net).state_dict().values(), getattr(pair[1], net).state_dict().values()):
            worst = max(worst, (a - b).abs().max().item())
    loss_drift = abs(first_critic_loss[0] - first_critic_loss[1]) / abs(first_critic_loss[0])
    return worst, loss_drift


def timed(apply, batch_size: int, reps: int) -> tuple[float, float]:
    """Median ms of the default update and of the one changed by `apply`, timed alternately."""
    import numpy as np

    base, fast = _agent(1), _agent(1)
    apply(fast)
    batch = workload.random_batch(batch_size, seed=0)
    times = {0: [], 1: []}
    for i in range(reps + 2):
        for k, agent in enumerate((base, fast)):
            start = time.perf_counter()
            agent.update(batch, 10_000)
            if i >= 2:
                times[k].append((time.perf_counter() - start) * 1000)
    return float(np.median(times[0])), float(np.median(times[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drm.bench --levers", description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--reps", type=int, default=5, help="timed updates per agent and lever")
    parser.add_argument("--checks", type=int, default=3, help="updates compared parameter by parameter")
    parser.add_argument("--only", choices=sorted(LEVERS), action="append", help="one lever (repeatable)")
    args = parser.parse_args(argv)
    import torch

    print(f"update at batch {args.batch_size}, {torch.get_num_threads()} torch threads")
    if not args.only:
        # The reference point: the official update's operations on the same networks.
        ours_ms, official_ms = timed(official.as_official, args.batch_size, args.reps)
        diff, loss_drift = differences(official.as_official, args.batch_size, args.checks)
        print(f"{'official ops':<14} {official_ms:7.0f} ms -> {ours_ms:7.0f} ms (the harness's default: "
              f"{official_ms / ours_ms:.2f}x as fast); largest difference after {args.checks} updates: "
              f"{diff:.3g}, first critic loss {loss_drift:.2g} relative (the grid_sample's rounding); the "
              "official code's grid_sample shift on float images, out-of-place encoder and per-tensor "
              "Adam (drm.bench.official)")
    for lever in args.only or LEVERS:
        base_ms, lever_ms = timed(LEVERS[lever][1], args.batch_size, args.reps)
        diff, loss_drift = differences(LEVERS[lever][1], args.batch_size, args.checks)
        print(f"{lever:<14} {base_ms:7.0f} ms -> {lever_ms:7.0f} ms ({100 * (1 - lever_ms / base_ms):+5.1f}% saved); "
              f"largest difference after {args.checks} updates: {diff:.3g}, first critic loss {loss_drift:.2g} "
              f"relative; {LEVERS[lever][0]}")
    return 0
