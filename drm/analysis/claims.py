"""A paper's claims as verdicts: a small vocabulary of checks over the tidy table (docs/statistics.md).

A claims file (the workflow config's `claims:`) lists claims, each with an `id`, a `rule`, the
`agents` and `tasks` it is about and the frame budget `frames` at which runs are scored, plus the
rule's own parameters (RULES), and where it comes from (SOURCE_KEYS): the paper's exact `words`
and `where` they stand, or a `harness_rule` saying why the harness checks it; for the paper's
words, `harness_choices` says why the harness chose the frames and each threshold the words
do not give. `load` checks a file against the
vocabulary and the config before anything runs; `evaluate` (in the aggregate step, where the
bootstrap runs) turns each claim into one row of claims.csv; `show` prints and tabulates that
cache for the figures and the report without re-sampling.

Verdicts: `supported`, `contradicted`, `inconclusive` (the 95% CI straddles the rule's
threshold, or a task has fewer than MIN_SEEDS runs, where a bootstrap CI is degenerate), or
`not evaluated: N of M runs missing` when a run the claim needs is absent.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from drm.cell.config import AGENTS
from drm.analysis.results import DMC_TASKS, HARNESS, MAX_RETURN
from drm.layout import parse_series

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
COLUMNS = ["id", "rule", "source", "harness_choices", "agents", "tasks", "frames", "quantity", "estimate",
           "ci_low", "ci_high", "threshold", "verdict", "runs_used", "runs_expected", "seeds_needed", "detail"]
GAP_METRICS = ("iqm", "mean")
# Below 3 runs per task a stratified bootstrap draws from at most 3 distinct resamples per task,
# so its "CI" can collapse to a point ([0.75, 0.75] for 2 seeds on 2 tasks) and decide nothing.
MIN_SEEDS = 3
COMMON = ("id", "rule", "agents", "tasks", "frames")
# Where a claim comes from: the paper's exact words and where they stand, or a harness rule and
# why; and the harness's choices (frames, thresholds, tasks) with why, where the words give none.
SOURCE_KEYS = ("words", "where", "harness_rule", "harness_choices")
WHERE = re.compile(r"abstract|(Figure|Table) \d+ caption|(Section|Appendix) [A-Z0-9][\w.]*")
WHERE_FORMS = "abstract, Figure N caption, Table N caption, Section N, Appendix X"


def _unit(low_open=True, high_open=True, low=0.0, high=1.0):
    def check(v):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (
            (v > low) if low_open else (v >= low)) and ((v < high) if high_open else (v <= high))
        return ok, f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    return check


def _gap_metric(v):
    return v in GAP_METRICS, f"one of {', '.join(GAP_METRICS)}"


def _window(v):
    ok = (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and x >= 0 for x in v)
          and v[0] < v[1])
    return ok, "[start, end] frames with 0 <= start < end"


def _reference(v):
    source, agent = parse_series(v)
    return bool(agent and source != HARNESS), "'source:agent' of a published source"


@dataclass(frozen=True)
class Rule:
    """A claim rule as a record: all that the loader, the evaluation and the display know of it,
    so a new rule is one entry of RULES (its evaluator beside the others) plus its docs."""
    n_agents: str  # "2", "1" or "1+"
    params: dict  # name -> (default or REQUIRED, checker)
    evaluate: Callable  # (prepared claim, stats module, aggregate settings, tidy) -> result dict
    decided_by: str = "ci"  # "ci": a bootstrap CI, inconclusive below MIN_SEEDS; "count": any n decides
    dormant: str | None = None  # needs the dormant ratio: "window" (the claim's window) or "any"
    estimates_seeds: bool = True  # an inconclusive verdict says about how many seeds would resolve it
    check: Callable | None = None  # (completed claim, its name, published sources): further checks


REQUIRED = object()


class ClaimError(ValueError):
    pass


def _check(claim: dict, where: str, published: set) -> dict:
    """One claim, completed with its rule's defaults; ClaimError names the claim and the value."""
    if not isinstance(claim, dict):
        raise ClaimError(f"{where}: a claim is a mapping with {', '.join(COMMON)}; got {claim!r}")
    cid = claim.get("id")
    if not isinstance(cid, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", cid):
        raise ClaimError(f"{where}: id {cid!r} must be a name of letters, digits, _ . -")
    name = f"claim {cid}"
    missing = [k for k in COMMON if k not in claim]
    if missing:
        raise ClaimError(f"{name}: missing {', '.join(missing)} (every claim has {', '.join(COMMON)})")
    rule = RULES.get(claim["rule"])
    if rule is None:
        raise ClaimError(f"{name}: unknown rule {claim['rule']!r}; known: {', '.join(RULES)}")
    unknown = sorted(set(claim) - set(COMMON) - set(SOURCE_KEYS) - set(rule.params))
    if unknown:
        raise ClaimError(f"{name}: unknown key(s) {', '.join(unknown)} for rule {claim['rule']}; "
                         f"its keys: {', '.join(rule.params) or 'none beyond ' + ', '.join(COMMON)} "
                         f"and its source's: {', '.join(SOURCE_KEYS)}")
    agents = claim["agents"]
    count = {"1": "one agent", "2": "two agents [A, B]", "1+": "one or more agents"}[rule.n_agents]
    if not isinstance(agents, list) or not agents or (rule.n_agents != "1+" and len(agents) != int(rule.n_agents)):
        raise ClaimError(f"{name}: rule {claim['rule']} takes {count}; got agents {agents!r}")
    for agent in agents:
        source, a = parse_series(agent)
        if source == HARNESS and a not in AGENTS:
            raise ClaimError(f"{name}: unknown agent {agent!r}; harness agents: {', '.join(AGENTS)}, "
                             "or 'source:agent' of aggregate.published")
        if source != HARNESS and source not in published:
            raise ClaimError(f"{name}: agent {agent!r} names source {source!r}, not one of "
                             f"aggregate.published: {', '.join(sorted(published)) or 'none'}")
    tasks = claim["tasks"]
    if not isinstance(tasks, list) or not tasks:
        raise ClaimError(f"{name}: tasks must be a non-empty list; got {tasks!r}")
    for task in tasks:
        if task not in DMC_TASKS:
            raise ClaimError(f"{name}: unknown task {task!r}; known: drm.analysis.results.DMC_TASKS")
    frames = claim["frames"]
    if not isinstance(frames, int) or isinstance(frames, bool) or frames < 1:
        raise ClaimError(f"{name}: frames {frames!r} must be a positive whole number of frames")
    out = dict(claim)
    for key, (default, checker) in rule.params.items():
        if key not in claim:
            if default is REQUIRED:
                raise ClaimError(f"{name}: rule {claim['rule']} needs {key}")
            out[key] = default
            continue
        ok, accepted = checker(claim[key])
        if not ok:
            raise ClaimError(f"{name}: {key} {claim[key]!r} is out of range; accepted: {accepted}")
    _check_source(claim, name, rule)
    if rule.check is not None:
        rule.check(out, name, published)
    return out


def _check_window(claim: dict, name: str, published: set) -> None:
    """lower_dormant_ratio: the window defaults to the whole budget and ends within it."""
    claim["window"] = claim["window"] or [0, claim["frames"]]
    if claim["window"][1] > claim["frames"]:
        raise ClaimError(f"{name}: window {claim['window']!r} ends after frames {claim['frames']}")


def _check_reference(claim: dict, name: str, published: set) -> None:
    """agrees_with_published: a harness agent against a configured published source."""
    if parse_series(claim["agents"][0])[0] != HARNESS:
        raise ClaimError(f"{name}: agrees_with_published checks a harness agent; got {claim['agents'][0]!r}")
    source = parse_series(claim["reference"])[0]
    if source not in published:
        raise ClaimError(f"{name}: reference {claim['reference']!r} names source {source!r}, not one "
                         f"of aggregate.published: {', '.join(sorted(published)) or 'none'} (add it there, or "
                         "set the config's claims: to a file for this grid, or null)")


def _text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _check_source(claim: dict, name: str, rule: Rule) -> None:
    """Every claim says where it comes from: the paper's exact words and where they stand, or a
    harness rule and why. The words give no frame budget or threshold, so each of those is the
    harness's choice and says why (harness_choices); a harness rule's reason covers its own."""
    quoted = "words" in claim or "where" in claim
    if "harness_rule" in claim:
        if quoted:
            raise ClaimError(f"{name}: either the paper's words (words, where) or harness_rule, not both")
        if not _text(claim["harness_rule"]):
            raise ClaimError(f"{name}: harness_rule must say why the harness checks this (a non-empty "
                             f"string), not {claim['harness_rule']!r}")
    elif not quoted:
        raise ClaimError(f"{name}: no source: give the paper's exact words and where they stand (words: "
                         f"'...', where: one of {WHERE_FORMS}), or harness_rule: why the harness checks it")
    elif not _text(claim.get("words")):
        raise ClaimError(f"{name}: words must be the paper's exact words (a non-empty string), "
                         f"not {claim.get('words')!r}")
    elif not isinstance(claim.get("where"), str) or not WHERE.fullmatch(claim["where"]):
        raise ClaimError(f"{name}: where {claim.get('where')!r} must say where the words stand: one of "
                         f"{WHERE_FORMS}")
    choices = claim.get("harness_choices", {})
    allowed = ("frames", "tasks", *rule.params)
    if not isinstance(choices, dict) or not all(_text(v) for v in choices.values()):
        raise ClaimError(f"{name}: harness_choices must map each choice ({', '.join(allowed)}) to why "
                         f"the harness made it; got {choices!r}")
    unknown = sorted(set(choices) - set(allowed))
    if unknown:
        raise ClaimError(f"{name}: harness_choices names {', '.join(unknown)}, not a choice of rule "
                         f"{claim['rule']}: {', '.join(allowed)}")
    missing = [k for k in ("frames", *rule.params) if quoted and k not in choices]
    if missing:
        raise ClaimError(f"{name}: harness_choices must say why the harness chose {', '.join(missing)}: "
                         "the paper's words give none")


def source_text(claim: dict) -> str:
    """Where a claim comes from, in one line: 'abstract: "words"' or 'harness rule: why'."""
    if "harness_rule" in claim:
        return "harness rule: " + " ".join(claim["harness_rule"].split())
    return f'{claim["where"]}: "{" ".join(claim["words"].split())}"'


def choices_text(claim: dict) -> str:
    return "; ".join(f"{key}: {' '.join(why.split())}" for key, why in claim.get("harness_choices", {}).items())


def load(path, published_names=()) -> list[dict]:
    """The claims of a file (`claims:` list), each checked; an empty list for no file (null)."""
    if path is None:
        return []
    path = Path(path)
    if not path.is_file():
        raise ClaimError(f"claims file {str(path)!r} not found (the config's claims: key; null for none)")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ClaimError(f"claims file {path}: not valid YAML ({error})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("claims"), list) or set(doc) - {"claims"}:
        raise ClaimError(f"claims file {path}: must hold one key, claims: a list of claims")
    claims = [_check(c, f"{path} claim {i + 1}", set(published_names)) for i, c in enumerate(doc["claims"])]
    ids = [c["id"] for c in claims]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ClaimError(f"claims file {path}: repeated id(s) {', '.join(repeated)}")
    return claims


def check_budgets(claims: list[dict], train_frames: dict) -> None:
    """A claim's budget beyond what its grid cells train ({(agent, task): frames}) is an error."""
    for c in claims:
        for agent in c["agents"]:
            for task in c["tasks"]:
                trained = train_frames.get((agent, task))
                if trained is not None and c["frames"] > trained:
                    raise ClaimError(
                        f"claim {c['id']}: frames {c['frames']} is beyond what the grid trains "
                        f"{agent} on {task} ({trained} frames), so no run would reach it (lower the "
                        "claim's frames, or name another claims file, or claims: null)")


def describe(claims: list[dict]) -> str:
    """What the aggregate step will evaluate, for the dry run."""
    if not claims:
        return "no claims to evaluate (config claims: null)"
    return f"evaluates {len(claims)} claim(s): " + "; ".join(
        f"{c['id']} ({c['rule']}: {', '.join(c['agents'])} on {len(c['tasks'])} task(s) at "
        f"{c['frames']:,} frames)" for c in claims)


# ----------------------------------------------------------------------------- evaluation

@dataclass
class _Prepared:
    claim: dict
    grids: dict  # drm.analysis.stats.align's grids, the claim's series and tasks only, at its budget
    present: dict  # (series, task) -> sorted seeds that reached the budget
    expected: int
    missing: list  # runs the claim needs and lacks: "series task seed" (or "series task")


def _prepare(claim: dict, tidy: pd.DataFrame, seeds, stats) -> _Prepared:
    series = [parse_series(a) for a in claim["agents"]]
    tasks = claim["tasks"]
    keys = pd.MultiIndex.from_frame(tidy[["source", "agent"]])
    sub = tidy[keys.isin(series) & tidy["task"].isin(tasks)]
    grids, _short = stats.align(sub, tasks, claim["frames"], skip_short=True)
    if len(sub) and not grids:
        last = int(sub.groupby(["source", "agent", "task", "seed"])["frame"].max().max())
        raise ClaimError(f"claim {claim['id']}: frames {claim['frames']} is a budget no run reached "
                         f"(the longest of its runs ends at frame {last})")
    present, expected, missing = {}, 0, []
    for s in series:
        for task in tasks:
            got = sorted(int(x) for x in grids[task].seeds.get(s, [])) if task in grids else []
            present[(s, task)] = got
            if s[0] == HARNESS:
                want = sorted(int(x) for x in seeds)
            else:
                rows = sub[(sub["source"] == s[0]) & (sub["agent"] == s[1]) & (sub["task"] == task)]
                want = sorted(int(x) for x in rows["seed"].unique())
                if not want:
                    expected += 1
                    missing.append(f"{stats.series_name(s)} {task} (no runs)")
                    continue
            expected += len(want)
            missing += [f"{stats.series_name(s)} {task} seed {x}" for x in want if x not in got]
    return _Prepared(claim, grids, present, expected, missing)


def _verdict(estimate, low, high, threshold, above: bool, inclusive: bool) -> str:
    """Supported when the CI lies on the claimed side of the threshold, contradicted on the other."""
    if not above:
        estimate, low, high, threshold = -estimate, -high, -low, -threshold
    if (low >= threshold) if inclusive else (low > threshold):
        return SUPPORTED
    if high < threshold:
        return CONTRADICTED
    return INCONCLUSIVE


def seeds_needed(estimate, low, high, threshold, n: int):
    """Seeds per task at which the observed effect's CI would clear the threshold.

    The bootstrap CI's half-width on the threshold's side shrinks as 1/sqrt(seeds), so it
    reaches |estimate - threshold| at n * (half-width / effect)^2. None when there is no effect.
    """
    effect = abs(estimate - threshold)
    half = (estimate - low) if estimate > threshold else (high - estimate)
    if effect < 1e-12 or not np.isfinite(half):
        return None
    return max(n + 1, math.ceil(n * (half / effect) ** 2))


def _score_arrays(p: _Prepared, stats, last_k: int) -> dict:
    table = stats.scores(p.grids, last_k).set_index(["source", "agent", "task", "seed"])["score"]
    return {(s, t): table.loc[[(*s, t, x) for x in seeds]].to_numpy()
            for (s, t), seeds in p.present.items()}


def _result(quantity, estimate, low, high, threshold, verdict, n, detail="", needed=None):
    return dict(quantity=quantity, estimate=float(estimate), ci_low=float(low), ci_high=float(high),
                threshold=float(threshold), verdict=verdict, n=n, detail=detail, seeds_needed=needed)


def _per_task(rows: list[dict], above: bool, quantity: str) -> dict:
    """Per-task results into one: supported only if every task is; the deciding task reported."""
    verdicts = [r["verdict"] for r in rows]
    sign = 1 if above else -1
    margin = [sign * ((r["ci_low"] if above else r["ci_high"]) - r["threshold"]) for r in rows]
    if CONTRADICTED in verdicts:
        decide = rows[verdicts.index(CONTRADICTED)]
        verdict = CONTRADICTED
    else:
        decide = rows[int(np.argmin(margin))]
        verdict = INCONCLUSIVE if INCONCLUSIVE in verdicts else SUPPORTED
    needed = None
    if verdict == INCONCLUSIVE:
        counts = [r["seeds_needed"] for r in rows if r["verdict"] == INCONCLUSIVE]
        needed = None if None in counts else max(counts)
    detail = "; ".join(f"{r['task']} {r['estimate']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] "
                       f"{r['verdict']}" for r in rows)
    return _result(f"{quantity} ({decide['task']}, the deciding task)", decide["estimate"],
                   decide["ci_low"], decide["ci_high"], decide["threshold"], verdict, decide["n"],
                   detail, needed)


def _improvement(p, stats, settings, tidy):
    scores = _score_arrays(p, stats, settings["last_k"])
    (a, b), tasks = [parse_series(x) for x in p.claim["agents"]], p.claim["tasks"]
    arrays = [scores[(a, t)][:, None] for t in tasks] + [scores[(b, t)][:, None] for t in tasks]
    k = len(tasks)

    def func(*arr):
        return np.array([np.mean([stats.p_greater(x, y)[0] for x, y in zip(arr[:k], arr[k:])])])
    point, low, high = stats.interval_estimate(arrays, func, settings["reps"], settings["seed"],
                                               ("claim", p.claim["id"]))
    n = min(len(x) for x in arrays)
    return _result(f"P({p.claim['agents'][0]} > {p.claim['agents'][1]}), mean over tasks", point[0],
                   low[0], high[0], 0.5, _verdict(point[0], low[0], high[0], 0.5, True, False), n)


def _aggregate_gap(p, stats, settings, tidy):
    scores = _score_arrays(p, stats, settings["last_k"])
    (a, b), tasks = [parse_series(x) for x in p.claim["agents"]], p.claim["tasks"]
    arrays = [scores[(a, t)][:, None] for t in tasks] + [scores[(b, t)][:, None] for t in tasks]
    k, aggregate = len(tasks), stats.AGGREGATES[p.claim["metric"]]

    def func(*arr):
        return aggregate(*arr[:k]) - aggregate(*arr[k:])
    point, low, high = stats.interval_estimate(arrays, func, settings["reps"], settings["seed"],
                                               ("claim", p.claim["id"]))
    name = p.claim["metric"].upper() if p.claim["metric"] == "iqm" else p.claim["metric"]
    return _result(f"{name}({p.claim['agents'][0]}) - {name}({p.claim['agents'][1]}), normalized",
                   point[0], low[0], high[0], 0.0, _verdict(point[0], low[0], high[0], 0.0, True, False),
                   min(len(x) for x in arrays))


def _solves(p, stats, settings, tidy):
    scores = _score_arrays(p, stats, settings["last_k"])
    a, target = parse_series(p.claim["agents"][0]), p.claim["score"]
    rows = []
    for t in p.claim["tasks"]:
        x = scores[(a, t)]
        point, low, high = stats.interval_estimate([x[:, None]], stats.AGGREGATES["iqm"], settings["reps"],
                                                   settings["seed"], ("claim", p.claim["id"], t))
        v = _verdict(point[0], low[0], high[0], target, True, True)
        rows.append(dict(task=t, estimate=point[0], ci_low=low[0], ci_high=high[0], threshold=target,
                         verdict=v, n=len(x), seeds_needed=seeds_needed(point[0], low[0], high[0], target, len(x))))
    return _per_task(rows, True, f"IQM of {p.claim['agents'][0]}, normalized")


def _no_broken_seeds(p, stats, settings, tidy):
    scores = _score_arrays(p, stats, settings["last_k"])
    fraction, broken, listed = p.claim["fraction"], {}, []
    for t in p.claim["tasks"]:
        best = max(float(scores[(parse_series(a), t)].max()) for a in p.claim["agents"])
        for agent in p.claim["agents"]:
            s = parse_series(agent)
            for seed, v in zip(p.present[(s, t)], scores[(s, t)]):
                if v < fraction * best:
                    broken.setdefault(agent, []).append(f"{t} seed {seed} ({v:.3f})")
    for agent in p.claim["agents"]:
        listed.append(f"{agent}: " + (", ".join(broken[agent]) if agent in broken else "none"))
    count = sum(len(v) for v in broken.values())
    return _result(f"broken seeds (final score < {fraction:g} x the task's best seed)", count,
                   np.nan, np.nan, 0, SUPPORTED if count == 0 else CONTRADICTED,
                   min(len(v) for v in p.present.values()), "; ".join(listed))


def _dormant_means(p, series, task) -> np.ndarray:
    start, end = p.claim["window"]
    grid = p.grids[task]
    inside = (grid.frames >= start) & (grid.frames <= end)
    d = grid.dormant[series][:, inside]
    known = ~np.isnan(d)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(known.any(axis=1), np.nansum(d, axis=1) / known.sum(axis=1), np.nan)


def _lower_dormant_ratio(p, stats, settings, tidy):
    (a, b) = [parse_series(x) for x in p.claim["agents"]]
    rows = []
    for t in p.claim["tasks"]:
        x, y = _dormant_means(p, a, t), _dormant_means(p, b, t)
        point, low, high = stats.interval_estimate(
            [x[:, None], y[:, None]], lambda u, v: np.array([u.mean() - v.mean()]),
            settings["reps"], settings["seed"], ("claim", p.claim["id"], t))
        v = _verdict(point[0], low[0], high[0], 0.0, False, False)
        rows.append(dict(task=t, estimate=point[0], ci_low=low[0], ci_high=high[0], threshold=0.0,
                         verdict=v, n=min(len(x), len(y)),
                         seeds_needed=seeds_needed(point[0], low[0], high[0], 0.0, min(len(x), len(y)))))
    w = p.claim["window"]
    return _per_task(rows, False, f"mean dormant ratio {p.claim['agents'][0]} - {p.claim['agents'][1]} "
                                  f"over frames {w[0]:,}-{w[1]:,}")


def _first_frame(frames: np.ndarray, hit: np.ndarray) -> float:
    idx = np.flatnonzero(hit)
    return float(frames[idx[0]]) if len(idx) else math.inf


def event_frames(frames, dormant, returns, dormant_below: float, return_above: float):
    """(frame the dormant ratio first falls below its level, frame the return first exceeds its)."""
    with np.errstate(invalid="ignore"):
        drop = np.asarray(dormant, float) < dormant_below  # NaN (before learning) is never below
    return (_first_frame(np.asarray(frames), drop),
            _first_frame(np.asarray(frames), np.asarray(returns, float) > return_above))


def _dormant_before_reward(p, stats, settings, tidy):
    a = parse_series(p.claim["agents"][0])
    per_task, lags, counts = [], [], dict(both=0, drop_only=0, rise_only=0, neither=0)
    for t in p.claim["tasks"]:
        g, first = p.grids[t], []
        for d, r in zip(g.dormant[a], g.returns[a]):
            drop, rise = event_frames(g.frames, d, r, p.claim["dormant_below"], p.claim["return_above"])
            if math.isinf(drop) and math.isinf(rise):
                counts["neither"] += 1
                continue
            kind = "both" if not (math.isinf(drop) or math.isinf(rise)) else (
                "drop_only" if math.isinf(rise) else "rise_only")
            counts[kind] += 1
            if kind == "both":
                lags.append(rise - drop)
            first.append(1.0 if drop < rise else 0.5 if drop == rise else 0.0)
        if first:
            per_task.append(np.array(first)[:, None])
    if not per_task:
        return _result("share of runs whose dormant drop comes first", np.nan, np.nan, np.nan, 0.5,
                       INCONCLUSIVE, 0, f"no run shows either event ({counts['neither']} runs)")
    point, low, high = stats.interval_estimate(
        per_task, lambda *x: np.array([np.concatenate(x).mean()]), settings["reps"],
        settings["seed"], ("claim", p.claim["id"]))
    lag = (f"lag (return rise - dormant drop) median {np.median(lags):,.0f} frames, quartiles "
           f"{np.quantile(lags, 0.25):,.0f} to {np.quantile(lags, 0.75):,.0f}, over {len(lags)} runs"
           if lags else "no run shows both events")
    detail = (f"{lag}; {counts['drop_only']} drop only, {counts['rise_only']} rise only, "
              f"{counts['neither']} neither (left out)")
    return _result(f"share of runs whose dormant ratio falls below {p.claim['dormant_below']:g} before "
                   f"the return exceeds {p.claim['return_above']:g}", point[0], low[0], high[0], 0.5,
                   _verdict(point[0], low[0], high[0], 0.5, True, False),
                   min(len(x) for x in per_task), detail)


def _agrees_with_published(p, stats, settings, tidy):
    from drm.analysis import validation
    a, ref = parse_series(p.claim["agents"][0]), parse_series(p.claim["reference"])
    table = validation.verdicts(tidy[tidy["task"].isin(p.claim["tasks"])], ref, agents=[a[1]])
    judged = table[table["verdict"].isin([validation.INSIDE, validation.BELOW, validation.ABOVE])
                   & (table["frame"] <= p.claim["frames"])]
    last = judged.groupby(["task", "seed"]).tail(1).set_index(["task", "seed"])
    per_task, outside, unjudged = [], [], []
    for t in p.claim["tasks"]:
        inside = []
        for seed in p.present[(a, t)]:
            if (t, seed) not in last.index:
                unjudged.append(f"{t} seed {seed}")
                continue
            row = last.loc[(t, seed)]
            inside.append(float(row["verdict"] == validation.INSIDE))
            if row["verdict"] != validation.INSIDE:
                outside.append(f"{t} seed {seed} {row['verdict']} ({row['episode_reward']:.0f} at "
                               f"{int(row['frame']):,} frames)")
        if inside:
            per_task.append(np.array(inside)[:, None])
    if unjudged:
        return dict(missing=f"not evaluated: {len(unjudged)} run(s) without a published record at "
                            f"or before {p.claim['frames']:,} frames ({', '.join(unjudged)})")
    point, low, high = stats.interval_estimate(
        per_task, lambda *x: np.array([np.concatenate(x).mean()]), settings["reps"],
        settings["seed"], ("claim", p.claim["id"]))
    target = p.claim["min_inside"]
    v = _verdict(point[0], low[0], high[0], target, True, True)
    return _result(f"share of runs inside the {p.claim['reference']} seed range (drm.analysis.validation)",
                   point[0], low[0], high[0], target, v, min(len(x) for x in per_task),
                   "outside: " + (", ".join(outside) or "none"))


RULES = {
    "improvement": Rule("2", {}, _improvement),
    "aggregate_gap": Rule("2", {"metric": ("iqm", _gap_metric)}, _aggregate_gap),
    "solves": Rule("1", {"score": (REQUIRED, _unit(high_open=False))}, _solves, estimates_seeds=False),
    "no_broken_seeds": Rule("1+", {"fraction": (0.1, _unit())}, _no_broken_seeds, decided_by="count"),
    "lower_dormant_ratio": Rule("2", {"window": (None, _window)}, _lower_dormant_ratio, dormant="window",
                                estimates_seeds=False, check=_check_window),
    "dormant_before_reward": Rule("1", {"dormant_below": (REQUIRED, _unit()),
                                        "return_above": (REQUIRED, _unit(high=MAX_RETURN))},
                                  _dormant_before_reward, dormant="any"),
    "agrees_with_published": Rule("1", {"reference": (REQUIRED, _reference),
                                        "min_inside": (0.5, _unit(high_open=False))},
                                  _agrees_with_published, check=_check_reference),
}


def _missing_dormant(p: _Prepared) -> list[str]:
    """Runs of a dormant-ratio claim that have no dormant ratio in its window (published curves)."""
    out = []
    for (s, t), seeds in p.present.items():
        if not seeds:
            continue
        if RULES[p.claim["rule"]].dormant == "window":
            means = _dormant_means(p, s, t)
        else:
            means = np.where(np.isnan(p.grids[t].dormant[s]).all(axis=1), np.nan, 0.0)
        out += [f"{s[1] if s[0] == HARNESS else ':'.join(s)} {t} seed {x}"
                for x, m in zip(seeds, means) if np.isnan(m)]
    return out


def prepare(claims: list[dict], tidy: pd.DataFrame, seeds) -> list[_Prepared]:
    """Each claim's runs at its budget; a budget no run reached fails here, before any sampling."""
    from drm.analysis import stats  # rliable's imports cost a second; `show` must not pay them
    return [_prepare(c, tidy, seeds, stats) for c in claims]


def evaluate(prepared: list[_Prepared], tidy: pd.DataFrame, settings: dict) -> pd.DataFrame:
    """claims.csv: one row per claim (settings: the aggregate section's reps, seed, last_k)."""
    from drm.analysis import stats
    rows = []
    for p in prepared:
        c = p.claim
        rule = RULES[c["rule"]]
        base = dict(id=c["id"], rule=c["rule"], source=source_text(c), harness_choices=choices_text(c),
                    agents=" ".join(c["agents"]), tasks=" ".join(c["tasks"]), frames=c["frames"],
                    runs_expected=p.expected, runs_used=p.expected - len(p.missing))
        missing = p.missing
        if not missing and rule.dormant:
            without = _missing_dormant(p)
            if without:
                rows.append(dict(base, runs_used=p.expected - len(without),
                                 verdict=f"not evaluated: {len(without)} of {p.expected} runs have no "
                                         "dormant ratio", detail=", ".join(without)))
                continue
        if missing:
            rows.append(dict(base, verdict=f"not evaluated: {len(missing)} of {p.expected} runs missing",
                             detail=", ".join(missing)))
            continue
        r = rule.evaluate(p, stats, settings, tidy)
        if "missing" in r:
            rows.append(dict(base, verdict=r["missing"]))
            continue
        needed = r.pop("seeds_needed")
        n = r.pop("n")
        if rule.decided_by == "ci" and n < MIN_SEEDS:  # a count, not a CI, is decided by any n
            r.update(verdict=INCONCLUSIVE, detail=f"only {n} run(s) per task, fewer than {MIN_SEEDS}: "
                     f"a bootstrap CI over so few decides nothing (was {r['verdict']}); " + r["detail"])
            needed = max(MIN_SEEDS, needed or 0)
        if r["verdict"] == INCONCLUSIVE and needed is None and rule.estimates_seeds:
            needed = seeds_needed(r["estimate"], r["ci_low"], r["ci_high"], r["threshold"], n)
        rows.append(dict(base, **r, seeds_needed=needed if r["verdict"] == INCONCLUSIVE else None))
    return pd.DataFrame(rows, columns=COLUMNS)


# ----------------------------------------------------------------------------- display

def _number(v) -> str:
    return "" if pd.isna(v) else f"{v:.3f}"


def line(row) -> str:
    """One printed line: id, verdict, the quantity with its CI, the runs; seeds needed if undecided."""
    head = f"claim {row['id']}: {row['verdict']}"
    if str(row["verdict"]).startswith("not evaluated"):
        return head
    count = RULES[row["rule"]].decided_by == "count"  # printed as a whole number, with its detail
    value = f"{int(row['estimate'])}" if count else _number(row["estimate"])
    text = f"{head} - {row['quantity']} = {value}"
    if not pd.isna(row["ci_low"]):
        text += f" [{_number(row['ci_low'])}, {_number(row['ci_high'])}]"
    text += f" (threshold {row['threshold']:g}; {int(row['runs_used'])} runs at {int(row['frames']):,} frames)"
    if row["verdict"] == INCONCLUSIVE:
        text += (f"; about {int(row['seeds_needed'])} seeds per task would resolve it"
                 if not pd.isna(row["seeds_needed"]) else "; no observed effect: more seeds would not resolve it")
    if count:
        text += f"; {row['detail']}"
    return text


def report_table(table: pd.DataFrame) -> pd.DataFrame:
    """The verdict table of the report: what a reader needs, one row per claim."""
    def ci(r):
        if pd.isna(r["estimate"]):
            return ""
        if RULES[r["rule"]].decided_by == "count":
            return str(int(r["estimate"]))
        return _number(r["estimate"]) + ("" if pd.isna(r["ci_low"]) else
                                         f" [{_number(r['ci_low'])}, {_number(r['ci_high'])}]")
    return pd.DataFrame({
        "claim": table["id"], "verdict": table["verdict"],
        "estimate [95% CI]": [ci(r) for _, r in table.iterrows()],
        "threshold": [("" if pd.isna(v) else f"{v:g}") for v in table["threshold"]],
        "quantity": table["quantity"].fillna(""),
        "runs": [f"{int(u)} of {int(e)}" for u, e in zip(table["runs_used"], table["runs_expected"])],
        "seeds needed": [("" if pd.isna(v) else str(int(v))) for v in table["seeds_needed"]],
        "source": table["source"], "harness's choices": table["harness_choices"].fillna(""),
        "detail": table["detail"].fillna("")})


def show(agg_dir, out_dir) -> list[str]:
    """Prints one line per cached claim and writes OUT/claims.csv (the report's table)."""
    cached = Path(agg_dir) / "claims.csv"
    table = pd.read_csv(cached) if cached.exists() else pd.DataFrame(columns=COLUMNS)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    report_table(table).to_csv(Path(out_dir) / "claims.csv", index=False)
    lines = [line(r) for _, r in table.iterrows()] or [
        f"claims: none evaluated ({'no claims in the config' if cached.exists() else f'no {cached}'})"]
    for text in lines:
        print(text)
    return lines
