"""Bad input to the training cell is refused early, by name, and never costs existing results."""
import subprocess
import sys

import pytest
import yaml

from helpers import REPO, cell_command


def run(out_dir, agent="drqv2", task="cartpole_balance", **overrides):
    return subprocess.run(cell_command(out_dir, agent, task, **overrides), cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("overrides, expected", [
    ({"num_train_frames": -10}, "num_train_frames=-10 is invalid: must be an integer >= 1"),
    ({"num_seed_frames": 5000}, "num_seed_frames=5000 is invalid: must be an integer in [0, num_train_frames=2000]"),
    ({"batch_size": 64, "replay_buffer_size": 32}, "batch_size=64 is invalid: must be <= replay_buffer_size=32"),
    ({"episode_frames": 501}, "episode_frames=501 is invalid: must be a multiple of action_repeat=2"),
    ({"device": "tpu"}, "device='tpu' is invalid: must be auto, cpu, cuda or cuda:N"),
    ({"stddev_schedule": "'cosine(1,0)'"}, "is not a number, 'linear(init,final,duration)'"),
])
def test_impossible_numbers_are_refused_before_anything_is_built(tmp_path, overrides, expected):
    done = run(tmp_path / "cell", **overrides)
    assert done.returncode == 2
    assert expected in done.stderr
    assert not (tmp_path / "cell").exists(), "a refused start writes nothing"


def test_unknown_task_lists_the_valid_ones(tmp_path):
    done = run(tmp_path / "cell", task="cheetah_fly")
    assert done.returncode == 2
    assert "unknown task 'cheetah_fly'; valid tasks:" in done.stderr
    assert "cheetah_run" in done.stderr and "dog_trot" in done.stderr and "cup_catch" in done.stderr


def test_unknown_agent_lists_the_valid_ones(tmp_path):
    done = run(tmp_path / "cell", agent="sac")
    assert done.returncode != 0
    assert "agent/sac" in done.stderr and "drqv2" in done.stderr and "drm" in done.stderr


def test_an_out_dir_with_another_config_is_refused_and_kept(tmp_path):
    out = tmp_path / "cell"
    out.mkdir()
    first = run(out, num_train_frames=4000, num_seed_frames=9999)  # refused: nothing written
    assert first.returncode == 2 and not any(out.iterdir())
    saved = {"task": "cartpole_balance", "seed": 1, "batch_size": 256, "agent": {"name": "drqv2"}}
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    (out / "meta.json").write_text("{}")
    (out / "eval.csv").write_text("frame,episode_reward\n0,1.0\n")
    done = run(out)
    assert done.returncode == 2
    assert "holds a finished run with a different config" in done.stderr
    assert "batch_size: 256 (on disk) vs 16 (now)" in done.stderr
    assert (out / "eval.csv").read_text() == "frame,episode_reward\n0,1.0\n"
    assert yaml.safe_load((out / "config.yaml").read_text()) == saved


def test_a_user_set_rendering_backend_is_respected(monkeypatch):
    from drm import rendering

    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert rendering.choose_backend() == "MUJOCO_GL=osmesa (set by the user)"


def test_without_a_backend_one_is_chosen_and_named(monkeypatch):
    from drm import rendering

    monkeypatch.delenv("MUJOCO_GL", raising=False)
    line = rendering.choose_backend()
    import os

    assert os.environ["MUJOCO_GL"] in rendering.CANDIDATES and os.environ["MUJOCO_GL"] in line
