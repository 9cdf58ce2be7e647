"""The actor's dormant ratio, exactly as DrM's official `utils.cal_dormant_ratio` computes it.

Every nn.Linear of the network counts, the output layer included. A Linear that is followed by
a ReLU module is measured after it: the official code hooks the Linear, but its in-place ReLU
overwrites the stored tensor, so the hidden layers end up measured post-ReLU. The trunk Linear
(followed by LayerNorm) and the output Linear (tanh is applied in `forward`) are measured as
they are. A neuron is dormant when its mean |activation| over the batch is strictly below
`threshold` times the layer's mean (the paper writes <=; the code uses <).
"""
import torch
from torch import nn


def measured_modules(network: nn.Module) -> list[nn.Module]:
    """The module whose output stands for each Linear: the Linear, or the ReLU right after it."""
    modules = list(network.modules())
    measured = []
    for i, module in enumerate(modules):
        if isinstance(module, nn.Linear):
            following = modules[i + 1] if i + 1 < len(modules) else None
            measured.append(following if isinstance(following, nn.ReLU) else module)
    return measured


@torch.no_grad()
def dormant_ratio(network: nn.Module, inputs: tuple, threshold: float) -> torch.Tensor:
    """Fraction of the network's Linear units that are tau-dormant on this batch, as a 0-d
    float64 tensor on the network's device: counting stays on the device (no host sync per
    layer); `float()` of it is exactly the official `dormant / total`."""
    outputs: list[torch.Tensor] = []
    hooks = [
        module.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach()))
        for module in measured_modules(network)
    ]
    try:
        network(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    dormant, total = [], 0
    for out in outputs:
        per_unit = out.abs().reshape(-1, out.shape[-1]).mean(dim=0)
        dormant.append((per_unit < threshold * per_unit.mean()).sum())
        total += per_unit.numel()
    return torch.stack(dormant).sum().to(torch.float64) / total
