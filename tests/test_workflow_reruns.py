"""Results follow their config: after a finished grid, an edit of what the statistics read (the
aggregate section, a claim, the published sources) plans the aggregate and the figures again, and
an edit of anything else plans nothing. Real Snakemake runs on fabricated finished cells
(drm.analysis.synthetic), so nothing trains."""
import contextlib
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from drm.analysis import synthetic
from drm.layout import RUNS, run_dir
from workflow_helpers import planned_jobs, snakemake, workflow_copy, write_config

GRID = """
agents: [drm, drqv2]
tasks: [cartpole_balance]
seeds: [1, 2, 3]
claims: config/tiny_claims.yaml
train: {device: cpu, threads: 1, overrides: {num_train_frames: 40000}}
aggregate: {reps: 100, profile_reps: 50}
"""
CLAIMS = """
claims:
  - id: drm_beats_drqv2
    harness_rule: "a test of the workflow's records"
    rule: improvement
    agents: [drm, drqv2]
    tasks: [cartpole_balance]
    frames: 40000
"""
STATISTICS = {"aggregate": 1, "plot": 1, "all": 1}


@contextlib.contextmanager
def edited(path, edit):
    """A shared workflow file edited by `edit()` for one test, then put back as it was (its
    text and times, so the other tests see the finished workflow unchanged)."""
    text, stat = path.read_text(), path.stat()
    try:
        edit()
        yield
    finally:
        path.write_text(text)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A workflow whose grid, statistics and figures are done (Snakemake's records included)."""
    wf = workflow_copy(tmp_path_factory.mktemp("wf"))
    (wf / "config" / "tiny_claims.yaml").write_text(CLAIMS)
    grid = write_config(wf, "tiny.yaml", GRID)
    rng = np.random.default_rng(0)
    for agent in ("drm", "drqv2"):
        for seed in (1, 2, 3):  # 5 evaluations: frames 0 to 40,000
            synthetic.write_run(wf / RUNS / run_dir(agent, "cartpole_balance", seed), rng, 5,
                                skill=0.5, speed=0.3)
    done = snakemake(wf, "--cores", "1", "all", "--configfile", grid, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "train" not in planned_jobs(done), "the fabricated cells count as trained"
    return wf, grid


def plan(wf, grid, *layers):
    done = snakemake(wf, "-n", "all", "--configfile", grid, *layers, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_a_finished_grid_plans_nothing(finished):
    done = plan(*finished)
    assert "Nothing to be done" in done.stdout + done.stderr


def test_an_edit_of_the_aggregate_section_plans_the_statistics_and_figures(finished):
    wf, grid = finished
    done = plan(wf, grid, write_config(wf, "reps.yaml", "aggregate: {reps: 77}\n"))
    assert planned_jobs(done) == STATISTICS
    assert "Params have changed since last execution" in done.stdout


def test_an_edit_of_a_claim_plans_the_statistics_and_figures(finished):
    wf, grid = finished
    path = wf / "config" / "tiny_claims.yaml"
    with edited(path, lambda: path.write_text(path.read_text().replace("frames: 40000", "frames: 30000"))):
        assert planned_jobs(plan(wf, grid)) == STATISTICS


def test_an_edit_of_the_published_sources_plans_the_statistics_and_figures(finished):
    wf, grid = finished
    # another folder for the same source in the config
    shutil.copytree(wf / "results" / "published" / "drqv2", wf / "results" / "published" / "mirror")
    moved = write_config(wf, "mirror.yaml", "aggregate:\n  published:\n"
                         "    - {name: drqv2_published, path: results/published/mirror, format: drqv2}\n")
    assert planned_jobs(plan(wf, grid, moved)) == STATISTICS
    # a published file edited in place (touching it is no edit: Snakemake compares its checksum)
    path = wf / "results" / "published" / "drqv2" / "dmc_cartpole_balance.csv"

    def add_one():
        curves = pd.read_csv(path, index_col=0)
        curves.loc[0, "episode_reward"] += 1.0
        curves.to_csv(path)

    with edited(path, add_one):
        assert planned_jobs(plan(wf, grid)) == STATISTICS


def test_an_edit_that_changes_no_result_plans_nothing(finished):
    wf, grid = finished
    layer = write_config(wf, "same.yaml", "resources: {frames_per_hour: 12345, mem_margin_mb: 999}\n"
                                          "aggregate: {seed: 0}   # restates the default\n")
    done = plan(wf, grid, layer)
    assert "Nothing to be done" in done.stdout + done.stderr, done.stdout[-3000:]


def test_export_takes_the_grid_from_its_params(finished):
    wf, grid = finished
    done = snakemake(wf, "--cores", "1", "export", "--configfile", grid, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    provenance = pd.read_csv(wf / "results" / "export" / "provenance.csv")
    assert sorted(zip(provenance["agent"], provenance["seed"])) == [
        (agent, seed) for agent in ("drm", "drqv2") for seed in (1, 2, 3)]
    done = plan(wf, grid, write_config(wf, "seeds.yaml", "seeds: [1, 2]\n"))  # nothing to train
    assert "aggregate" in planned_jobs(done)
