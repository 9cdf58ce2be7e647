"""Golden one-update cases from the official DrQ-v2, DrM and A-LIX code (docs/fidelity.md).

Each case in `<repo>/../shared/reference/parity/` (its README gives the protocol) pins a seed,
the initial weights, a batch and a step; the `.official.pt` beside it holds what the official
code computed. We build our agent from the case's seed, check that it has exactly the case's
initial weights, run one update under the same protocol and compare everything the official
code recorded.

The cases were computed on a CPU whose oneDNN convolution kernels are AVX2 ones; AVX-512
kernels sum in another order, and after one update some parameters then differ by up to
1.9e-4 (Adam's first step is about lr * sign(gradient), so a gradient near 0 flips by 2 * lr).
Our side therefore runs in a subprocess with `ONEDNN_MAX_CPU_ISA=AVX2` (oneDNN reads it once,
at its first kernel) and 2 torch threads, as the cases were made; it is then bitwise equal.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from baselines.alix import ALIXAgent
from baselines.drqv2 import DrQV2Agent
from drm.agent import DrMAgent

PARITY = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "parity"
CASES = ("drqv2_update", "drm_update", "drm_perturb_update", "alix_update")
AGENTS = {"drqv2": DrQV2Agent, "drm": DrMAgent, "alix": ALIXAgent}
# Official config keys our constructors do not take: the loop's cadence, the logger switch,
# DrM's `stddev_type` (only `awake` exists here), and the seed (used before building).
NOT_AGENT_KEYS = ("update_every_steps", "use_tb", "stddev_type", "seed")
# Official metric name -> ours. The official `actor_logprob` and `actor_ent` are diagnostics
# we do not compute (NaN and -inf in these cases, whose std is pinned to 0).
METRICS = {"batch_reward": "batch_reward", "actor_dormant_ratio": "actor_dormant_ratio",
           "predictor_loss": "v_loss", "critic_target_q": "critic_target_q",
           "critic_q1": "critic_q1", "critic_q2": "critic_q2", "critic_loss": "critic_loss",
           "actor_loss": "actor_loss"}
NOT_COMPUTED = ("actor_logprob", "actor_ent")
ATOL = 1e-6

pytestmark = pytest.mark.skipif(
    not PARITY.is_dir(),
    reason=f"{PARITY} is absent: the golden cases live in the shared/ folder beside the repo "
           "(a bare clone has none; CI has them)")


def load(case: str) -> tuple[dict, dict]:
    return (torch.load(PARITY / f"{case}.case.pt", weights_only=False),
            torch.load(PARITY / f"{case}.official.pt", weights_only=False))


def build(case: dict):
    """Protocol step 1: seed torch's global generator, then build the agent."""
    config = {k: v for k, v in case["config"].items() if k not in NOT_AGENT_KEYS}
    torch.manual_seed(case["config"]["seed"])
    return AGENTS[case_kind(case)](**config)


def case_kind(case: dict) -> str:
    names = case["official_names"]
    if "encoder.aug.P" in names:
        return "alix"
    return "drm" if any(n.startswith("value_predictor.") for n in names) else "drqv2"


def parameter(agent, official_name: str) -> torch.Tensor:
    """Our tensor for an official parameter name."""
    net, rest = official_name.split(".", 1)
    if isinstance(agent, ALIXAgent) and net == "encoder":
        if rest == "aug.P":
            return agent.encoder.S
        _, index, kind = rest.split(".")  # convnet.{0,3,6,9}: conv, ReLU, LIX, ...
        return getattr(agent.encoder.convs[int(index) // 3], kind)
    return getattr(agent, net).get_parameter(rest)


def max_abs_diff(ours, theirs) -> float:
    return max(((a.detach().double() - b.double()).abs().max().item() for a, b in zip(ours, theirs)),
               default=0.0)


def run_protocol(name: str):
    """The README's protocol, steps 1-5; returns the agent, its metrics and the official file."""
    case, official = load(name)
    agent = build(case)
    with torch.no_grad():
        for official_name, value in zip(case["official_names"], case["params"]):
            parameter(agent, official_name).copy_(value)
    agent.critic_target.load_state_dict(agent.critic.state_dict())
    agent.aug = nn.Identity()
    agent.stddev = lambda step: 0.0  # the update's std; DrM's scalars are read without it
    batch = tuple(case["batch"][k] for k in ("obs", "action", "reward", "discount", "next_obs"))
    if "update_seed" in case:
        torch.manual_seed(case["update_seed"])
    metrics = agent.update(batch, case["step"])
    del agent.stddev
    return agent, case, official, metrics


def our_side(name: str) -> dict:
    """Our side of one case: the initial weights built from its seed, then one update under
    the protocol, with everything the official file records."""
    case, _ = load(name)
    fresh = build(case)
    initial = [parameter(fresh, n).detach().clone() for n in case["official_names"]]
    agent, case, _, metrics = run_protocol(name)
    out = {"initial": initial, "metrics": metrics,
           "params": [parameter(agent, n).detach().clone() for n in case["official_names"]],
           "critic_target": [p.detach().clone() for p in agent.critic_target.parameters()]}
    if isinstance(agent, DrMAgent):
        out["scalars"] = {"dormant_ratio": agent.dormant_ratio, "lambda_": agent.exploit_lambda(),
                          "stddev": agent.stddev(case["step"]), "awaken_step": agent.awaken_step}
    if isinstance(agent, ALIXAgent):
        out["scalars"] = {"S_used": initial[case["official_names"].index("encoder.aug.P")].item(),
                          "S_after": agent.encoder.S.item()}
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    """`our_side` of every case, computed in one subprocess with the AVX2 kernels, 2 threads."""
    path = tmp_path_factory.mktemp("parity") / "ours.pt"
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2",
           "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, __file__, str(path)], env=env, capture_output=True,
                          text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(path, weights_only=False)


@pytest.mark.parametrize("name", CASES)
def test_built_from_the_seed_the_agent_has_the_official_initial_weights(name, results):
    case, _ = load(name)
    mismatched = [n for n, a, b in zip(case["official_names"], results[name]["initial"], case["params"])
                  if not torch.equal(a, b)]
    assert not mismatched, f"initial weights differ from the official ones: {mismatched}"


@pytest.mark.parametrize("name", CASES)
def test_one_update_equals_the_official_update(name, results):
    ours = results[name]
    _, official = load(name)
    assert max_abs_diff(ours["params"], official["params"]) <= ATOL
    assert max_abs_diff(ours["critic_target"], official["critic_target"]) <= ATOL
    assert set(official["metrics"]) <= set(METRICS) | set(NOT_COMPUTED), "an unmapped official metric"
    for theirs, mine in METRICS.items():
        if theirs in official["metrics"]:
            assert ours["metrics"][mine] == pytest.approx(official["metrics"][theirs], abs=ATOL), theirs
    if "lambda_" in official["scalars"]:
        assert ours["metrics"]["exploit_lambda"] == pytest.approx(official["scalars"]["lambda_"], abs=ATOL)
    assert set(ours.get("scalars", {})) == set(official["scalars"])
    for key, value in official["scalars"].items():
        assert ours["scalars"][key] == pytest.approx(value, abs=ATOL), key


def test_every_parameter_of_our_agents_is_in_the_cases():
    """The cases cover every parameter, so matching them leaves nothing unchecked."""
    for name in CASES:
        case, _ = load(name)
        agent = build(case)
        covered = {id(parameter(agent, n)) for n in case["official_names"]}
        assert len(covered) == len(case["official_names"])
        nets = ["encoder", "actor", "critic"] + (["value_predictor"] if isinstance(agent, DrMAgent) else [])
        for net in nets:
            assert all(id(p) in covered for p in getattr(agent, net).parameters()), (name, net)


if __name__ == "__main__":  # the subprocess of `results`
    torch.set_num_threads(2)
    torch.save({name: our_side(name) for name in CASES}, sys.argv[1])
