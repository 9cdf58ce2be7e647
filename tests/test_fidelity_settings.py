"""The settings that make a run the official code's (docs/fidelity.md): which episodes the
replay samples, and GPU determinism."""
import copy

import pytest
import torch

from baselines.alix import ALIXAgent
from baselines.drqv2 import DrQV2Agent
from drm.cell import config, provenance
from drm.agent import DrMAgent
from drm.train import check_determinism_possible, configure_determinism

TINY = dict(num_train_frames=4000, episode_frames=500)


@pytest.mark.parametrize("agent, running", [("drqv2", False), ("drm", False), ("alix", True)])
def test_replay_samples_the_running_episode_as_each_official_code_does(agent, running):
    assert config.compose(agent, "cheetah_run", TINY).agent.replay_sample_running_episode is running


def test_the_official_replay_needs_an_ended_episode_before_the_first_update():
    with pytest.raises(ValueError, match=r"num_seed_frames=400 is invalid: must be >= episode_frames=500 "
                                         r"when agent.replay_sample_running_episode=false"):
        config.compose("drqv2", "cheetah_run", {**TINY, "num_seed_frames": 400})
    config.compose("drqv2", "cheetah_run", {**TINY, "num_seed_frames": 500})
    config.compose("alix", "cheetah_run", {**TINY, "num_seed_frames": 400})
    config.compose("drqv2", "cheetah_run", {**TINY, "num_seed_frames": 400,
                                            "agent.replay_sample_running_episode": True})


@pytest.mark.parametrize("key, value", [("agent.replay_sample_running_episode", "yes"),
                                        ("deterministic", 1)])
def test_switches_must_be_booleans(key, value):
    with pytest.raises(ValueError, match=f"{key}={value!r} is invalid: must be true or false"):
        config.compose("drqv2", "cheetah_run", {**TINY, key: value})


def test_determinism_is_off_by_default():
    assert config.compose("drm", "cheetah_run", TINY).deterministic is False


@pytest.fixture
def restore_determinism():
    yield
    configure_determinism(False)
    torch.backends.cudnn.benchmark = False  # torch's default, as before the test


def test_deterministic_sets_the_torch_flags_and_meta_records_them(restore_determinism, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    configure_determinism(True)
    assert provenance.determinism() == {
        "deterministic_algorithms": True, "cudnn_deterministic": True, "cudnn_benchmark": False,
        "matmul_fp32_precision": "ieee", "cudnn_conv_fp32_precision": "ieee",
        "cublas_workspace_config": ":4096:8"}
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    configure_determinism(True)
    assert provenance.determinism()["cublas_workspace_config"] == ":16:8", "a user's value is kept"
    configure_determinism(False)
    recorded = provenance.determinism()
    assert (recorded["deterministic_algorithms"], recorded["cudnn_deterministic"], recorded["cudnn_benchmark"],
            recorded["matmul_fp32_precision"], recorded["cudnn_conv_fp32_precision"]) == (False, False, True, "ieee", "tf32")


@pytest.mark.parametrize("order", [(False,), (True,), (True, False), (False, True, False)])
def test_the_default_keeps_tf32_convolutions_and_fp32_matmuls(order, restore_determinism):
    """The official codes' GPU precision: cuDNN convolutions in TF32 (torch's default, which
    `none` turned off), matmuls in FP32; deterministic=true turns TF32 off everywhere. The last
    call decides, and with TF32 on torch's legacy flags still read back."""
    for deterministic in order:
        configure_determinism(deterministic)
    flags = (torch.backends.cudnn.conv.fp32_precision, torch.backends.cudnn.rnn.fp32_precision,
             torch.backends.cuda.matmul.fp32_precision)
    if order[-1]:
        assert flags == ("ieee", "ieee", "ieee")
    else:
        assert flags == ("tf32", "tf32", "ieee")
        assert torch.backends.cudnn.allow_tf32 is True and torch.backends.cuda.matmul.allow_tf32 is False
        assert torch.get_float32_matmul_precision() == "highest"


KW = dict(obs_shape=(9, 84, 84), action_shape=(2,), device="cpu", lr=1e-4, feature_dim=4,
          hidden_dim=16, critic_target_tau=0.01, num_expl_steps=10,
          stddev_schedule="linear(1.0,0.1,100)", stddev_clip=0.3)


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 256, (4, 9, 84, 84), dtype=torch.uint8, generator=g)
    return (obs, torch.rand(4, 2, generator=g) * 2 - 1, torch.rand(4, 1, generator=g),
            torch.full((4, 1), 0.99 ** 3), obs.flip(0))


@pytest.mark.parametrize("agent_class, extra", [
    (DrQV2Agent, {}), (ALIXAgent, {}),
    (DrMAgent, dict(max_perturb_factor=0.9, target_lambda=0.6, dormant_perturb_interval=10))])
def test_on_the_cpu_deterministic_mode_runs_every_agent_and_changes_no_number(
        agent_class, extra, restore_determinism):
    torch.manual_seed(0)
    proto = agent_class(**KW, **extra)
    results = []
    for deterministic in (False, True):
        configure_determinism(deterministic)
        agent = copy.deepcopy(proto)
        torch.manual_seed(1)
        agent.update(batch(), step=10)  # DrM: a perturbation step too
        results.append([p.detach().clone() for net in agent.networks() for p in net.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_deterministic_cuda_is_refused_for_an_agent_that_needs_a_nondeterministic_kernel():
    cuda = torch.device("cuda")
    with pytest.raises(ValueError, match=r"deterministic=true on cuda: ALIXAgent needs grid_sample's "
                                         r"backward \(the LIX layers\)"):
        check_determinism_possible(ALIXAgent, cuda, True)
    check_determinism_possible(ALIXAgent, cuda, False)
    check_determinism_possible(ALIXAgent, torch.device("cpu"), True)
    check_determinism_possible(DrMAgent, cuda, True)


def test_a_gpu_index_that_does_not_exist_is_refused_in_one_line(monkeypatch):
    """cuda:5 on a one-GPU machine, or cuda:abc, used to end in a torch traceback."""
    from drm.train import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"^device='cuda:5' but torch sees 1 CUDA device\(s\) here: use device=cuda or cuda:0$"):
        pick_device("cuda:5")
    assert pick_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match=r"device='cuda:abc' is invalid: must be auto, cpu, cuda or cuda:N"):
        config.check_device("cuda:abc")
