"""The validation grid: verdicts on the real published curves, its config, its plan, its figure."""

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake.utils import validate as schema_validate

from drm.cell import config as cell_config
from drm import grid
from drm.analysis import results, validation, validation_plot
from workflow_helpers import REPO, planned_jobs, snakemake, workflow_copy, write_config

REFERENCE = ("drqv2_published", "drqv2")
PUBLISHED = [{"name": "drqv2_published", "path": str(REPO / "results/published/drqv2"), "format": "drqv2"}]
TASK = "cartpole_balance_sparse"


@pytest.fixture(scope="module")
def published():
    return results.load(REPO / "no-runs", [], [TASK, "cartpole_balance"], [], PUBLISHED, False).tidy


def as_harness(rows: pd.DataFrame, agent="drqv2", **changes) -> pd.DataFrame:
    return rows.assign(source=results.HARNESS, agent=agent, **changes)


def test_a_run_equal_to_a_published_seed_is_inside_everywhere(published):
    seed3 = published[(published["task"] == TASK) & (published["seed"] == 3)]
    table = validation.verdicts(pd.concat([published, as_harness(seed3)]), REFERENCE)
    assert len(table) == len(seed3)
    assert (table["verdict"] == validation.INSIDE).all()
    assert (table["published_seeds"] == 10).all()
    at_40k = table[table["frame"] == 40000].iloc[0]
    assert (at_40k.published_min, at_40k.published_max, at_40k.percentile_rank) == (1000.0, 1000.0, 50.0)


def test_the_same_run_scaled_down_is_below_where_it_falls_under_every_seed(published):
    seed3 = published[(published["task"] == TASK) & (published["seed"] == 3)]
    scaled = as_harness(seed3, episode_reward=seed3["episode_reward"] * 0.5)
    table = validation.verdicts(pd.concat([published, scaled]), REFERENCE)
    expected = np.where(table["episode_reward"] < table["published_min"], validation.BELOW,
                        validation.INSIDE)
    assert (table["verdict"] == expected).all()
    at_40k = table[table["frame"] == 40000].iloc[0]  # every published seed scores 1000 there
    assert (at_40k.episode_reward, at_40k.verdict, at_40k.percentile_rank) == (500.0, validation.BELOW, 0.0)
    assert (table["verdict"] == validation.BELOW).sum() > 30


def test_absent_tasks_and_frames_are_reported_never_dropped(published):
    run = pd.DataFrame(dict(source=results.HARNESS, agent="drm", seed=1, dormant_ratio=np.nan,
                            task=[TASK, TASK, "cartpole_two_poles"], frame=[0, 30000, 0],
                            episode_reward=[50.0, 900.0, 10.0]))
    table = validation.verdicts(pd.concat([published, run]), REFERENCE)
    by_frame = {(r.task, r.frame): r.verdict for r in table.itertuples()}
    assert by_frame == {(TASK, 0): validation.INSIDE, (TASK, 30000): validation.NO_FRAME,
                        ("cartpole_two_poles", 0): validation.NO_TASK}
    lines = validation.summary_lines(table)
    assert lines == [
        "drm cartpole_balance_sparse seed 1: 50.0 at 0 frames; published 31.2-92.3 (10 seeds): "
        "inside (against the record of drqv2_published:drqv2)",
        "drm cartpole_two_poles seed 1: 10.0 at 0 frames; no record for this task"]


def test_percentile_rank_counts_ties_half_and_above_is_above():
    assert validation.percentile_rank(5.0, np.array([1.0, 5.0, 9.0, 9.0])) == 37.5
    assert validation.judge(10.0, np.array([1.0, 9.0])) == validation.ABOVE


@pytest.mark.parametrize("bad", ["drqv2", "harness:drqv2", ":drqv2", "drqv2_published:"])
def test_a_bad_reference_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="must be 'source:agent'"):
        validation.parse_reference(bad)


def workflow_config(*names) -> dict:
    """The config Snakemake builds from config/config.yaml and the given config files."""
    def merge(base, new):
        for key, value in new.items():
            base[key] = merge(base.get(key, {}), value) if isinstance(value, dict) else value
        return base

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for name in names:
        cfg = merge(cfg, yaml.safe_load((REPO / "config" / name).read_text()))
    schema_validate(cfg, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    return cfg


BUDGET_KEYS = {"num_train_frames", "eval_every_frames", "snapshot_every_frames"}


def test_the_validation_cells_run_the_official_settings_but_for_the_frame_budget(published):
    cfg = workflow_config("validate.yaml")
    cells = grid.compose_all(cfg)
    assert len(cells) == 3 * 2 * 2
    for (agent, task, seed), cell in cells.items():
        official = cell_config.compose(agent, task, {})
        ours, theirs = cell_config.comparable(cell), cell_config.comparable(official)
        ours.pop("seed"), theirs.pop("seed")
        changed = {k for k in ours if ours[k] != theirs[k]}
        assert changed <= BUDGET_KEYS, f"{agent}/{task}: {changed - BUDGET_KEYS} differ from the official"
        assert ours["agent"] == theirs["agent"]
        assert (cell.batch_size, cell.episode_frames, cell.feature_dim, cell.agent.hidden_dim,
                cell.num_seed_frames, cell.num_eval_episodes) == (256, 1000, 50, 1024, 4000, 10)
        assert cell.num_train_frames == {TASK: 40000, "cartpole_balance": 60000}[task]
        evals = set(range(0, cell.num_train_frames + 1, cell.eval_every_frames))
        record = set(published[published["task"] == task]["frame"])
        assert evals <= record and {0, cell.num_train_frames} <= evals


def test_the_cpu_overlay_is_one_drqv2_cell_on_the_cpu():
    cfg = workflow_config("validate.yaml", "validate_cpu.yaml")
    assert list(grid.compose_all(cfg)) == [("drqv2", TASK, 1)]
    assert cfg["train"]["device"] == "cpu" and cfg["validate"]["reference"] == "drqv2_published:drqv2"


def test_the_dry_runs_list_exactly_the_validation_cells(tmp_path):
    wf = workflow_copy(tmp_path)
    done = snakemake(wf, "-n", "validate", "--configfile", "config/validate.yaml")
    assert done.returncode == 0, done.stderr
    assert planned_jobs(done) == {"train": 12, "validate_verdicts": 1, "validate": 1}
    for agent in ("drqv2", "drm", "alix"):
        for task in (TASK, "cartpole_balance"):
            for seed in (1, 2):
                assert f"results/runs/{agent}/{task}/seed{seed}/eval.csv" in done.stdout
    cpu = snakemake(wf, "-n", "validate", "--configfile", "config/validate.yaml", "config/validate_cpu.yaml")
    assert planned_jobs(cpu) == {"train": 1, "validate_verdicts": 1, "validate": 1}


def test_the_figure_draws_from_the_cache_alone(published, tmp_path):
    seed3 = published[(published["task"] == TASK) & (published["seed"] == 3)]
    tidy = pd.concat([published, as_harness(seed3), as_harness(seed3, agent="drm")])
    tidy.to_csv(tmp_path / "tidy.csv", index=False)
    validation.reference_bands(tidy, REFERENCE).to_csv(tmp_path / "bands.csv", index=False)
    validation.verdicts(tidy, REFERENCE).to_csv(tmp_path / "verdict.csv", index=False)
    del tidy  # from here on, only the files
    cached = [pd.read_csv(tmp_path / f"{name}.csv") for name in ("tidy", "bands", "verdict")]
    paths = [tmp_path / f"{TASK}.png", tmp_path / f"{TASK}.pdf"]
    validation_plot.draw_task(*cached, TASK, paths)
    validation_plot.write_html_table(cached[2], tmp_path / "verdict.html")
    assert all(p.stat().st_size > 10_000 for p in paths)
    page = (tmp_path / "verdict.html").read_text()
    assert page.count("<tr>") == 1 + 2 * len(seed3) and "inside" in page


@pytest.mark.slow
def test_validate_end_to_end_on_a_tiny_cell(tmp_path):
    """The real rule chain: a tiny cell trains, then verdicts, figures and one printed line."""
    wf = workflow_copy(tmp_path)
    tiny = write_config(wf, "tiny.yaml", f"""
agents: [drqv2]
tasks: [{TASK}]
seeds: [1]
train:
  device: cpu
  threads: 1
  overrides: {{num_train_frames: 1000, num_seed_frames: 500, eval_every_frames: 500, save_video: false,
              num_eval_episodes: 1, episode_frames: 250, batch_size: 16, replay_buffer_size: 10000}}
  task_overrides: {{{TASK}: {{num_train_frames: 1000}}}}
""")
    done = snakemake(wf, "--cores", "2", "validate", "--configfile", "config/validate.yaml", tiny,
                     timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = pd.read_csv(wf / "results" / "validate" / "verdict.csv")
    assert list(table["frame"]) == [0, 500, 1000]
    assert list(table["verdict"])[1:] == [validation.NO_FRAME] * 2
    assert table["verdict"].iloc[0] in (validation.INSIDE, validation.BELOW, validation.ABOVE)
    assert "drqv2 cartpole_balance_sparse seed 1: " in done.stdout
    assert (wf / "results" / "validate" / f"{TASK}.png").stat().st_size > 10_000


def test_a_run_evaluated_once_and_a_task_without_runs_are_drawn_visibly(published):
    """The demo's shapes: a run with its first evaluation only (the band is one frame), and a
    task of the grid that no run has finished."""
    first = as_harness(published[(published["task"] == TASK) & (published["seed"] == 3)
                                 & (published["frame"] == 0)])
    tidy = pd.concat([published, first])
    bands, table = validation.reference_bands(tidy, REFERENCE), validation.verdicts(tidy, REFERENCE)
    ax, = validation_plot.task_figure(tidy, bands, table, TASK).axes
    median, = (line for line in ax.get_lines() if line.get_label() == "median")
    assert median.get_marker() == "o" and median.get_xydata().tolist() == [[0.0, 43.55]]
    ranges = {c.get_label(): c.get_segments() for c in ax.collections}
    assert ranges["interquartile range"][0].tolist() == [[0.0, 33.725], [0.0, pytest.approx(71.925)]]
    assert not ax.texts
    ax, = validation_plot.task_figure(tidy, bands, table, "cartpole_balance").axes
    text, = ax.texts
    assert text.get_text().replace("\n", " ") == "no data: no finished harness run of this task yet"
    assert text.get_transform() == ax.transAxes


RECORDED = REPO / "docs" / "validation" / "runs"  # the validation runs kept in the repository


def test_the_recorded_runs_import_as_a_runs_folder():
    """Every run kept under docs/validation/runs lies in its own folder and passes the importer's
    checks; the 40k-frame CPU runs of all three agents are among them."""
    cells = [tuple(p.relative_to(RECORDED).parts) for p in sorted(RECORDED.glob("*/*/seed*"))]
    assert ("drqv2", TASK, "seed1") in cells
    for agent, task, seed in cells:
        tidy = results.load(RECORDED, [agent], [task], [int(seed.removeprefix("seed"))], [],
                            skip_bad=False).tidy
        assert len(tidy) >= 2 and tidy["frame"].iloc[0] == 0, (agent, task, seed)
    drqv2 = results.load(RECORDED, ["drqv2"], [TASK], [1], [], skip_bad=False).tidy
    assert list(drqv2["frame"]) == [0, 20000, 40000] and drqv2["episode_reward"].iloc[-1] == 1000.0
    assert drqv2["dormant_ratio"].iloc[1:].between(0, 1).all()  # train.csv came with it
    drm = results.load(RECORDED, ["drm"], [TASK], [1], [], skip_bad=False).tidy
    assert list(drm["frame"]) == [0, 20000, 40000] and list(drm["episode_reward"]) == [51.1, 1000.0, 1000.0]
    alix = results.load(RECORDED, ["alix"], [TASK], [1], [], skip_bad=False).tidy
    assert list(alix["frame"]) == [0, 20000, 40000] and list(alix["episode_reward"]) == [43.1, 29.2, 37.8]
    assert alix["dormant_ratio"].iloc[1:].between(0, 1).all()
