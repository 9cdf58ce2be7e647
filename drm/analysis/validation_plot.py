"""The validation figures and table, drawn from the cached verdicts alone (results/validate/).

One figure per task: the published seeds' band (min-max and interquartile range, median dashed)
with every harness run drawn over it, each evaluation marked by its verdict.
"""
from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from drm.analysis import validation  # noqa: E402
from drm.analysis.figures import AGENT_NAMES, COLOURS, OKABE_ITO, no_data, plot_known  # noqa: E402
from drm.analysis.results import HARNESS, MAX_RETURN  # noqa: E402

MARKERS = {validation.INSIDE: "o", validation.BELOW: "v", validation.ABOVE: "^"}


def draw_task(tidy: pd.DataFrame, bands: pd.DataFrame, table: pd.DataFrame, task: str, paths) -> None:
    """Our runs of `task` over the reference's band; saved to each of `paths` (PNG, PDF)."""
    fig = task_figure(tidy, bands, table, task)
    for path in paths:
        fig.savefig(path, dpi=150 if str(path).endswith(".png") else None)
    plt.close(fig)


def task_figure(tidy: pd.DataFrame, bands: pd.DataFrame, table: pd.DataFrame, task: str):
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    ours = tidy[(tidy["source"] == HARNESS) & (tidy["task"] == task)]
    band = bands[bands["task"] == task]
    reference = table["reference"].iloc[0] if len(table) else "the reference"
    last = ours["frame"].max() if len(ours) else (band["frame"].max() if len(band) else 0)
    beyond = band.loc[band["frame"] >= last, "frame"]
    band = band[band["frame"] <= (beyond.min() if len(beyond) else last)]  # covers our last frame
    # a band needs two frames: at a single frame the ranges are bars (our runs evaluated only there)
    spread = ax.fill_between if len(band) > 1 else (
        lambda x, low, high, **style: ax.vlines(x, low, high, **{**style, "linewidth": 8}))
    if len(band):
        x = band["frame"] / 1e3
        spread(x, band["published_min"], band["published_max"], color="grey", alpha=0.2,
               label=f"{reference}: min-max ({band['published_seeds'].max()} seeds)")
        spread(x, band["published_q25"], band["published_q75"], color="grey", alpha=0.4,
               label="interquartile range")
        plot_known(ax, x, band["published_median"], color="black", linestyle="--", linewidth=1,
                   label="median")
    judged = table[table["task"] == task].set_index(["agent", "seed", "frame"])["verdict"]
    for (agent, seed), run in ours.groupby(["agent", "seed"], sort=True):
        colour = COLOURS.get((HARNESS, agent), OKABE_ITO["black"])
        x = run["frame"] / 1e3
        ax.plot(x, run["episode_reward"], color=colour, linewidth=1.4, alpha=0.9,
                label=f"{AGENT_NAMES.get(agent, agent)} seed {seed}")
        for frame, value in zip(run["frame"], run["episode_reward"]):
            verdict = judged.get((agent, seed, frame), validation.NO_FRAME)
            ax.plot(frame / 1e3, value, color=colour, linestyle="none",
                    marker=MARKERS.get(verdict, "x"), markersize=6)
    if ours.empty:
        no_data(ax, "no finished harness run of this task yet")
    ax.set_ylim(-0.02 * MAX_RETURN, 1.02 * MAX_RETURN)
    ax.set_xlabel("Environment frames (thousands)")
    ax.set_ylabel("Evaluation return (mean of the episodes)")
    ax.grid(alpha=0.25)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize="small", frameon=False, loc="best")
    ax.set_title(f"{task}: harness runs over the published record\nmarkers: o inside, "
                 "v below, ^ above the published range at that frame; x no record there",
                 fontsize="medium")
    return fig


def write_html_table(table: pd.DataFrame, path) -> None:
    """The verdict table as one HTML page for the Snakemake report."""
    shown = table.drop(columns=["reference"]).copy()
    for col in shown.columns:
        if shown[col].dtype.kind == "f":
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                   for row in shown.itertuples(index=False))
    reference = html.escape(str(table["reference"].iloc[0])) if len(table) else ""
    Path(path).write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><style>table{border-collapse:collapse;"
        "font:13px sans-serif}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "</style></head><body>"
        f"<p>Each evaluation of each run against the published seeds of {reference} at the same "
        "frame (inside = within [min, max]; percentile rank counts ties half).</p>"
        f"<table><tr>{head}</tr>{body}</table></body></html>")
