"""The harness's files on disk, each fact once: where a cell's run and its Snakemake log lie,
where the analysis writes, what a run's files are called and hold, and how a series
('source:agent') is named. Import-free, so that the workflow, the cell, the status and the
analysis all read it without loading anything."""

RUNS = "results/runs"  # the workflow's runs folder, relative to its working directory
RUN_DIR = "{agent}/{task}/seed{seed}"  # a cell's folder, relative to RUNS
TRAIN_LOG = "results/logs/train/{agent}/{task}/seed{seed}.log"  # the train rule's log of a cell
AGGREGATE_DIR = "results/aggregate"  # estimates, scores, tidy runs, claims and the cache
FIGURES_DIR = "results/figures"  # every figure (PNG and PDF) and the verdict table
VALIDATE_DIR = "results/validate"  # the validation's verdicts, figures and table
EXPORT_DIR = "results/export"  # the runs as a publishable dataset
RECORDED_DIR = "results/recorded"  # the kept validation runs, drawn without training

# What a finished run's folder holds (written when the cell has finished), and their columns.
EVAL_FILE, TRAIN_FILE, META_FILE = "eval.csv", "train.csv", "meta.json"
RUN_FILES = (EVAL_FILE, TRAIN_FILE, META_FILE)
EVAL_COLUMNS = ["frame", "step", "episode", "episode_reward", "episode_length", "total_time"]
# train.csv: these, then the agent's own log_columns.
TRAIN_COLUMNS = ["frame", "step", "episode", "episode_reward", "episode_length", "buffer_size",
                 "fps", "total_time"]

HARNESS = "harness"  # the `source` of the harness's own runs in the tidy table


def run_dir(agent: str, task: str, seed: int) -> str:
    """A cell's folder, relative to RUNS: drm/hopper_hop/seed3."""
    return RUN_DIR.format(agent=agent, task=task, seed=seed)


def train_log(agent: str, task: str, seed: int) -> str:
    """A cell's Snakemake log (the train rule's), relative to the workflow's directory."""
    return TRAIN_LOG.format(agent=agent, task=task, seed=seed)


def parse_series(text: str) -> tuple[str, str]:
    """'drm' is the harness's drm; 'drqv2_published:drqv2' names a published source's agent."""
    source, _, agent = str(text).rpartition(":")
    return (source or HARNESS, agent)


def series_name(series: tuple[str, str]) -> str:
    """parse_series's inverse: the harness's agents by name alone."""
    return series[1] if series[0] == HARNESS else f"{series[0]}:{series[1]}"
