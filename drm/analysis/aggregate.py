"""`python -m drm.analysis.aggregate`: the workflow's `aggregate` target.

Reads only the `agents`, `tasks`, `seeds` and `aggregate` keys of a workflow config, imports the
harness's runs and the published data, and writes everything `python -m drm.analysis.plot` needs, so
that figures are re-drawn without re-sampling:

    OUT/tidy.csv        every evaluation of every run (results.TIDY_COLUMNS)
    OUT/scores.csv      the runs the estimates use: source, agent, task, seed, frames, score
    OUT/estimates.csv   source, agent, metric, frames, estimate, ci_low, ci_high, reps
    OUT/skipped.csv     runs left out (bad, unfinished, missing), with file, line and problem
    OUT/claims.csv      the claims of the config's `claims:` file as verdicts (drm.analysis.claims)
    OUT/cache/          profiles.csv, task_curves.csv and meta.json (written last); bootstrap/
                        holds each bootstrap's result, so a re-run only computes what changed
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from drm import grid
from drm.analysis import claims, results, stats
from drm.layout import AGGREGATE_DIR, RUNS

log = logging.getLogger(__name__)

def defaults() -> dict:
    """The `aggregate:` section's defaults, from the workflow's schema (their one source): a copy."""
    return grid.defaults("aggregate")


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def settings(section: dict | None) -> dict:
    """The `aggregate:` section over the schema's defaults, checked so a typo fails before any
    sampling."""
    section, known = dict(section or {}), defaults()
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ValueError(f"aggregate: unknown key(s) {', '.join(unknown)}; "
                         f"known: {', '.join(known)}")
    s = {**known, **section}
    frames = s["frames"]
    if not (frames is None or _positive_int(frames) or (
            isinstance(frames, dict) and all(_positive_int(v) for v in frames.values()))):
        raise ValueError(f"aggregate.frames must be null, a positive int or {{task: int}}, not {frames!r}")
    for key in ("last_k", "reps", "profile_reps"):
        if not _positive_int(s[key]):
            raise ValueError(f"aggregate.{key} must be a positive int, not {s[key]!r}")
    if not isinstance(s["seed"], int) or s["seed"] < 0:
        raise ValueError(f"aggregate.seed must be an int >= 0, not {s['seed']!r}")
    if s["ragged"] not in stats.RAGGED_POLICIES:
        raise ValueError(f"aggregate.ragged must be one of {stats.RAGGED_POLICIES}, not {s['ragged']!r}")
    for source in s["published"]:
        if not isinstance(source, dict) or not {"name", "path"} <= set(source) or \
                source.get("format", "tidy") not in results.FORMATS or source["name"] == stats.HARNESS:
            raise ValueError(f"aggregate.published entries need name (not {stats.HARNESS!r}), path and "
                             f"format in {sorted(results.FORMATS)}; got {source!r}")
    if not isinstance(s["baselines"], list):
        raise ValueError(f"aggregate.baselines must be a list, not {s['baselines']!r}")
    return s


def estimates(tidy, tasks, s: dict, workers: int = 1, cache_dir=None) -> stats.Results:
    """stats.compute under `s`, the aggregate section as `settings` completes it."""
    return stats.compute(tidy, tasks, frames=s["frames"], last_k=s["last_k"], reps=s["reps"],
                         profile_reps=s["profile_reps"], seed=s["seed"], ragged=s["ragged"],
                         ours=s["ours"], baselines=s["baselines"], skip_short=s["skip_bad_runs"],
                         workers=workers, cache_dir=cache_dir)


def run(config: dict, runs_dir, out_dir, skip_bad_runs: bool | None = None,
        workers: int = 1) -> stats.Results:
    """Imports, estimates and writes OUT; returns the estimates for callers that time them.

    The bootstraps run in `workers` processes and are cached in OUT/cache/bootstrap/."""
    s = settings(config.get("aggregate"))
    if skip_bad_runs is not None:
        s["skip_bad_runs"] = skip_bad_runs
    tasks = list(config.get("tasks") or [])
    if not tasks:
        raise ValueError("the config lists no tasks")
    claim_list = claims.load(config.get("claims"), [p["name"] for p in s["published"]])
    imported = results.load(runs_dir, config.get("agents") or [], tasks, config.get("seeds") or [],
                            s["published"], s["skip_bad_runs"])
    prepared = claims.prepare(claim_list, imported.tidy, config.get("seeds") or [])
    res = estimates(imported.tidy, tasks, s, workers, Path(out_dir) / "cache" / "bootstrap")
    short = pd.DataFrame([dict(zip(["source", "agent", "task", "seed"], run), path="", line=None,
                               problem=problem) for run, problem in res.short],
                         columns=results.SKIPPED_COLUMNS)
    skipped = pd.concat([imported.skipped, short], ignore_index=True) if len(short) else imported.skipped
    started = time.perf_counter()
    verdicts = claims.evaluate(prepared, imported.tidy, s)
    if claim_list:
        log.info("claims: %d evaluated in %.1f s", len(verdicts), time.perf_counter() - started)
    write(Path(out_dir), imported.tidy, skipped, res, verdicts)
    bad = skipped[~skipped["problem"].isin(["not found", "unfinished (no meta.json)"])]
    if len(bad):
        log.warning("skipped %d bad run(s), listed in %s", len(bad), Path(out_dir) / "skipped.csv")
    return res


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write(out: Path, tidy: pd.DataFrame, skipped: pd.DataFrame, res: stats.Results,
          verdicts: pd.DataFrame | None = None) -> None:
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    tidy.to_csv(out / "tidy.csv", index=False)
    res.scores.to_csv(out / "scores.csv", index=False)
    res.estimates.to_csv(out / "estimates.csv", index=False)
    skipped.to_csv(out / "skipped.csv", index=False)
    (verdicts if verdicts is not None else pd.DataFrame(columns=claims.COLUMNS)).to_csv(
        out / "claims.csv", index=False)
    res.profiles.to_csv(cache / "profiles.csv", index=False)
    res.task_curves.to_csv(cache / "task_curves.csv", index=False)
    _write_atomic(cache / "meta.json", json.dumps(res.meta, indent=1))


def run_logged(config: dict, runs_dir, out_dir, skip_bad_runs: bool | None = None,
               workers: int = 1) -> int:
    """`run`, logging to the current stderr; an error is one line there and status 1."""
    # Our own handler on the current stderr: the workflow redirects it into the rule's log.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    drm_log = logging.getLogger("drm")
    drm_log.addHandler(handler)
    drm_log.setLevel(logging.INFO)
    drm_log.propagate = False  # absl (via rliable) puts a handler on the root logger: no doubles
    logging.getLogger("absl").setLevel(logging.WARNING)  # rliable logs every bootstrap call
    try:
        run(config, runs_dir, out_dir, skip_bad_runs, workers)
    except (OSError, ValueError) as error:
        hint = (" (to aggregate the other runs, set aggregate.skip_bad_runs: true or pass "
                "--skip-bad-runs)") if isinstance(error, results.RunFileError) else ""
        print(f"error: {error}{hint}", file=sys.stderr)
        return 1
    finally:
        drm_log.removeHandler(handler)
        drm_log.propagate = True
    print(f"aggregate: wrote {out_dir}/estimates.csv, scores.csv, tidy.csv, skipped.csv, claims.csv "
          "and cache/")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drm.analysis.aggregate", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True,
                        help="workflow config YAML (reads agents, tasks, seeds, aggregate, claims)")
    parser.add_argument("--runs", default=RUNS, help="the harness's runs folder")
    parser.add_argument("--out", default=AGGREGATE_DIR, help="output folder")
    parser.add_argument("--skip-bad-runs", action="store_true", default=None,
                        help="skip bad runs (listed in skipped.csv) instead of failing; "
                             "overrides aggregate.skip_bad_runs")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes for the bootstraps (the same numbers with any count)")
    args = parser.parse_args(argv)
    try:
        config = grid.load_config([args.config])
    except (OSError, ValueError, yaml.YAMLError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return run_logged(config, args.runs, args.out, args.skip_bad_runs, args.workers)


if __name__ == "__main__":
    sys.exit(main())
