"""Pieces every DrQ-v2-family agent shares, as in DrQ-v2's `utils.py`."""
import torch
from torch import nn


def weight_init(m: nn.Module) -> None:
    """DrQ-v2's init: orthogonal Linear (gain 1) and Conv (ReLU gain), zero biases."""
    if isinstance(m, nn.Linear):
        nn.init.orthogonal_(m.weight.data)
        if m.bias is not None:
            m.bias.data.fill_(0.0)
    elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.orthogonal_(m.weight.data, nn.init.calculate_gain("relu"))
        if m.bias is not None:
            m.bias.data.fill_(0.0)


def normalize_pixels(obs: torch.Tensor) -> torch.Tensor:
    """The encoders' `obs / 255.0 - 0.5`, written as one fresh float copy divided and shifted
    in place: the same two roundings per pixel, without the two intermediate buffers (65 MB
    each at batch 256); the caller's tensor, uint8 or float, is never changed."""
    return obs.to(torch.float32, copy=True).div_(255.0).sub_(0.5)


def adam(params, lr: float, **options) -> torch.optim.Adam:
    """The official optimizer, `torch.optim.Adam(params, lr=lr)`, with its step as batched
    `_foreach` ops (torch's default on CUDA, not on the CPU): bitwise the same parameters,
    a few % faster on the CPU (docs/performance.md)."""
    return torch.optim.Adam(params, lr=lr, foreach=True, **options)


def soft_update_params(net: nn.Module, target_net: nn.Module, tau: float) -> None:
    """target <- tau * online + (1 - tau) * target, in the official operation order (bitwise
    the official result; `lerp_` rounds differently, by ~1e-8)."""
    with torch.no_grad():
        for param, target_param in zip(net.parameters(), target_net.parameters()):
            target_param.data.copy_(tau * param.data + (1 - tau) * target_param.data)


def metrics_to_host(metrics: dict) -> dict:
    """The update's metrics as Python floats, read back in one transfer. Each `.item()` on a
    GPU tensor stalls the CPU until the GPU has run everything queued before it; an update
    used to pay 10-11 of these. Values are exactly `float(t.item())` (float32 -> float64 is
    exact); entries that are already numbers pass through."""
    tensors = {k: v for k, v in metrics.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        return dict(metrics)
    stacked = torch.stack([t.detach().reshape(()).to(torch.float64) for t in tensors.values()])
    return {**metrics, **dict(zip(tensors, stacked.tolist()))}


class TruncatedNormal:
    """DrQ-v2's policy distribution: Gaussian noise, optionally clipped, then the action is
    clamped to (-1, 1) with a straight-through gradient."""

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, low=-1.0, high=1.0, eps=1e-6):
        self.loc, self.scale = loc, scale
        self.low, self.high, self.eps = low, high, eps

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    def _clamp(self, x: torch.Tensor) -> torch.Tensor:
        clamped = torch.clamp(x, self.low + self.eps, self.high - self.eps)
        return x - x.detach() + clamped.detach()

    def sample(self, clip: float | None = None) -> torch.Tensor:
        noise = torch.randn_like(self.loc) * self.scale
        if clip is not None:
            noise = torch.clamp(noise, -clip, clip)
        return self._clamp(self.loc + noise)


class RandomShiftsAug(nn.Module):
    """DrQ-v2's random shift: replicate-pad by `pad`, then a random whole-pixel shift per sample.

    The official code resamples with `grid_sample` on a grid moved by whole pixels, meant as a
    crop of the padded image; but its float32 grid lands on whole pixels only up to ~1.4e-5 of
    a pixel, so it mixes in that much of a neighbour: up to 3.6e-3 on the 0-255 scale, in ~40%
    of the elements. We take the exact crop, with the official random draw; tests/test_drqv2.py
    checks the bound. A crop only copies pixels, so it can run on the replay's uint8 images
    before the conversion to float (a quarter of the bytes moved, the same result): the agents
    crop first and convert after (docs/performance.md)."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        assert h == w
        x = nn.functional.pad(x, (self.pad,) * 4, mode="replicate")
        shift = torch.randint(0, 2 * self.pad + 1, size=(n, 1, 1, 2), device=x.device)
        crops = x.unfold(2, h, 1).unfold(3, w, 1)  # (n, c, 2p+1, 2p+1, h, w): every crop, a view
        # One (y, x) crop per sample: [..., 0] of the official draw moves x, [..., 1] moves y.
        return crops[torch.arange(n, device=x.device), :, shift[:, 0, 0, 1], shift[:, 0, 0, 0]]


class Agent:
    """What an agent provides to the training loop (drm.train), written once; DrQV2Agent is the
    reference. Its constructor takes its YAML's keys (drm/cfg/agent/<name>.yaml) and, from the
    loop, `obs_shape`, `action_shape`, `device` and `dormant_ratio_fn(actor, inputs, threshold)`
    (drm.dormant.dormant_ratio: how the actor's dormant ratio is measured).

    Snapshot support is here: every module and optimizer attribute, plus the scalar attributes a
    subclass names in `STATE_SCALARS`, round-trips through `state_dict`."""

    STATE_SCALARS: tuple[str, ...] = ()  # scalar attributes a snapshot must restore
    # Ops torch runs on CUDA only nondeterministically: deterministic=true on CUDA is refused.
    NONDETERMINISTIC_CUDA_OPS: tuple[str, ...] = ()

    def act(self, obs, step: int, eval_mode: bool):
        """The action for one observation (uint8 frames); the mean action when eval_mode."""
        raise NotImplementedError

    def update(self, batch, step: int) -> dict:
        """One update on a replay batch; its metrics (those of log_columns), as tensors or floats."""
        raise NotImplementedError

    def log_columns(self) -> tuple[str, ...]:
        """train.csv's columns beyond drm.layout.TRAIN_COLUMNS: update metrics and log_state keys."""
        raise NotImplementedError

    def log_state(self) -> dict:
        """The agent's state worth logging at each episode's end (e.g. DrM's awaken step)."""
        raise NotImplementedError

    def _stateful(self):
        return {
            name: obj
            for name, obj in vars(self).items()
            if isinstance(obj, (nn.Module, torch.optim.Optimizer))
        }

    def state_dict(self) -> dict:
        state = {name: obj.state_dict() for name, obj in self._stateful().items()}
        state.update({name: getattr(self, name) for name in self.STATE_SCALARS})
        return state

    def load_state_dict(self, state: dict) -> None:
        for name, obj in self._stateful().items():
            obj.load_state_dict(state[name])
        for name in self.STATE_SCALARS:
            setattr(self, name, state[name])
