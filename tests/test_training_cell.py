"""The training cell end to end on the CPU: contract files, same seed, kill and resume. The
reference run is the tiny grid's DrQ-v2 cell, trained by the workflow with the same settings."""
import json

import pytest
import yaml

from helpers import kill_and_resume, read_csv, run_cell, without_wall_clock
from workflow_helpers import grid_cell

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference_run(tiny_grid):
    return grid_cell(tiny_grid, "drqv2")


def test_cell_writes_the_contract_files(reference_run):
    out = reference_run
    evals = read_csv(out / "eval.csv")
    assert [int(r["frame"]) for r in evals] == [0, 1000, 2000], "from frame 0, every 1000, and the final frame"
    assert {"frame", "step", "episode", "episode_reward", "total_time"} <= set(evals[0])
    assert all(int(r["step"]) * 2 == int(r["frame"]) for r in evals)

    train = read_csv(out / "train.csv")
    assert [int(r["frame"]) for r in train] == [500, 1000, 1500, 2000]
    for column in ("frame", "step", "episode", "episode_reward", "fps", "actor_dormant_ratio"):
        assert column in train[0]
    assert train[0]["actor_dormant_ratio"] == "", "no update before the seed frames"
    ratios = [float(r["actor_dormant_ratio"]) for r in train[2:]]
    assert all(0.0 <= x <= 1.0 for x in ratios)

    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["agent"]["name"] == "drqv2" and cfg["batch_size"] == 16
    assert cfg["lr"] == 1.0e-4 and cfg["stddev_schedule"] == "linear(1.0,0.1,100000)", "presets filled in"

    meta = json.loads((out / "meta.json").read_text())
    assert meta["frames"] == 2000 and meta["starts"] == 1
    assert meta["git"]["commit"] and meta["packages"]["torch"].startswith("2.13")
    assert meta["packages"]["mujoco"] and meta["packages"]["dm_control"]
    assert cfg["deterministic"] is False and cfg["agent"]["replay_sample_running_episode"] is False
    assert meta["determinism"]["deterministic_algorithms"] is False
    assert meta["determinism"]["cudnn_benchmark"] is True  # the official codes' setting
    for key in ("device", "hostname", "mujoco_gl", "slurm_job_id", "gpu"):
        assert key in meta["machine"]
    assert meta["started_at"] < meta["finished_at"]
    assert not (out / "work").exists(), "snapshot and partial logs are removed at the end"


def test_killed_and_resumed_run_ends_with_the_same_files(reference_run, tmp_path):
    """Also the batch pipeline's check on a real cell: the reference draws its batches ahead in
    a thread (the default), this run serially (prefetch_batches=false), killed and resumed."""
    kill_and_resume(tmp_path, "drqv2", prefetch_batches="false")
    for name in ("eval.csv", "train.csv"):
        assert without_wall_clock(read_csv(tmp_path / name)) == without_wall_clock(read_csv(reference_run / name))
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["starts"] == 2
    assert meta["batches"]["drawn_ahead"] == 0
    reference = json.loads((reference_run / "meta.json").read_text())["batches"]
    assert reference["drawn_ahead"] > 10 * reference["drawn_serially"], "most batches were drawn ahead"


def test_same_seed_twice_gives_identical_returns_filmed_or_not(reference_run, tmp_path):
    """Killed before its first snapshot, so the second start trains from scratch; and neither
    filmed nor logged to TensorBoard, which the reference is: the returns do not depend on it."""
    kill_and_resume(tmp_path, "drqv2", kill_when=lambda d: (d / "work" / "eval.csv").exists(),
                    save_video="false", loggers="[]")
    assert without_wall_clock(read_csv(tmp_path / "eval.csv")) == without_wall_clock(read_csv(reference_run / "eval.csv"))
    assert json.loads((tmp_path / "meta.json").read_text())["starts"] == 2, "a start without a snapshot counts"
    assert sorted(p.name for p in (reference_run / "videos").iterdir()) == ["0.mp4", "1000.mp4", "2000.mp4"]
    assert list(reference_run.glob("events.out.tfevents.*")), "the reference logged to TensorBoard"
    assert not (tmp_path / "videos").exists(), "save_video=false: nothing filmed"
    assert not list(tmp_path.glob("events.out.tfevents.*")), "loggers=[]: no event file"


def test_a_finished_run_is_not_trained_again(reference_run):
    before = (reference_run / "eval.csv").read_bytes()
    done = run_cell(reference_run, "drqv2")
    assert "already finished" in done.stderr
    assert (reference_run / "eval.csv").read_bytes() == before


def test_different_seed_gives_different_returns(reference_run, tmp_path):
    # Only the evaluation at frame 0 is compared: the shortest cell that makes it.
    run_cell(tmp_path, "drqv2", seed=2, num_train_frames=500, num_seed_frames=500, eval_every_frames=500,
             save_video="false")
    assert read_csv(tmp_path / "eval.csv")[0]["episode_reward"] != read_csv(reference_run / "eval.csv")[0]["episode_reward"]
