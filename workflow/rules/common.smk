# Config validation and the helpers the rules share; the logic lives in drm/grid.py.
import os
import sys
from pathlib import Path

from drm import gpu_slot, grid
from drm.analysis import claims, results
from drm.cell.config import AGENTS
from drm.layout import RUN_DIR, RUNS, TRAIN_LOG

RUN = f"{RUNS}/{RUN_DIR}"  # a cell's folder, with the wildcards agent, task and seed

# Each check says in one line what is wrong and what is accepted; then the schema's defaults.
grid.check_config(config)
# Snakemake compares a rule's params by their repr: the aggregate section's keys in one order, so
# that a config restating a default (which would put that key first) re-runs nothing.
config["aggregate"] = dict(sorted(config["aggregate"].items()))
CELLS = grid.compose_all(config)  # every cell's config, checked as the cell would check it
# The claims file, checked against the vocabulary and the cells' frame budgets before any job.
CLAIMS = claims.load(config["claims"], [p["name"] for p in config["aggregate"]["published"]])
claims.check_budgets(CLAIMS, {(a, t): cell.num_train_frames for (a, t, _), cell in CELLS.items()})


def _print_cost():
    """What the grid costs, before the job list of a dry run or a run's first job: on stderr, by
    this process only (a job's own Snakemake, as on SLURM, reads this file again: silent)."""
    if not CELLS or not workflow.is_main_process:
        return
    left = grid.cells_left(config, CELLS, RUNS)
    settings = workflow.resource_settings
    gpu = settings.resources.get("gpu")
    at_once = grid.cells_at_once(config, sum(frames > 0 for frames, _, _ in left.values()),
                                 settings.nodes, settings.cores, getattr(gpu, "value", None))
    print("\n".join(grid.grid_cost(config, CELLS, left, at_once).lines()), file=sys.stderr)


_print_cost()


def _trains_here():
    """Whether this run (not a dry run: onstart is skipped there) trains on this machine."""
    if not workflow.local_exec:
        return False
    try:
        return any(job.rule.name == "train" for job in workflow.dag.needrun_jobs())
    except AttributeError:  # Snakemake's DAG API moved: check anyway
        return True


onstart:
    # Only here does Snakemake know where jobs run and which will run. Local jobs share this
    # machine's GPUs through workflow/scripts/gpu_slot.py (the slots it reads are this run's
    # only); jobs that the SLURM executor submits each get a GPU from SLURM, and as many
    # resubmissions as the grid's longest cell needs beyond --retries.
    os.environ.pop(gpu_slot.SLOTS_ENV, None)
    if not workflow.local_exec:
        _allow_long_cells()
    elif _trains_here():
        limit = workflow.resource_settings.resources.get("gpu")
        grid.claim_local_gpus(config, limit.value if limit is not None else None, grid.detected_gpus())


def _training_left(agent, task, seed):
    run = Path(RUN.format(agent=agent, task=task, seed=seed))
    return grid.training_left(CELLS[(agent, task, seed)].num_train_frames, config["resources"],
                              grid.trained_so_far(run))


def _allow_long_cells():
    """A cell longer than resources.max_runtime_minutes spans several time-limited jobs, each
    resuming from the last one's snapshot: Snakemake resubmits a failed job `retries` times
    (--retries, the profile's, for failures), plus here the jobs that the grid's longest cell
    needs beyond its first. Retries are a rule's, known to Snakemake only once it runs: set here."""
    jobs = [grid.jobs_needed(_training_left(*cell), config["resources"]["max_runtime_minutes"])
            for cell in CELLS]
    rules.train.rule.restart_times = grid.train_retries(rules.train.rule.restart_times, jobs)


def published_inputs(sources):
    """The files of published sources (aggregate.published entries), as a rule's input: an edit of
    one re-runs what reads it. A missing path is refused here, before any job."""
    try:
        return [str(f) for source in sources for f in results.published_files(source["path"])]
    except results.RunFileError as error:
        raise grid.ConfigError(str(error)) from None


def grid_outputs(name):
    return [f"{RUN}/{name}".format(agent=a, task=t, seed=s) for a, t, s in grid.cells(config)]


def _cell(wildcards):
    return CELLS[(wildcards.agent, wildcards.task, int(wildcards.seed))]


def cell_args(wildcards):
    return grid.hydra_args(grid.overrides_of(config, wildcards.agent, wildcards.task, int(wildcards.seed)))


def cell_gpus(wildcards):
    return 1 if config["train"]["device"] == "cuda" else 0


def cell_mem_mb(wildcards):
    return grid.mem_mb(_cell(wildcards), config["resources"]["mem_margin_mb"])


def cell_runtime(wildcards, attempt):
    left = _training_left(wildcards.agent, wildcards.task, int(wildcards.seed))
    return grid.runtime_minutes(left, config["resources"]["max_runtime_minutes"], attempt)
