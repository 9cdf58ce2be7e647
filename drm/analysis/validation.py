"""Verdicts of the harness's runs against a published seed distribution, frame by frame.

Pure functions over the tidy table of `drm.analysis.results.load` (the one importer): each of our
evaluations is set beside the published seeds' returns at the same frame of the same task, and
called inside the published range [min, max], below it or above it. A task or frame the record
lacks gets a row that says so; nothing is dropped. The validation workflow (`validate`) and the
claims (`agrees_with_published`) both score with `verdicts`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from drm.analysis.results import HARNESS
from drm.layout import parse_series

INSIDE, BELOW, ABOVE = "inside", "below", "above"
NO_TASK = "no record for this task"
NO_FRAME = "no record at this frame"
COLUMNS = ["agent", "task", "seed", "frame", "episode_reward", "reference", "published_seeds",
           "published_min", "published_q25", "published_median", "published_q75",
           "published_max", "percentile_rank", "verdict"]


def parse_reference(text: str) -> tuple[str, str]:
    """'drqv2_published:drqv2' -> (source, agent); the source must not be the harness itself."""
    source, agent = parse_series(text)
    if not agent or source == HARNESS:
        raise ValueError(f"validate.reference {text!r} must be 'source:agent' naming a published "
                         "source of aggregate.published and its agent, e.g. 'drqv2_published:drqv2'")
    return source, agent


def percentile_rank(value: float, published: np.ndarray) -> float:
    """Percent of published seeds below `value`, ties counted half (0 below all, 100 above all)."""
    published = np.asarray(published, dtype=float)
    below = np.count_nonzero(published < value)
    ties = np.count_nonzero(published == value)
    return 100.0 * (below + 0.5 * ties) / len(published)


def band(published: np.ndarray) -> dict:
    """The published distribution at one frame: seed count, min, quartiles, max."""
    q25, median, q75 = np.quantile(published, [0.25, 0.5, 0.75])
    return dict(published_seeds=len(published), published_min=float(np.min(published)),
                published_q25=float(q25), published_median=float(median),
                published_q75=float(q75), published_max=float(np.max(published)))


def judge(value: float, published: np.ndarray) -> str:
    if value < np.min(published):
        return BELOW
    return ABOVE if value > np.max(published) else INSIDE


def reference_bands(tidy: pd.DataFrame, reference: tuple[str, str]) -> pd.DataFrame:
    """Per (task, frame) of the reference: its band (for figures and verdicts)."""
    source, agent = reference
    ref = tidy[(tidy["source"] == source) & (tidy["agent"] == agent)]
    rows = [dict(task=task, frame=int(frame), **band(group["episode_reward"].to_numpy(float)))
            for (task, frame), group in ref.groupby(["task", "frame"], sort=True)]
    return pd.DataFrame(rows, columns=["task", "frame", *COLUMNS[6:12]])


def verdicts(tidy: pd.DataFrame, reference: tuple[str, str], agents=None) -> pd.DataFrame:
    """One row per evaluation of each harness run (of `agents`, or all), against `reference`."""
    source, ref_agent = reference
    ref = tidy[(tidy["source"] == source) & (tidy["agent"] == ref_agent)]
    by_cell = {key: g["episode_reward"].to_numpy(float)
               for key, g in ref.groupby(["task", "frame"], sort=False)}
    ref_tasks = set(ref["task"])
    ours = tidy[tidy["source"] == HARNESS]
    if agents is not None:
        ours = ours[ours["agent"].isin(list(agents))]
    rows = []
    for run in ours.itertuples(index=False):
        row = dict(agent=run.agent, task=run.task, seed=int(run.seed), frame=int(run.frame),
                   episode_reward=float(run.episode_reward), reference=f"{source}:{ref_agent}")
        published = by_cell.get((run.task, run.frame))
        if published is None:
            row["verdict"] = NO_FRAME if run.task in ref_tasks else NO_TASK
        else:
            row.update(band(published), percentile_rank=percentile_rank(run.episode_reward, published),
                       verdict=judge(run.episode_reward, published))
        rows.append(row)
    table = pd.DataFrame(rows, columns=COLUMNS).astype({"published_seeds": "Int64"})
    return table.sort_values(["agent", "task", "seed", "frame"], ignore_index=True)


def summary_lines(table: pd.DataFrame) -> list[str]:
    """One line per run: its last evaluation the record covers (or why none is covered)."""
    lines = []
    for (agent, task, seed), run in table.groupby(["agent", "task", "seed"], sort=True):
        judged = run[run["verdict"].isin([INSIDE, BELOW, ABOVE])]
        last = (judged if len(judged) else run).iloc[-1]
        head = f"{agent} {task} seed {seed}: {last.episode_reward:.1f} at {last.frame} frames; "
        if not len(judged):
            lines.append(head + f"{last.verdict}")
            continue
        against = '' if last.reference.endswith(f":{agent}") else f" (against the record of {last.reference})"
        lines.append(head + f"published {last.published_min:.1f}-{last.published_max:.1f} "
                            f"({int(last.published_seeds)} seeds): {last.verdict}{against}")
    return lines
