"""Scores and rliable estimates from the tidy table (docs/harness.md §3.3).

Seeds are the replication unit; every number here is bootstrapped over runs, stratified by task.
Policies (docs/statistics.md says the same):
- Alignment: each task gets one frame grid, the evaluation frames of its coarsest-evaluated
  harness run (of its coarsest run where the task has published data only) up to the task's
  frame budget; a run's value at a grid frame is its last evaluation at or before that frame
  (never interpolated, never read ahead).
- Score of a run: the mean of its values at the last `last_k` grid frames, / 1000 (DMC).
- Ragged seeds (tasks with different seed counts): `resample` bootstraps each task from its own
  runs (rliable's StratifiedIndependentBootstrap, one array per task), `truncate` keeps the
  lowest seed ids down to the task with the fewest, `error` refuses.
- Randomness: rliable 1.2.0's bootstraps draw from the global `np.random` and ignore their
  `random_state` argument, so each (source, agent, metric) gets its own seeded RandomState whose
  state is installed into `np.random` for the duration of its one call, then put back.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import logging
import multiprocessing
import os
import time
import warnings
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats
from rliable import library as rly
from rliable import metrics

from drm.analysis.results import HARNESS, MAX_RETURN
from drm.layout import parse_series, series_name

log = logging.getLogger(__name__)
progress = logging.getLogger(__name__ + ".progress")  # one line per bootstrap call
rliable_version = version("rliable")

METRICS = ("iqm", "median", "mean", "optimality_gap")
RAGGED_POLICIES = ("resample", "truncate", "error")
TAUS = np.linspace(0.0, 1.0, 101)  # performance-profile thresholds on the normalized score


def normalize(returns) -> np.ndarray:
    return np.asarray(returns, dtype=float) / MAX_RETURN


# ----------------------------------------------------------------------------- alignment

@dataclass
class TaskGrid:
    """One task's runs on its common grid: per series, seeds (n,) and values (n, frames)."""
    frames: np.ndarray
    budget: int
    seeds: dict = field(default_factory=dict)
    returns: dict = field(default_factory=dict)
    dormant: dict = field(default_factory=dict)


def _spacing(frames: np.ndarray) -> float:
    return float(np.median(np.diff(frames))) if len(frames) > 1 else 0.0


def align(tidy: pd.DataFrame, tasks, frames=None, skip_short: bool = False):
    """Per task, the grid and every run's values on it; returns (grids, short runs left out).

    `frames` is the budget: None (per task, the largest frame every run reached), an int, or a
    {task: int} mapping (tasks it leaves out are automatic). A run that ends more than one of
    its own evaluation intervals before an explicit budget has not reached it: an error, or
    with skip_short left out and returned.
    """
    grids, short = {}, []
    tidy = tidy.sort_values(["source", "agent", "task", "seed", "frame"])
    for task in tasks:
        runs = {key: rows for key, rows in tidy[tidy["task"] == task].groupby(
            ["source", "agent", "seed"], sort=True)}
        if not runs:
            continue
        info = {key: (rows["frame"].to_numpy(), _spacing(rows["frame"].to_numpy()))
                for key, rows in runs.items()}
        explicit = frames.get(task) if isinstance(frames, dict) else frames
        budget = int(explicit if explicit is not None else min(f[-1] for f, _ in info.values()))
        for key, (f, spacing) in list(info.items()):
            if f[-1] < budget - spacing:
                problem = (f"{'/'.join(map(str, key))} on {task}: its last evaluation is at frame "
                           f"{f[-1]}, before the frame budget {budget} (aggregate.frames)")
                if not skip_short:
                    raise ValueError(problem)
                log.warning("leaving out %s", problem)
                short.append(((key[0], key[1], task, key[2]), problem))
                del info[key], runs[key]
        if not runs:
            continue
        # The harness's own evaluations set the grid where it has runs: a published series read
        # on it (last evaluation at or before each frame) must not coarsen the harness's curves.
        pool = [k for k in info if k[0] == HARNESS] or list(info)
        coarsest = max(pool, key=lambda k: (info[k][1], (info[k][0] <= budget).sum()))
        start = max(f[0] for f, _ in info.values())
        grid_frames = info[coarsest][0]
        grid = TaskGrid(grid_frames[(grid_frames >= start) & (grid_frames <= budget)], budget)
        for (source, agent, seed), rows in runs.items():
            at = np.searchsorted(rows["frame"].to_numpy(), grid.frames, side="right") - 1
            s = (source, agent)
            grid.seeds.setdefault(s, []).append(seed)
            grid.returns.setdefault(s, []).append(rows["episode_reward"].to_numpy()[at])
            grid.dormant.setdefault(s, []).append(rows["dormant_ratio"].to_numpy()[at])
        for s in grid.seeds:
            grid.seeds[s] = np.array(grid.seeds[s])
            grid.returns[s] = np.vstack(grid.returns[s])
            grid.dormant[s] = np.vstack(grid.dormant[s])
        grids[task] = grid
    return grids, short


def scores(grids: dict, last_k: int) -> pd.DataFrame:
    """One row per run: the mean normalized return over the task's last `last_k` grid frames."""
    rows = []
    for task, grid in grids.items():
        for (source, agent), seeds in grid.seeds.items():
            values = normalize(grid.returns[(source, agent)][:, -last_k:].mean(axis=1))
            rows += [dict(source=source, agent=agent, task=task, seed=int(seed),
                          frames=int(grid.frames[-1]), score=float(v))
                     for seed, v in zip(seeds, values)]
    return pd.DataFrame(rows, columns=["source", "agent", "task", "seed", "frames", "score"])


def select(grids: dict, tasks, ragged: str):
    """The aggregate's task set and, per series, the seeds used on each of its tasks.

    Tasks: those of the config on which every harness agent has runs (every series when there
    are no harness runs). Another source enters the aggregate only if it covers all of them.
    """
    series = sorted({s for g in grids.values() for s in g.seeds})
    primary = [s for s in series if s[0] == HARNESS] or series
    task_set = [t for t in tasks if t in grids and all(s in grids[t].seeds for s in primary)]
    dropped = [t for t in tasks if t not in task_set]
    if dropped:
        log.info("aggregate: tasks left out of the estimates (not every %s has runs on them): %s",
                 "harness agent" if primary[0][0] == HARNESS else "series", ", ".join(dropped))
    used = {}
    for s in series:
        if not task_set or not all(s in grids[t].seeds for t in task_set):
            log.info("aggregate: %s covers only some of the tasks %s: kept out of the estimates, "
                     "still drawn per task", series_name(s), ", ".join(task_set))
            continue
        counts = {t: len(grids[t].seeds[s]) for t in task_set}
        seeds = {t: np.sort(grids[t].seeds[s]) for t in task_set}
        if len(set(counts.values())) > 1:
            detail = ", ".join(f"{t} {n}" for t, n in counts.items())
            if ragged == "error":
                raise ValueError(f"{series_name(s)} has different seed counts per task ({detail}) "
                                 "and aggregate.ragged is 'error'")
            if ragged == "truncate":
                n = min(counts.values())
                for t in task_set:
                    if len(seeds[t]) > n:
                        log.info("ragged (truncate): %s %s drops seeds %s", series_name(s), t,
                                 ", ".join(map(str, seeds[t][n:])))
                    seeds[t] = seeds[t][:n]
            else:
                log.info("ragged (resample): %s seeds per task %s; each task is resampled from "
                         "its own runs", series_name(s), detail)
        used[s] = seeds
    return task_set, used


# ----------------------------------------------------------------------------- bootstrap

def rng_seed(seed: int, *key) -> int:
    """A 32-bit seed from the config seed and a key, independent of any iteration order."""
    text = "|".join(map(str, (seed, *key))).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")


@contextlib.contextmanager
def _global_rng(state: np.random.RandomState):
    """Hands `state` to code that draws from np.random (rliable 1.2.0 does), then restores it."""
    saved = np.random.get_state()
    np.random.set_state(state.get_state())
    try:
        yield
    finally:
        np.random.set_state(saved)


def interval_estimate(arrays: list, func, reps: int, seed: int, key: tuple):
    """rliable's stratified bootstrap of func(*arrays) with the RandomState of `key`.

    `arrays` is one (runs, tasks, ...) matrix, or one (runs_t, 1, ...) array per task when the
    tasks' seed counts differ (each then resampled from its own runs). Returns 1-D arrays
    (point, ci_low, ci_high).
    """
    state = np.random.RandomState(rng_seed(seed, *key))
    with _global_rng(state):
        point, interval = rly.get_interval_estimates({"x": list(arrays)}, func, reps=reps)
    return np.atleast_1d(point["x"]), np.atleast_1d(interval["x"][0]), np.atleast_1d(interval["x"][1])


def pack(per_task: list, columns: bool = False) -> list:
    """Per-task run arrays (n_t, ...) as rliable's input: one matrix if rectangular."""
    if not columns and len({len(a) for a in per_task}) == 1:
        return [np.stack(per_task, axis=1)]
    return [a[:, None] for a in per_task]


def _pooled(arrays) -> np.ndarray:
    return np.concatenate([a.reshape(-1, *a.shape[2:]) for a in arrays])


def _task_means(arrays) -> np.ndarray:
    return np.concatenate([a.mean(axis=0) for a in arrays])


# Each takes pack()'s arrays, so one matrix and per-task arrays give the same point estimate.
# IQM and optimality gap pool every run (as rliable does); mean and median are over task means.
AGGREGATES = {
    "iqm": lambda *a: np.array([metrics.aggregate_iqm(_pooled(a))]),
    "median": lambda *a: np.array([metrics.aggregate_median(_task_means(a)[None])]),
    "mean": lambda *a: np.array([metrics.aggregate_mean(_task_means(a)[None])]),
    "optimality_gap": lambda *a: np.array([metrics.aggregate_optimality_gap(_pooled(a))]),
}


def iqm_curve(*arrays) -> np.ndarray:
    return scipy.stats.trim_mean(_pooled(arrays), 0.25, axis=0)


def profile(*arrays) -> np.ndarray:
    return rly.score_distributions(_pooled(arrays), TAUS)


def p_greater(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per task P(X > Y) + P(X = Y) / 2 over all run pairs, for (n, tasks) and (m, tasks) scores.

    Equals rliable's probability_of_improvement per task (Mann-Whitney U / (n m), a test checks),
    without a scipy call per task per replicate, which made 50,000 reps take minutes.
    """
    a, b = x[:, None], y[None, :]
    return (a > b).mean(axis=(0, 1)) + 0.5 * (a == b).mean(axis=(0, 1))


def _improvement(n_ours: int):
    def func(*arrays):
        xs, ys = arrays[:n_ours], arrays[n_ours:]
        return np.array([np.concatenate([p_greater(x, y) for x, y in zip(xs, ys)]).mean()])
    return func


def statistic(name: str):
    """The bootstrapped function by name (names, unlike lambdas, travel to worker processes)."""
    if name in AGGREGATES:
        return AGGREGATES[name]
    if name.startswith("improvement:"):
        return _improvement(int(name.partition(":")[2]))
    return {"iqm_curve": iqm_curve, "profile": profile}[name]


def _bootstrap(arrays, name: str, reps: int, seed: int, key: tuple):
    start = time.perf_counter()
    return interval_estimate(arrays, statistic(name), reps, seed, key), time.perf_counter() - start


class Bootstraps:
    """The interval estimates of one aggregation: submitted first, then run together.

    Each call keeps its own RandomState (from the seed and its key), so running them in
    `workers` processes, in any order, or reading them back from `cache_dir` gives the same
    numbers. The cache holds one file per call, named by a hash of everything the result
    depends on (inputs, function, reps, seed, key, rliable's version): adding an agent re-runs
    only that agent's calls. A log line per call shows progress."""

    def __init__(self, seed: int, workers: int = 1, cache_dir=None):
        self.seed, self.workers = seed, max(1, int(workers))
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.calls, self.results, self.finished = [], {}, 0

    def submit(self, arrays: list, name: str, reps: int, key: tuple) -> int:
        self.calls.append((list(arrays), name, reps, key))
        return len(self.calls) - 1

    def _path(self, call) -> Path | None:
        if self.cache_dir is None:
            return None
        arrays, name, reps, key = call
        digest = hashlib.sha256(repr((name, reps, self.seed, key, rliable_version)).encode())
        for a in arrays:
            a = np.ascontiguousarray(a, dtype=float)
            digest.update(repr(a.shape).encode())
            digest.update(a.tobytes())
        return self.cache_dir / f"{digest.hexdigest()[:32]}.npz"

    def run(self) -> None:
        todo, total = [], len(self.calls)
        for i, call in enumerate(self.calls):
            path = self._path(call)
            if path is not None and path.exists():
                with np.load(path) as saved:
                    self.results[i] = (saved["point"], saved["low"], saved["high"])
                self._progress(i, "cached")
            else:
                todo.append(i)
        # the biggest calls first, so that the last worker does not start a long one alone
        todo.sort(key=lambda i: -self.calls[i][2] * sum(a.size for a in self.calls[i][0]))
        if self.workers > 1 and len(todo) > 1:
            context = multiprocessing.get_context("fork")
            with concurrent.futures.ProcessPoolExecutor(min(self.workers, len(todo)),
                                                        mp_context=context) as pool:
                futures = {pool.submit(_bootstrap, *self.calls[i][:3], self.seed, self.calls[i][3]): i
                           for i in todo}
                for future in concurrent.futures.as_completed(futures):
                    self._done(futures[future], *future.result())
        else:
            for i in todo:
                self._done(i, *_bootstrap(*self.calls[i][:3], self.seed, self.calls[i][3]))
        log.info("bootstrap: %d calls done (%d from the cache)", total, total - len(todo))

    def _done(self, i: int, result, seconds: float) -> None:
        self.results[i] = result
        path = self._path(self.calls[i])
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.stem + ".tmp.npz")
            np.savez(tmp, point=result[0], low=result[1], high=result[2])
            os.replace(tmp, path)
        self._progress(i, f"{seconds:.1f} s")

    def _progress(self, i: int, how: str) -> None:
        _, name, reps, key = self.calls[i]
        self.finished += 1
        progress.info("bootstrap %d/%d: %s %s, %s reps: %s", self.finished, len(self.calls),
                      series_name(key[:2]), key[2], f"{reps:,}", how)

    def __getitem__(self, handle: int):
        return self.results[handle]


# ----------------------------------------------------------------------------- everything

@dataclass
class Results:
    scores: pd.DataFrame  # the runs the estimates use
    estimates: pd.DataFrame
    profiles: pd.DataFrame
    task_curves: pd.DataFrame
    meta: dict
    short: list  # runs left out for ending before the budget: ((source, agent, task, seed), problem)


def _task_curves(grids: dict, profile_reps: int, boot: Bootstraps):
    """Submits each task's IQM bands; returns the function that builds the table once run."""
    handles = {(task, s): boot.submit([returns[:, None, :]], "iqm_curve", profile_reps,
                                      (*s, f"task_iqm:{task}"))
               for task, grid in grids.items() for s, returns in grid.returns.items()}
    return lambda: _task_curves_table(grids, boot, handles)


def _task_curves_table(grids: dict, boot: Bootstraps, handles: dict) -> pd.DataFrame:
    parts = []
    for task, grid in grids.items():
        for s, returns in grid.returns.items():
            point, low, high = boot[handles[(task, s)]]
            dormant = grid.dormant[s]
            known = (~np.isnan(dormant)).sum(axis=0)
            with warnings.catch_warnings():  # frames where no run knows its dormant ratio
                warnings.simplefilter("ignore", RuntimeWarning)
                d_mean, d_std = np.nanmean(dormant, axis=0), np.nanstd(dormant, axis=0)
            parts.append(pd.DataFrame(dict(
                source=s[0], agent=s[1], task=task, frame=grid.frames, seeds=len(returns),
                mean=returns.mean(axis=0), std=returns.std(axis=0), iqm=point, iqm_low=low,
                iqm_high=high, dormant_mean=d_mean, dormant_std=d_std, dormant_seeds=known)))
    return pd.concat(parts, ignore_index=True)


def _curve_frames(grids: dict, task_set: list) -> np.ndarray:
    """The sample-efficiency grid: the coarsest task grid, within every task's grid range."""
    coarsest = max(task_set, key=lambda t: _spacing(grids[t].frames))
    lo = max(grids[t].frames[0] for t in task_set)
    hi = min(grids[t].frames[-1] for t in task_set)
    f = grids[coarsest].frames
    return f[(f >= lo) & (f <= hi)]


@dataclass
class _Selection:
    """The runs the estimates use: the task set, each series' seeds per task, their scores, and
    the frames of the sample-efficiency curve."""
    grids: dict
    task_set: list
    used: dict  # series -> task -> seeds
    scores: pd.DataFrame  # the used runs' scores
    curve_frames: np.ndarray

    def __post_init__(self):
        self.score_of = self.scores.set_index(["source", "agent", "task", "seed"])["score"]

    @classmethod
    def of(cls, grids: dict, all_scores: pd.DataFrame, tasks, ragged: str) -> "_Selection":
        task_set, used = select(grids, tasks, ragged)
        keep = pd.Series(False, index=all_scores.index)
        for s, seeds in used.items():
            for t, ss in seeds.items():
                keep |= ((all_scores["source"] == s[0]) & (all_scores["agent"] == s[1])
                         & (all_scores["task"] == t) & all_scores["seed"].isin(ss))
        curve_frames = _curve_frames(grids, task_set) if used else np.array([], dtype=int)
        return cls(grids, task_set, used, all_scores[keep].reset_index(drop=True), curve_frames)

    def frames(self):
        """The scoring frame every task of the set shares, else NaN."""
        common = {int(self.grids[t].frames[-1]) for t in self.task_set}
        return common.pop() if len(common) == 1 else np.nan

    def per_task(self, s) -> list:
        """Series s's scores, one array per task of the task set, seeds sorted."""
        return [self.score_of.loc[[(*s, t, int(x)) for x in self.used[s][t]]].to_numpy()
                for t in self.task_set]

    def per_task_curves(self, s) -> list:
        """Series s's normalized returns on the sample-efficiency grid, one array per task."""
        out = []
        for t in self.task_set:
            g = self.grids[t]
            rows = [int(np.flatnonzero(g.seeds[s] == x)[0]) for x in self.used[s][t]]
            cols = np.searchsorted(g.frames, self.curve_frames, side="right") - 1
            out.append(normalize(g.returns[s][np.ix_(rows, cols)]))
        return out


def _submit_series(boot: Bootstraps, sel: _Selection, reps: int, profile_reps: int) -> list:
    """Each used series' metrics, performance profile and IQM curve: (kind, series, metric, handle)."""
    submitted = []
    for s in sel.used:
        arrays = pack(sel.per_task(s))
        for metric in METRICS:
            submitted.append(("metric", s, metric, boot.submit(arrays, metric, reps, (*s, metric))))
        submitted.append(("profile", s, "profile",
                          boot.submit(arrays, "profile", profile_reps, (*s, "profile"))))
        submitted.append(("curve", s, "iqm_curve", boot.submit(pack(sel.per_task_curves(s)), "iqm_curve",
                                                               reps, (*s, "iqm_curve"))))
    return submitted


def _submit_improvements(boot: Bootstraps, sel: _Selection, ours: str, baselines, reps: int) -> list:
    """The probability of improvement of `ours` over each baseline both of which were used."""
    submitted = []
    x = parse_series(ours)
    for baseline in baselines:
        y = parse_series(baseline)
        missing = [series_name(z) for z in (x, y) if z not in sel.used]
        if missing:
            log.info("probability of improvement of %s over %s: skipped, no aggregate runs of %s",
                     series_name(x), series_name(y), ", ".join(missing))
            continue
        xs, ys = sel.per_task(x), sel.per_task(y)
        ragged_pair = len({len(a) for a in xs}) > 1 or len({len(a) for a in ys}) > 1
        arrays = pack(xs, ragged_pair) + pack(ys, ragged_pair)  # both matrices, or both per task
        metric = f"prob_improvement_vs_{series_name(y)}"
        submitted.append(("metric", x, metric, boot.submit(arrays, f"improvement:{len(arrays) // 2}",
                                                           reps, (*x, metric))))
    return submitted


def _collect(boot: Bootstraps, submitted: list, sel: _Selection, reps: int,
             profile_reps: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The estimates and the profiles tables from the bootstraps' results."""
    rows, profile_rows, frames_col = [], [], sel.frames()
    for kind, s, metric, handle in submitted:
        p, lo, hi = boot[handle]
        if kind == "metric":
            rows.append(dict(source=s[0], agent=s[1], metric=metric, frames=frames_col,
                             estimate=p[0], ci_low=lo[0], ci_high=hi[0], reps=reps))
        elif kind == "profile":
            profile_rows.append(pd.DataFrame(dict(source=s[0], agent=s[1], tau=TAUS, fraction=p,
                                                  ci_low=lo, ci_high=hi, reps=profile_reps)))
        else:
            rows += [dict(source=s[0], agent=s[1], metric="iqm_curve", frames=int(f), estimate=a,
                          ci_low=b, ci_high=c, reps=reps)
                     for f, a, b, c in zip(sel.curve_frames, p, lo, hi)]
    estimates = pd.DataFrame(rows, columns=["source", "agent", "metric", "frames", "estimate",
                                            "ci_low", "ci_high", "reps"])
    profiles = (pd.concat(profile_rows, ignore_index=True) if profile_rows else pd.DataFrame(
        columns=["source", "agent", "tau", "fraction", "ci_low", "ci_high", "reps"]))
    return estimates, profiles


def _meta(grids: dict, sel: _Selection, *, last_k, ragged, reps, profile_reps, seed, ours,
          baselines) -> dict:
    """What the figures need to know about how the estimates were made."""
    task_set, used, curve_frames = sel.task_set, sel.used, sel.curve_frames
    return dict(
        tasks=task_set, last_k=last_k, ragged=ragged, reps=reps, profile_reps=profile_reps,
        seed=seed, ours=ours, baselines=list(baselines),
        curve_frames=[int(f) for f in curve_frames],
        budgets={t: g.budget for t, g in grids.items()},
        score_frames={t: int(g.frames[-1]) for t, g in grids.items()},
        series=[dict(source=s[0], agent=s[1], in_aggregate=s in used,
                     seeds={t: int(len(g.seeds[s])) for t, g in grids.items() if s in g.seeds},
                     used_seeds={t: int(len(v)) for t, v in used.get(s, {}).items()})
                for s in sorted({s for g in grids.values() for s in g.seeds})])


def compute(tidy: pd.DataFrame, tasks, *, frames, last_k: int, reps: int, profile_reps: int,
            seed: int, ragged: str, ours: str, baselines, skip_short: bool,
            workers: int = 1, cache_dir=None) -> Results:
    """Scores and every estimate under the aggregate section's settings (their defaults are the
    schema's alone: drm.analysis.aggregate.settings); the bootstraps run in `workers` processes,
    cached in `cache_dir` (see Bootstraps): the numbers are the same either way."""
    if ragged not in RAGGED_POLICIES:
        raise ValueError(f"aggregate.ragged {ragged!r} is not one of {RAGGED_POLICIES}")
    grids, short = align(tidy, tasks, frames, skip_short)
    if not grids:
        raise ValueError("no runs to aggregate: no harness run of the config's grid and no "
                         "published data on the config's tasks")
    sel = _Selection.of(grids, scores(grids, last_k), tasks, ragged)
    boot = Bootstraps(seed, workers, cache_dir)
    submitted = (_submit_series(boot, sel, reps, profile_reps)
                 + _submit_improvements(boot, sel, ours, baselines, reps))
    task_curves = _task_curves(grids, profile_reps, boot)
    boot.run()
    estimates, profiles = _collect(boot, submitted, sel, reps, profile_reps)
    meta = _meta(grids, sel, last_k=last_k, ragged=ragged, reps=reps, profile_reps=profile_reps,
                 seed=seed, ours=ours, baselines=baselines)
    return Results(sel.scores, estimates, profiles, task_curves(), meta, short)
