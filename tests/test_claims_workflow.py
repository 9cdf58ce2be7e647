"""The claims in the real Snakemake workflow: listed by the dry run, a bad claims file refused before
any job, and the published config's figures printing and reporting the DrQ-v2 verdicts."""
import pytest
import yaml

from workflow_helpers import snakemake, workflow_copy, write_config


@pytest.fixture
def wf(tmp_path):
    return workflow_copy(tmp_path)


def test_the_paper_grid_dry_run_lists_the_claims_it_will_evaluate(wf):
    done = snakemake(wf, "-n", "aggregate")
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert "evaluates 12 claim(s): drm_no_broken_seeds (no_broken_seeds: drm on 7 task(s) at 30,000,000 " \
           "frames); " in out
    assert "drm_beats_drqv2_sample_efficiency (improvement: drm, drqv2 on 7 task(s) at 10,000,000 frames)" in out
    assert "dormant_drops_before_reward_hopper (dormant_before_reward: drqv2 on 1 task(s) at 3,000,000 frames)" in out


def test_a_bad_claim_is_refused_before_any_job(wf):
    (wf / "config" / "bad_claims.yaml").write_text(
        "claims:\n  - {id: typo, harness_rule: w, rule: solves, agents: [drm], tasks: [dog_run], frames: 1000, score: 700}\n")
    cfg = write_config(wf, "bad.yaml", "claims: config/bad_claims.yaml\n")
    done = snakemake(wf, "-n", "all", "--configfile", cfg)
    assert done.returncode != 0
    assert "claim typo: score 700 is out of range; accepted: a number in (0, 1]" in done.stdout + done.stderr
    (wf / "config" / "unsourced.yaml").write_text(
        "claims:\n  - {id: unsourced, rule: solves, agents: [drm], tasks: [dog_run], frames: 1000, score: 0.7}\n")
    cfg = write_config(wf, "unsourced_grid.yaml", "claims: config/unsourced.yaml\n")
    done = snakemake(wf, "-n", "all", "--configfile", cfg)
    assert done.returncode != 0
    assert ("claim unsourced: no source: give the paper's exact words and where they stand"
            in done.stdout + done.stderr)
    assert "Traceback" not in done.stdout + done.stderr
    cfg = write_config(wf, "far.yaml", "tasks: [hopper_hop]\ntrain: {task_overrides: {hopper_hop: {num_train_frames: 1000000}}}\n")
    done = snakemake(wf, "-n", "all", "--configfile", cfg)
    assert done.returncode != 0
    assert ("claim dormant_drops_before_reward_hopper: frames 3000000 is beyond what the grid trains "
            "drqv2 on hopper_hop (1000000 frames)") in done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_figures_on_the_published_config_prints_and_reports_the_drqv2_verdicts(wf):
    config = yaml.safe_load((wf / "config" / "published.yaml").read_text())
    config["tasks"] = sorted({t for c in yaml.safe_load((wf / config["claims"]).read_text())["claims"]
                              for t in c["tasks"]})  # the claims' 8 tasks: the 24 take too long here
    config["aggregate"].update(reps=300, profile_reps=50)
    cfg = write_config(wf, "published_fast.yaml", yaml.safe_dump(config))
    done = snakemake(wf, "--cores", "1", "figures", "--configfile", cfg, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout + done.stderr
    assert "claim drqv2_solves_humanoid_walk: supported - IQM of drqv2_published:drqv2" in out
    assert "claim drqv2_no_broken_seeds_easy: contradicted" in out
    report = snakemake(wf, "--report", "results/report.html", "--configfile", cfg, timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    html = (wf / "results" / "report.html").read_text()
    assert "Claims (results/figures/claims.csv" in html, "the verdict table heads the report"
    assert "drqv2_solves_quadruped_run</td>\\n<td>inconclusive</td>" in html
