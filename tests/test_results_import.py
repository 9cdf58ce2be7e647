"""Importers and bad input: the harness's run folders, the published DrQ-v2 curves, tidy CSVs."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from drm.analysis import results

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "results" / "published" / "drqv2"
PUBLISHED_SOURCE = [dict(name="drqv2_published", path=str(PUBLISHED), format="drqv2")]
needs_published = pytest.mark.skipif(not PUBLISHED.is_dir(), reason=f"{PUBLISHED} is absent")


def write_run(root: Path, agent: str, task: str, seed: int, evals: dict | None = None,
              train: dict | None = None, finished: bool = True) -> Path:
    """A harness run folder; evals/train are column -> values."""
    run = root / agent / task / f"seed{seed}"
    run.mkdir(parents=True)
    evals = evals or dict(frame=[0, 10000, 20000], episode_reward=[10.0, 300.0, 600.0])
    n = len(evals["frame"])
    pd.DataFrame(dict(step=np.arange(n), episode=np.arange(n), total_time=np.arange(n), **evals)
                 ).to_csv(run / "eval.csv", index=False)
    if train is not None:
        pd.DataFrame(train).to_csv(run / "train.csv", index=False)
    if finished:
        (run / "meta.json").write_text(json.dumps({"frames": int(evals["frame"][-1])}))
    return run


def load_harness(root, tasks=("cheetah_run",), agents=("drm",), seeds=(1,), skip=False):
    return results.load(root, list(agents), list(tasks), list(seeds), [], skip)


@needs_published
def test_published_curves_become_tidy_runs():
    imported = results.load("unused", [], ["walker_walk", "hopper_hop"], [], PUBLISHED_SOURCE, False)
    tidy = imported.tidy
    assert list(tidy.columns) == results.TIDY_COLUMNS
    assert set(tidy["source"]) == {"drqv2_published"} and set(tidy["agent"]) == {"drqv2"}
    per_task = tidy.groupby("task")["seed"].nunique().to_dict()
    assert per_task == {"walker_walk": 10, "hopper_hop": 9}
    assert len(tidy) == 10 * 51 + 9 * 150  # every evaluation row, nothing else
    ww = tidy[(tidy["task"] == "walker_walk") & (tidy["seed"] == 4)]
    assert ww["frame"].iloc[-1] == 1_000_000 and ww["episode_reward"].iloc[-1] < 40  # a failed seed
    assert tidy["dormant_ratio"].isna().all()
    assert imported.skipped.empty


def test_agent_names_meet_harness_ids():
    assert [results.agent_id(n) for n in ("DrQ-v2", "DrM", "A-LIX", "drqv2")] == \
        ["drqv2", "drm", "alix", "drqv2"]


def test_harness_run_with_dormant_ratio_averaged_between_evaluations(tmp_path):
    train = dict(frame=[5000, 10000, 15000, 20000, 25000], episode_reward=[1, 2, 3, 4, 5],
                 fps=[1] * 5, actor_dormant_ratio=[np.nan, 0.6, 0.4, 0.2, 0.1])
    write_run(tmp_path, "drm", "cheetah_run", 1, train=train)
    tidy = load_harness(tmp_path).tidy
    assert tidy["source"].unique().tolist() == ["harness"]
    assert tidy["frame"].tolist() == [0, 10000, 20000]
    assert tidy["episode_reward"].tolist() == [10.0, 300.0, 600.0]
    # (0, 10k] holds a NaN and 0.6; (10k, 20k] holds 0.4 and 0.2; 25k is after the last evaluation
    assert np.isnan(tidy["dormant_ratio"].iloc[0])
    assert tidy["dormant_ratio"].iloc[1:].tolist() == pytest.approx([0.6, 0.3])


def test_unfinished_and_missing_runs_are_left_out_and_said(tmp_path, caplog):
    write_run(tmp_path, "drm", "cheetah_run", 1)
    write_run(tmp_path, "drm", "cheetah_run", 2, finished=False)
    with caplog.at_level(logging.INFO, logger="drm.analysis.results"):
        imported = load_harness(tmp_path, seeds=(1, 2, 3))
    assert imported.tidy["seed"].unique().tolist() == [1]
    assert imported.skipped[["seed", "problem"]].values.tolist() == [
        [2, "unfinished (no meta.json)"], [3, "not found"]]
    assert "seed2: unfinished (no meta.json), ignored" in caplog.text
    assert "seed3: not found" in caplog.text


BAD_EVALS = {
    "missing column": (dict(frame=[0, 10000], reward=[1.0, 2.0]), 1, "missing column(s) episode_reward"),
    "NaN return": (dict(frame=[0, 10000, 20000], episode_reward=[1.0, np.nan, 3.0]), 3,
                   "episode_reward is NaN"),
    "duplicate frame": (dict(frame=[0, 10000, 10000], episode_reward=[1.0, 2.0, 3.0]), 4,
                        "frame 10000 repeats the previous row's frame"),
    "decreasing frame": (dict(frame=[0, 20000, 10000], episode_reward=[1.0, 2.0, 3.0]), 4,
                         "frame 10000 is lower than the previous row's 20000"),
    "text frame": (dict(frame=[0, "10k"], episode_reward=[1.0, 2.0]), 3, "frame '10k' is not a number"),
    "return out of range": (dict(frame=[0, 10000], episode_reward=[1.0, 1500.0]), 3,
                            "episode_reward 1500 is outside the DMC range"),
}


@pytest.mark.parametrize("case", list(BAD_EVALS))
def test_bad_eval_file_names_file_row_and_problem(tmp_path, case):
    evals, line, problem = BAD_EVALS[case]
    run = tmp_path / "drm" / "cheetah_run" / "seed1"
    run.mkdir(parents=True)
    pd.DataFrame(evals).to_csv(run / "eval.csv", index=False)
    (run / "meta.json").write_text("{}")
    with pytest.raises(results.RunFileError) as info:
        load_harness(tmp_path)
    error = info.value
    assert error.path == str(run / "eval.csv") and error.line == line
    assert problem in error.problem
    assert str(error).startswith(f"{run / 'eval.csv'}, line {line}: ")


def test_bad_train_file_and_unknown_harness_task(tmp_path):
    write_run(tmp_path, "drm", "cheetah_run", 1,
              train=dict(frame=[1000, 2000], actor_dormant_ratio=[0.5, 1.7]))
    with pytest.raises(results.RunFileError, match=r"train.csv, line 3: actor_dormant_ratio 1.7 is outside"):
        load_harness(tmp_path)
    write_run(tmp_path, "drm", "cheeta_run", 1)
    with pytest.raises(results.RunFileError, match=r"cheeta_run/seed1/eval.csv: task 'cheeta_run' "
                                                   r"\(from the run directory\) is unknown"):
        load_harness(tmp_path, tasks=("cheeta_run",))


def tidy_csv(path: Path, rows: list[tuple]) -> Path:
    pd.DataFrame(rows, columns=["agent", "task", "seed", "frame", "episode_reward"]).to_csv(path, index=False)
    return path


def test_tidy_source_with_unknown_task_and_skip(tmp_path):
    path = tidy_csv(tmp_path / "other.csv", [
        ("DrM", "cheetah_run", 1, 0, 5.0), ("DrM", "cheetah_run", 1, 20000, 400.0),
        ("DrM", "cheetah_runn", 2, 0, 5.0), ("DrM", "cheetah_runn", 2, 20000, 300.0)])
    source = [dict(name="other", path=str(path), format="tidy")]
    with pytest.raises(results.RunFileError) as info:
        results.load(tmp_path, [], ["cheetah_run"], [], source, False)
    assert (info.value.path, info.value.line) == (str(path), 4)
    assert "task 'cheetah_runn' is unknown to the normalizer" in info.value.problem
    imported = results.load(tmp_path, [], ["cheetah_run"], [], source, True)
    runs = imported.tidy[["source", "agent", "seed"]].drop_duplicates().values.tolist()
    assert runs == [["other", "drm", 1]]
    assert imported.skipped[["source", "task", "seed", "line"]].values.tolist() == [
        ["other", "cheetah_runn", 2, 4]]


def test_evaluation_episodes_are_never_runs(tmp_path):
    """Per-episode rows (several per seed and frame) are refused, not counted as more runs."""
    episodes = [("drqv2", "walker_walk", 1, frame, r) for frame in (0, 20000) for r in (10.0, 20.0, 30.0)]
    path = tidy_csv(tmp_path / "episodes.csv", episodes)
    with pytest.raises(results.RunFileError, match=r"line 3: frame 0 repeats the previous row's frame "
                                                   r"\(one row per evaluation: average the evaluation "
                                                   r"episodes before import\)"):
        results.load(tmp_path, [], ["walker_walk"], [], [dict(name="x", path=str(path))], False)


@needs_published
def test_skip_bad_runs_keeps_the_others_and_lists_the_skipped(tmp_path):
    write_run(tmp_path / "runs", "drqv2", "walker_walk", 1)
    write_run(tmp_path / "runs", "drqv2", "walker_walk", 2,
              evals=dict(frame=[0, 10000, 20000], episode_reward=[1.0, np.nan, 2.0]))
    config = dict(agents=["drqv2"], tasks=["walker_walk"], seeds=[1, 2],
                  aggregate=dict(reps=50, profile_reps=20, published=PUBLISHED_SOURCE))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "drm.analysis.aggregate", "--config", str(cfg), "--runs", str(tmp_path / "runs"),
           "--out", str(tmp_path / "agg")]
    failed = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert failed.returncode == 1
    assert "seed2/eval.csv, line 3: episode_reward is NaN" in failed.stderr
    assert "--skip-bad-runs" in failed.stderr
    done = subprocess.run(cmd + ["--skip-bad-runs"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "skipped 1 bad run(s)" in done.stderr
    skipped = pd.read_csv(tmp_path / "agg" / "skipped.csv")
    assert skipped[["agent", "seed", "line"]].values.tolist() == [["drqv2", 2, 3]]
    scores = pd.read_csv(tmp_path / "agg" / "scores.csv")
    assert sorted(map(tuple, scores[["source", "seed"]].values.tolist())) == \
        [("drqv2_published", s) for s in range(1, 11)] + [("harness", 1)]


@pytest.mark.parametrize("key, recorded", [("agent", "drqv2"), ("task", "walker_run"), ("seed", 2)])
def test_a_run_whose_meta_disagrees_with_its_folder_is_refused(tmp_path, key, recorded):
    run = write_run(tmp_path, "drm", "cheetah_run", 1)
    meta = {"agent": "drm", "task": "cheetah_run", "seed": 1, key: recorded}
    (run / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(results.RunFileError) as info:
        load_harness(tmp_path)
    assert str(info.value) == (f"{run / 'meta.json'}: records {key} {recorded!r} but lies in the "
                               f"folder of {key} {dict(agent='drm', task='cheetah_run', seed=1)[key]!r} "
                               "(a misplaced run)")
    assert len(load_harness(tmp_path, skip=True).skipped) == 1


def test_a_run_whose_meta_agrees_or_records_nothing_is_imported(tmp_path):
    run = write_run(tmp_path, "drm", "cheetah_run", 1)
    (run / "meta.json").write_text(json.dumps({"agent": "drm", "task": "cheetah_run", "seed": 1}))
    write_run(tmp_path, "drm", "cheetah_run", 2)  # an older run's meta.json: no agent, task, seed
    assert len(load_harness(tmp_path, seeds=(1, 2)).tidy) == 6
