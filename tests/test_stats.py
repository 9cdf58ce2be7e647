"""Scores and rliable estimates, checked by hand on the published DrQ-v2 curves."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import yaml
from rliable import library as rly
from rliable import metrics

from drm.analysis import aggregate, results, stats
from drm.analysis.synthetic import make_grid

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "results" / "published" / "drqv2"
SOURCE = [dict(name="drqv2_published", path=str(PUBLISHED), format="drqv2")]
PUB = ("drqv2_published", "drqv2")
RAGGED_TASKS = ["cartpole_swingup_sparse", "hopper_hop", "walker_run"]  # 8, 9 and 10 seeds
pytestmark = pytest.mark.skipif(not PUBLISHED.is_dir(), reason=f"{PUBLISHED} is absent")


def published(tasks) -> pd.DataFrame:
    return results.load("unused", [], list(tasks), [], SOURCE, False).tidy


def compute(tidy, tasks, workers=1, cache_dir=None, **section) -> stats.Results:
    """stats.compute as the aggregate step calls it, under `section` over the schema's defaults."""
    return aggregate.estimates(tidy, tasks, aggregate.settings(section), workers, cache_dir)


def estimate(res: stats.Results, metric: str, series=PUB) -> pd.Series:
    e = res.estimates
    return e[(e["source"] == series[0]) & (e["agent"] == series[1]) & (e["metric"] == metric)].iloc[0]


@pytest.fixture(scope="module")
def walker_walk():
    return compute(published(["walker_walk"]), ["walker_walk"], reps=400, profile_reps=100)


def test_walker_walk_iqm_at_1m_frames_by_hand(walker_walk):
    raw = pd.read_csv(PUBLISHED / "dmc_walker_walk.csv", index_col=0)
    final = raw[raw["frame"] == 1_000_000].sort_values("seed")["episode_reward"].to_numpy() / 1000
    assert len(final) == 10
    by_hand = np.sort(final)[2:8].mean()  # drop the 2 lowest and 2 highest of 10: the middle 50%
    scores = walker_walk.scores
    assert scores["frames"].unique().tolist() == [1_000_000]
    assert scores.sort_values("seed")["score"].to_numpy() == pytest.approx(final)
    iqm, mean = estimate(walker_walk, "iqm"), estimate(walker_walk, "mean")
    assert iqm["estimate"] == pytest.approx(by_hand) == pytest.approx(0.94756, abs=1e-5)
    assert mean["estimate"] == pytest.approx(final.mean()) == pytest.approx(0.76687, abs=1e-5)
    assert iqm["estimate"] - mean["estimate"] > 0.15  # the two failed seeds (4 and 8) stay near 25
    assert sorted(scores.nsmallest(2, "score")["seed"]) == [4, 8]
    assert iqm["ci_low"] <= iqm["estimate"] <= iqm["ci_high"]
    assert estimate(walker_walk, "optimality_gap")["estimate"] == pytest.approx(1 - final.mean())


def test_point_estimates_are_rliable_metrics_of_the_pooled_scores():
    res = compute(published(RAGGED_TASKS), RAGGED_TASKS, reps=100, profile_reps=50)
    s = res.scores
    pooled = s["score"].to_numpy()
    task_means = s.groupby("task")["score"].mean().to_numpy()
    assert len(pooled) == 8 + 9 + 10
    assert estimate(res, "iqm")["estimate"] == pytest.approx(scipy.stats.trim_mean(pooled, 0.25))
    assert estimate(res, "mean")["estimate"] == pytest.approx(task_means.mean())
    assert estimate(res, "median")["estimate"] == pytest.approx(np.median(task_means))
    assert estimate(res, "optimality_gap")["estimate"] == pytest.approx(
        metrics.aggregate_optimality_gap(pooled))
    profile = res.profiles
    assert profile["fraction"].to_numpy() == pytest.approx([(pooled > t).mean() for t in stats.TAUS])


def test_same_seed_same_cis_other_seed_other_cis_global_rng_untouched():
    tidy = published(RAGGED_TASKS)

    def cis(seed, global_seed):
        np.random.seed(global_seed)
        before = np.random.get_state()[1].copy()
        res = compute(tidy, RAGGED_TASKS, reps=300, profile_reps=50, seed=seed)
        assert (np.random.get_state()[1] == before).all()  # the caller's np.random is put back
        return res.estimates[["ci_low", "ci_high"]].to_numpy()

    first = cis(0, global_seed=1)
    assert np.array_equal(first, cis(0, global_seed=2))  # rliable's np.random use is pinned down
    assert not np.allclose(first, cis(1, global_seed=1))


def test_each_agent_metric_has_its_own_stream_regardless_of_order(tmp_path):
    make_grid(tmp_path, agents=("drm", "drqv2"), tasks=("cheetah_run", "walker_run"), seeds=range(1, 4),
              evals=6)
    tidy = results.load(tmp_path, ["drm", "drqv2"], ["cheetah_run", "walker_run"], [1, 2, 3], [], False).tidy
    both = compute(tidy, ["cheetah_run", "walker_run"], reps=200, profile_reps=50)
    alone = compute(tidy[tidy["agent"] == "drqv2"], ["cheetah_run", "walker_run"], reps=200,
                          profile_reps=50)
    reordered = compute(tidy.iloc[::-1], ["cheetah_run", "walker_run"], reps=200, profile_reps=50)
    key = ["source", "agent", "metric", "frames"]
    for other in (alone, reordered):
        merged = both.estimates.merge(other.estimates, on=key, suffixes=("", "_o"))
        assert len(merged) > 0
        assert np.array_equal(merged[["ci_low", "ci_high"]].to_numpy(),
                              merged[["ci_low_o", "ci_high_o"]].to_numpy())
    seeds = {stats.rng_seed(0, "harness", a, m) for a in ("drm", "drqv2") for m in stats.METRICS}
    assert len(seeds) == 2 * len(stats.METRICS)


def test_ragged_resample_draws_each_task_from_its_own_runs():
    res = compute(published(RAGGED_TASKS), RAGGED_TASKS, reps=50, profile_reps=20)
    s = res.scores
    assert s.groupby("task").size().to_dict() == {"cartpole_swingup_sparse": 8, "hopper_hop": 9,
                                                  "walker_run": 10}
    per_task = [s[s["task"] == t].sort_values("seed")["score"].to_numpy() for t in RAGGED_TASKS]
    arrays = stats.pack(per_task)
    assert [a.shape for a in arrays] == [(8, 1), (9, 1), (10, 1)]
    seen = []

    def spy(*resampled):
        seen.append(resampled)
        return np.array([0.0])

    stats.interval_estimate(arrays, spy, reps=30, seed=0, key=("spy",))
    assert len(seen) > 30  # the point estimate, then one call per replicate
    for resampled in seen:
        assert [a.shape for a in resampled] == [(8, 1), (9, 1), (10, 1)]
        for a, own in zip(resampled, per_task):
            assert set(a.ravel()) <= set(own)  # a task's bootstrap sample holds only its own runs
    assert any(len(set(r[2].ravel())) < 10 for r in seen[1:])  # with replacement
    meta = {m["agent"]: m for m in res.meta["series"]}["drqv2"]
    assert meta["used_seeds"] == {"cartpole_swingup_sparse": 8, "hopper_hop": 9, "walker_run": 10}


def test_ragged_truncate_keeps_the_lowest_seeds_and_says_so(caplog):
    tidy = published(RAGGED_TASKS)
    with caplog.at_level("INFO", logger="drm.analysis.stats"):
        res = compute(tidy, RAGGED_TASKS, reps=300, profile_reps=20, ragged="truncate")
    s = res.scores
    assert s.groupby("task")["seed"].apply(sorted).tolist() == [list(range(1, 9))] * 3
    assert "hopper_hop drops seeds 9" in caplog.text and "walker_run drops seeds 9, 10" in caplog.text
    matrix = np.stack([s[s["task"] == t].sort_values("seed")["score"].to_numpy() for t in RAGGED_TASKS],
                      axis=1)
    assert matrix.shape == (8, 3)
    iqm = estimate(res, "iqm")
    assert iqm["estimate"] == pytest.approx(metrics.aggregate_iqm(matrix))
    # the same interval as rliable's own matrix path under the same (agent, metric) RandomState
    np.random.set_state(np.random.RandomState(stats.rng_seed(0, *PUB, "iqm")).get_state())
    _, ci = rly.get_interval_estimates({"x": matrix}, lambda x: np.array([metrics.aggregate_iqm(x)]),
                                       reps=300)
    assert [iqm["ci_low"], iqm["ci_high"]] == pytest.approx(ci["x"][:, 0])


def test_ragged_error_refuses():
    with pytest.raises(ValueError, match=r"cartpole_swingup_sparse 8, hopper_hop 9, walker_run 10"):
        compute(published(RAGGED_TASKS), RAGGED_TASKS, reps=10, profile_reps=10, ragged="error")


def harness_run(root: Path, seed: int, frames, rewards, agent="drqv2", task="walker_walk"):
    run = root / agent / task / f"seed{seed}"
    run.mkdir(parents=True)
    pd.DataFrame(dict(frame=frames, episode_reward=rewards)).to_csv(run / "eval.csv", index=False)
    (run / "meta.json").write_text("{}")


def test_alignment_of_a_10k_grid_with_the_published_20k_grid(tmp_path):
    frames = np.arange(0, 60001, 10000)
    harness_run(tmp_path, 1, frames, frames / 100)  # 0, 100, ..., 600
    harness_run(tmp_path, 2, frames + 5000, frames / 100 + 1)  # evaluated off the grid
    tidy = results.load(tmp_path, ["drqv2"], ["walker_walk"], [1, 2], SOURCE, False).tidy
    grids, short = stats.align(tidy, ["walker_walk"])
    grid = grids["walker_walk"]
    assert short == [] and grid.budget == 60000  # the largest frame every run reached
    # The harness's own 10k grid (the published 20k one does not coarsen it), from every run's start
    assert grid.frames.tolist() == [10000, 20000, 30000, 40000, 50000, 60000]
    h = grid.returns[("harness", "drqv2")]
    assert h[0].tolist() == [100, 200, 300, 400, 500, 600]
    assert h[1].tolist() == [1, 101, 201, 301, 401, 501]  # seed 2: its last evaluations at or before
    raw = pd.read_csv(PUBLISHED / "dmc_walker_walk.csv", index_col=0)
    pub = raw[raw["seed"] == 1].set_index("frame")["episode_reward"]
    # the published 20k series is read as a step function: last evaluation at or before each frame
    assert grid.returns[PUB][0].tolist() == pytest.approx(
        [pub[0], pub[20000], pub[20000], pub[40000], pub[40000], pub[60000]])
    scores = stats.scores(grids, last_k=2)
    assert scores["frames"].unique().tolist() == [60000]
    first = scores[(scores["source"] == "harness") & (scores["seed"] == 1)]["score"].iloc[0]
    assert first == pytest.approx((0.5 + 0.6) / 2)  # the mean of the last 2 aligned evaluations


def test_explicit_budget_beyond_a_run_is_an_error_or_skipped(tmp_path):
    harness_run(tmp_path, 1, [0, 10000, 20000], [1.0, 2.0, 3.0])
    harness_run(tmp_path, 2, [0, 10000, 20000, 30000, 40000], [1.0, 2.0, 3.0, 4.0, 5.0])
    tidy = results.load(tmp_path, ["drqv2"], ["walker_walk"], [1, 2], [], False).tidy
    with pytest.raises(ValueError, match=r"harness/drqv2/1 on walker_walk: its last evaluation is at "
                                         r"frame 20000, before the frame budget 40000"):
        stats.align(tidy, ["walker_walk"], frames={"walker_walk": 40000})
    grids, short = stats.align(tidy, ["walker_walk"], frames=40000, skip_short=True)
    assert [run for run, _ in short] == [("harness", "drqv2", "walker_walk", 1)]
    assert grids["walker_walk"].seeds[("harness", "drqv2")].tolist() == [2]
    grids, _ = stats.align(tidy, ["walker_walk"], frames=30000)  # seed 1 ends one interval before
    grid = grids["walker_walk"]
    assert grid.frames[-1] == 30000 and grid.returns[("harness", "drqv2")][:, -1].tolist() == [3.0, 4.0]


def test_probability_of_improvement_and_curves(tmp_path):
    make_grid(tmp_path, agents=("drm", "drqv2"), tasks=("cheetah_run", "walker_run"), seeds=range(1, 6),
              evals=8)
    tasks = ["cheetah_run", "walker_run"]
    tidy = results.load(tmp_path, ["drm", "drqv2"], tasks, range(1, 6), [], False).tidy
    res = compute(tidy, tasks, reps=200, profile_reps=200, baselines=["drqv2"])
    poi = estimate(res, "prob_improvement_vs_drqv2", ("harness", "drm"))
    s = res.scores

    def runs(agent, task):
        return s[(s["agent"] == agent) & (s["task"] == task)]["score"]
    by_hand = np.mean([scipy.stats.mannwhitneyu(runs("drm", t), runs("drqv2", t), alternative="greater")
                       .statistic / 25 for t in tasks])
    assert poi["estimate"] == pytest.approx(by_hand)
    assert poi["reps"] == 200 and poi["ci_low"] <= poi["estimate"] <= poi["ci_high"]
    curve = res.estimates[(res.estimates["metric"] == "iqm_curve") & (res.estimates["agent"] == "drm")]
    assert curve["frames"].tolist() == list(range(0, 70001, 10000))
    assert curve["estimate"].iloc[-1] == pytest.approx(estimate(res, "iqm", ("harness", "drm"))["estimate"])
    assert set(res.estimates["reps"]) == {200}


def test_probability_of_improvement_over_the_ragged_published_drqv2(tmp_path):
    make_grid(tmp_path, agents=("drm",), tasks=RAGGED_TASKS, seeds=range(1, 4), evals=6)
    tidy = results.load(tmp_path, ["drm"], RAGGED_TASKS, [1, 2, 3], SOURCE, False).tidy
    res = compute(tidy, RAGGED_TASKS, reps=100, profile_reps=20,
                        baselines=["drqv2_published:drqv2", "alix"])
    s = res.scores
    assert s.groupby(["source", "task"]).size().tolist() == [8, 9, 10, 3, 3, 3]
    assert s["frames"].unique().tolist() == [50000]  # the harness's budget; published read at or before it
    by_hand = np.mean([scipy.stats.mannwhitneyu(
        s[(s["source"] == "harness") & (s["task"] == t)]["score"],
        s[(s["source"] == PUB[0]) & (s["task"] == t)]["score"], alternative="greater").statistic
        / (3 * n) for t, n in zip(RAGGED_TASKS, (8, 9, 10))])
    poi = res.estimates[res.estimates["metric"].str.startswith("prob_improvement")]
    assert poi["metric"].tolist() == ["prob_improvement_vs_drqv2_published:drqv2"]  # no alix runs
    assert poi["estimate"].iloc[0] == pytest.approx(by_hand)


def test_vectorized_probability_of_improvement_equals_rliables():
    tidy = published(RAGGED_TASKS)
    s = stats.scores(stats.align(tidy, RAGGED_TASKS)[0], last_k=1)
    x = s[s["task"] == "walker_run"]["score"].to_numpy()[:, None]  # 10 runs
    y = s[s["task"] == "hopper_hop"]["score"].to_numpy()[:, None]  # 9 runs
    for a, b in ((x, y), (y, x), (x, x), (np.round(x, 1), np.round(x[::-1], 1))):  # ties too
        assert stats.p_greater(a, b).mean() == pytest.approx(metrics.probability_of_improvement(a, b))
    matrix = np.random.RandomState(0).rand(7, 4).round(1)
    other = np.random.RandomState(1).rand(5, 4).round(1)
    assert stats.p_greater(matrix, other).mean() == pytest.approx(
        metrics.probability_of_improvement(matrix, other))


def test_defaults_come_from_the_schema_alone():
    assert "aggregate" not in yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    props = schema["properties"]["aggregate"]["properties"]
    assert {k: v["default"] for k, v in props.items()} == aggregate.defaults()
    assert aggregate.settings({}) == aggregate.defaults()
    aggregate.defaults()["published"].clear()  # a copy each time
    assert aggregate.defaults()["published"]
    assert all(v.get("description") for v in props.values())
    with pytest.raises(ValueError, match="unknown key"):
        aggregate.settings({"rep": 10})
    with pytest.raises(ValueError, match="aggregate.ragged"):
        aggregate.settings({"ragged": "pad"})


def test_parallel_and_cached_bootstraps_give_the_same_numbers_and_redo_only_what_changed(
        tmp_path, monkeypatch, caplog):
    make_grid(tmp_path / "runs", agents=("drm", "drqv2"), tasks=("cheetah_run", "walker_run"),
              seeds=range(1, 4), evals=6)
    tidy = results.load(tmp_path / "runs", ["drm", "drqv2"], ["cheetah_run", "walker_run"], [1, 2, 3], [],
                        False).tidy
    tasks = ["cheetah_run", "walker_run"]
    args = dict(reps=200, profile_reps=50)
    serial = compute(tidy[tidy["agent"] == "drqv2"], tasks, **args)
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="drm.analysis.stats.progress"):
        parallel = compute(tidy[tidy["agent"] == "drqv2"], tasks, workers=2, cache_dir=cache, **args)
    for table in ("estimates", "profiles", "task_curves"):
        pd.testing.assert_frame_equal(getattr(serial, table), getattr(parallel, table))
    calls = [r.getMessage() for r in caplog.records if r.name == "drm.analysis.stats.progress"]
    assert len(calls) == 6 + 2 and "bootstrap 8/8: drqv2 " in calls[-1]  # 4 metrics, profile, curve, 2 tasks

    computed = []
    real = stats._bootstrap
    monkeypatch.setattr(stats, "_bootstrap", lambda *a: computed.append(a[-1]) or real(*a))
    both = compute(tidy, tasks, cache_dir=cache, **args)  # drm added: drqv2 is read back
    assert computed and all(key[:2] == ("harness", "drm") for key in computed)
    drqv2 = both.estimates[both.estimates["agent"] == "drqv2"].reset_index(drop=True)
    pd.testing.assert_frame_equal(drqv2, serial.estimates)
