"""The Snakemake workflow on this machine: plans, refusals, and a real tiny grid end to end."""
import shutil
import subprocess
import time

import pytest

from workflow_helpers import REPO, TINY_GRID_FILE, grid_cell, planned_jobs, snakemake, workflow_copy, write_config

@pytest.fixture
def wf(tmp_path):
    return workflow_copy(tmp_path)


def test_lint_is_clean(wf):
    done = snakemake(wf, "--lint", "--configfile", "config/demo.yaml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_paper_grid_dry_run_lists_every_cell(wf):
    done = snakemake(wf, "-n", "all")
    assert done.returncode == 0, done.stderr
    assert planned_jobs(done) == {"train": 3 * 8 * 10, "aggregate": 1, "plot": 1, "videos": 1, "all": 1}
    for cell in ("results/runs/drm/dog_run/seed10/eval.csv", "results/runs/alix/hopper_hop/seed1/eval.csv",
                 "results/runs/drqv2/manipulator_bring_ball/seed7/eval.csv"):
        assert cell in done.stdout
    # What it costs, once, as the workflow is parsed: 3 agents x 10 seeds x (7 tasks at 30.1M
    # frames + hopper_hop at 3.1M) = 6,414M frames, at the config's 200,000 frames an hour
    assert done.stderr.count("cost: ") == 1
    assert ("cost: 240 cells, 6,414,000,000 frames; to train: 240 cells, 6,414,000,000 frames, about "
            "32,070.0 GPU-hours") in done.stderr
    assert "per running cell, at most: RAM 27.8 GiB (replay ring 19.9 GiB" in done.stderr  # 1M x 21,408 B


def test_the_papers_own_four_seeds_are_one_layered_file(wf):
    done = snakemake(wf, "-n", "all", "--configfile", "config/paper_seeds.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    assert planned_jobs(done)["train"] == 3 * 8 * 4
    assert "results/runs/drm/dog_run/seed4/eval.csv" in done.stdout
    assert "seed5/" not in done.stdout


def test_a_jobs_own_snakemake_does_not_state_the_cost_again(wf):
    """A job on SLURM runs Snakemake again (--mode remote), which reads the Snakefile: silent."""
    done = snakemake(wf, "-n", "all", "--mode", "remote", "--configfile", "config/demo.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cost: " not in done.stdout + done.stderr


def test_the_demo_dry_run_lists_its_cells(wf):
    done = snakemake(wf, "-n", "all", "--configfile", "config/demo.yaml")
    assert done.returncode == 0, done.stderr
    assert planned_jobs(done)["train"] == 3 * 2 * 2


@pytest.mark.parametrize("text, message", [
    ("agents: [drm, sac]\ntasks: [cheetah_run]\nseeds: [1]\n", "agents: unknown ['sac']; valid agents: drqv2, drm, alix"),
    ("agents: [drm]\ntasks: [cheetah_fly]\nseeds: [1]\n", "tasks: unknown ['cheetah_fly']; valid tasks:"),
    ("agents: [drm]\ntasks: [cheetah_run]\nseeds: [1, 1]\n", "seeds: duplicate entries [1]"),
    ("agents: [drm]\ntasks: [cheetah_run]\nseeds: [1]\ntrain: {device: cpu, overrides: {num_train_frames: 1000}}\n",
     "cell drm/cheetah_run/1: num_seed_frames=4000 is invalid: must be an integer in [0, num_train_frames=1000]"),
    ("agents: [drm]\ntasks: [cheetah_run]\nseeds: [1]\ntrain: {device: tpu}\n", "'tpu' is not one of ['cuda', 'cpu']"),
    ("agents: [drm]\ntasks: [cheetah_run]\nseeds: [-1, 2]\n", "seeds: negative [-1]; seeds must be integers >= 0"),
    ("agents: [drm]\ntasks: [cheetah_run]\nseeds: [1]\nagnets: [drm]\n",
     "config key 'agnets' (value ['drm']) is unknown; did you mean 'agents'?"),
])
def test_bad_configs_are_refused_before_any_job(wf, text, message):
    cfg = write_config(wf, "bad.yaml", text)
    done = snakemake(wf, "--cores", "1", "all", "--configfile", cfg)
    assert done.returncode != 0
    assert message in done.stdout + done.stderr
    assert "properties" not in done.stdout + done.stderr, "one line, not the schema"
    assert not (wf / "results" / "runs").exists(), "nothing ran"


def test_a_gpu_grid_without_gpus_is_refused_at_start(wf):
    cfg = write_config(wf, "gpu.yaml", "agents: [drm]\ntasks: [cheetah_run]\nseeds: [1]\ntrain: {device: cuda}\n")
    done = snakemake(wf, "--cores", "1", "all", "--configfile", cfg, "--resources", "gpu=1")
    assert done.returncode != 0
    assert "train.device is cuda but no GPU is visible here" in done.stdout + done.stderr


@pytest.mark.slow
def test_a_tiny_grid_end_to_end_then_one_cell_rerun_and_figures_from_cache(tiny_grid, tmp_path):
    """The tiny grid was trained, aggregated, drawn and reported by `snakemake all` (the shared
    fixture); what follows changes a copy of it."""
    cfg = f"config/{TINY_GRID_FILE}"
    for agent in ("drm", "drqv2", "alix"):
        cell = grid_cell(tiny_grid, agent)
        assert {p.name for p in cell.iterdir()} >= {"eval.csv", "train.csv", "config.yaml", "meta.json"}
        assert (tiny_grid / "results" / "logs" / "train" / agent / "cartpole_balance" / "seed1.log").exists()
        assert (tiny_grid / "results" / "benchmarks" / "train" / agent / "cartpole_balance" / "seed1.tsv").exists()
    figures = sorted(p.name for p in (tiny_grid / "results" / "figures").glob("*.png"))
    assert "dormant_ratio.png" in figures and "aggregate_estimates.png" in figures
    assert (tiny_grid / "results" / "aggregate" / "estimates.csv").stat().st_size > 0
    assert (tiny_grid / "results" / "report.html").stat().st_size > 10_000

    wf = tmp_path / "wf"
    shutil.copytree(tiny_grid, wf)  # times kept: Snakemake sees the same finished grid
    runs = wf / "results" / "runs"
    nothing = snakemake(wf, "-n", "all", "--configfile", cfg)
    assert "Nothing to be done" in nothing.stdout + nothing.stderr

    # One cell deleted: exactly that cell is planned again, then the statistics.
    shutil.rmtree(runs / "alix" / "cartpole_balance" / "seed1")
    again = snakemake(wf, "-n", "all", "--configfile", cfg)
    assert planned_jobs(again) == {"train": 1, "aggregate": 1, "plot": 1, "videos": 1, "all": 1}
    assert "results/runs/alix/cartpole_balance/seed1/eval.csv" in again.stdout

    # The figures target plans no training, even with a cell missing and the code edited.
    (wf / "workflow" / "scripts" / "aggregate.py").write_text(
        (wf / "workflow" / "scripts" / "aggregate.py").read_text() + "\n# edited\n")
    plan = snakemake(wf, "-n", "figures", "--configfile", cfg)
    assert planned_jobs(plan) == {"figures": 1}
    png = wf / "results" / "figures" / "aggregate_estimates.png"
    before = png.stat().st_mtime
    time.sleep(1)
    redraw = snakemake(wf, "--cores", "1", "figures", "--configfile", cfg)
    assert redraw.returncode == 0, redraw.stderr
    assert png.stat().st_mtime > before, "re-drawn from the cache"
    assert not (runs / "alix" / "cartpole_balance" / "seed1").exists(), "and nothing was trained"

    # Re-running one cell by its target trains that cell only (the grid trained its cells
    # through the same rule; here its plan).
    rerun = snakemake(wf, "-n", "results/runs/drqv2/cartpole_balance/seed1/eval.csv",
                      "--forcerun", "train", "--configfile", cfg)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert planned_jobs(rerun) == {"train": 1}
    assert "results/runs/drqv2/cartpole_balance/seed1/eval.csv" in rerun.stdout


def test_figures_without_a_cache_says_what_to_run(wf):
    done = snakemake(wf, "--cores", "1", "figures")
    assert done.returncode != 0
    assert "snakemake aggregate" in done.stdout + done.stderr


@pytest.mark.slow
def test_the_published_config_aggregates_and_plots_without_training(wf):
    text = (wf / "config" / "published.yaml").read_text()
    text = text.replace("reps: 50000", "reps: 300").replace("profile_reps: 2000", "profile_reps: 100")
    cfg = write_config(wf, "published_fast.yaml", text)
    done = snakemake(wf, "--cores", "2", "all", "--configfile", cfg, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not (wf / "results" / "runs").exists()
    assert "aggregate: bootstrap 30/30: drqv2_published:drqv2 " in done.stderr, "progress shown"
    scores = (wf / "results" / "aggregate" / "scores.csv").read_text().splitlines()
    assert len(scores) - 1 == 227, "every published run of the 24 tasks (8-10 seeds each)"
    assert {p.name for p in (wf / "results" / "figures").glob("*.png")} >= {
        "aggregate_estimates.png", "sample_efficiency.png", "performance_profile.png", "harness_vs_published.png"}

    # The documented report: opens on the workflow's description, no warnings, no job that did not run.
    report = snakemake(wf, "--report", "results/report.html", "--configfile", cfg, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "Missing metadata" not in report.stdout + report.stderr
    assert "warning" not in (report.stdout + report.stderr).lower(), report.stderr[-3000:]
    html = (wf / "results" / "report.html").read_text()
    assert "First the claims of" in html and "estimates.csv" in html


def test_the_readme_demo_command_lines_parse(wf):
    """`make demo`'s Snakemake commands, dry-run: a target after a many-valued option such as
    --configfile would be swallowed by it."""
    made = subprocess.run(["make", "-n", "-s", "demo"], cwd=REPO, capture_output=True, text=True, timeout=60)
    lines = [line.split("snakemake", 1)[1].split() for line in made.stdout.splitlines()
             if "snakemake" in line]
    assert len(lines) == 2, made.stdout
    train = snakemake(wf, "-n", *lines[0])
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-2000:]
    assert planned_jobs(train)["train"] == 12
    assert "--report" in lines[1]
