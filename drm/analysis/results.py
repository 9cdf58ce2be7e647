"""Importers: the harness's runs and published curves into one tidy table, validated.

The tidy table has one row per evaluation of one run, keyed by (source, agent, task, seed, frame):
`episode_reward` is already the mean over that evaluation's episodes (a run is a seed, never an
episode), and `dormant_ratio` is the mean actor dormant ratio of the training episodes that ended
since the run's previous evaluation (NaN where unknown). Bad files raise `RunFileError`, which
names the file, the line and the problem; with `skip_bad=True` the bad run is left out instead
and listed in the returned `skipped` table.
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from drm import layout
from drm.layout import HARNESS

log = logging.getLogger(__name__)

MAX_RETURN = 1000.0  # DMC: rewards in [0, 1] over 1000 environment steps
# Tasks the normalizer knows (DrQ-v2 spelling: cup_catch is ball_in_cup_catch; reach_duplo is
# the manipulation suite's). Add a task here only if its returns also lie in [0, 1000].
DMC_TASKS = frozenset("""
acrobot_swingup acrobot_swingup_sparse ball_in_cup_catch cup_catch cartpole_balance
cartpole_balance_sparse cartpole_swingup cartpole_swingup_sparse cartpole_three_poles
cartpole_two_poles cheetah_run dog_fetch dog_run dog_stand dog_trot dog_walk finger_spin
finger_turn_easy finger_turn_hard fish_swim fish_upright hopper_hop hopper_stand humanoid_run
humanoid_stand humanoid_walk humanoid_CMU_run humanoid_CMU_stand humanoid_CMU_walk
manipulator_bring_ball manipulator_bring_peg manipulator_insert_ball manipulator_insert_peg
pendulum_swingup point_mass_easy point_mass_hard quadruped_escape quadruped_fetch quadruped_run
quadruped_walk reach_duplo reacher_easy reacher_hard stacker_stack_2 stacker_stack_4
swimmer_swimmer6 swimmer_swimmer15 walker_run walker_stand walker_walk
""".split())
TIDY_COLUMNS = ["source", "agent", "task", "seed", "frame", "episode_reward", "dormant_ratio"]
SKIPPED_COLUMNS = ["source", "agent", "task", "seed", "path", "line", "problem"]
FORMATS = {
    # DrQ-v2's `curves/`: an unnamed pandas index, then agent, task, seed, frame, episode_reward, hour.
    "drqv2": ["agent", "task", "seed", "frame", "episode_reward"],
    # Any tidy CSV: the same columns without the index; `dormant_ratio` optional.
    "tidy": ["agent", "task", "seed", "frame", "episode_reward"],
}


class RunFileError(ValueError):
    """A run file the statistics cannot use: `run` is (source, agent, task, seed) where known."""

    def __init__(self, path, line: int | None, problem: str, run: tuple | None = None):
        self.path, self.line, self.problem, self.run = str(path), line, problem, run
        where = f"{path}, line {line}" if line else str(path)
        super().__init__(f"{where}: {problem}")


@dataclass
class Imported:
    tidy: pd.DataFrame  # TIDY_COLUMNS
    skipped: pd.DataFrame  # SKIPPED_COLUMNS: bad, unfinished and missing runs


def agent_id(name: str) -> str:
    """'DrQ-v2' -> 'drqv2', so published agent names meet the harness's agent ids."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _line(index) -> int:
    return int(index) + 2  # pandas row 0 sits on line 2, under the header


def _require_columns(df: pd.DataFrame, required: list[str], path) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise RunFileError(path, 1, f"missing column(s) {', '.join(missing)} "
                                    f"(the header has: {', '.join(map(str, df.columns))})")


def _row_problems(df: pd.DataFrame, dormant_col: str | None, reward: bool = True) -> pd.Series:
    """One problem per bad row (first found), indexed like `df`; empty where the row is fine."""
    problems = pd.Series("", index=df.index, dtype=object)

    def flag(mask, text):
        fresh = mask & (problems == "")
        problems[fresh] = [text(i) for i in df.index[fresh]]

    frame = pd.to_numeric(df["frame"], errors="coerce")
    flag(frame.isna(), lambda i: f"frame {df.at[i, 'frame']!r} is not a number")
    flag(frame.notna() & ((frame < 0) | (frame % 1 != 0)),
         lambda i: f"frame {df.at[i, 'frame']!r} is not a whole number of frames >= 0")
    if reward:
        value = pd.to_numeric(df["episode_reward"], errors="coerce")
        flag(df["episode_reward"].isna(), lambda i: "episode_reward is NaN (empty)")
        flag(value.isna() & df["episode_reward"].notna(),
             lambda i: f"episode_reward {df.at[i, 'episode_reward']!r} is not a number")
        flag((value < 0) | (value > MAX_RETURN),
             lambda i: f"episode_reward {value[i]:g} is outside the DMC range [0, {MAX_RETURN:g}]")
    if "task" in df.columns:
        flag(~df["task"].isin(DMC_TASKS),
             lambda i: f"task {df.at[i, 'task']!r} is unknown to the normalizer "
                       "(drm.analysis.results.DMC_TASKS: DMC returns / 1000)")
    if dormant_col is not None:
        dormant = pd.to_numeric(df[dormant_col], errors="coerce")
        flag(dormant.isna() & df[dormant_col].notna(),
             lambda i: f"{dormant_col} {df.at[i, dormant_col]!r} is not a number")
        flag((dormant < 0) | (dormant > 1),
             lambda i: f"{dormant_col} {dormant[i]:g} is outside [0, 1]")
    return problems


def _frame_order_problems(frames: pd.Series) -> pd.Series:
    """Flags rows whose frame repeats or undercuts the previous row of the same run."""
    previous = frames.shift()
    text = pd.Series("", index=frames.index, dtype=object)
    dup, down = frames == previous, frames < previous
    text[dup] = [f"frame {int(frames[i])} repeats the previous row's frame (one row per evaluation: "
                 "average the evaluation episodes before import)" for i in frames.index[dup]]
    text[down] = [f"frame {int(frames[i])} is lower than the previous row's "
                  f"{int(previous[i])} (frames must increase)" for i in frames.index[down]]
    return text


def _first_error(path, problems: pd.Series, run) -> RunFileError | None:
    bad = problems[problems != ""]
    if bad.empty:
        return None
    more = f" (and {len(bad) - 1} more bad row(s))" if len(bad) > 1 else ""
    return RunFileError(path, _line(bad.index[0]), bad.iloc[0] + more, run)


class _Collector:
    """Raises the first error, or (skip_bad) records it and lets the caller go on."""

    def __init__(self, skip_bad: bool):
        self.skip_bad, self.rows = skip_bad, []

    def note(self, run: tuple, path, line, problem: str) -> None:
        source, agent, task, seed = run
        self.rows.append(dict(source=source, agent=agent, task=task, seed=seed,
                              path=str(path), line=line, problem=problem))

    def bad(self, error: RunFileError, run: tuple) -> None:
        if not self.skip_bad:
            raise error
        log.warning("skipping bad run %s: %s", "/".join(map(str, run)), error)
        self.note(run, error.path, error.line, error.problem)


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise RunFileError(path, None, f"not a readable CSV ({exc})") from exc


def _dormant_at_evals(eval_frames: np.ndarray, train: pd.DataFrame) -> np.ndarray:
    """Mean dormant ratio of the training episodes in (previous evaluation, this evaluation]."""
    bins = np.searchsorted(eval_frames, train["frame"].to_numpy(), side="left")
    inside = bins < len(eval_frames)
    means = (pd.Series(train["actor_dormant_ratio"].to_numpy()[inside], dtype=float)
             .groupby(bins[inside]).mean())
    out = np.full(len(eval_frames), np.nan)
    out[means.index.to_numpy()] = means.to_numpy()
    return out


def _check_placement(run: tuple, run_dir: Path) -> None:
    """A run lies in its own folder: the agent, task and seed its meta.json records (older
    runs may record none) are those of the directory it is imported from."""
    path = run_dir / layout.META_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFileError(path, None, f"not readable JSON ({exc})", run) from exc
    if not isinstance(meta, dict):
        raise RunFileError(path, None, "not a JSON object", run)
    for key, expected in zip(("agent", "task", "seed"), run[1:]):
        if key in meta and str(meta[key]) != str(expected):
            raise RunFileError(path, None, f"records {key} {meta[key]!r} but lies in the folder of "
                                           f"{key} {expected!r} (a misplaced run)", run)


def _read_harness_run(run: tuple, run_dir: Path) -> pd.DataFrame:
    source, agent, task, seed = run
    _check_placement(run, run_dir)
    eval_path = run_dir / layout.EVAL_FILE
    if task not in DMC_TASKS:
        raise RunFileError(eval_path, None, f"task {task!r} (from the run directory) is unknown to "
                                            "the normalizer (drm.analysis.results.DMC_TASKS)", run)
    if not eval_path.exists():
        raise RunFileError(eval_path, None, "missing (the run has meta.json but no eval.csv)", run)
    ev = _read_csv(eval_path)
    _require_columns(ev, ["frame", "episode_reward"], eval_path)
    if ev.empty:
        raise RunFileError(eval_path, None, "no evaluation rows", run)
    error = _first_error(eval_path, _row_problems(ev, None), run) or _first_error(
        eval_path, _frame_order_problems(ev["frame"].astype(float)), run)
    if error is not None:
        raise error
    frames = ev["frame"].to_numpy(dtype=np.int64)
    dormant = np.full(len(ev), np.nan)
    train_path = run_dir / layout.TRAIN_FILE
    if train_path.exists():
        train = _read_csv(train_path)
        _require_columns(train, ["frame", "actor_dormant_ratio"], train_path)
        problems = _row_problems(train, "actor_dormant_ratio", reward=False)
        error = _first_error(train_path, problems, run) or _first_error(
            train_path, _frame_order_problems(train["frame"].astype(float)), run)
        if error is not None:
            raise error
        dormant = _dormant_at_evals(frames, train.astype({"actor_dormant_ratio": float}))
    else:
        log.info("%s: no train.csv, so no dormant ratio for this run", run_dir)
    return pd.DataFrame(dict(source=source, agent=agent, task=task, seed=seed, frame=frames,
                             episode_reward=ev["episode_reward"].astype(float).to_numpy(),
                             dormant_ratio=dormant))


def read_harness(runs_dir, agents, tasks, seeds, collector: _Collector) -> list[pd.DataFrame]:
    """Every finished run of the config's grid under runs_dir/RUN_DIR (drm.layout)."""
    frames = []
    for agent in agents:
        for task in tasks:
            for seed in seeds:
                run = (HARNESS, agent, task, int(seed))
                run_dir = Path(runs_dir) / layout.run_dir(agent, task, seed)
                if not run_dir.is_dir():
                    log.info("%s: not found, left out", run_dir)
                    collector.note(run, run_dir, None, "not found")
                elif not (run_dir / layout.META_FILE).exists():
                    log.info("%s: unfinished (no meta.json), ignored", run_dir)
                    collector.note(run, run_dir, None, "unfinished (no meta.json)")
                else:
                    try:
                        frames.append(_read_harness_run(run, run_dir))
                    except RunFileError as error:
                        collector.bad(error, run)
    return frames


def published_files(path) -> list[Path]:
    """The CSV files of a published source's path (a folder of them, or one file): what is read."""
    path = Path(path)
    if path.is_dir():
        return sorted(path.glob("*.csv"))
    if path.exists():
        return [path]
    raise RunFileError(path, None, "published data not found (aggregate.published[].path)")


def _read_published_file(file: Path, fmt: str) -> pd.DataFrame:
    """Whole-file checks: a failure here makes every run in the file unusable."""
    df = _read_csv(file)
    if fmt == "drqv2" and len(df.columns) and str(df.columns[0]).startswith("Unnamed"):
        df = df.drop(columns=df.columns[0])
    _require_columns(df, FORMATS[fmt], file)
    seed = pd.to_numeric(df["seed"], errors="coerce")
    bad = (seed.isna() | (seed % 1 != 0)).to_numpy()
    if bad.any():
        i = df.index[bad][0]
        raise RunFileError(file, _line(i), f"seed {df.at[i, 'seed']!r} is not an integer")
    return df.assign(seed=seed.astype(np.int64), agent=df["agent"].map(agent_id))


def read_published(name: str, path, fmt: str, tasks, collector: _Collector) -> list[pd.DataFrame]:
    """One published data set (a CSV file or a folder of them), restricted to the config's tasks."""
    if fmt not in FORMATS:
        raise ValueError(f"aggregate.published {name!r}: format {fmt!r} is not one of {sorted(FORMATS)}")
    out = []
    for file in published_files(path):
        try:
            df = _read_published_file(file, fmt)
        except RunFileError as error:
            collector.bad(error, (name, "", "", ""))
            continue
        dormant_col = "dormant_ratio" if "dormant_ratio" in df.columns else None
        problems = _row_problems(df, dormant_col)
        in_scope = df["task"].isin(tasks) | ~df["task"].isin(DMC_TASKS)  # typos must not hide
        for key, rows in df[in_scope].groupby(["agent", "task", "seed"], sort=True):
            run = (name, *key)
            error = _first_error(file, problems[rows.index], run) or _first_error(
                file, _frame_order_problems(rows["frame"].astype(float)), run)
            if error is not None:
                collector.bad(error, run)
                continue
            out.append(pd.DataFrame(dict(
                source=name, agent=key[0], task=key[1], seed=key[2],
                frame=rows["frame"].astype(np.int64).to_numpy(),
                episode_reward=rows["episode_reward"].astype(float).to_numpy(),
                dormant_ratio=(rows[dormant_col].astype(float).to_numpy() if dormant_col
                               else np.full(len(rows), math.nan)))))
    return out


def load(runs_dir, agents, tasks, seeds, published, skip_bad: bool) -> Imported:
    """The tidy table of the harness grid plus each published source ({name, path, format})."""
    collector = _Collector(skip_bad)
    parts = read_harness(runs_dir, agents, tasks, seeds, collector)
    for source in published:
        parts += read_published(source["name"], source["path"], source.get("format", "tidy"),
                                tasks, collector)
    tidy = (pd.concat(parts, ignore_index=True) if parts
            else pd.DataFrame({c: [] for c in TIDY_COLUMNS}))[TIDY_COLUMNS]
    tidy = tidy.sort_values(["source", "agent", "task", "seed", "frame"], ignore_index=True)
    skipped = pd.DataFrame(collector.rows, columns=SKIPPED_COLUMNS)
    return Imported(tidy=tidy, skipped=skipped)
