"""A tiny DrM cell on the CPU: the DrM columns, two perturbations, and a killed run that
resumes bit for bit (perturbation, Adam resets, beta and t0 all restored from the snapshot)."""
import math
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import after_snapshot_of_episode, REPO, kill_and_resume, read_csv, run_cell, without_wall_clock

# Updates from agent step 400 (frame 800), every 2 steps, to step 998; with a perturbation every
# 200 steps they perturb at steps 400 (beta = 1 then, alpha = 0.2), 600 and 800, so the
# train.csv rows at frames 1000 and 1500 have seen 1 and 2 perturbations.
DRM = {"num_seed_frames": 800, "agent.dormant_perturb_interval": 200, "agent.num_expl_steps": 400}
DRM_COLUMNS = ("actor_dormant_ratio", "stddev", "exploit_lambda", "perturb_count",
               "awaken_step", "v_loss")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("drm") / "reference"
    run_cell(out, "drm", **DRM)
    return out


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
def test_kill_and_resume_reproduces_the_uninterrupted_run(reference, tmp_path):
    """Killed in episode 4, after the snapshot at frame 1500 (2 perturbations done, Adam state
    rebuilt since); the resumed run perturbs again at step 800 and must match exactly."""
    out = tmp_path / "killed"
    kill_and_resume(out, "drm", kill_when=after_snapshot_of_episode(3), **DRM)
    assert "resumed from the snapshot at frame 1500" in (out / "train.log").read_text()
    for name in ("train.csv", "eval.csv"):
        assert without_wall_clock(read_csv(out / name)) == without_wall_clock(read_csv(reference / name))


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
