"""The official code's formulations of what the harness computes another way, for the benchmark's
reference point and the tests' bounds: DrQ-v2's shift as a `grid_sample` over float images,
the encoder's normalisation and ReLUs each into a new tensor, and Adam's per-tensor step
(torch's CPU default, which the official code gets by not choosing).

`as_official(agent)` turns a harness agent into one that runs the official update's operations
(docs/performance.md: the speed-up over them), on the same networks and batches.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def random_shift_grid_sample(x: torch.Tensor, pad: int, shift: torch.Tensor) -> torch.Tensor:
    """DrQ-v2's shift as its code computes it, for a given integer draw `shift` (n, 1, 1, 2):
    replicate-pad, then sample the padded image on a grid moved by whole pixels."""
    n, c, h, w = x.shape
    x = F.pad(x, (pad,) * 4, "replicate")
    eps = 1.0 / (h + 2 * pad)
    arange = torch.linspace(-1.0 + eps, 1.0 - eps, h + 2 * pad, device=x.device)[:h]
    arange = arange.unsqueeze(0).repeat(h, 1).unsqueeze(2)
    base_grid = torch.cat([arange, arange.transpose(1, 0)], dim=2).unsqueeze(0).repeat(n, 1, 1, 1)
    grid = base_grid + shift.float() * 2.0 / (h + 2 * pad)
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


class GridSampleShift(nn.Module):
    """The official augmentation module: images to float first, the official draw, grid_sample."""

    def __init__(self, pad: int = 4):
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        shift = torch.randint(0, 2 * self.pad + 1, size=(x.shape[0], 1, 1, 2), device=x.device)
        return random_shift_grid_sample(x, self.pad, shift)


def official_encoder(encoder: nn.Module) -> nn.Module:
    """DrQ-v2's encoder as the official code runs it: `obs / 255.0 - 0.5` and each ReLU into a
    new tensor (the harness's does both in place, with the same numbers)."""
    for module in encoder.convnet:
        if isinstance(module, nn.ReLU):
            module.inplace = False

    def forward(obs: torch.Tensor) -> torch.Tensor:
        h = encoder.convnet(obs / 255.0 - 0.5)
        return h.view(h.shape[0], -1)

    encoder.forward = forward
    return encoder


def as_official(agent):
    """A DrQ-v2 agent (before its first update) switched to the official operations: the
    grid_sample shift, the encoder's out-of-place normalisation and ReLUs, and Adam's
    per-tensor step (`foreach=False`) for its three optimizers."""
    from drm.bench.workload import rebuild_adam

    agent.aug = GridSampleShift(4)
    official_encoder(agent.encoder)
    return rebuild_adam(agent, foreach=False)
