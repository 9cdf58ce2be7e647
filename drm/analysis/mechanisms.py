"""DrM's mechanisms through one run, beside a baseline's run of the same task (the DrM paper's
Figure 2 story: the actor's dormant ratio falls, DrM awakens, then the return rises).

    python -m drm.analysis.mechanisms --drm RUN_DIR --drqv2 RUN_DIR --out FIGURE.png

reads each run's train.csv (one row per training episode) and eval.csv, from a finished run's
folder or from the work/ folder of one still training, and draws on one frame axis: the actor's
dormant ratio of both runs with DrM's awakening frame, DrM's exploration std and the baseline's,
DrM's lambda, and both evaluation returns. It prints the numbers `numbers` computes.
"""
from __future__ import annotations

import argparse
import math
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from drm.analysis import figures
from drm.analysis.figures import COLOURS, label, no_data, plot_known, plt
from drm.analysis.results import (HARNESS, MAX_RETURN, RunFileError, _first_error, _frame_order_problems,
                                  _read_csv, _require_columns, _row_problems)

# What each run's train.csv must carry (drm.train.TRAIN_COLUMNS and the agents' log_columns).
TRAIN_NEEDS = ["frame", "step", "episode_reward", "actor_dormant_ratio", "stddev"]
DRM_NEEDS = TRAIN_NEEDS + ["exploit_lambda", "awaken_step"]
EVAL_NEEDS = ["frame", "episode_reward"]


@dataclass
class Run:
    """One run's logs: train (one row per training episode) and evals (one per evaluation)."""
    train: pd.DataFrame
    evals: pd.DataFrame
    agent: str = "drm"
    config: dict = field(default_factory=dict)  # the run's config.yaml, where it has one
    finished: bool = True

    @property
    def name(self) -> str:
        return label(HARNESS, self.agent)


@dataclass(frozen=True)
class Numbers:
    """What docs/validation.md quotes from a run; None where the run does not show it."""
    awakening_frame: int | None  # the frame DrM's actor first woke up (awaken_step x action repeat)
    dormant_before: float | None  # mean actor dormant ratio of the training episodes ending at or before it
    dormant_after: float | None  # ... and of those ending after it
    first_frame_1000: int | None  # the first evaluation whose return reaches 1000


def action_repeat(train: pd.DataFrame) -> int:
    """Frames per agent step, as the run's own rows record them (frame = step x repeat)."""
    rows = train[train["step"] > 0]
    ratios = set((rows["frame"] / rows["step"]).tolist())
    if len(ratios) > 1 or any(r % 1 for r in ratios):
        raise ValueError(f"frame / step is {sorted(ratios)}, not one whole action repeat")
    return int(ratios.pop()) if ratios else 1


def awakening_frame(train: pd.DataFrame) -> int | None:
    """DrM's awakening as a frame: awaken_step (an agent step, NaN until awake) x action repeat."""
    if "awaken_step" not in train.columns:
        return None
    awake = train["awaken_step"].dropna()
    return None if awake.empty else int(awake.iloc[0]) * action_repeat(train)


def first_frame_reaching(evals: pd.DataFrame, value: float = MAX_RETURN) -> int | None:
    reached = evals.loc[evals["episode_reward"] >= value, "frame"]
    return None if reached.empty else int(reached.iloc[0])


def numbers(train: pd.DataFrame, evals: pd.DataFrame, split: int | None = None) -> Numbers:
    """The run's awakening frame, its mean dormant ratio before and after it, and the frame its
    evaluation return first reaches 1000. `split` replaces the run's own awakening (a baseline,
    which has none, is measured over DrM's spans)."""
    frame = awakening_frame(train) if split is None else split
    dormant = train[["frame", "actor_dormant_ratio"]].dropna()

    def mean(rows):
        return float(rows["actor_dormant_ratio"].mean()) if len(rows) else None

    before = mean(dormant[dormant["frame"] <= frame]) if frame is not None else None
    after = mean(dormant[dormant["frame"] > frame]) if frame is not None else None
    return Numbers(frame, before, after, first_frame_reaching(evals))


def _check_numbers(df: pd.DataFrame, columns, path) -> None:
    for column in columns:
        value = pd.to_numeric(df[column], errors="coerce")
        bad = value.isna() & df[column].notna()
        if bad.any():
            i = df.index[bad][0]
            raise RunFileError(path, int(i) + 2, f"{column} {df.at[i, column]!r} is not a number")


def read_run(folder, agent: str = "drm") -> Run:
    """A run's logs from its folder (finished) or that folder's work/ (still training), checked
    as the importer checks a run; a DrM run must carry DrM's columns."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: no such folder (expected a run's folder holding train.csv and "
                         "eval.csv, or their work/ while it trains)")
    logs = folder if (folder / "eval.csv").exists() or not (folder / "work").is_dir() else folder / "work"
    tables = {}
    for name, needs in (("train.csv", DRM_NEEDS if agent == "drm" else TRAIN_NEEDS),
                        ("eval.csv", EVAL_NEEDS)):
        path = logs / name
        if not path.exists():
            raise RunFileError(path, None, "missing (a run's folder holds train.csv and eval.csv)")
        df = _read_csv(path)
        _require_columns(df, needs, path)
        problems = (_row_problems(df, None) if name == "eval.csv"
                    else _row_problems(df, "actor_dormant_ratio", reward=False))
        error = _first_error(path, problems, None) or _first_error(
            path, _frame_order_problems(df["frame"].astype(float)), None)
        if error is not None:
            raise error
        _check_numbers(df, needs, path)
        tables[name] = df[needs].apply(pd.to_numeric, errors="coerce")
    config = {}
    if (folder / "config.yaml").exists():
        config = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    agent_name = (config.get("agent") or {}).get("name", agent) if isinstance(config, dict) else agent
    try:
        action_repeat(tables["train.csv"])  # a readable error now rather than a wrong axis later
    except ValueError as error:
        raise RunFileError(logs / "train.csv", None, str(error)) from error
    return Run(tables["train.csv"], tables["eval.csv"], agent=agent_name,
               config=config if isinstance(config, dict) else {},
               finished=(folder / "meta.json").exists())


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def describe(drm: Run, baseline: Run | None) -> list[str]:
    """One line per run with its numbers (the baseline's over DrM's spans)."""
    n = numbers(drm.train, drm.evals)

    def split(m: Numbers, whose: str) -> str:
        return (f"actor dormant ratio {_fmt(m.dormant_before)} before {whose}awakening, "
                f"{_fmt(m.dormant_after)} after; ")

    def reached(run: Run, m: Numbers) -> str:
        first = (f"1000 first at frame {m.first_frame_1000:,}" if m.first_frame_1000 is not None
                 else "never 1000")
        return f"evaluation return {first} (last evaluation: {_last(run)})"

    awake = (f"awakens at frame {n.awakening_frame:,}; {split(n, 'the ')}" if n.awakening_frame is not None
             else "not awake yet; ")
    lines = [f"{drm.name}: {awake}{reached(drm, n)}"]
    if baseline is not None:
        b = numbers(baseline.train, baseline.evals, split=n.awakening_frame)
        spans = split(b, f"{drm.name}'s ") if n.awakening_frame is not None else ""
        lines.append(f"{baseline.name}: {spans}{reached(baseline, b)}")
    return lines


def _last(run: Run) -> str:
    if run.evals.empty:
        return "none"
    last = run.evals.iloc[-1]
    return f"{last['episode_reward']:.1f} at frame {int(last['frame']):,}"


def _title(drm: Run, baseline: Run | None) -> str:
    def seed(run: Run) -> str:
        return f" seed {run.config['seed']}" if run.config.get("seed") is not None else ""

    def frames(run: Run) -> str:
        return f"{int(run.train['frame'].max()) if len(run.train) else 0:,} frames"

    task = drm.config.get("task")
    head = (f"{drm.name}'s mechanisms" + (f" on {task}" if task else "") + f": {drm.name}{seed(drm)} "
            f"to {frames(drm)}" + ("" if drm.finished else " (still training)"))
    if baseline is not None:
        head += f", {baseline.name}{seed(baseline)} to {frames(baseline)}"
    return head


def figure(drm: Run, baseline: Run | None = None):
    """Four panels on one frame axis: dormant ratio, exploration std, lambda, evaluation return;
    DrM's awakening marked across them, one legend below."""
    runs = [r for r in (drm, baseline) if r is not None]
    last = max([r.train["frame"].max() for r in runs if len(r.train)]
               + [r.evals["frame"].max() for r in runs if len(r.evals)] + [1])
    div, xlabel = figures._frame_axis(last)
    unit = "k" if div == 1e3 else "M"  # the annotations' frames, in the axis' unit
    fig, axes = plt.subplots(4, 1, figsize=(8, 11), sharex=True, layout="constrained")
    dormant, stddev, lam, ret = axes
    colour = {id(r): COLOURS.get((HARNESS, r.agent), figures.OKABE_ITO["black"]) for r in runs}
    n = numbers(drm.train, drm.evals)
    settings = drm.config.get("agent") or {}

    def per_episode(ax, column, of, why):
        drawn = [r for r in of if column in r.train.columns and r.train[column].notna().any()]
        for r in drawn:
            plot_known(ax, r.train["frame"] / div, r.train[column], color=colour[id(r)], linewidth=1.6)
        if not drawn:
            no_data(ax, why)

    def threshold(ax, value, text):
        if value is not None:
            ax.axhline(value, color="grey", linestyle=":", linewidth=1)
            ax.text(last / div, value, f"{text} {value:g}", ha="right", va="bottom",
                    fontsize="small", color="dimgrey")

    updates = "no training episode has updated the actor yet"
    per_episode(dormant, "actor_dormant_ratio", runs, updates)
    threshold(dormant, settings.get("target_dormant_ratio"), "DrM's awakening threshold")
    dormant.set_ylabel("Actor dormant ratio")
    dormant.set_ylim(0, 1.02)
    per_episode(stddev, "stddev", runs, updates)
    stddev.set_ylabel("Exploration std σ")
    stddev.set_ylim(0, 1.02)
    per_episode(lam, "exploit_lambda", [drm], f"no training episode of {drm.name} has updated the critic yet")
    threshold(lam, settings.get("target_lambda"), "λ at most")
    lam.set_ylim(0, max(0.7, (settings.get("target_lambda") or 0) * 1.15))
    lam.set_ylabel(f"{drm.name}'s λ: weight of V\nin the critic's target")

    for r in runs:
        if r.train["episode_reward"].notna().any():
            plot_known(ret, r.train["frame"] / div, r.train["episode_reward"], color=colour[id(r)],
                       linewidth=0.8, alpha=0.35)
        if len(r.evals):
            ret.plot(r.evals["frame"] / div, r.evals["episode_reward"], color=colour[id(r)],
                     marker="o", linewidth=2)
        first = first_frame_reaching(r.evals)
        if first is not None:
            ret.annotate(f"{r.name}: 1000 first at {first / div:g}{unit}", (first / div, MAX_RETURN),
                         xytext=(-10, -22 - 18 * (r is baseline)), textcoords="offset points",
                         ha="right", fontsize="small", color=colour[id(r)],
                         bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=1),
                         arrowprops=dict(arrowstyle="-", color=colour[id(r)], linewidth=0.8))
    if not any(len(r.evals) for r in runs):
        no_data(ret, "no evaluation yet")
    ret.set_ylim(-0.02 * MAX_RETURN, 1.05 * MAX_RETURN)
    ret.set_ylabel("Return")
    ret.set_xlabel(xlabel)
    ret.set_xlim(0, last / div * 1.01)

    drm_last = max([drm.train["frame"].max() if len(drm.train) else 0,
                    drm.evals["frame"].max() if len(drm.evals) else 0])
    for ax in axes:
        if n.awakening_frame is not None:
            ax.axvline(n.awakening_frame / div, color=colour[id(drm)], linestyle="--", linewidth=1)
        if not drm.finished and drm_last < last:
            ax.axvspan(drm_last / div, last / div * 1.01, color="grey", alpha=0.08, linewidth=0)
        ax.grid(alpha=0.25)
        ax.spines[["top", "right"]].set_visible(False)
    if n.awakening_frame is not None:
        dormant.text(n.awakening_frame / div, 1.0, f" {drm.name} awakens (frame {n.awakening_frame:,})",
                     va="top", fontsize="small", color=colour[id(drm)])

    Line = plt.Line2D
    handles = [Line([], [], color=colour[id(r)], linewidth=2) for r in runs]
    names = [r.name for r in runs]
    handles += [Line([], [], color="grey", marker="o", linewidth=2),
                Line([], [], color="grey", linewidth=0.8, alpha=0.5)]
    names += ["evaluation return (mean action)", "training episode return"]
    if n.awakening_frame is not None:
        handles.append(Line([], [], color=colour[id(drm)], linestyle="--", linewidth=1))
        names.append(f"{drm.name} awakens: frame {n.awakening_frame:,}")
    if not drm.finished and drm_last < last:
        handles.append(plt.Rectangle((0, 0), 1, 1, color="grey", alpha=0.15, linewidth=0))
        names.append(f"beyond {drm.name}'s last frame (still training)")
    fig.legend(handles, names, loc="outside lower center", ncol=3, frameon=False, fontsize="small")
    if n.awakening_frame is None:
        awake = "not awake yet"
    else:
        known = [f"{_fmt(v)} {when}" for v, when in ((n.dormant_before, "before"),
                                                         (n.dormant_after, "after")) if v is not None]
        missing = [when for v, when in ((n.dormant_before, "before"), (n.dormant_after, "after")) if v is None]
        awake = (f"awakens at {n.awakening_frame:,} frames; its actor dormant ratio averages "
                 f"{', '.join(known) or 'nothing yet'}"
                 + (f" (no training episode with updates ended {' or '.join(missing)} it)" if missing else ""))
    lines = [_title(drm, baseline), f"{drm.name} {awake}",
             "lines: one point per training episode (the mean over its updates)"]
    fig.suptitle("\n".join(textwrap.fill(line, 100) for line in lines), fontsize="medium")
    return fig


def draw(drm_dir, baseline_dir, paths) -> list[str]:
    """Reads both runs, draws the figure into each of `paths`; returns the numbers' lines."""
    drm = read_run(drm_dir, "drm")
    baseline = read_run(baseline_dir, "drqv2") if baseline_dir is not None else None
    if baseline is not None:
        tasks = {r.config.get("task") for r in (drm, baseline)} - {None}
        if len(tasks) > 1:
            raise ValueError(f"the DrM run ({drm_dir}) and the baseline's ({baseline_dir}) are of "
                             f"different tasks: {', '.join(sorted(tasks))}; the figure compares one task")
    fig = figure(drm, baseline)
    for path in paths:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150 if str(path).endswith(".png") else None)
    plt.close(fig)
    return describe(drm, baseline)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drm.analysis.mechanisms",
                                     description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--drm", required=True, metavar="RUN_DIR",
                        help="a DrM run's folder (or the folder of one still training)")
    parser.add_argument("--drqv2", metavar="RUN_DIR",
                        help="the baseline's run of the same task, e.g. "
                             "docs/validation/runs/drqv2/cartpole_balance_sparse/seed1")
    parser.add_argument("--out", required=True, nargs="+", metavar="FIGURE",
                        help="where to draw it (.png, .pdf; several allowed)")
    args = parser.parse_args(argv)
    bad = [p for p in args.out if Path(p).suffix not in (".png", ".pdf")]
    if bad:
        print(f"error: --out {bad[0]}: the figure is written as .png or .pdf", file=sys.stderr)
        return 2
    try:
        lines = draw(args.drm, args.drqv2, args.out)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    print(f"mechanisms: wrote {', '.join(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
