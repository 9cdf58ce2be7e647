"""The validation runs kept in the repository (docs/validation/runs), drawn without training.

`make demo`'s report shows them as "Recorded validation runs" (the rule `recorded`,
workflow/rules/validate.smk). They go through the grid's own path: the one importer and the
statistics (`drm.analysis.aggregate.run`), every figure from that cache (`drm.analysis.figures`),
each evaluation against the published seeds (`drm.analysis.validation`, `validation_plot`) and,
for each recorded DrM run, its mechanisms beside DrQ-v2's run of the same task
(`drm.analysis.mechanisms`). The config (config/recorded.yaml) spans the runs looked for; those
not recorded (yet) are left out, so a run that lands in the runs folder is picked up.

    python -m drm.analysis.recorded --config config/recorded.yaml --out results/recorded

Importing this module stays cheap (the workflow lists the outputs when it parses); the drawing
imports the statistics only when it runs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from drm.analysis import validation
from drm.analysis.figures import FIGURES
from drm.layout import RECORDED_DIR, RUN_FILES, run_dir

KEYS = ("runs", "agents", "tasks", "seeds", "claims", "aggregate", "validate")


def load_config(path) -> dict:
    """config/recorded.yaml, checked: the runs folder, the grid looked for, the reference."""
    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"recorded runs' config {path}: {error}") from error
    if not isinstance(config, dict):
        raise ValueError(f"recorded runs' config {path}: not a mapping of {', '.join(KEYS)}")
    unknown = sorted(set(config) - set(KEYS))
    if unknown:
        raise ValueError(f"recorded runs' config {path}: unknown key(s) {', '.join(unknown)}; "
                         f"known: {', '.join(KEYS)}")
    if not isinstance(config.get("runs"), str):
        raise ValueError(f"recorded runs' config {path}: runs must be the runs folder, "
                         f"e.g. docs/validation/runs, not {config.get('runs')!r}")
    for key in ("agents", "tasks", "seeds"):
        value = config.get(key)
        if not isinstance(value, list) or not value:
            raise ValueError(f"recorded runs' config {path}: {key} must be a non-empty list, not {value!r}")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in config["seeds"]):
        raise ValueError(f"recorded runs' config {path}: seeds must be integers, not {config['seeds']!r}")
    validation.parse_reference((config.get("validate") or {}).get("reference"))
    return config


def finished_runs(config) -> list[tuple[str, str, int]]:
    """(agent, task, seed) of the grid whose folder holds a finished run (its meta.json)."""
    return [(a, t, s) for a in config["agents"] for t in config["tasks"] for s in config["seeds"]
            if (Path(config["runs"]) / run_dir(a, t, s) / "meta.json").exists()]


def run_files(config) -> list[str]:
    """The files of the finished runs, as the workflow's inputs: a new run re-draws."""
    return [str(Path(config["runs"]) / run_dir(*run) / name) for run in finished_runs(config)
            for name in RUN_FILES if (Path(config["runs"]) / run_dir(*run) / name).exists()]


def mechanism_pairs(config) -> list[tuple[str, int, Path, Path | None]]:
    """(task, seed, DrM's run, the DrQ-v2 run beside it) for each finished DrM run: DrQ-v2's run of
    the same seed, else its lowest recorded seed of the task, else none."""
    runs = finished_runs(config)
    root = Path(config["runs"])
    pairs = []
    for agent, task, seed in runs:
        if agent != "drm":
            continue
        seeds = sorted(s for a, t, s in runs if a == "drqv2" and t == task)
        partner = seed if seed in seeds else (seeds[0] if seeds else None)
        pairs.append((task, seed, root / run_dir(agent, task, seed),
                      root / run_dir("drqv2", task, partner) if partner is not None else None))
    return pairs


def outputs(config, out) -> dict[str, list[str]]:
    """Every file `draw` writes under `out`, by kind (the workflow declares them)."""
    out = Path(out)
    return dict(
        figures=[str(out / "figures" / f"{name}.png") for name in FIGURES],
        figures_pdf=[str(out / "figures" / f"{name}.pdf") for name in FIGURES],
        validation=[str(out / "validate" / f"{task}.png") for task in config["tasks"]],
        mechanisms=[str(out / "mechanisms" / f"{task}_seed{seed}.png")
                    for task, seed, _, _ in mechanism_pairs(config)],
        verdicts=[str(out / "validate" / "verdict.csv")],
        summary=[str(out / "summary.txt")],
    )


def draw(config, out, workers: int = 1) -> list[str]:
    """Aggregates the recorded runs and draws every output; returns the summary's lines (one per
    run against the published record, then the mechanisms' numbers)."""
    import pandas as pd

    from drm.analysis import aggregate, figures, mechanisms, validation_plot

    out = Path(out)
    paths = outputs(config, out)
    agg = out / "aggregate"
    aggregate.run(config, config["runs"], agg, skip_bad_runs=False, workers=workers)
    figures.draw_all(agg, out / "figures")
    tidy = pd.read_csv(agg / "tidy.csv")
    reference = validation.parse_reference(config["validate"]["reference"])
    table = validation.verdicts(tidy, reference)
    bands = validation.reference_bands(tidy, reference)
    (out / "validate").mkdir(parents=True, exist_ok=True)
    table.to_csv(paths["verdicts"][0], index=False)
    for task, png in zip(config["tasks"], paths["validation"]):
        validation_plot.draw_task(tidy, bands, table, task, [png, png.removesuffix(".png") + ".pdf"])
    lines = validation.summary_lines(table)
    for (task, seed, drm_dir, drqv2_dir), png in zip(mechanism_pairs(config), paths["mechanisms"]):
        lines += mechanisms.draw(drm_dir, drqv2_dir, [png, png.removesuffix(".png") + ".pdf"])
    Path(paths["summary"][0]).write_text("\n".join(lines) + "\n")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drm.analysis.recorded",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="config/recorded.yaml")
    parser.add_argument("--out", default=RECORDED_DIR)
    args = parser.parse_args(argv)
    try:
        lines = draw(load_config(args.config), args.out)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    print(f"recorded: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
