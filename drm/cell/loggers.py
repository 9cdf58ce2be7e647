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
group agent/task, name agent/task/seedN, the resolved config as its config, frames as its step.
`work/wandb.json` keeps the run's id and how many rows of each CSV it was sent, so a resumption
continues the same run and never sends a row twice (a row re-played after the snapshot keeps the
values first sent, which on a GPU may differ from the CSV's in the last bits).
"""
import json
import math
import os
from pathlib import Path

from omegaconf import OmegaConf

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
    def __init__(self, cfg, run: Path, work: Path, rows: dict):
        """`rows`: how many rows of each CSV the resumed cell keeps (0 when it starts afresh)."""
        import wandb

        self.record_path = work / "wandb.json"
        record = (json.loads(self.record_path.read_text()) if self.record_path.exists()
                  else {"id": None, "sent": {"eval": 0, "train": 0}})
        self.record, self.rows = record, dict(rows)
        agent, task, seed = cfg.agent.name, cfg.task, cfg.seed
        self.run = wandb.init(
            project=cfg.wandb_project, group=f"{agent}/{task}", name=f"{agent}/{task}/seed{seed}",
            job_type=agent, tags=[agent, task], id=record["id"], resume="allow", dir=str(run),
            config=OmegaConf.to_container(cfg, resolve=True))
        record["id"] = self.run.id
        self._save()

    def _save(self) -> None:
        tmp = self.record_path.with_name(self.record_path.name + ".tmp")
        tmp.write_text(json.dumps(self.record))
        os.replace(tmp, self.record_path)

    def write(self, kind: str, row: dict) -> None:
        index = self.rows[kind]
        self.rows[kind] += 1
        if index < self.record["sent"][kind]:
            return  # sent before the cell was killed
        self.run.log({f"{kind}/{key}": value for key, value in scalars(row).items()}, step=int(row["frame"]))
        self.record["sent"][kind] = index + 1
        self._save()

    def state(self) -> dict:
        return {}

    def close(self) -> None:
        self.run.finish()


class Loggers:
    """The cell's loggers; opened by `start` once the cell knows where it resumes from."""

    def __init__(self, cfg, run: Path, work: Path):
        self.cfg, self.run, self.work = cfg, Path(run), Path(work)
        self.names = list(cfg.loggers)
        self.open = {}

    def start(self, state: dict | None, rows: dict) -> None:
        """`state`: what the snapshot being resumed recorded (None: the cell starts afresh)."""
        state = state or {}
        self.close()
        if "tensorboard" in self.names:
            self.open["tensorboard"] = TensorBoardLog(self.run, state.get("tensorboard", {}))
        if "wandb" in self.names:
            self.open["wandb"] = WandbLog(self.cfg, self.run, self.work, rows)

    def write(self, kind: str, row: dict) -> None:
        for logger in self.open.values():
            logger.write(kind, row)

    def state(self) -> dict:
        return {name: logger.state() for name, logger in self.open.items()}

    def close(self) -> None:
        while self.open:
            self.open.popitem()[1].close()
