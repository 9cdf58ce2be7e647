"""Bad input to the training cell is refused early, by name, and never costs existing results."""
import os
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
    from drm.cell import rendering

    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert rendering.choose_backend() == "MUJOCO_GL=osmesa (set by the user)"


def test_without_a_backend_one_is_chosen_and_named(monkeypatch):
    from drm.cell import rendering

    monkeypatch.delenv("MUJOCO_GL", raising=False)
    line = rendering.choose_backend()
    import os

    assert os.environ["MUJOCO_GL"] in rendering.CANDIDATES and os.environ["MUJOCO_GL"] in line



def refusal(monkeypatch, capsys, *args, one_line=True, **overrides) -> str:
    """The error of the cell's entry point, run in this process with the environment class
    replaced: a refusal that came only after building an environment fails the test."""
    import drm.cell.dmc
    import drm.train

    def built(*args, **kwargs):
        raise AssertionError("an environment was built before the refusal")

    monkeypatch.setattr(drm.cell.dmc, "PixelEnv", built)
    command = cell_command(overrides.pop("out_dir"), "drqv2", **overrides)[3:] + list(args)
    monkeypatch.setattr(sys, "argv", ["drm.train", *command])
    with pytest.raises(SystemExit) as stopped:
        drm.train.cli()
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 2 and err.startswith("drm.train: error: "), err
    assert not one_line or "\n" not in err, err
    return err


@pytest.mark.parametrize("arg, expected", [
    ("+num_train_frame=2000", "unknown config key 'num_train_frame' (value '2000'); did you mean num_train_frames?"),
    ("num_train_frame=2000", "unknown config key 'num_train_frame' (value '2000'); did you mean num_train_frames?"),
    ("agent.expectile=0.9", "unknown config key 'agent.expectile' (value '0.9'); it is a key of agent drm, not of drqv2."),
    ("++agent.hiden_dim=8", "unknown config key 'agent.hiden_dim' (value '8'); did you mean agent.hidden_dim?"),
])
def test_unknown_keys_are_refused_with_or_without_plus(tmp_path, monkeypatch, capsys, arg, expected):
    assert expected in refusal(monkeypatch, capsys, arg, out_dir=tmp_path / "cell")
    assert not (tmp_path / "cell").exists()


def test_a_plus_before_a_known_key_is_dropped_and_hydra_flags_pass():
    from drm.cell import config

    assert config.check_command_line(["agent=drm", "+num_train_frames=2000", "agent.expectile=0.8",
                                      "--cfg", "job", "hydra.run.dir=."]) == [
        "agent=drm", "num_train_frames=2000", "agent.expectile=0.8", "--cfg", "job", "hydra.run.dir=."]


def test_an_unquoted_schedule_is_read_as_the_string_it_is(tmp_path, monkeypatch, capsys):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from drm.cell import config

    args = config.check_command_line(["agent=drm", "agent.stddev_schedule=step_linear(1,0.1,5,0.05,9)",
                                      "stddev_schedule=linear(1.0,0.1,500)"])
    values = [o.value() for o in OverridesParser.create().parse_overrides(args)]
    assert values == ["drm", "step_linear(1,0.1,5,0.05,9)", "linear(1.0,0.1,500)"]
    # linear(1,0.1) lacks its duration: the schedule check names the accepted forms
    line = refusal(monkeypatch, capsys, "stddev_schedule=linear(1,0.1)", out_dir=tmp_path / "cell")
    assert "stddev_schedule 'linear(1,0.1)' is not a number, 'linear(init,final,duration)'" in line


def test_a_missing_out_dir_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["drm.train", "agent=drqv2", "task=cartpole_balance"])
    import drm.train

    with pytest.raises(SystemExit) as stopped:
        drm.train.cli()
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "drm.train: error: out_dir is missing: give out_dir=<dir>, the directory the cell writes "
        "into (e.g. out_dir=results/runs/drqv2/cartpole_balance/seed1)")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value, expected", [
    ("bogus", "MUJOCO_GL='bogus' is invalid: must be egl or osmesa (headless) or glfw (with a display)"),
    ("glfw", "MUJOCO_GL=glfw needs a display and there is none"),
])
def test_a_rendering_backend_that_cannot_work_is_one_line(tmp_path, monkeypatch, capsys, value, expected):
    monkeypatch.setenv("MUJOCO_GL", value)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert expected in refusal(monkeypatch, capsys, out_dir=tmp_path / "cell")
    assert not (tmp_path / "cell").exists()


@pytest.mark.parametrize("value, expected", [
    (0, "threads=0 is invalid: must be null or an integer >= 1"),
    ("many", "threads='many' is invalid: must be null or an integer >= 1"),
])
def test_a_bad_thread_count_is_refused(tmp_path, monkeypatch, capsys, value, expected):
    assert expected in refusal(monkeypatch, capsys, out_dir=tmp_path / "cell", threads=value)


def test_the_thread_count_defaults_to_one_unless_told(monkeypatch):
    from drm.train import choose_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert choose_threads(None) == (1, "the default; threads=N for more")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads(None) == (3, "OMP_NUM_THREADS=3")
    assert choose_threads(2) == (2, "threads=2"), "the command line wins"
    monkeypatch.setenv("OMP_NUM_THREADS", "x")
    with pytest.raises(ValueError, match="OMP_NUM_THREADS='x' is invalid"):
        choose_threads(None)


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nobody may write to, root included: a read-only tmpfs (else chmod)."""
    path = tmp_path / "read-only"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs as root here: {mounted.stderr.strip()}")
    yield path
    subprocess.run(["umount", str(path)], check=True)


def test_an_unwritable_out_dir_is_refused_before_anything_is_built(read_only_dir, tmp_path, monkeypatch, capsys):
    line = refusal(monkeypatch, capsys, out_dir=read_only_dir / "cell")
    assert f"out_dir {read_only_dir / 'cell'} is not writable: Read-only file system" in line
    (tmp_path / "a-file").write_text("")
    line = refusal(monkeypatch, capsys, out_dir=tmp_path / "a-file" / "cell")
    assert f"out_dir {tmp_path / 'a-file' / 'cell'} is not writable: Not a directory" in line


def test_a_started_run_with_another_config_is_refused_before_anything_is_built(tmp_path, monkeypatch, capsys):
    out = tmp_path / "cell"
    (out / "work").mkdir(parents=True)
    saved = {"task": "cartpole_balance", "seed": 1, "batch_size": 256, "agent": {"name": "drqv2"}}
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    (out / "work" / "train.csv").write_text("frame\n500\n")
    err = refusal(monkeypatch, capsys, out_dir=out, one_line=False)  # with a line per difference
    assert "holds a started run with a different config" in err
    assert "batch_size: 256 (on disk) vs 16 (now)" in err
    assert sorted(p.name for p in (out / "work").iterdir()) == ["train.csv"], "not even a start is counted"
    assert yaml.safe_load((out / "config.yaml").read_text()) == saved


def test_a_user_set_backend_renders_whatever_pyopengl_platform_an_earlier_import_left(monkeypatch):
    """dm_control sets PYOPENGL_PLATFORM=egl when it is imported with EGL (as earlier tests in
    this process do); osmesa chosen afterwards used to fail its probe on that value."""
    from drm.cell import rendering

    monkeypatch.setenv("PYOPENGL_PLATFORM", "egl")
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert rendering.choose_backend() == "MUJOCO_GL=osmesa (set by the user)"
    assert os.environ["PYOPENGL_PLATFORM"] == "osmesa"
