"""Claims as verdicts: the DrQ-v2 paper's claims on its published curves by hand, synthetic grids
with a known answer, bad claims refused by name, and the export read back by the importer."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import yaml

from drm.analysis import aggregate, claims, export, results, stats
from drm.analysis.synthetic import write_run

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "results" / "published" / "drqv2"
SOURCE = [dict(name="drqv2_published", path=str(PUBLISHED), format="drqv2")]
SETTINGS = dict(reps=1000, seed=0, last_k=1)
pytestmark = pytest.mark.skipif(not PUBLISHED.is_dir(), reason=f"{PUBLISHED} is absent")


def published(tasks) -> pd.DataFrame:
    return results.load("unused", [], list(tasks), [], SOURCE, False).tidy


def evaluate(claim_list, tidy, seeds=()):
    return claims.evaluate(claims.prepare(claim_list, tidy, seeds), tidy, SETTINGS).set_index("id")


def final(task: str, frame: int) -> np.ndarray:
    raw = pd.read_csv(PUBLISHED / f"dmc_{task}.csv", index_col=0)
    return raw[raw["frame"] == frame].sort_values("seed")["episode_reward"].to_numpy() / 1000


@pytest.fixture(scope="module")
def drqv2_verdicts():
    claim_list = claims.load(REPO / "config" / "claims_published.yaml", ["drqv2_published"])
    tasks = sorted({t for c in claim_list for t in c["tasks"]})
    return evaluate(claim_list, published(tasks))


def test_the_drqv2_paper_claims_on_its_published_curves_by_hand(drqv2_verdicts):
    v = drqv2_verdicts
    for cid, task, frame, target in (("drqv2_solves_humanoid_walk", "humanoid_walk", 30_000_000, 0.7),
                                     ("drqv2_solves_reacher_hard", "reacher_hard", 2_980_000, 0.9),
                                     ("drqv2_solves_quadruped_run", "quadruped_run", 2_980_000, 0.7)):
        scores = final(task, frame)
        row = v.loc[cid]
        assert row["estimate"] == pytest.approx(scipy.stats.trim_mean(scores, 0.25))
        assert row["runs_used"] == row["runs_expected"] == len(scores)
        assert row["ci_low"] <= row["estimate"] <= row["ci_high"]
        expected = ("supported" if row["ci_low"] >= target else
                    "contradicted" if row["ci_high"] < target else "inconclusive")
        assert row["verdict"] == expected
    assert v.loc["drqv2_solves_humanoid_walk", "estimate"] == pytest.approx(0.7914, abs=1e-4)
    assert v.loc["drqv2_solves_humanoid_walk", "verdict"] == "supported"
    assert v.loc["drqv2_solves_reacher_hard", "verdict"] == "supported"
    quadruped = v.loc["drqv2_solves_quadruped_run"]
    assert quadruped["estimate"] == pytest.approx(0.7375, abs=1e-4)
    assert quadruped["verdict"] == "inconclusive"  # 8 seeds, one at 471: the CI straddles 0.7
    assert quadruped["seeds_needed"] > 8
    # Two walker_walk seeds (4 and 8) stay near 25 while the best reaches 968: broken, by name.
    walker = final("walker_walk", 980_000)
    assert sorted(np.flatnonzero(walker < 0.1 * walker.max()) + 1) == [4, 8]
    broken = v.loc["drqv2_no_broken_seeds_easy"]
    assert broken["verdict"] == "contradicted" and broken["estimate"] == 2
    assert "walker_walk seed 4" in broken["detail"] and "walker_walk seed 8" in broken["detail"]
    assert claims.line(v.reset_index().iloc[0]).startswith("claim drqv2_solves_humanoid_walk: supported")


def _grid(root: Path, skills: dict, tasks=("cheetah_run", "walker_run"), seeds=range(1, 7),
          dormant_shift: dict | None = None):
    """Harness-shaped runs: agent -> skill (final normalized return), seeded noise."""
    rng = np.random.default_rng(0)
    for agent, skill in skills.items():
        for task in tasks:
            for s in seeds:
                value = skill(s) if callable(skill) else skill + rng.normal(0, 0.02)
                write_run(root / agent / task / f"seed{s}", rng, 20, value, speed=0.3)
    for agent, shift in (dormant_shift or {}).items():
        for path in root.glob(f"{agent}/*/seed*/train.csv"):
            train = pd.read_csv(path)
            train["actor_dormant_ratio"] = (train["actor_dormant_ratio"] + shift).clip(0, 1)
            train.to_csv(path, index=False)
    return results.load(root, list(skills), list(tasks), list(seeds), [], False).tidy


def claim(rule, agents, tasks=("cheetah_run", "walker_run"), frames=190_000, **params):
    return claims._check(dict(id=f"t_{rule}", harness_rule="a test", rule=rule, agents=list(agents),
                              tasks=list(tasks), frames=frames, **params), "test", {"drqv2_published"})


def test_a_clearly_better_agent_is_supported_and_identical_agents_are_inconclusive(tmp_path):
    tidy = _grid(tmp_path / "runs", {"drm": 0.9, "drqv2": 0.4}, dormant_shift={"drqv2": 0.2})
    seeds = range(1, 7)
    v = evaluate([claim("improvement", ["drm", "drqv2"]), claim("aggregate_gap", ["drm", "drqv2"]),
                  claim("lower_dormant_ratio", ["drm", "drqv2"]), claim("solves", ["drm"], score=0.8)],
                 tidy, seeds)
    assert v["verdict"].tolist() == ["supported"] * 4, v[["verdict", "estimate", "ci_low", "ci_high"]]
    assert v.loc["t_improvement", "estimate"] == 1.0
    assert v.loc["t_aggregate_gap", "estimate"] == pytest.approx(0.5, abs=0.05)

    # drqv2's runs are copies of drm's: no effect, and no seed count would find one.
    same = tmp_path / "same"
    shutil.copytree(tmp_path / "runs" / "drm", same / "drm")
    shutil.copytree(tmp_path / "runs" / "drm", same / "drqv2")
    tidy = results.load(same, ["drm", "drqv2"], ["cheetah_run", "walker_run"], list(seeds), [], False).tidy
    v = evaluate([claim("improvement", ["drm", "drqv2"]), claim("aggregate_gap", ["drm", "drqv2"])],
                 tidy, seeds)
    assert v["verdict"].tolist() == ["inconclusive"] * 2
    assert v.loc["t_improvement", "estimate"] == 0.5 and v.loc["t_aggregate_gap", "estimate"] == 0
    assert v["seeds_needed"].isna().all()
    assert "more seeds would not resolve it" in claims.line(v.reset_index().iloc[0])


def test_a_planted_broken_seed_is_listed_by_name(tmp_path):
    tidy = _grid(tmp_path, {"drm": lambda s: 0.02 if s == 4 else 0.85, "drqv2": 0.6})
    v = evaluate([claim("no_broken_seeds", ["drm", "drqv2"], fraction=0.1)], tidy, range(1, 7))
    row = v.loc["t_no_broken_seeds"]
    assert row["verdict"] == "contradicted" and row["estimate"] == 2  # seed 4 on both tasks
    assert row["detail"].startswith("drm: cheetah_run seed 4 (")
    assert "walker_run seed 4" in row["detail"] and "drqv2: none" in row["detail"]


def test_dormant_before_reward_times_each_run(tmp_path):
    tidy = _grid(tmp_path, {"drqv2": 0.8}, tasks=("hopper_hop",))
    v = evaluate([claim("dormant_before_reward", ["drqv2"], tasks=["hopper_hop"], dormant_below=0.5,
                        return_above=300)], tidy, range(1, 7))
    row = v.loc["t_dormant_before_reward"]
    # The synthetic dormant ratio falls below 0.5 by about 12k frames, the return passes 300 near 27k.
    assert row["runs_used"] == 6 and row["verdict"] == "supported" and row["estimate"] == 1.0
    assert "lag (return rise - dormant drop) median 10,000 frames" in row["detail"]
    drop, rise = claims.event_frames(np.array([0, 10, 20, 30]), [np.nan, 0.7, 0.4, 0.3],
                                     [5, 50, 80, 400], 0.5, 300)
    assert (drop, rise) == (20, 30)


def test_missing_runs_give_no_verdict(tmp_path):
    tidy = _grid(tmp_path, {"drm": 0.9, "drqv2": 0.4}, seeds=range(1, 4))
    v = evaluate([claim("improvement", ["drm", "drqv2"]), claim("improvement", ["drm", "alix"]) | {"id": "x"}],
                 tidy, range(1, 5))
    assert v.loc["t_improvement", "verdict"] == "not evaluated: 4 of 16 runs missing"
    assert v.loc["x", "verdict"] == "not evaluated: 10 of 16 runs missing"
    assert np.isnan(v.loc["x", "estimate"])


@pytest.mark.parametrize("change, message", [
    (dict(agents=["drm", "sac"]), "claim t_improvement: unknown agent 'sac'"),
    (dict(agents=["tdmpc_published:tdmpc", "drm"]), "names source 'tdmpc_published'"),
    (dict(tasks=["cheetah_fly"]), "claim t_improvement: unknown task 'cheetah_fly'"),
    (dict(rule="beats"), "claim t_improvement: unknown rule 'beats'; known: improvement"),
    (dict(rule="aggregate_gap", metric="median"), "metric 'median' is out of range; accepted: one of iqm, mean"),
    (dict(rule="solves", agents=["drm"], score=1.5), "score 1.5 is out of range; accepted: a number in (0, 1]"),
    (dict(rule="no_broken_seeds", fraction=0), "fraction 0 is out of range"),
    (dict(frames=0), "frames 0 must be a positive whole number"),
    (dict(colour="red"), "unknown key(s) colour"),
])
def test_bad_claims_are_refused_naming_the_claim_and_the_value(tmp_path, change, message):
    text = dict(id="t_improvement", harness_rule="a test", rule="improvement", agents=["drm", "drqv2"],
                tasks=["cheetah_run"], frames=1000) | change
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"claims": [text]}))
    with pytest.raises(claims.ClaimError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        claims.load(path, ["drqv2_published"])


QUOTED = dict(words="the first model-free algorithm", where="abstract",
              harness_choices={"frames": "the tier's end", "score": "half the return"})


@pytest.mark.parametrize("source, message", [
    ({}, "claim t_solves: no source: give the paper's exact words and where they stand (words: '...', "
         "where: one of abstract, Figure N caption, Table N caption, Section N, Appendix X), or "
         "harness_rule: why the harness checks it"),
    (dict(QUOTED, harness_rule="ours"), "claim t_solves: either the paper's words (words, where) or "
                                        "harness_rule, not both"),
    (dict(harness_rule=" "), "claim t_solves: harness_rule must say why the harness checks this"),
    ({k: v for k, v in QUOTED.items() if k != "where"}, "claim t_solves: where None must say where the "
                                                        "words stand: one of abstract, Figure N caption"),
    (dict(QUOTED, where="the intro"), "where 'the intro' must say where the words stand"),
    (dict(QUOTED, words=""), "claim t_solves: words must be the paper's exact words"),
    (dict(QUOTED, harness_choices={"frames": "the tier's end"}),
     "claim t_solves: harness_choices must say why the harness chose score: the paper's words give none"),
    (dict(QUOTED, harness_choices={}), "harness_choices must say why the harness chose frames, score"),
    (dict(QUOTED, harness_choices=dict(QUOTED["harness_choices"], colour="red")),
     "claim t_solves: harness_choices names colour, not a choice of rule solves: frames, tasks, score"),
    (dict(harness_rule="ours", harness_choices={"score": ""}), "harness_choices must map each choice"),
])
def test_a_claim_without_a_source_is_refused_in_one_line(tmp_path, source, message):
    text = dict(id="t_solves", rule="solves", agents=["drm"], tasks=["dog_run"], frames=1000, score=0.5) | source
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"claims": [text]}))
    with pytest.raises(claims.ClaimError) as refused:
        claims.load(path)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_a_quoted_claim_and_a_harness_rule_are_accepted_with_where_they_stand(tmp_path):
    path = tmp_path / "claims.yaml"
    base = dict(rule="solves", agents=["drm"], tasks=["dog_run"], frames=1000, score=0.5)
    path.write_text(yaml.safe_dump({"claims": [
        dict(base, id="quoted", **QUOTED), dict(base, id="fig", **dict(QUOTED, where="Figure 1 caption")),
        dict(base, id="sec", **dict(QUOTED, where="Section 5.2")),
        dict(base, id="ours", harness_rule="a check of the harness itself")]}))
    loaded = claims.load(path)
    assert [claims.source_text(c) for c in loaded] == [
        'abstract: "the first model-free algorithm"', 'Figure 1 caption: "the first model-free algorithm"',
        'Section 5.2: "the first model-free algorithm"', "harness rule: a check of the harness itself"]
    assert claims.choices_text(loaded[0]) == "frames: the tier's end; score: half the return"


def test_a_budget_no_run_reached_fails_before_any_statistics(tmp_path, monkeypatch):
    tidy = _grid(tmp_path, {"drm": 0.9, "drqv2": 0.4})
    monkeypatch.setattr(stats, "interval_estimate", lambda *a, **k: pytest.fail("sampled"))
    with pytest.raises(claims.ClaimError, match="claim t_improvement: frames 5000000 is a budget no run "
                                                r"reached \(the longest of its runs ends at frame 190000\)"):
        claims.prepare([claim("improvement", ["drm", "drqv2"], frames=5_000_000)], tidy, range(1, 7))
    with pytest.raises(claims.ClaimError, match="beyond what the grid trains drm on cheetah_run"):
        claims.check_budgets([claim("improvement", ["drm", "drqv2"], frames=5_000_000)],
                             {("drm", "cheetah_run"): 3_100_000})


# The DrM paper's words the claims files may quote: what issue #24 read in its abstract.
READ_IN_THE_ABSTRACT = ("no broken seeds (76 seeds in total)",
                        "the first model-free algorithm that consistently solves tasks in both the Dog and "
                        "Manipulator domains")


def test_the_shipped_claims_files_load_and_every_claim_says_where_it_comes_from():
    paper = claims.load(REPO / "config" / "claims.yaml", ["drqv2_published"])
    assert {c["rule"] for c in paper} == set(claims.RULES)
    assert len(claims.load(REPO / "config" / "claims_demo.yaml", [])) == 5
    shipped = paper + claims.load(REPO / "config" / "claims_demo.yaml", []) + claims.load(
        REPO / "config" / "claims_published.yaml", ["drqv2_published"])
    quoted = [c for c in shipped if "words" in c]
    assert sorted(" ".join(c["words"].split()) for c in quoted) == sorted(READ_IN_THE_ABSTRACT)
    assert {c["where"] for c in quoted} == {"abstract"}
    assert all(c.get("harness_rule") or c in quoted for c in shipped)
    assert all("frames" in c["harness_choices"] for c in quoted)


def test_aggregate_writes_claims_csv_and_show_prints_it(tmp_path, capsys):
    _grid(tmp_path / "runs", {"drm": 0.9, "drqv2": 0.4})
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"claims": [
        dict(id="better", words="DrM beats DrQ-v2", where="Figure 3 caption", rule="improvement",
             agents=["drm", "drqv2"], tasks=["cheetah_run", "walker_run"], frames=190_000,
             harness_choices={"frames": "the runs' last evaluation"})]}))
    config = dict(agents=["drm", "drqv2"], tasks=["cheetah_run", "walker_run"], seeds=list(range(1, 7)),
                  claims=str(path), aggregate=dict(reps=200, profile_reps=50, published=[]))
    aggregate.run(config, tmp_path / "runs", tmp_path / "agg")
    table = pd.read_csv(tmp_path / "agg" / "claims.csv")
    assert table.columns.tolist() == claims.COLUMNS and table["verdict"].tolist() == ["supported"]
    lines = claims.show(tmp_path / "agg", tmp_path / "figs")
    assert lines == [capsys.readouterr().out.strip()]
    assert lines[0].startswith("claim better: supported - P(drm > drqv2), mean over tasks = 1.000 [1.000, 1.000]")
    assert table["source"].tolist() == ['Figure 3 caption: "DrM beats DrQ-v2"']
    assert table["harness_choices"].tolist() == ["frames: the runs' last evaluation"]
    shown = pd.read_csv(tmp_path / "figs" / "claims.csv")  # the report's table
    assert shown["verdict"].tolist() == ["supported"]
    assert shown["source"].tolist() == ['Figure 3 caption: "DrM beats DrQ-v2"']
    assert shown["harness's choices"].tolist() == ["frames: the runs' last evaluation"]


def test_export_then_import_returns_the_same_scores(tmp_path):
    tasks, seeds = ["cheetah_run", "walker_run"], list(range(1, 4))
    tidy = _grid(tmp_path / "runs", {"drm": 0.8, "alix": 0.5}, tasks=tasks, seeds=seeds)
    (tmp_path / "runs" / "drm" / "cheetah_run" / "seed1" / "meta.json").write_text(
        '{"frames": 190000, "git": {"commit": "abc123", "dirty": false}, "packages": {"torch": "2.13.0"},'
        ' "machine": {"device": "cuda:0", "gpu": "NVIDIA H200"}}')
    export.export(tmp_path / "runs", ["drm", "alix"], tasks, seeds, tmp_path / "export")
    assert sorted(p.name for p in (tmp_path / "export" / "curves").iterdir()) == [
        "dmc_cheetah_run.csv", "dmc_walker_run.csv"]
    back = results.load("unused", [], tasks, [], [dict(name="group_b", path=str(tmp_path / "export" / "curves"),
                                                       format="drqv2")], False).tidy
    assert len(back) == len(tidy)
    mine = stats.scores(stats.align(tidy, tasks)[0], 1).drop(columns="source")
    theirs = stats.scores(stats.align(back, tasks)[0], 1).drop(columns="source")
    pd.testing.assert_frame_equal(mine.sort_values(["agent", "task", "seed"], ignore_index=True),
                                  theirs.sort_values(["agent", "task", "seed"], ignore_index=True))
    np.testing.assert_allclose(back.sort_values(["agent", "task", "seed", "frame"])["dormant_ratio"],
                               tidy.sort_values(["agent", "task", "seed", "frame"])["dormant_ratio"],
                               rtol=1e-12)  # read_csv's fast float parser: last-digit rounding
    prov = pd.read_csv(tmp_path / "export" / "provenance.csv")
    assert len(prov) == 12
    row = prov[(prov["agent"] == "drm") & (prov["task"] == "cheetah_run") & (prov["seed"] == 1)].iloc[0]
    assert (row["commit"], row["gpu"], row["packages"]) == ("abc123", "NVIDIA H200", "torch==2.13.0")
    assert len(row["config_sha256"]) == 64


def test_agrees_with_published_counts_our_runs_inside_the_published_range(tmp_path):
    """Our synthetic DrQ-v2 on walker_run against the published seeds at 180k frames, by hand."""
    ours = _grid(tmp_path, {"drqv2": 0.9}, tasks=("walker_run",))
    tidy = pd.concat([ours, published(["walker_run"])], ignore_index=True)
    v = evaluate([claim("agrees_with_published", ["drqv2"], tasks=["walker_run"],
                        reference="drqv2_published:drqv2", min_inside=0.5)], tidy, range(1, 7))
    row = v.loc["t_agrees_with_published"]
    raw = pd.read_csv(PUBLISHED / "dmc_walker_run.csv", index_col=0)
    at = raw[raw["frame"] == 180_000]["episode_reward"]
    mine = ours[ours["frame"] == 180_000]["episode_reward"]
    inside = ((mine >= at.min()) & (mine <= at.max())).mean()
    assert row["estimate"] == pytest.approx(inside) and row["runs_used"] == 6
    assert row["verdict"] == ("supported" if row["ci_low"] >= 0.5 else
                              "contradicted" if row["ci_high"] < 0.5 else "inconclusive")


def test_two_seeds_per_task_never_decide_a_ci_claim(tmp_path):
    """2 runs per task: a bootstrap CI can collapse to a point, so no verdict is drawn from it."""
    tidy = _grid(tmp_path, {"drm": 0.9, "drqv2": 0.2}, seeds=range(1, 3))
    v = evaluate([claim("improvement", ["drm", "drqv2"]), claim("no_broken_seeds", ["drm"], fraction=0.1)],
                 tidy, range(1, 3))
    better = v.loc["t_improvement"]
    assert better["verdict"] == "inconclusive" and better["seeds_needed"] >= claims.MIN_SEEDS
    assert better["detail"].startswith("only 2 run(s) per task, fewer than 3") and "(was supported)" in better["detail"]
    assert v.loc["t_no_broken_seeds", "verdict"] == "supported", "a count is decided at any n"
