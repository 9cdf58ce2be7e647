"""Figures from the cache alone: every file, one colour per series, clear failure without a cache."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jsonschema
import matplotlib.image
import pandas as pd
import pytest
import yaml

from drm.analysis import aggregate, figures
from drm.analysis.synthetic import make_grid

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "results" / "published" / "drqv2"
pytestmark = pytest.mark.skipif(not PUBLISHED.is_dir(), reason=f"{PUBLISHED} is absent")
TASKS = ["walker_walk", "cheetah_run"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    figures.plt.close("all")


@pytest.fixture(scope="module")
def grid_aggregate(tmp_path_factory):
    """Harness runs of all three agents on two published tasks, aggregated with the published data."""
    root = tmp_path_factory.mktemp("grid")
    make_grid(root / "runs", tasks=TASKS, seeds=range(1, 4), evals=6)
    config = dict(agents=["drm", "drqv2", "alix"], tasks=TASKS, seeds=[1, 2, 3], aggregate=dict(
        reps=100, profile_reps=50,
        published=[dict(name="drqv2_published", path=str(PUBLISHED), format="drqv2")]))
    aggregate.run(config, root / "runs", root / "agg")
    return root / "agg"


def test_plot_cli_draws_every_figure_as_png_and_pdf(grid_aggregate, tmp_path):
    done = subprocess.run([sys.executable, "-m", "drm.analysis.plot", "--aggregate", str(grid_aggregate),
                           "--out", str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    expected = sorted([f"{name}.{ext}" for name in figures.FIGURES for ext in ("png", "pdf")]
                      + ["claims.csv"])  # the report's verdict table (drm.analysis.claims.show)
    assert sorted(p.name for p in tmp_path.iterdir()) == expected
    for name in figures.FIGURES:
        image = matplotlib.image.imread(tmp_path / f"{name}.png")
        assert image.shape[0] > 150 and image.shape[1] > 300
        assert (tmp_path / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"


def test_redrawing_never_resamples(grid_aggregate, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("figures must not bootstrap")
    monkeypatch.setattr("rliable.library.get_interval_estimates", refuse)
    monkeypatch.setattr("drm.analysis.stats.interval_estimate", refuse)
    assert len(figures.draw_all(grid_aggregate, tmp_path)) == 2 * len(figures.FIGURES)


def test_missing_cache_fails_with_the_command_to_run(tmp_path):
    done = subprocess.run([sys.executable, "-m", "drm.analysis.plot", "--aggregate", str(tmp_path / "none"),
                           "--out", str(tmp_path / "figs")], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2
    assert "run `snakemake aggregate` first" in done.stderr
    assert not (tmp_path / "figs").exists()


def _lines(fig):
    return [(line.get_color(), line.get_linestyle()) for ax in fig.axes for line in ax.get_lines()
            if line.get_xydata().shape[0] > 2]


def test_one_colour_per_series_in_every_figure(grid_aggregate):
    cache = figures.load_cache(grid_aggregate)
    assert cache.colour == {("harness", "drm"): "#D55E00", ("harness", "drqv2"): "#0072B2",
                            ("harness", "alix"): "#009E73", ("drqv2_published", "drqv2"): "#56B4E9"}
    assert set(cache.colour.values()) <= set(figures.OKABE_ITO.values())
    assert [figures.label(*s) for s in cache.colour] == ["DrM", "DrQ-v2", "A-LIX", "DrQ-v2 (published)"]
    fig = figures.task_curves_mean_std(cache)
    assert {c for c, _ in _lines(fig)} == set(cache.colour.values())
    assert ("#56B4E9", "--") in _lines(fig)  # published curves are dashed too
    fig = figures.dormant_ratio(cache)
    assert {c for c, _ in _lines(fig)} == {"#D55E00", "#0072B2", "#009E73"}  # no published dormant ratio
    fig = figures.harness_vs_published(cache)
    assert {c for c, _ in _lines(fig)} == {"#0072B2", "#56B4E9"}


def test_titles_and_axes_carry_budget_seeds_and_units(grid_aggregate):
    cache = figures.load_cache(grid_aggregate)
    # every run reached 50k frames (the harness's 6 evaluations, every 10k); the grid is the
    # harness's (the published series, every 20k, is read at or before it), so scores are at 50k
    assert cache.meta["budgets"]["walker_walk"] == 50000
    assert cache.meta["score_frames"]["walker_walk"] == 50000
    head = figures.aggregate_estimates(cache)._suptitle.get_text()
    assert "2 tasks" in head and "3-10 seeds per task" in head and "scores at 50k frames" in head
    assert "100 reps" in head
    fig = figures.sample_efficiency(cache)
    assert fig.axes[0].get_xlabel() == "Environment frames (thousands)"
    fig = figures.task_curves_iqm(cache)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "walker_walk (50k frames; n = 3/3/3/10)" in titles
    assert fig.axes[0].get_ylabel() == figures.SCORE_LABEL
    fig = figures.probability_of_improvement(cache)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["P(DrM > DrQ-v2)", "P(DrM > A-LIX)"]


def test_every_file_is_written_even_when_nothing_can_be_aggregated(tmp_path):
    make_grid(tmp_path / "runs", agents=("drm",), tasks=("cheetah_run",), seeds=(1, 2), evals=4)
    make_grid(tmp_path / "runs", agents=("drqv2",), tasks=("walker_run",), seeds=(1, 2), evals=4)
    config = dict(agents=["drm", "drqv2"], tasks=["cheetah_run", "walker_run"], seeds=[1, 2],
                  aggregate=dict(reps=20, profile_reps=20, published=[]))
    res = aggregate.run(config, tmp_path / "runs", tmp_path / "agg")
    assert res.meta["tasks"] == [] and res.scores.empty and res.estimates.empty
    paths = figures.draw_all(tmp_path / "agg", tmp_path / "figs")
    assert len(paths) == 2 * len(figures.FIGURES) and all(p.stat().st_size > 0 for p in paths)
    cache = figures.load_cache(tmp_path / "agg")
    assert figures.aggregate_estimates(cache).axes[0].texts[0].get_text().startswith("No series")
    assert {c for c, _ in _lines(figures.task_curves_mean_std(cache))} == {"#D55E00", "#0072B2"}


def test_published_config_aggregates_and_plots_the_published_curves_alone(tmp_path):
    config = yaml.safe_load((REPO / "config" / "published.yaml").read_text())
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    jsonschema.validate(config, schema)  # a whole workflow config
    assert config["agents"] == [] and config["seeds"] == [] and len(config["tasks"]) == 24
    config["aggregate"].update(reps=50, profile_reps=20)  # the file's own reps take minutes
    config["aggregate"]["published"][0]["path"] = str(PUBLISHED)
    res = aggregate.run(config, tmp_path / "runs", tmp_path / "agg")
    assert res.meta["tasks"] == config["tasks"]
    assert res.scores.groupby("task").size().sum() == 10 * 16 + 9 * 3 + 8 * 5
    assert set(res.scores["frames"]) == {980000, 1000000, 2980000, 30000000}
    assert res.meta["curve_frames"][-1] == 900000  # the humanoid grid (100k) up to the 0.98M tasks
    skipped = pd.read_csv(tmp_path / "agg" / "skipped.csv")
    assert skipped.empty
    cache = figures.load_cache(tmp_path / "agg")
    note = figures.probability_of_improvement(cache).axes[0].texts[0].get_text()
    assert note.startswith("No probability of improvement")
    assert figures.harness_vs_published(cache).axes[0].texts[0].get_text().startswith(
        "No harness runs of drqv2 to compare with the published runs: see task_curves_mean_std")
    note = figures.sample_efficiency(cache).axes[0].get_title(loc="left")
    assert note.startswith("The curve stops at 900k frames") and "980k-30M frames" in note


def _band_ys(fig):
    return [path.vertices[:, 1] for ax in fig.axes for band in ax.collections
            for path in band.get_paths()]


def test_bands_stay_in_the_possible_range_on_one_shared_axis(grid_aggregate):
    cache = figures.load_cache(grid_aggregate)
    cache.curves["std"] = 600.0  # mean +- std far beyond [0, 1000] ...
    cache.curves["dormant_std"] = 0.8  # ... and beyond [0, 1]
    for draw in (figures.task_curves_mean_std, figures.task_curves_iqm, figures.dormant_ratio,
                 figures.harness_vs_published):
        fig = draw(cache)
        ys = _band_ys(fig)
        assert ys and all(((y >= 0) & (y <= 1)).all() for y in ys), draw.__name__
        panels = [ax for ax in fig.axes if ax.get_title()]
        assert {ax.get_ylim() for ax in panels} == {(0, 1.02)}, "one shared normalized axis"
    assert "clipped to the possible range [0, 1]" in figures.task_curves_mean_std(cache)._suptitle.get_text()


DEMO_TASKS = ["cartpole_balance", "cup_catch"]


def write_demo_shaped_runs(runs, agents=("drm", "drqv2", "alix"), seeds=(1, 2)):
    """What config/demo.yaml's 400-frame cells leave: evaluations at 0, 200 and 400 frames and
    100-frame training episodes whose dormant ratio is known only once updates start (300 on),
    so each run has one evaluation with a dormant ratio."""
    for agent in agents:
        for task in DEMO_TASKS:
            for seed in seeds:
                run = runs / agent / task / f"seed{seed}"
                run.mkdir(parents=True)
                pd.DataFrame(dict(frame=[0, 200, 400], episode_reward=[8.0 + seed, 20.0, 31.0])
                             ).to_csv(run / "eval.csv", index=False)
                pd.DataFrame(dict(frame=[100, 200, 300, 400],
                                  actor_dormant_ratio=[None, None, 0.5, 0.3 + 0.1 * seed])
                             ).to_csv(run / "train.csv", index=False)
                (run / "meta.json").write_text("{}")


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    write_demo_shaped_runs(root / "runs")
    config = dict(agents=["drm", "drqv2", "alix"], tasks=DEMO_TASKS, seeds=[1, 2],
                  aggregate=dict(reps=50, profile_reps=20, published=[]))
    aggregate.run(config, root / "runs", root / "agg")
    return figures.load_cache(root / "agg")


def _panels(fig):
    return [ax for ax in fig.axes if ax.get_title()]


def test_a_dormant_ratio_known_at_one_evaluation_draws_a_marker_per_series(demo_cache):
    fig = figures.dormant_ratio(demo_cache)
    assert len(_panels(fig)) == len(DEMO_TASKS)
    for ax in _panels(fig):
        drawn = {line.get_color(): line for line in ax.get_lines()}
        assert set(drawn) == {"#D55E00", "#0072B2", "#009E73"}, ax.get_title()
        for line in drawn.values():
            assert line.get_marker() == "o"
            # at 400 frames, the mean over seeds of the episodes at 300 and 400: (0.45 + 0.5) / 2
            assert line.get_xydata().tolist() == [[0.4, pytest.approx(0.475)]]
        assert ax.get_xlim()[0] == 0  # the lone point shows where in the run it lies
        assert not ax.texts


def test_curves_of_several_evaluations_stay_lines(demo_cache):
    for ax in _panels(figures.task_curves_mean_std(demo_cache)):
        assert {line.get_marker() for line in ax.get_lines()} == {"None"}
        assert {len(line.get_xydata()) for line in ax.get_lines()} == {3}


def test_a_panel_without_data_says_so_inside_it(demo_cache):
    demo_cache.curves = demo_cache.curves[demo_cache.curves["task"] != "cup_catch"]
    for draw in (figures.task_curves_mean_std, figures.task_curves_iqm):
        empty, = (ax for ax in _panels(draw(demo_cache)) if ax.get_title().startswith("cup_catch"))
        assert not empty.get_lines()
        text, = empty.texts
        assert text.get_text().replace("\n", " ") == (
            "no data: no evaluation of this task in the aggregate's runs")
        assert text.get_transform() == empty.transAxes and text.get_position() == (0.5, 0.5)
