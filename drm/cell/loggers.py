"""Where a cell's curves go besides eval.csv and train.csv: TensorBoard and Weights & Biases.

Every row the cell writes to a CSV is also logged, each numeric column as `eval/<column>` or
`train/<column>` at the row's frame (eval/episode_reward, train/episode_reward, train/fps,
train/actor_dormant_ratio, the losses, stddev, DrM's exploit_lambda and awaken_step, A-LIX's
lix_s, ...). The CSVs stay the results; these are for watching a grid train.

TensorBoard: event files in the cell's folder, so `tensorboard --logdir results/runs` names each
run agent/task/seedN. A snapshot records each event file's length; a resumption cuts the files
back to those lengths and removes newer ones before it logs again, as it cuts the CSVs back, so
the curves continue with no step twice and none rewound.

W&B (optional: `pip install 'drm-repro[wandb]'`): one run per cell, project `wandb_project`,
group agent/task, name agent/task/seedN, the resolved config as its config, frames as its x axis.
`work/wandb.json` keeps the run's id, so a resumption continues the same run. W&B writes what is
logged a little later, in its own process, and keeps only in part what a killed process had
logged; a W&B run cannot be cut back. So a resumption first logs again, from the CSVs, the rows
written since the snapshot *before* the one it resumes from (a row is lost to W&B only if W&B did
not write it in a whole snapshot interval), then goes on from the snapshot. A frame logged again,
or one the killed process got through, appears twice with its value (the CSVs and TensorBoard
hold every row once). CI once saw the loss this prevents: A-LIX's train row logged just before a
snapshot, the process killed within a second of it.
"""
import json
import math
import os
from pathlib import Path

from omegaconf import OmegaConf

from drm import layout

LOGGERS = ("tensorboard", "wandb")
EVENT_FILES = "events.out.tfevents.*"  # TensorBoard's own naming
NOT_LOGGED = ("frame", "step", "episode", "total_time")  # the step itself, and counters
FLUSH_SECONDS = 30  # TensorBoard's queue reaches the disk at least this often (and after each eval)


def check(names) -> None:
    """Refuse an unknown logger, or wandb where it is not installed, in one line."""
    listed = OmegaConf.is_list(names) or isinstance(names, (list, tuple))
    if not listed or any(name not in LOGGERS for name in names):
        shown = list(names) if listed else names
        raise ValueError(f"loggers={shown!r} is invalid: must be a list of {', '.join(LOGGERS)} (or []); "
                         "eval.csv and train.csv are always written")
    if "wandb" in names:
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise ValueError("loggers asks for wandb, which is not installed here: "
                             "pip install 'drm-repro[wandb]' (or pip install wandb), or leave wandb out") from None


def scalars(row: dict) -> dict[str, float]:
    """A row's loggable values: numbers, not NaN, without the frame and the counters."""
    out = {}
    for key, value in row.items():
        if key in NOT_LOGGED or value is None or isinstance(value, (bool, str)):
            continue
        value = float(value)
        if math.isfinite(value):
            out[key] = value
    return out


class TensorBoardLog:
    def __init__(self, run: Path, lengths: dict | None):
        """`lengths`: the event files' lengths a snapshot recorded (None: start from nothing)."""
        from torch.utils.tensorboard import SummaryWriter

        self.run = run
        for path in run.glob(EVENT_FILES):
            kept = (lengths or {}).get(path.name)
            if kept is None:
                path.unlink()
            elif path.stat().st_size > kept:
                os.truncate(path, kept)
        self.writer = SummaryWriter(log_dir=str(run), flush_secs=FLUSH_SECONDS)

    def write(self, kind: str, row: dict) -> None:
        for key, value in scalars(row).items():
            self.writer.add_scalar(f"{kind}/{key}", value, global_step=int(row["frame"]))
        if kind == "eval":
            self.writer.flush()

    def state(self) -> dict:
        self.writer.flush()
        return {path.name: path.stat().st_size for path in self.run.glob(EVENT_FILES)}

    def close(self) -> None:
        self.writer.close()


class WandbLog:
    def __init__(self, cfg, run: Path, work: Path, logs: dict, state: dict):
        """`logs`: the cell's CsvLogs by kind; `state`: what the snapshot being resumed recorded."""
        import wandb

        self.record_path = work / "wandb.json"  # the run's id, so a resumption continues the run
        run_id = json.loads(self.record_path.read_text())["id"] if self.record_path.exists() else None
        agent, task, seed = cfg.agent.name, cfg.task, cfg.seed
        try:
            self.run = wandb.init(
                project=cfg.wandb_project, group=f"{agent}/{task}", name=layout.run_dir(agent, task, seed),
                job_type=agent, tags=[agent, task], id=run_id, resume="allow", dir=str(run),
                config=OmegaConf.to_container(cfg, resolve=True))
        except wandb.errors.Error as err:  # e.g. not logged in: the cell stops, resumable, in one line
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ValueError(f"W&B could not start this cell's run ({first_line}); `wandb login`, "
                             "or WANDB_MODE=offline, or leave wandb out of loggers") from None
        # Frames are the x axis; W&B's own step counts rows, so an evaluation and a training
        # episode at the same frame are two rows, each committed as it is logged.
        self.run.define_metric("frame")
        self.run.define_metric("*", step_metric="frame")
        tmp = self.record_path.with_name(self.record_path.name + ".tmp")
        tmp.write_text(json.dumps({"id": self.run.id}))
        os.replace(tmp, self.record_path)
        # Rows per kind [first, stop) that may not have reached W&B before the kill: logged again.
        relog = state.get("relog", {})
        again = [(kind, row) for kind, (first, stop) in relog.items() for row in logs[kind].read(first, stop)]
        for kind, row in sorted(again, key=lambda kind_row: (kind_row[1]["frame"], kind_row[0] == "eval")):
            self.write(kind, row)
        self.logs = logs
        self.settled = {kind: relog.get(kind, (0, 0))[1] for kind in logs}  # at the snapshot resumed

    def write(self, kind: str, row: dict) -> None:
        self.run.log({"frame": int(row["frame"]), **{f"{kind}/{key}": value for key, value in scalars(row).items()}})

    def state(self) -> dict:
        """At a snapshot: the rows since the previous one, which a resumption from it logs again."""
        rows = {kind: log.rows for kind, log in self.logs.items()}
        relog = {kind: (self.settled[kind], rows[kind]) for kind in rows}
        self.settled = rows
        return {"relog": relog}

    def close(self) -> None:
        self.run.finish()


class Loggers:
    """The cell's loggers; opened by `start` once the cell knows where it resumes from."""

    def __init__(self, cfg, run: Path, work: Path, logs: dict):
        """`logs`: the cell's CsvLogs by kind (eval, train), which W&B logs again from on resuming."""
        self.cfg, self.run, self.work, self.logs = cfg, Path(run), Path(work), logs
        self.names = list(cfg.loggers)
        self.open = {}

    def start(self, state: dict | None) -> None:
        """`state`: what the snapshot being resumed recorded (None: the cell starts afresh)."""
        state = state or {}
        self.close()
        if "tensorboard" in self.names:
            self.open["tensorboard"] = TensorBoardLog(self.run, state.get("tensorboard", {}))
        if "wandb" in self.names:
            self.open["wandb"] = WandbLog(self.cfg, self.run, self.work, self.logs, state.get("wandb", {}))

    def write(self, kind: str, row: dict) -> None:
        for logger in self.open.values():
            logger.write(kind, row)

    def state(self) -> dict:
        return {name: logger.state() for name, logger in self.open.items()}

    def close(self) -> None:
        while self.open:
            self.open.popitem()[1].close()
