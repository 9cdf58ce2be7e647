"""A-LIX (Cetin et al., ICML 2022), as `Aladoro/Stabilizing-Off-Policy-RL` (commit 34665c80) computes it.

Read next to docs/agents.md §3. A-LIX is DrQ-v2 with three changes:
  * no image augmentation (the official `NoShiftAug`);
  * an encoder with a LIX (local signal mixing) layer after every Conv+ReLU, the four layers
    sharing one smoothing strength S (official `AllFeatTiedRegularizedEncoder`);
  * S adapted so that the critic's gradient at the encoder output keeps a target normalized
    discontinuity (official `LearnS`), in its own Adam parameter group.
The critic's two Q heads form one parallel ensemble layer (official `DenseParallel`).
"""
import copy
import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from baselines import utils
from baselines.drqv2 import Actor, DrQV2Agent, trunk


class LIX(nn.Module):
    """Local signal mixing: resample the feature map at one random continuous offset.

    Official `LocalSignalMixing(pad, fixed_batch=True)`. The map is replicate-padded by
    P = ceil(pad) + 1 cells (the +1 keeps the bilinear footprint off the zero padding of
    `grid_sample`). One u ~ U[0, 1]^2 is drawn per call, from torch's global RNG on the map's
    device, and shared by the whole batch, every channel and every position (the official
    comment on `fixed_batch` reads as the opposite; the code draws shape (1, 1, 1, 2)).

    How the official code maps u to a displacement (per axis; u[..., 0] moves x, u[..., 1] y):
        m     = S * (2 pad + 1) / (2 P + 1)                  (`base_normalization_ratio`)
        shift = (2 P + 1) * (u m + (1 - m) / 2)
        grid  = (i + shift) * 2 / (h + 2 P) - 1              (normalized for grid_sample)
    With align_corners=False grid_sample reads the padded map at pixel (grid + 1)(h + 2 P)/2 - 1/2
    = i + shift - 1/2, and the undisplaced cell i sits at i + P, so the displacement is
        d = shift - 1/2 - P = (2 P + 1) m (u - 1/2) = (2 pad + 1) S (u - 1/2),
    uniform in [-(pad + 1/2) S, (pad + 1/2) S] cells: [-2.5 S, 2.5 S] for pad = 2.

    At S = 0 the official layer still resamples, which is the identity only up to the float32
    rounding of the normalized grid (docs/fidelity.md gives the size); we resample too, so the
    output is the official one at every S. Off in eval mode (no draw).
    """

    def __init__(self, pad: float = 2):
        super().__init__()
        self.pad = int(math.ceil(pad)) + 1
        self.base_normalization_ratio = (2 * pad + 1) / (2 * self.pad + 1)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        n, c, h, w = x.shape
        assert h == w
        m = s * self.base_normalization_ratio
        padded = F.pad(x, (self.pad,) * 4, mode="replicate")
        arange = torch.arange(h, device=x.device, dtype=x.dtype)
        base_grid = torch.stack(torch.meshgrid(arange, arange, indexing="xy"), dim=-1)  # [..., 0] = column
        u = torch.rand(size=(1, 1, 1, 2), device=x.device, dtype=x.dtype)
        shift = (u * m + (1 - m) / 2) * (2 * self.pad + 1)
        grid = (base_grid + shift) * 2.0 / (h + 2 * self.pad) - 1
        return F.grid_sample(padded, grid.expand(n, h, w, 2), mode="bilinear",
                             padding_mode="zeros", align_corners=False)


def normalized_discontinuity(grad: torch.Tensor, kernel: int = 3, eps: float = 1e-20) -> torch.Tensor:
    """ND of the batch-mean gradient map, per (channel, position): shape 1 x C x H x W.

    Official `LearnS.backward`: G = grad averaged over the batch; each position's kernel x kernel
    neighbourhood (replicate-padded) gives, over its kernel^2 - 1 neighbours,
        signal = (sum_patch G^2 - G_center^2) / (kernel^2 - 1)   (mean squared neighbour)
        noise  = sum_patch (G_j - G_center)^2 / (kernel^2 - 1)   (mean squared difference)
    and ND = noise / (signal + eps). (The official code gathers patches with a conv2d against
    an identity kernel; unfold gathers the same values without TF32 rounding on GPUs.)
    """
    g = grad.mean(0, keepdim=True)
    lo = (kernel - 1) // 2
    hi = kernel - 1 - lo
    padded = F.pad(g, (lo, hi, lo, hi), mode="replicate")
    _, c, h, w = g.shape
    patches = F.unfold(padded, kernel).view(1, c, kernel * kernel, h, w)
    n = kernel * kernel - 1
    signal = (patches.pow(2).sum(2) - g.abs().pow(2)) / n
    noise = (patches - g.unsqueeze(2)).pow(2).sum(2) / n
    return noise / (signal + eps)


def nd_score(grad: torch.Tensor, kernel: int = 3, eps: float = 1e-20) -> torch.Tensor:
    """mean over (c, h, w) of log(1 + ND) (the official uses log(1 + x), not log1p)."""
    return torch.log(1 + normalized_discontinuity(grad, kernel, eps)).mean()


class LearnS(torch.autograd.Function):
    """Identity on the features; hands S the gradient target - score (official `LearnS`).

    Gradient descent then moves S by -lr * (target - score): S rises when the critic's gradient
    map is more discontinuous than the target (score > target) and falls when it is smoother.
    `record` (any object) receives the score as `record.nd_score` for logging.
    """

    @staticmethod
    def forward(ctx, x, s, kernel, target, eps, record):
        ctx.kernel, ctx.target, ctx.eps, ctx.record = kernel, target, eps, record
        return x.view_as(x)

    @staticmethod
    def backward(ctx, dy):
        score = nd_score(dy, ctx.kernel, ctx.eps)
        if ctx.record is not None:
            ctx.record.nd_score = score.detach()
        return dy, ctx.target - score, None, None, None, None


class ALIXEncoder(nn.Module):
    """DrQ-v2's four convs, each Conv -> ReLU -> LIX; the four LIX share S.

    Official `AllFeatTiedRegularizedEncoder` around one `ParameterizedReg`: S is clamped to
    [0, 1] in place at every forward (eval too), the LIX layers see S detached, and only the
    last one (on the 32x35x35 output) is followed by `LearnS`, which gives S its gradient.
    """

    def __init__(self, obs_shape, pad=2, s_init=0.5, nd_kernel=3, nd_target=0.535, nd_eps=1e-20):
        super().__init__()
        assert len(obs_shape) == 3
        self.repr_dim = 32 * 35 * 35
        self.S = nn.Parameter(torch.tensor(float(s_init)))
        self.convs = nn.ModuleList([
            nn.Conv2d(obs_shape[0], 32, 3, stride=2),
            nn.Conv2d(32, 32, 3, stride=1),
            nn.Conv2d(32, 32, 3, stride=1),
            nn.Conv2d(32, 32, 3, stride=1),
        ])
        self.lix = nn.ModuleList([LIX(pad) for _ in self.convs])
        self.nd_kernel, self.nd_target, self.nd_eps = nd_kernel, nd_target, nd_eps
        self.nd_score: torch.Tensor | None = None  # set by LearnS.backward
        self.apply(utils.weight_init)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.S.clamp_(0.0, 1.0)
        s = self.S.detach()
        h = utils.normalize_pixels(obs)
        for conv, lix in zip(self.convs, self.lix):
            h = lix(F.relu(conv(h), inplace=True), s)  # in place: as DrQ-v2's encoder (same numbers)
        h = LearnS.apply(h, self.S, self.nd_kernel, self.nd_target, self.nd_eps, self)
        return h.view(h.shape[0], -1)


class DenseParallel(nn.Module):
    """n_parallel independent Linear layers in one batched matmul: [n, B, in] -> [n, B, out]
    (a [B, in] input is broadcast to every member). Official `utils.DenseParallel`: built with
    nn.Linear's default init (Kaiming-uniform weight, uniform bias), which `init_weights` then
    replaces; the draws of both count for the weights built after it."""

    def __init__(self, in_features: int, out_features: int, n_parallel: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_parallel, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(n_parallel, 1, out_features))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        fan_in = in_features * out_features  # torch's fan-in of an (n, in, out) tensor
        bound = 1 / math.sqrt(fan_in)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, self.weight) + self.bias


@torch.no_grad()
def parallel_orthogonal_(weight: torch.Tensor, gain: float) -> torch.Tensor:
    """Each member of an (n, in, out) weight orthogonal, as nn.init.orthogonal_ makes one
    matrix, but from one normal draw for all members (official `parallel_orthogonal_`)."""
    n, rows, cols = weight.shape
    normal = weight.new_empty(n, rows, cols).normal_(0, 1)
    for member, draw in zip(weight, normal):
        a = draw.t() if rows < cols else draw
        q, r = torch.linalg.qr(a)
        q *= torch.diag(r, 0).sign()
        member.copy_(q.t() if rows < cols else q)
    return weight.mul_(gain)


def init_weights(m: nn.Module) -> None:
    """Official A-LIX `weight_init`: DrQ-v2's, plus DenseParallel members orthogonal with gain
    sqrt(2) (the output layer too, where DrQ-v2's Linear layers use gain 1) and zero bias."""
    if isinstance(m, DenseParallel):
        parallel_orthogonal_(m.weight, nn.init.calculate_gain("relu"))
        m.bias.data.fill_(0.0)
    else:
        utils.weight_init(m)


class ParallelCritic(nn.Module):
    """DrQ-v2's critic with the two Q heads as one 2-member ensemble (official `Critic`).
    Returns (Q1, Q2), each [B, 1], so DrQ-v2's losses apply unchanged: the official loss
    sum_heads (Q - y)^2 averaged over the batch equals MSE(Q1, y) + MSE(Q2, y)."""

    def __init__(self, repr_dim, action_shape, feature_dim, hidden_dim, n_parallel=2):
        super().__init__()
        self.trunk = trunk(repr_dim, feature_dim)
        self.QS = nn.Sequential(
            DenseParallel(feature_dim + action_shape[0], hidden_dim, n_parallel), nn.ReLU(inplace=True),
            DenseParallel(hidden_dim, hidden_dim, n_parallel), nn.ReLU(inplace=True),
            DenseParallel(hidden_dim, 1, n_parallel),
        )
        self.apply(init_weights)

    def forward(self, obs: torch.Tensor, action: torch.Tensor):
        qs = self.QS(torch.cat([self.trunk(obs), action], dim=-1))  # [2, B, 1]
        return qs[0], qs[1]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _check(key: str, value, ok: bool, allowed: str) -> None:
    if not ok:
        raise ValueError(f"agent.{key}={value!r} is invalid: must be {allowed}")


class ALIXAgent(DrQV2Agent):
    """DrQ-v2 with the A-LIX encoder, no augmentation, the parallel critic and S's optimizer."""

    # The LIX layers' grid_sample backward accumulates with atomicAdd on CUDA.
    NONDETERMINISTIC_CUDA_OPS = ("grid_sample's backward (the LIX layers)",)

    def __init__(self, *args, lix_pad=2, lix_s_init=0.5, nd_target=0.535, nd_kernel=3,
                 nd_eps=1e-20, s_lr=2e-3, s_betas=(0.5, 0.999), **kwargs):
        s_betas = tuple(s_betas) if isinstance(s_betas, Iterable) else (s_betas,)
        _check("lix_pad", lix_pad, _number(lix_pad) and lix_pad >= 0, ">= 0")
        _check("lix_s_init", lix_s_init, _number(lix_s_init) and 0 <= lix_s_init <= 1, "in [0, 1]")
        _check("nd_target", nd_target, _number(nd_target) and 0 <= nd_target < math.inf, "in [0, inf)")
        _check("nd_kernel", nd_kernel, isinstance(nd_kernel, int) and not isinstance(nd_kernel, bool)
               and nd_kernel >= 3 and nd_kernel % 2 == 1, "an odd integer >= 3")
        _check("nd_eps", nd_eps, _number(nd_eps) and 0 < nd_eps < math.inf, "in (0, inf)")
        _check("s_lr", s_lr, _number(s_lr) and 0 < s_lr < math.inf, "in (0, inf)")
        _check("s_betas", list(s_betas), len(s_betas) == 2 and all(_number(b) and 0 <= b < 1 for b in s_betas),
               "two numbers in [0, 1)")
        self.lix_pad, self.lix_s_init = lix_pad, lix_s_init
        self.nd_target, self.nd_kernel, self.nd_eps = float(nd_target), nd_kernel, float(nd_eps)
        self.s_lr, self.s_betas = float(s_lr), tuple(float(b) for b in s_betas)
        super().__init__(*args, **kwargs)

    def build_networks(self, obs_shape, action_shape, feature_dim, hidden_dim) -> None:
        """The official order of random draws. The official agent is built by Hydra from
        `cfgs/algo/ALIX.yaml`, whose recursive instantiation builds the encoder three times:
        the agent's, then one for the actor's and one for the critic's `encoder` argument
        (they read only its repr_dim). We build and drop the same two spare encoders, so the
        same seed gives the official weights. The target is a deep copy (no draws)."""
        self.encoder = self.new_encoder(obs_shape)
        repr_dim = self.encoder.repr_dim
        self.new_encoder(obs_shape)  # the actor's spare
        self.actor = Actor(repr_dim, action_shape, feature_dim, hidden_dim)
        self.new_encoder(obs_shape)  # the critic's spare
        self.critic = ParallelCritic(repr_dim, action_shape, feature_dim, hidden_dim)
        self.critic_target = copy.deepcopy(self.critic)

    def new_encoder(self, obs_shape) -> ALIXEncoder:
        return ALIXEncoder(obs_shape, self.lix_pad, self.lix_s_init,
                           self.nd_kernel, self.nd_target, self.nd_eps)

    def make_encoder_optimizer(self, lr) -> torch.optim.Optimizer:
        """Official `custom_parameterized_aug_optimizer_builder`: convs at the encoder lr with
        default betas, S in its own group (lr 2e-3, betas (0.5, 0.999))."""
        s = self.encoder.S
        convs = [p for p in self.encoder.parameters() if p is not s]
        return utils.adam([{"params": convs}, {"params": [s], "lr": self.s_lr, "betas": self.s_betas}], lr)

    def make_augmentation(self) -> nn.Module:
        return nn.Identity()  # official `NoShiftAug`

    def update_on_device(self, batch, step: int) -> dict:
        self.encoder.nd_score = None
        metrics = super().update_on_device(batch, step)
        score = self.encoder.nd_score  # set during the critic's backward
        metrics["lix_nd_score"] = float("nan") if score is None else score
        return metrics

    def log_columns(self) -> tuple:
        return (*super().log_columns(), "lix_nd_score", "lix_s")

    def log_state(self) -> dict:
        # The S the next forward uses: Adam may step the raw parameter just outside [0, 1],
        # and every forward clamps it back first.
        return {**super().log_state(), "lix_s": self.encoder.S.detach().clamp(0.0, 1.0).item()}
