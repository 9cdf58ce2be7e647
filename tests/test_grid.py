"""The workflow's grid logic (drm/grid.py), without Snakemake."""
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from drm import grid
from drm.cell.csvlog import CsvLog
from drm.cell.replay import ReplayBuffer
from drm.train import TRAIN_COLUMNS

CONFIG = {
    "agents": ["drm", "drqv2"], "tasks": ["hopper_hop", "dog_run"], "seeds": [1, 2],
    "train": {"device": "cpu", "threads": 1, "overrides": {"num_eval_episodes": 5},
              "agent_overrides": {"drm": {"agent.expectile": 0.8}},
              "task_overrides": {"dog_run": {"num_train_frames": 1_000_000}},
              "cell_overrides": {"drm/dog_run/2": {"batch_size": 128}}},
    "resources": {"jobs_per_gpu": 1, "mem_margin_mb": 1000, "frames_per_hour": 100_000,
                  "max_runtime_minutes": 600},
}


def with_(**changes):
    cfg = yaml.safe_load(yaml.safe_dump(CONFIG))
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            cfg[section][name] = value
        else:
            cfg[section] = value
    return cfg


def test_overrides_stack_global_agent_task_cell():
    assert grid.overrides_of(CONFIG, "drm", "dog_run", 2) == {
        "num_eval_episodes": 5, "agent.expectile": 0.8, "num_train_frames": 1_000_000, "batch_size": 128}
    assert grid.overrides_of(CONFIG, "drqv2", "hopper_hop", 1) == {"num_eval_episodes": 5}


def test_every_cell_is_composed_with_presets_and_overrides():
    cells = grid.compose_all(CONFIG)
    assert len(cells) == 8
    assert cells[("drm", "dog_run", 2)].batch_size == 128
    assert cells[("drm", "dog_run", 1)].agent.max_perturb_factor == 0.6
    assert cells[("drqv2", "hopper_hop", 1)].num_train_frames == 3_100_000
    assert cells[("drm", "hopper_hop", 1)].agent.expectile == 0.8


def test_every_configured_task_is_a_control_suite_task():
    # The grid check passes these without importing dm_control (drm.cell.dmc.check_task).
    from drm.cell.dmc import check_task, task_names
    from drm.cell.presets import configured_tasks

    assert len(configured_tasks()) == 29  # 24 of DrQ-v2 and 6 more of DrM, less reach_duplo
    assert configured_tasks() <= set(task_names())
    with pytest.raises(ValueError, match="unknown task 'reach_duplo'"):
        check_task("reach_duplo")  # DrQ-v2 configures it, but it is not a Control Suite task


def test_composing_a_configured_task_imports_neither_dm_control_nor_torch():
    # What keeps the parse of the paper grid under 5 s (python -m drm.bench --parse).
    code = ("import sys; from drm.cell import config; config.compose('drm', 'hopper_hop', {}); "
            "print(sorted(m for m in ('dm_control', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("cfg, message", [
    (with_(agents=["drm", "ppo"]), "agents: unknown ['ppo']; valid agents: drqv2, drm, alix"),
    (with_(tasks=["dog_fly"]), "tasks: unknown ['dog_fly']; valid tasks: acrobot_swingup"),
    (with_(seeds=[1, 2, 2]), "seeds: duplicate entries [2]; each may appear once"),
    (with_(seeds=[1, "two"]), "seeds: [1, 'two'] must all be integers"),
    (with_(seeds=[1, -2]), "seeds: negative [-2]; seeds must be integers >= 0"),
])
def test_bad_grids_are_refused_by_name(cfg, message):
    with pytest.raises(grid.ConfigError, match=None) as err:
        grid.check_grid(cfg)
    assert message in str(err.value)


SCHEMA = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow" / "schemas" /
                         "config.schema.yaml").read_text())


@pytest.mark.parametrize("changes, message", [
    ({"agnets": ["drm"]}, "config key 'agnets' (value ['drm']) is unknown; did you mean 'agents'? "
                          "(accepted at the top level: agents, tasks, seeds, claims, train, resources, aggregate, validate)"),
    ({"task_overrides": {"dog_run": {}}}, "config key 'task_overrides' (value {'dog_run': {}}) is "
                                          "unknown; it belongs in the 'train' section (train.task_overrides)"),
    ({"train": {"device": "cpu", "overides": {}}}, "config key 'train.overides' (value {}) is unknown; "
                                                   "did you mean 'overrides'? (accepted in train: device,"),
])
def test_unknown_keys_get_one_line_with_a_did_you_mean(changes, message):
    with pytest.raises(grid.ConfigError) as err:
        grid.check_keys({**CONFIG, **changes}, SCHEMA)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_schema_error_is_one_line_naming_the_key():
    with pytest.raises(grid.ConfigError) as err:
        grid.check_schema({**CONFIG, "resources": {"jobs_per_gpu": 0}}, SCHEMA)
    assert str(err.value) == "resources.jobs_per_gpu: 0 is less than the minimum of 1"


def test_cells_differing_only_by_seed_share_one_composed_config():
    cells = grid.compose_all(CONFIG)
    assert cells[("drqv2", "hopper_hop", 1)] is cells[("drqv2", "hopper_hop", 2)]
    assert cells[("drm", "dog_run", 1)] is not cells[("drm", "dog_run", 2)], "a cell override"
    assert cells[("drm", "dog_run", 2)].seed == 2, "composed with its own seed"


def test_every_cell_is_checked_with_its_own_seed(monkeypatch):
    checked = []
    monkeypatch.setattr(grid.cell_config, "check_seed", checked.append)
    grid.compose_all(CONFIG)
    assert checked.count(1) >= 4 and checked.count(2) >= 4, "every cell's seed, composed or not"


@pytest.mark.parametrize("key", ["seed", "task", "agent", "out_dir"])
@pytest.mark.parametrize("where, train", [
    ("train.overrides", lambda key: {"overrides": {key: 3}}),
    ("train.agent_overrides.drm", lambda key: {"agent_overrides": {"drm": {key: 3}}}),
    ("train.task_overrides.dog_run", lambda key: {"task_overrides": {"dog_run": {key: 3}}}),
    ("train.cell_overrides['drm/dog_run/2']", lambda key: {"cell_overrides": {"drm/dog_run/2": {key: 3}}}),
])
def test_the_grids_own_keys_are_refused_in_override_maps(key, where, train):
    cfg = with_(train={**CONFIG["train"], "overrides": {}, "agent_overrides": {},
                       "task_overrides": {}, "cell_overrides": {}, **train(key)})
    with pytest.raises(grid.ConfigError) as err:
        grid.compose_all(cfg)
    message = str(err.value)
    assert message.startswith(f"{where}: {key!r} (value 3) cannot be overridden; a cell's {key} is ")
    assert ("results/runs/{agent}/{task}/seed{seed}" if key == "out_dir" else f"{key}s list") in message
    assert "\n" not in message


@pytest.mark.parametrize("train, message", [
    ({"overrides": {"num_train_frames": 2000}},
     "cell drm/hopper_hop/1: num_seed_frames=4000 is invalid: must be an integer in [0, num_train_frames=2000]"),
    ({"overrides": {"num_trian_frames": 2000}}, "unknown config key 'num_trian_frames'"),
    ({"task_overrides": {"dog_run": {"agent.expectle": 0.9}}},
     "(given in train.task_overrides.dog_run); did you mean 'agent.expectile'?"),
    ({"cell_overrides": {"drm/dog_run/7": {}}}, "train.cell_overrides: ['drm/dog_run/7'] name no cell"),
    ({"agent_overrides": {"alx": {}}}, "train.agent_overrides: 'alx' is neither in the grid's"),
    ({"task_overrides": {"dog_rn": {}}}, "train.task_overrides: 'dog_rn' is neither in the grid's"),
])
def test_bad_overrides_are_refused_before_any_job(train, message):
    cfg = with_(train={**CONFIG["train"], "overrides": {}, "agent_overrides": {},
                       "task_overrides": {}, "cell_overrides": {}, **train})
    with pytest.raises(grid.ConfigError) as err:
        grid.compose_all(cfg)
    assert message in str(err.value)


def test_overrides_of_known_agents_and_tasks_outside_the_grid_are_ignored():
    """A config layered over another (config/validate_cpu.yaml) may train fewer agents or tasks."""
    cfg = with_(train={**CONFIG["train"], "agent_overrides": {"alix": {"agent.hidden_dim": 64}},
                       "task_overrides": {"walker_run": {"batch_size": 8}}, "cell_overrides": {}})
    assert len(grid.compose_all(cfg)) == 8


def test_more_gpu_slots_than_gpus_are_refused(monkeypatch):
    monkeypatch.delenv("DRM_GPU_SLOTS", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cfg = with_(train={**CONFIG["train"], "device": "cuda"})
    with pytest.raises(grid.ConfigError, match=r"gpu=3 asks for more GPU slots than exist: 2 GPUs \(0,1\) x "
                                               r"resources.jobs_per_gpu=1 = 2"):
        grid.claim_local_gpus(cfg, gpu_limit=3, gpus=["0", "1"])
    with pytest.raises(grid.ConfigError, match=r"no GPU is visible here \(nvidia-smi -L lists none\)"):
        grid.claim_local_gpus(cfg, gpu_limit=None, gpus=[])
    grid.claim_local_gpus(cfg, gpu_limit=2, gpus=["0", "1"])
    assert os.environ["DRM_GPU_SLOTS"] == "0,1"
    cfg["resources"]["jobs_per_gpu"] = 2
    grid.claim_local_gpus(cfg, gpu_limit=4, gpus=["2", "3"])
    assert os.environ["DRM_GPU_SLOTS"] == "2,3,2,3", "round-robin over the user's GPUs"


@pytest.mark.parametrize("visible, gpus", [("2,3", ["2", "3"]), ("", []), ("-1", []),
                                           ("GPU-5e1a", ["GPU-5e1a"])])
def test_the_gpu_count_honours_cuda_visible_devices(monkeypatch, visible, gpus):
    """The user's CUDA_VISIBLE_DEVICES, not nvidia-smi, says which GPUs the grid may use."""
    monkeypatch.delenv("DRM_GPU_SLOTS", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert grid.detected_gpus() == gpus
    cfg = with_(train={**CONFIG["train"], "device": "cuda"})
    if gpus:
        grid.claim_local_gpus(cfg, gpu_limit=None, gpus=grid.detected_gpus())
        assert os.environ["DRM_GPU_SLOTS"] == ",".join(gpus)
    else:
        with pytest.raises(grid.ConfigError, match=rf"no GPU is visible here \(CUDA_VISIBLE_DEVICES="
                                                   rf"'{visible}' names none\)"):
            grid.claim_local_gpus(cfg, gpu_limit=None, gpus=grid.detected_gpus())


def test_hydra_args_survive_the_shell_and_hydras_grammar():
    args = grid.hydra_args({"stddev_schedule": "linear(1.0,0.1,500)", "agent.perturb": False,
                            "lr": 8.0e-5, "num_train_frames": 1000, "agent.target_lambda": None})
    assert shlex.split(args) == ["stddev_schedule='linear(1.0,0.1,500)'", "agent.perturb=false",
                                 "lr=8e-05", "num_train_frames=1000", "agent.target_lambda=null"]


def test_resources_follow_the_replay_and_the_frame_budget():
    cells = grid.compose_all(CONFIG)
    dog = cells[("drqv2", "dog_run", 1)]
    per_step = ReplayBuffer.max_bytes_per_step()  # the replay's own figure, about 21.4 KB
    assert 21_300 < per_step < 21_500
    assert grid.mem_mb(dog, 1000) == 1000 + math.ceil(1_000_000 * per_step / 2**20)
    left = grid.training_left(dog.num_train_frames, CONFIG["resources"], None)
    assert left == (1_000_000, 100_000)
    assert grid.runtime_minutes(left, 10**6, attempt=1) == 10 * 60 * 1.25 + 10  # 1M frames at 100k/h
    assert grid.runtime_minutes(left, 10**6, attempt=2) == 10 * 60 * 1.25 * 2 + 10
    assert grid.runtime_minutes(left, 600, attempt=1) == 600, "capped"


# (frames left, frames per hour, max_runtime_minutes) -> (the time limit a job asks for, the jobs
# the cell needs, the jobs Snakemake allows it with the SLURM profile's retries: 2). Each job
# trains for its limit less 10 minutes of start: at 200k frames/h a 30.1M-frame cell trains
# 150.5 h x 1.25 = 11288 min, 4 jobs of 2880 min, where 3 (1 + retries: 2) fell short.
LONG_CELLS = [
    pytest.param(30_100_000, 200_000, 2880, 2880, 4, 6, id="30.1M frames, 48 h partition"),
    pytest.param(30_100_000, 200_000, 1440, 1440, 8, 10, id="30.1M frames, 24 h partition"),
    pytest.param(30_100_000, 100_000, 2880, 2880, 8, 10, id="30.1M frames at half the speed"),
    pytest.param(3_100_000, 200_000, 2880, 1173, 1, 3, id="3.1M frames"),
    pytest.param(1_100_000, 200_000, 2880, 423, 1, 3, id="1.1M frames"),
    pytest.param(1_100_000, 200_000, 240, 240, 2, 4, id="1.1M frames, 4 h partition"),
    pytest.param(1_000_000, 100_000, 600, 600, 2, 4, id="1M frames, 10 h cap"),
    pytest.param(0, 200_000, 2880, 10, 1, 3, id="nothing left"),
]


@pytest.mark.parametrize("frames, per_hour, max_minutes, runtime, jobs, allowed", LONG_CELLS)
def test_a_long_cell_spans_as_many_time_limited_jobs_as_it_needs(frames, per_hour, max_minutes,
                                                                 runtime, jobs, allowed):
    left = (frames, per_hour)
    assert grid.runtime_minutes(left, max_minutes, attempt=1) == runtime
    assert grid.jobs_needed(left, max_minutes) == jobs
    training = frames / per_hour * 60 * grid.SPEED_SLACK  # minutes, with the slack
    per_job = max_minutes - grid.START_MINUTES
    assert jobs * per_job >= training > (jobs - 1) * per_job or jobs == 1, "enough jobs, and no more"
    # The train rule's retries follow the grid's longest cell; a 1.1M-frame cell beside it.
    assert 1 + grid.train_retries(2, [grid.jobs_needed((1_100_000, 200_000), max_minutes), jobs]) == allowed


def test_the_measured_speed_of_a_started_cell_replaces_the_configured_one(tmp_path):
    """A cell's work/train.csv, as the cell writes it: frames and training seconds so far."""
    run = tmp_path / "seed1"
    assert grid.trained_so_far(run) is None, "not started"
    (run / "work").mkdir(parents=True)
    log = CsvLog(run / "work" / "train.csv", TRAIN_COLUMNS + ["actor_loss"])
    log.truncate(0)
    assert grid.trained_so_far(run) is None, "no episode yet"
    for episode in range(1, 2001):  # a long log: only its last row is read
        log.write({"frame": episode * 1000, "step": episode * 500, "episode": episode,
                   "total_time": episode * 14.4, "fps": 69.4, "actor_loss": 0.5})
    progress = grid.trained_so_far(run)
    assert progress == (2_000_000, 2000 * 14.4)
    resources = {**CONFIG["resources"], "frames_per_hour": 200_000}
    frames, per_hour = grid.training_left(30_100_000, resources, progress)
    assert frames == 28_100_000 and per_hour == pytest.approx(250_000)  # 1000 frames per 14.4 s
    assert grid.training_left(30_100_000, resources, None) == (30_100_000, 200_000)
    # 28.1M frames at 250k/h: 140.5 h x 1.25 = 8430 min of training, 3 jobs of 2880 min
    assert grid.jobs_needed((frames, per_hour), 2880) == 3
    assert grid.training_left(2_000_000, resources, progress) == (0, pytest.approx(250_000))




def test_the_cost_of_a_small_grid_is_stated_before_it_starts(tmp_path):
    """Two agents x one task x two seeds, 4,000 frames each: one cell done, one started, two not."""
    cfg = with_(agents=["drm", "drqv2"], tasks=["cartpole_balance"],
                train__overrides={"num_train_frames": 4000, "num_seed_frames": 1000, "episode_frames": 500,
                                  "snapshot_every_frames": 1000, "replay_buffer_size": 1500},
                train__agent_overrides={}, train__task_overrides={}, train__cell_overrides={},
                resources__frames_per_hour=4000)
    composed = grid.compose_all(cfg)
    done = tmp_path / "drm" / "cartpole_balance" / "seed1"
    done.mkdir(parents=True)
    (done / "meta.json").write_text("{}")
    started = tmp_path / "drm" / "cartpole_balance" / "seed2" / "work"
    started.mkdir(parents=True)
    log = CsvLog(started / "train.csv", TRAIN_COLUMNS)
    log.truncate(0)
    log.write({"frame": 2000, "step": 1000, "episode": 4, "total_time": 3600.0})  # 2,000 frames an hour

    left = grid.cells_left(cfg, composed, tmp_path)
    cost = grid.grid_cost(cfg, composed, left, grid.cells_at_once(cfg, 3, None, 4, None))
    # a stored step: a 3x84x84 uint8 frame, 56 float32 actions (the widest), reward and discount
    # (float32), the episode's first step (int64)
    per_step = 3 * 84 * 84 + 4 * 56 + 4 + 4 + 8
    assert per_step == ReplayBuffer.max_bytes_per_step() == 21_408
    # DrM's snapshot (the largest): encoder, actor, critic, value net, each with Adam's two moments,
    # and the target critic; feature_dim 50, hidden 1024, 56 actions, 9 input channels
    trunk = 39_200 * 50 + 50 + 2 * 50
    encoder = 9 * 9 * 32 + 32 + 3 * (32 * 9 * 32 + 32)
    actor = trunk + (50 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 * 56 + 56)
    critic = trunk + 2 * ((106 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 + 1))
    value = trunk + (50 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 + 1)
    snapshot = 4 * (3 * (encoder + actor + critic + value) + critic) + 2**20
    assert snapshot == 4 * 35_760_367 + 2**20
    # replay chunks: 8 episodes of 250 steps and their reset step, 2,008 steps, fewer than the
    # ring (1,500) and three snapshot intervals (2 episodes: 502 steps) hold
    chunks = 2008 * per_step
    assert cost == grid.Cost(
        cells=4, frames=16_000, cells_left=3, frames_left=2000 + 2 * 4000,
        hours_left=2000 / 2000 + 2 * 4000 / 4000, longest_hours=1.0, measured=1,
        others_speed="resources.frames_per_hour, 4,000", unit="CPU job-hours",
        ram_mb=math.ceil(1500 * per_step / 2**20 + 1000), ring_mb=math.ceil(1500 * per_step / 2**20),
        disk_bytes=chunks + 3 * snapshot, chunk_bytes=chunks, snapshot_bytes=snapshot,
        at_once=3, at_once_why="every cell left")
    assert cost.ram_mb == 1031 and cost.disk_bytes == 475_257_396
    assert cost.lines() == [
        "cost: 4 cells, 16,000 frames; to train: 3 cells, 10,000 frames, about 3.0 CPU job-hours (1 at "
        "their measured speed, the others at resources.frames_per_hour, 4,000)",
        "  per running cell, at most: RAM 1.0 GiB (replay ring 31 MiB + resources.mem_margin_mb), "
        "disk 453 MiB (replay chunks 41 MiB + 3 snapshots of 137 MiB)",
        "  3 cell(s) at once (every cell left): RAM 3.0 GiB, disk 1.3 GiB, at least 1.0 h to train the rest"]


def test_the_cells_at_once_follow_jobs_cores_and_gpu_slots():
    cuda = with_(train__device="cuda", train__threads=4)
    assert grid.cells_at_once(cuda, 240, 100, 8, None) == (100, "--jobs 100")
    assert grid.cells_at_once(cuda, 240, None, 32, None) == (8, "32 cores / train.threads 4")
    assert grid.cells_at_once(cuda, 240, None, 32, 2) == (2, "2 GPU slots")
    assert grid.cells_at_once(cuda, 240, None, 2, None) == (1, "2 cores / train.threads 4")
    assert grid.cells_at_once(with_(train__threads=4), 240, None, 32, 2) == (8, "32 cores / train.threads 4")
    assert grid.cells_at_once(cuda, 5, 100, None, None) == (5, "every cell left")
