"""A tiny A-LIX cell on the CPU: S is logged and learns, and a killed run resumes bit for bit."""
import json
import math
from pathlib import Path

import pytest

from helpers import after_snapshot_of_episode, kill_and_resume, read_csv, run_cell, without_wall_clock

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("alix") / "reference"
    run_cell(out, "alix")
    return out


def test_tiny_run_logs_s_moving_away_from_its_init(reference):
    rows = read_csv(reference / "train.csv")
    assert [int(r["frame"]) for r in rows] == [500, 1000, 1500, 2000]
    # Episodes 1-2 are seed frames (no updates): S is still its init and no ND score exists.
    assert [float(r["lix_s"]) for r in rows[:2]] == [0.5, 0.5]
    assert rows[0]["lix_nd_score"] == rows[1]["lix_nd_score"] == ""
    # Episodes 3-4 hold 125 updates each: S has moved, inside [0, 1], and the ND score is logged.
    s, score = float(rows[2]["lix_s"]), float(rows[2]["lix_nd_score"])
    assert all(0.0 <= float(r["lix_s"]) <= 1.0 for r in rows[2:])
    assert abs(s - 0.5) > 0.01 and float(rows[3]["lix_s"]) != s
    assert all(math.isfinite(float(r["lix_nd_score"])) and float(r["lix_nd_score"]) >= 0 for r in rows[2:])
    # Over episode 3, S follows the sign of score - target (Adam moves it about lr per update).
    assert (s > 0.5) == (score > 0.535) or abs(score - 0.535) < 0.05


def test_kill_and_resume_reproduces_the_uninterrupted_run(reference, tmp_path):
    out = tmp_path / "killed"
    kill_and_resume(out, "alix", kill_when=after_snapshot_of_episode(3))
    assert "resumed from the snapshot at frame 1500" in (out / "train.log").read_text()
    assert json.loads((out / "meta.json").read_text())["starts"] == 2
    # Episode 4's train row and the final evaluation come from updates made after the resumption.
    for name in ("train.csv", "eval.csv"):
        assert without_wall_clock(read_csv(out / name)) == without_wall_clock(read_csv(reference / name))
