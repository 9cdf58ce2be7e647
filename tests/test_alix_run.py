"""A tiny A-LIX cell on the CPU: S is logged and learns, and a killed run resumes bit for bit,
logged to W&B (offline) as one run across its two starts. The reference run is the tiny grid's
A-LIX cell."""
import json
import math
from pathlib import Path

import pytest

from helpers import after_snapshot_of_episode, kill_and_resume, read_csv, without_wall_clock
from watching import events, wandb_history, wandb_records
from workflow_helpers import grid_cell

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tiny_grid) -> Path:
    return grid_cell(tiny_grid, "alix")


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


def test_kill_and_resume_reproduces_the_uninterrupted_run_as_one_wandb_run(reference, tmp_path, monkeypatch):
    """Killed in episode 4, right after the snapshot at frame 1500 (S and its optimiser trained
    for an episode), resumed: the same files as the uninterrupted run; one W&B run with the
    resolved config and every row, those since the snapshot before (frame 1000) logged again."""
    pytest.importorskip("wandb", reason="the optional W&B logger: pip install 'drm-repro[wandb]'")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for kind in ("CONFIG", "CACHE", "DATA"):
        monkeypatch.setenv(f"WANDB_{kind}_DIR", str(tmp_path / kind.lower()))
    out = tmp_path / "killed"

    # Killed at once: the train row logged just before the snapshot may not have reached W&B.
    kill_and_resume(out, "alix", kill_when=after_snapshot_of_episode(3), loggers="[tensorboard,wandb]")
    assert "resumed from the snapshot at frame 1500" in (out / "train.log").read_text()
    assert json.loads((out / "meta.json").read_text())["starts"] == 2
    # Episode 4's train row and the final evaluation come from updates made after the resumption.
    for name in ("train.csv", "eval.csv"):
        assert without_wall_clock(read_csv(out / name)) == without_wall_clock(read_csv(reference / name))

    run_files = sorted((out / "wandb").glob("offline-run-*/run-*.wandb"), key=lambda f: f.stat().st_mtime)
    assert len(run_files) == 2, "one offline record per start"
    records = [r for f in run_files for r in wandb_records(f)]
    runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert {(run.run_id, run.project, run.run_group, run.display_name) for run in runs} == {
        (runs[0].run_id, "drm-repro", "alix/cartpole_balance", "alix/cartpole_balance/seed1")}, "one run"
    logged_config = {u.key: u.value_json for u in runs[0].config.update}
    assert logged_config["batch_size"] == "16" and logged_config["lr"] == "0.0001", "the resolved config"
    history = wandb_history(records)
    evals = {(int(h["frame"]), h["eval/episode_reward"]) for h in history if "eval/episode_reward" in h}
    assert evals == {(int(r["frame"]), float(r["episode_reward"])) for r in read_csv(out / "eval.csv")}, \
        "every evaluation, with eval.csv's return"
    trains = {(int(h["frame"]), h["train/episode_reward"]) for h in history if "train/episode_reward" in h}
    assert trains == {(int(r["frame"]), float(r["episode_reward"])) for r in read_csv(out / "train.csv")}, \
        "every training episode, with train.csv's return"
    # The resumption logged again what was written between the snapshots at 1000 and 1500 (the
    # evaluation at 1000, episode 3's row), from the CSVs, with their values; nothing older.
    resumed = wandb_history(wandb_records(run_files[1]))
    again = [(int(h["frame"]), kind) for h in resumed for kind in ("eval", "train") if f"{kind}/episode_reward" in h]
    assert again[:2] == [(1000, "eval"), (1500, "train")] and again[2:] == [(2000, "train"), (2000, "eval")]
    assert next(h for h in resumed if "train/lix_s" in h)["train/lix_s"] == float(read_csv(out / "train.csv")[2]["lix_s"])
    first = [int(h["frame"]) for h in wandb_history(wandb_records(run_files[0])) if "train/episode_reward" in h]
    assert first[:2] == [500, 1000] and set(first) <= {500, 1000, 1500}, "the killed start's rows"
    assert any("train/lix_s" in h for h in history), "A-LIX's S"
    assert "train/lix_s" in events(out), "and in TensorBoard"
