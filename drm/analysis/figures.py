"""Every figure, drawn from the aggregate cache alone (never resampling), as PNG and PDF.

One colour per series across every figure (Okabe-Ito, colour-blind safe); published sources are
also dashed. Titles carry what a caption must: the frame budget, the seed and task counts and the
bootstrap reps. Each figure always gets its files, with a note in place of the plot when the
data cannot show it (e.g. no dormant ratio in published curves), so the workflow's outputs exist.
Nothing is drawn invisibly: a series with a single known point gets a marker (a line needs two),
and a panel without data says so inside the panel.
"""
from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from drm.analysis.results import HARNESS, MAX_RETURN  # not drm.analysis.stats: rliable's imports cost a second
from drm.layout import parse_series

FIGURES = ("aggregate_estimates", "sample_efficiency", "performance_profile",
           "probability_of_improvement", "task_curves_mean_std", "task_curves_iqm",
           "dormant_ratio", "harness_vs_published")


class _Pyplot:
    """matplotlib.pyplot on the Agg backend, imported on first use: the workflow reads FIGURES
    when it parses, and must not pay for matplotlib there."""

    def __getattr__(self, name):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot

        return getattr(matplotlib.pyplot, name)


plt = _Pyplot()
OKABE_ITO = dict(orange="#E69F00", sky_blue="#56B4E9", green="#009E73", yellow="#F0E442",
                 blue="#0072B2", vermillion="#D55E00", purple="#CC79A7", black="#000000")
COLOURS = {(HARNESS, "drm"): OKABE_ITO["vermillion"], (HARNESS, "drqv2"): OKABE_ITO["blue"],
           (HARNESS, "alix"): OKABE_ITO["green"],
           ("drqv2_published", "drqv2"): OKABE_ITO["sky_blue"]}
SPARE = [OKABE_ITO[c] for c in ("orange", "purple", "black", "yellow")]
AGENT_NAMES = {"drm": "DrM", "drqv2": "DrQ-v2", "alix": "A-LIX"}
METRIC_NAMES = {"iqm": "IQM", "median": "Median", "mean": "Mean", "optimality_gap": "Optimality gap"}
METRICS = tuple(METRIC_NAMES)
SCORE_LABEL = "Normalized score (return / 1000)"
RANGE_TEXT = "[0, 1]"


class CacheMissing(FileNotFoundError):
    pass


def label(source: str, agent: str) -> str:
    """'DrM' for the harness's drm; 'DrQ-v2 (published)' for source drqv2_published."""
    name = AGENT_NAMES.get(agent, agent)
    if source == HARNESS:
        return name
    return f"{name} (published)" if source == f"{agent}_published" else f"{name} ({source})"


@dataclass
class Cache:
    meta: dict
    estimates: pd.DataFrame
    profiles: pd.DataFrame
    curves: pd.DataFrame

    def __post_init__(self):
        series = sorted(((s["source"], s["agent"]) for s in self.meta["series"]), key=_order)
        spare = iter(SPARE * len(series))
        self.colour = {s: COLOURS.get(s) or next(spare) for s in series}
        self.dash = {s: "-" if s[0] == HARNESS else "--" for s in series}
        self.aggregate = sorted(((s["source"], s["agent"]) for s in self.meta["series"]
                                 if s["in_aggregate"]), key=_order)

    def frames_text(self) -> str:
        f = sorted({self.meta["score_frames"][t] for t in self.meta["tasks"]})
        if len(f) == 1:
            return f"scores at {_frames(f[0])} frames"
        return f"scores at each task's last aligned evaluation ({_frames(f[0])}-{_frames(f[-1])} frames)"

    def seeds_text(self) -> str:
        n = sorted({v for s in self.meta["series"] for v in s["used_seeds"].values()})
        return (f"{n[0]}" if n[0] == n[-1] else f"{n[0]}-{n[-1]}") + " seeds per task" if n else ""

    def head(self, what: str, reps: int) -> str:
        return (f"{what}\n{len(self.meta['tasks'])} tasks, {self.seeds_text()}, {self.frames_text()}\n"
                f"95% stratified-bootstrap CIs, {reps:,} reps; ragged seeds: {self.meta['ragged']}")


def _order(series: tuple[str, str]):
    """Harness before published; DrM, DrQ-v2, A-LIX, then other agents by name."""
    known = list(AGENT_NAMES)
    return (series[0] != HARNESS, series[0], known.index(series[1]) if series[1] in known else len(known),
            series[1])


def load_cache(agg_dir) -> Cache:
    agg = Path(agg_dir)
    need = [agg / "cache" / "meta.json", agg / "estimates.csv", agg / "cache" / "profiles.csv",
            agg / "cache" / "task_curves.csv"]
    missing = [str(p) for p in need if not p.exists()]
    if missing:
        raise CacheMissing(f"no aggregate cache ({', '.join(missing)} missing): "
                           "run `snakemake aggregate` first (or python -m drm.analysis.aggregate)")
    return Cache(json.loads(need[0].read_text()), *(pd.read_csv(p) for p in need[1:]))


def _frames(f: float) -> str:
    if f >= 1e6:
        return f"{f / 1e6:g}M"
    return f"{f / 1e3:g}k" if f >= 1e3 else f"{f:g}"


def _frame_axis(max_frame: float):
    """(divisor, label): millions unless the runs are shorter than a million frames."""
    if max_frame >= 1e6:
        return 1e6, "Environment frames (millions)"
    return 1e3, "Environment frames (thousands)"


def plot_known(ax, x, y, **style):
    """ax.plot of the points where y is known, with a marker where only one is: matplotlib draws
    a lone point of a line (or one between NaNs) as nothing at all."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    known = ~np.isnan(y)
    if known.sum() == 1:
        style = {"marker": "o", "markersize": 6, **style}
    return ax.plot(x[known], y[known], **style)


def no_data(ax, why: str) -> None:
    """Says inside an axes that it is empty, and why."""
    ax.text(0.5, 0.5, textwrap.fill(f"no data: {why}", 40), transform=ax.transAxes, ha="center",
            va="center", color="dimgrey", fontsize="medium")


def _note(text: str):
    fig, ax = plt.subplots(figsize=(6, 2), layout="constrained")
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return fig


def aggregate_estimates(c: Cache):
    if not c.aggregate:
        return _note("No series covers the aggregate's tasks: nothing to estimate.")
    e = c.estimates[c.estimates["metric"].isin(METRICS)]
    n = len(c.aggregate)
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.4 * len(METRICS), 1.6 + 0.45 * n),
                             sharey=True, layout="constrained")
    for ax, metric in zip(axes, METRICS):
        for i, s in enumerate(c.aggregate):
            row = e[(e["source"] == s[0]) & (e["agent"] == s[1]) & (e["metric"] == metric)].iloc[0]
            ax.barh(i, row["ci_high"] - row["ci_low"], left=row["ci_low"], height=0.6,
                    color=c.colour[s], alpha=0.8)
            ax.vlines(row["estimate"], i - 0.3, i + 0.3, color="black", linewidth=1.5)
        ax.set_title(METRIC_NAMES[metric] + (" (lower is better)" if metric == "optimality_gap" else ""),
                     fontsize="medium")
        ax.set_xlabel(SCORE_LABEL, fontsize="small")
        ax.xaxis.set_major_locator(plt.MaxNLocator(4))
        ax.grid(axis="x", alpha=0.25)
        ax.spines[["top", "right", "left"]].set_visible(False)
        ax.tick_params(axis="y", length=0)
    axes[0].set_yticks(range(n), [label(*s) for s in c.aggregate])
    axes[0].invert_yaxis()
    fig.suptitle(c.head("Aggregate estimates: point estimate (black) and 95% CI (bar)",
                        int(e["reps"].max())), fontsize="medium")
    return fig


def _style(ax, xlabel: str, ylabel: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.25)
    ax.spines[["top", "right"]].set_visible(False)


def _bands(c: Cache, table: pd.DataFrame, x: str, y: str, xscale: float = 1.0):
    """One line with its CI band per aggregate series, from rows (source, agent, x, y, ci_low, ci_high)."""
    fig, ax = plt.subplots(figsize=(7, 5), layout="constrained")
    for s in c.aggregate:
        r = table[(table["source"] == s[0]) & (table["agent"] == s[1])]
        plot_known(ax, r[x] / xscale, r[y], color=c.colour[s], linestyle=c.dash[s], linewidth=2,
                   label=label(*s))
        ax.fill_between(r[x] / xscale, r["ci_low"], r["ci_high"], color=c.colour[s], alpha=0.2, linewidth=0)
    ax.legend(frameon=False)
    return fig, ax


def sample_efficiency(c: Cache):
    e = c.estimates[c.estimates["metric"] == "iqm_curve"]
    if e.empty:
        return _note("No IQM sample-efficiency curve: no series covers the aggregate's tasks.")
    div, xlabel = _frame_axis(e["frames"].max())
    fig, ax = _bands(c, e, "frames", "estimate", div)
    _style(ax, xlabel, "IQM normalized score (return / 1000)")
    end = c.meta["curve_frames"][-1]
    fig.suptitle(
        f"IQM sample efficiency\n{len(c.meta['tasks'])} tasks, {c.seeds_text()}, up to "
        f"{_frames(end)} frames\n95% stratified-bootstrap CIs, "
        f"{int(e['reps'].max()):,} reps per point; ragged seeds: {c.meta['ragged']}", fontsize="medium")
    scored = sorted({c.meta["score_frames"][t] for t in c.meta["tasks"]})
    if scored and scored[-1] > end:  # the aggregate estimates read scores further than the curve
        ax.set_title(f"The curve stops at {_frames(end)} frames, the last frame every task's "
                     f"evaluations reach;\nthe aggregate estimates use {c.frames_text()}",
                     fontsize="small", loc="left")
    return fig


def performance_profile(c: Cache):
    if c.profiles.empty:
        return _note("No performance profile: no series covers the aggregate's tasks.")
    fig, ax = _bands(c, c.profiles, "tau", "fraction")
    _style(ax, r"Normalized score $\tau$ (return / 1000)", r"Fraction of runs with score $> \tau$")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    fig.suptitle(c.head("Performance profile (score distribution over runs)",
                        int(c.profiles["reps"].max())), fontsize="medium")
    return fig


def probability_of_improvement(c: Cache):
    e = c.estimates[c.estimates["metric"].str.startswith("prob_improvement_vs_")]
    if e.empty:
        return _note(f"No probability of improvement: needs aggregate runs of {c.meta['ours']} and "
                     f"of at least one of {', '.join(c.meta['baselines']) or 'no baselines'}.")
    fig, ax = plt.subplots(figsize=(8, 1.8 + 0.5 * len(e)), layout="constrained")
    names = []
    for i, (_, row) in enumerate(e.iterrows()):
        y = parse_series(row["metric"].removeprefix("prob_improvement_vs_"))
        names.append(f"P({label(row['source'], row['agent'])} > {label(*y)})")
        ax.barh(i, row["ci_high"] - row["ci_low"], left=row["ci_low"], height=0.6,
                color=c.colour.get(y, OKABE_ITO["black"]), alpha=0.8)
        ax.vlines(row["estimate"], i - 0.3, i + 0.3, color="black", linewidth=1.5)
    ax.axvline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_yticks(range(len(names)), names)
    ax.tick_params(axis="y", length=0)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    _style(ax, "Probability of improvement (bar colour: the baseline's)", "")
    ax.spines["left"].set_visible(False)
    fig.suptitle(c.head("Probability of improvement: P(X > Y) per task, averaged over tasks",
                        int(e["reps"].max())), fontsize="medium")
    return fig


def _task_panels(c: Cache, tasks: list, draw, ylabel: str, title: str, empty: str):
    """A grid of per-task axes; draw(ax, task, divisor) returns {series: seeds} it drew, and a
    panel where it drew nothing says `empty` inside.

    Every panel shares one y axis over the whole possible range [0, 1] (normalized score or
    dormant ratio), so that tasks compare at a glance and no panel zooms into a small gap; the
    x axis starts at frame 0, so that a lone point shows where in the run it lies."""
    ncols = min(4, len(tasks))
    nrows = math.ceil(len(tasks) / ncols)
    width = max(3.8 * ncols, 7.0)  # a single panel still fits its title, the legend and the caption
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, 1.0 + (2.6 if ncols > 1 else 3.6) * nrows),
                             squeeze=False, sharey=True, layout="constrained")
    axes[0, 0].set_ylim(0, 1.02)
    div, xlabel = _frame_axis(max(c.meta["score_frames"][t] for t in tasks))
    drawn = set()
    for i, (ax, task) in enumerate(zip(axes.flat, tasks)):
        seeds = draw(ax, task, div)
        drawn |= set(seeds)
        ax.set_xlim(0, max(c.meta["score_frames"][task] / div, ax.get_xlim()[1]))
        if not seeds:
            no_data(ax, empty)
        n = "/".join(str(seeds[s]) for s in c.colour if s in seeds)
        ax.set_title(f"{task} ({_frames(c.meta['score_frames'][task])} frames; n = {n or 0})",
                     fontsize="medium")
        ax.grid(alpha=0.25)
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(axis="y", labelleft=True)
        if i % ncols == 0:
            ax.set_ylabel(ylabel)
        if i + ncols >= len(tasks):  # lowest panel of its column
            ax.set_xlabel(xlabel)
    for ax in axes.flat[len(tasks):]:
        ax.axis("off")
    order = [s for s in c.colour if s in drawn]
    handles = [plt.Line2D([], [], color=c.colour[s], linestyle=c.dash[s], linewidth=2) for s in order]
    fig.legend(handles, [label(*s) for s in order], loc="outside lower center", ncol=len(order),
               frameon=False)
    wrapped = textwrap.fill(title, width=int(width * 9))  # about 9 large characters an inch
    fig.suptitle(f"{wrapped}\nn = seeds per series, in legend order", fontsize="large")
    return fig


def _curve_lines(c: Cache, column: str, low, high, series=None, seeds: str = "seeds",
                 scale: float = 1.0):
    """Lines of `column` / scale with bands [low, high] / scale, clipped to [0, 1]: a mean +- std
    band would otherwise reach below a score of 0 or above the maximum return."""
    def draw(ax, task, div):
        rows = c.curves[c.curves["task"] == task]
        drawn = {}
        for s in c.colour:
            if series is not None and s not in series:
                continue
            r = rows[(rows["source"] == s[0]) & (rows["agent"] == s[1])]
            r = r[r[column].notna()]
            if r.empty:
                continue
            x = r["frame"].to_numpy() / div
            lo, hi = (low(r) / scale).clip(0, 1), (high(r) / scale).clip(0, 1)
            plot_known(ax, x, r[column] / scale, color=c.colour[s], linestyle=c.dash[s], linewidth=1.6)
            if len(r) == 1:  # a band needs two points: the lone point's band is a bar
                ax.vlines(x, lo, hi, color=c.colour[s], alpha=0.4, linewidth=4)
            else:
                ax.fill_between(x, lo, hi, color=c.colour[s], alpha=0.2, linewidth=0)
            drawn[s] = int(r[seeds].max())
        return drawn
    return draw


NO_EVALUATIONS = "no evaluation of this task in the aggregate's runs"


def _tasks(c: Cache) -> list:
    return list(c.meta["score_frames"])


def task_curves_mean_std(c: Cache):
    return _task_panels(
        c, _tasks(c), _curve_lines(c, "mean", lambda r: r["mean"] - r["std"], lambda r: r["mean"] + r["std"],
                                   scale=MAX_RETURN),
        SCORE_LABEL, "Evaluation score per task: mean ± std across seeds, as the DrM paper "
        f"plots them (bands clipped to the possible range {RANGE_TEXT})", NO_EVALUATIONS)


def task_curves_iqm(c: Cache):
    return _task_panels(
        c, _tasks(c), _curve_lines(c, "iqm", lambda r: r["iqm_low"], lambda r: r["iqm_high"],
                                   scale=MAX_RETURN),
        SCORE_LABEL, f"Evaluation score per task: IQM across seeds with 95% "
        f"stratified-bootstrap CIs ({c.meta['profile_reps']:,} reps)", NO_EVALUATIONS)


def dormant_ratio(c: Cache):
    if c.curves.empty or not (c.curves["dormant_seeds"] > 0).any():
        return _note("No dormant ratio in these data: it comes from the harness's train.csv "
                     "(published curves carry none).")
    known = c.curves[c.curves["dormant_seeds"] > 0]
    tasks = [t for t in _tasks(c) if t in set(known["task"])]
    return _task_panels(
        c, tasks, _curve_lines(c, "dormant_mean", lambda r: r["dormant_mean"] - r["dormant_std"],
                               lambda r: r["dormant_mean"] + r["dormant_std"], seeds="dormant_seeds"),
        "Actor dormant ratio", "Actor dormant ratio per task: mean ± std across seeds (bands "
        f"clipped to {RANGE_TEXT}); each point averages the training episodes since the previous "
        "evaluation", "no run of this task logged an actor dormant ratio")


def harness_vs_published(c: Cache):
    others = [s for s in c.colour if s[0] != HARNESS]
    pairs = {s: (HARNESS, s[1]) for s in others if (HARNESS, s[1]) in c.colour}
    if not others:
        return _note("No published data in these results to compare with.")
    if not pairs:  # the published curves alone are task_curves_mean_std's
        return _note(f"No harness runs of {', '.join(sorted({s[1] for s in others}))} to compare "
                     "with the published runs: see task_curves_mean_std for the published curves.")
    series = set(pairs) | set(pairs.values())
    present = c.curves.groupby("task").apply(
        lambda r: set(zip(r["source"], r["agent"])), include_groups=False)
    tasks = [t for t in _tasks(c) if any({s, h} <= present.get(t, set()) for s, h in pairs.items())]
    if not tasks:
        return _note("The harness and the published data share no task.")
    return _task_panels(
        c, tasks, _curve_lines(c, "mean", lambda r: r["mean"] - r["std"], lambda r: r["mean"] + r["std"],
                               series=series, scale=MAX_RETURN),
        SCORE_LABEL, "The harness's runs against the published runs of the same agent: evaluation "
        f"score, mean ± std across seeds (bands clipped to {RANGE_TEXT})", NO_EVALUATIONS)


DRAWERS = dict(zip(FIGURES, (aggregate_estimates, sample_efficiency, performance_profile,
                         probability_of_improvement, task_curves_mean_std, task_curves_iqm,
                         dormant_ratio, harness_vs_published)))


def draw_all(agg_dir, out_dir, names=FIGURES) -> list[Path]:
    """Draws the named figures into out_dir as NAME.png and NAME.pdf; returns the paths."""
    cache = load_cache(agg_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        fig = DRAWERS[name](cache)
        for ext in ("png", "pdf"):  # PDF fonts stay Type 3: embedding TrueType costs seconds
            fig.savefig(out / f"{name}.{ext}", dpi=150 if ext == "png" else None)
            paths.append(out / f"{name}.{ext}")
        plt.close(fig)
    return paths
