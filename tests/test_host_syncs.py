"""An update reads its results back to the host once (DrM: twice), not once per metric.

On a GPU each read-back (`.item()`, `float()`, `int()`, `bool()`, `.tolist()` of a tensor)
stalls the CPU until the GPU has run everything queued before it. Counted here on the CPU: the
calls our own code makes (torch's internals, e.g. Adam's step counter, are not ours to count).
"""
import sys
from pathlib import Path

import pytest
import torch

from drm.bench import workload
from helpers import REPO

OURS = (str(REPO / "baselines"), str(REPO / "drm"))
READ_BACKS = ("item", "tolist", "__float__", "__int__", "__bool__", "numpy")


@pytest.fixture
def read_backs(monkeypatch):
    """Counts tensor read-backs whose caller is this project's code."""
    calls = []
    for name in READ_BACKS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(OURS):
                calls.append(f"{_name} in {Path(caller).name}:{sys._getframe(1).f_lineno}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


def _alix_agent():
    from baselines.alix import ALIXAgent
    from drm.dormant import dormant_ratio

    return ALIXAgent(obs_shape=workload.OBS, action_shape=workload.ACTION, device="cpu",
                     dormant_ratio_fn=dormant_ratio, **workload.SETTINGS)


@pytest.mark.parametrize("make, allowed", [
    (workload.drqv2_agent, 1),
    (workload.drm_agent, 2),  # beta, which sets this update's stddev and lambda, then the rest
    (_alix_agent, 1),
])
def test_an_update_reads_back_once(make, allowed, read_backs):
    torch.manual_seed(0)
    agent = make("cpu") if make is not _alix_agent else make()
    batch = workload.random_batch(8, seed=1)
    agent.update(batch, 10_000)  # the first update (lazily built optimizer state) included
    read_backs.clear()
    metrics = agent.update(batch, 10_002)
    assert len(read_backs) <= allowed, read_backs
    assert all(type(v) is float for v in metrics.values()), "metrics are plain numbers for the CSV"
