"""The recorded validation runs as a section of the demo's report: drawn from the files kept in
the repository through the grid's import, statistics and figures, with no training job."""
import shutil
import subprocess

import pytest
import yaml

from drm.analysis import recorded
from test_mechanisms import write_drm_run
from workflow_helpers import REPO, planned_jobs, snakemake, workflow_copy

RECORDED_RUNS = REPO / "docs" / "validation" / "runs"
TASK = "cartpole_balance_sparse"
DRM_RUN = f"docs/validation/runs/drm/{TASK}/seed1"


@pytest.fixture
def wf(tmp_path):
    """A workflow copy with the recorded runs, as the repository holds them today."""
    wf = workflow_copy(tmp_path)
    shutil.copytree(RECORDED_RUNS, wf / "docs" / "validation" / "runs")
    return wf


def test_the_section_is_planned_from_the_recorded_files_without_training(wf):
    done = snakemake(wf, "-n", "recorded", "--configfile", "config/demo.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    assert planned_jobs(done) == {"recorded": 1}
    for path in (f"docs/validation/runs/drqv2/{TASK}/seed1/eval.csv",  # inputs
                 "results/recorded/figures/dormant_ratio.png", f"results/recorded/validate/{TASK}.png"):
        assert path in done.stdout
    assert f"{DRM_RUN}/train.csv" in done.stdout  # the recorded DrM run, and its figure
    assert f"results/recorded/mechanisms/{TASK}_seed1.png" in done.stdout
    shutil.rmtree(wf / DRM_RUN)  # without a DrM run: no mechanisms figure
    done = snakemake(wf, "-n", "recorded", "--configfile", "config/demo.yaml")
    assert planned_jobs(done) == {"recorded": 1} and "mechanisms" not in done.stdout
    write_drm_run(wf / DRM_RUN)  # a DrM run lands: its figure is planned
    done = snakemake(wf, "-n", "recorded", "--configfile", "config/demo.yaml")
    assert planned_jobs(done) == {"recorded": 1}
    assert f"{DRM_RUN}/train.csv" in done.stdout
    assert f"results/recorded/mechanisms/{TASK}_seed1.png" in done.stdout


def test_the_section_draws_the_recorded_runs_and_the_report_shows_it(wf):
    """The runs as recorded: the 40k-frame CPU runs of all three agents (docs/validation.md)."""
    done = snakemake(wf, "--cores", "1", "recorded", "--configfile", "config/demo.yaml", timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not (wf / "results" / "runs").exists(), "nothing trained"
    out = wf / "results" / "recorded"
    summary = (out / "summary.txt").read_text().splitlines()
    assert summary[:3] == [
        f"alix {TASK} seed 1: 37.8 at 40000 frames; published 1000.0-1000.0 (10 seeds): below "
        "(against the record of drqv2_published:drqv2)",
        f"drm {TASK} seed 1: 1000.0 at 40000 frames; published 1000.0-1000.0 (10 seeds): inside "
        "(against the record of drqv2_published:drqv2)",
        f"drqv2 {TASK} seed 1: 1000.0 at 40000 frames; published 1000.0-1000.0 (10 seeds): inside"]
    assert summary[3].startswith("DrM: awakens at frame 4,896;")
    tidy = (out / "aggregate" / "tidy.csv").read_text()
    assert f"harness,drqv2,{TASK},1,40000,1000.0," in tidy  # the recorded runs, imported
    assert f"harness,drm,{TASK},1,20000,1000.0," in tidy
    assert f"harness,alix,{TASK},1,40000,37.8," in tidy
    for png in ("figures/dormant_ratio.png", "figures/task_curves_mean_std.png",
                f"validate/{TASK}.png", f"mechanisms/{TASK}_seed1.png"):
        assert (out / png).stat().st_size > 20_000, png
    report = snakemake(wf, "--report", "results/report.html", "recorded", "--configfile",
                       "config/demo.yaml", timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    page = (wf / "results" / "report.html").read_text()
    assert page.count("Recorded validation runs") >= 2  # the section and the opening text's paragraph
    assert f"{TASK}_seed1.png" in page


def test_make_demo_draws_the_section_beside_the_grid_and_reports_both(wf):
    made = subprocess.run(["make", "-n", "-s", "demo"], cwd=REPO, capture_output=True, text=True, timeout=60)
    lines = [line.split("snakemake", 1)[1].split() for line in made.stdout.splitlines()
             if "snakemake" in line]
    assert [line[:line.index("--configfile")][-2:] for line in lines] == [["all", "recorded"]] * 2
    plan = snakemake(wf, "-n", *lines[0])
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert planned_jobs(plan) == {"train": 12, "aggregate": 1, "plot": 1, "videos": 1, "recorded": 1, "all": 1}


def _config(tmp_path, **changes):
    config = yaml.safe_load((REPO / "config" / "recorded.yaml").read_text())
    config.update(changes)
    path = tmp_path / "recorded.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("changes, message", [
    (dict(runz="x"), "unknown key(s) runz; known: runs, agents"),
    (dict(runs=None), "runs must be the runs folder, e.g. docs/validation/runs, not None"),
    (dict(tasks=[]), "tasks must be a non-empty list, not []"),
    (dict(seeds=["one"]), "seeds must be integers, not ['one']"),
    (dict(validate={"reference": "drqv2"}), "validate.reference 'drqv2' must be 'source:agent'"),
])
def test_a_bad_config_is_refused_in_one_line(tmp_path, changes, message):
    with pytest.raises(ValueError) as error:
        recorded.load_config(_config(tmp_path, **changes))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_each_drm_run_is_paired_with_drqv2s_run_of_its_seed_or_else_its_first(tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(RECORDED_RUNS / "drqv2", runs / "drqv2")  # seed 1 only
    for seed in (1, 2):
        write_drm_run(runs / "drm" / TASK / f"seed{seed}")
    write_drm_run(runs / "drm" / "cartpole_balance" / "seed1")
    config = recorded.load_config(_config(tmp_path, runs=str(runs), tasks=[TASK, "cartpole_balance"]))
    assert [(t, s, d.name, b and b.parent.parent.name + "/" + b.name)
            for t, s, d, b in recorded.mechanism_pairs(config)] == [
        (TASK, 1, "seed1", "drqv2/seed1"), (TASK, 2, "seed2", "drqv2/seed1"),
        ("cartpole_balance", 1, "seed1", None)]
    assert recorded.outputs(config, "out")["mechanisms"] == [
        f"out/mechanisms/{TASK}_seed1.png", f"out/mechanisms/{TASK}_seed2.png",
        "out/mechanisms/cartpole_balance_seed1.png"]
