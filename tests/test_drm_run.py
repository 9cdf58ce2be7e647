"""A tiny DrM cell on the CPU: the DrM columns, three perturbations, and a killed run that
resumes bit for bit (perturbation, Adam resets, beta and t0 all restored from the snapshot),
with each evaluation's video and TensorBoard scalar once. The reference run is the tiny grid's
DrM cell (tests/helpers.py's TINY_DRM)."""
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, TINY_DRM, kill_and_resume, read_csv, without_wall_clock
from watching import events, video_frames
from workflow_helpers import grid_cell

DRM_COLUMNS = ("actor_dormant_ratio", "stddev", "exploit_lambda", "perturb_count",
               "awaken_step", "v_loss")


@pytest.fixture(scope="module")
def reference(tiny_grid) -> Path:
    return grid_cell(tiny_grid, "drm")


@pytest.mark.slow
def test_tiny_run_writes_drm_columns_and_perturbs(reference):
    rows = read_csv(reference / "train.csv")
    assert all(c in rows[0] for c in DRM_COLUMNS)
    by_frame = {int(r["frame"]): r for r in rows}
    expected_count = {500: 0, 1000: 1, 1500: 2, 2000: 3}
    assert set(by_frame) == set(expected_count)
    for frame, row in by_frame.items():
        assert int(row["perturb_count"]) == expected_count[frame], frame
    assert by_frame[500]["actor_dormant_ratio"] == ""  # seed frames: no update yet
    for frame in (1000, 1500):
        row = by_frame[frame]
        assert 0.0 <= float(row["actor_dormant_ratio"]) <= 1.0
        assert 0.0 < float(row["stddev"]) <= 1.0
        assert 0.0 <= float(row["exploit_lambda"]) <= 0.6
        assert math.isfinite(float(row["v_loss"])) and float(row["v_loss"]) >= 0.0
        # t0 is empty until the actor wakes up, then an agent step past num_expl_steps.
        assert row["awaken_step"] == "" or 400 < float(row["awaken_step"]) <= int(row["step"])


@pytest.mark.slow
def test_kill_and_resume_reproduces_the_run_with_each_video_and_curve_once(reference, tmp_path):
    """Killed after its evaluation at frame 1000 reached the disk (video and event file) but
    before the next snapshot (one perturbation done, at frame 800); the resumption restores the
    snapshot at frame 1000, plays that evaluation again, perturbs at frames 1200 and 1600 and must
    match the uninterrupted run exactly, with each video and each scalar once."""
    out = tmp_path / "cell"
    seen_at_kill = tmp_path / "at_kill"

    def after_the_second_evaluation(d: Path) -> bool:
        evals, event_files = d / "work" / "eval.csv", sorted(d.glob("events.out.tfevents.*"))
        if not (evals.exists() and len(read_csv(evals)) == 2 and event_files):
            return False
        if event_files[-1].stat().st_mtime_ns < evals.stat().st_mtime_ns:
            return False  # the event file has not been flushed since
        shutil.copytree(d, seen_at_kill, ignore=shutil.ignore_patterns("work"))
        return True

    kill_and_resume(out, "drm", kill_when=after_the_second_evaluation, snapshot_every_frames=1000, **TINY_DRM)
    assert "resumed from the snapshot at frame 1000" in (out / "train.log").read_text()
    for name in ("train.csv", "eval.csv"):
        assert without_wall_clock(read_csv(out / name)) == without_wall_clock(read_csv(reference / name))

    assert (seen_at_kill / "videos" / "1000.mp4").exists()
    assert 1000 in [step for step, _ in events(seen_at_kill)["eval/episode_reward"]], \
        "the killed run had logged the evaluation its resumption plays again"
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["0.mp4", "1000.mp4", "2000.mp4"]
    for name in ("0.mp4", "1000.mp4", "2000.mp4"):
        frames = video_frames(out / "videos" / name)
        assert len(frames) == 500 // 2 + 1, "the reset and every agent step of a 500-frame episode"
        assert frames[0].std() > 10, "a rendered scene, not a blank"

    scalars = events(out)
    evals, trains = read_csv(out / "eval.csv"), read_csv(out / "train.csv")
    assert [step for step, _ in scalars["eval/episode_reward"]] == [0, 1000, 2000], "each once, in order"
    assert [value for _, value in scalars["eval/episode_reward"]] == pytest.approx(
        [float(r["episode_reward"]) for r in evals], rel=1e-6), "the values eval.csv holds"
    assert [step for step, _ in scalars["train/episode_reward"]] == [int(r["frame"]) for r in trains]
    for tag in ("train/fps", "train/actor_dormant_ratio", "train/critic_loss", "train/actor_loss",
                "train/stddev", "train/exploit_lambda", "train/v_loss", "train/perturb_count"):
        steps = [step for step, _ in scalars[tag]]
        assert steps == sorted(set(steps)) and steps, f"{tag}: {steps}"
    assert len(list(out.glob("events.out.tfevents.*"))) == 2, "one event file per start"
    assert not list(out.rglob("*.tmp*"))


@pytest.mark.parametrize("override, fragment", [
    ("agent.expectile=1.5", "agent.expectile=1.5 is outside its allowed range (0, 1)"),
    ("agent.dormant_temp=-10", "agent.dormant_temp=-10 is outside its allowed range [0, inf)"),
    ("agent.min_perturb_factor=0.95", "agent.min_perturb_factor=0.95"),
])
def test_bad_values_refused_before_training(tmp_path, override, fragment):
    """cheetah_run's preset max_perturb_factor is 1.0, so 0.95 is fine on its own; the third
    case sets max 0.5 explicitly."""
    extra = ["agent.max_perturb_factor=0.5"] if "min_perturb" in override else []
    done = subprocess.run(
        [sys.executable, "-m", "drm.train", "agent=drm", "task=cheetah_run", "seed=1",
         f"out_dir={tmp_path / 'cell'}", override, *extra],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert f"drm.train: error: {fragment}" in done.stderr
    assert not (tmp_path / "cell").exists(), "a refused start writes nothing"
