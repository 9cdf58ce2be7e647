"""The workflow's config and grid (agents x tasks x seeds): loaded and checked before any job runs.

The one way to read a workflow config (workflow/rules/common.smk, `python -m drm.status`, the
aggregate and export entry points, the tests): load_config / check_config, over the schema
(workflow/schemas/config.schema.yaml, read once). Then every cell's config, GPUs, memory, time
and cost.
"""
import csv
import difflib
import json
import logging
import math
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from drm import gpu_slot
from drm import layout
from drm.cell import config as cell_config
from drm.cell import footprint, presets
from drm.cell.replay import ReplayBuffer


# Keys a cell takes from the grid, never from an override map: its agent, task and seed are the
# grid's lists, its out_dir is its folder (RUN_DIR), so a run always agrees with where it lies.
GRID_KEYS = ("agent", "task", "seed", "out_dir")


class ConfigError(ValueError):
    """A workflow config that would fail later: refused before any job runs."""


SCHEMA_FILE = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


@lru_cache(maxsize=None)
def _schema_text(schema_file: Path) -> str:
    return Path(schema_file).read_text()


def schema(schema_file: Path = SCHEMA_FILE) -> dict:
    """The workflow config's schema (every key, described, with its default), read once: a fresh copy."""
    return yaml.safe_load(_schema_text(schema_file))


def defaults(section: str) -> dict:
    """The schema's defaults of one config section (e.g. `aggregate`): their one source."""
    return {key: spec["default"] for key, spec in schema()["properties"][section]["properties"].items()}


def check_config(cfg: dict, schema_file: Path = SCHEMA_FILE) -> dict:
    """A workflow config checked (each check one line: what is wrong and what is accepted) and
    filled with the schema's defaults, in place; returned for convenience."""
    from snakemake.utils import validate

    spec = schema(schema_file)
    check_keys(cfg, spec)
    check_grid(cfg)
    check_schema(cfg, spec)
    validate(cfg, str(schema_file))  # fills in the defaults
    return cfg


def _merge(base: dict, update: dict) -> dict:
    """Snakemake's rule for several config files: later ones update earlier ones, key by key."""
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(paths: list[Path], schema_file: Path = SCHEMA_FILE) -> dict:
    """The workflow config as the Snakefile builds it (config/config.yaml, then each --configfile
    over it), checked and filled (check_config)."""
    cfg = {}
    for path in paths:
        cfg = _merge(cfg, yaml.safe_load(Path(path).read_text()) or {})
    return check_config(cfg, schema_file)


def task_names() -> dict:
    """dm_control's task list. Unless the user chose a backend, dm_control is imported with
    rendering off: the Snakemake process never renders, and each job (possibly on another
    machine) must choose its own MUJOCO_GL, so none is left behind in the environment."""
    unset, handlers = "MUJOCO_GL" not in os.environ, list(logging.root.handlers)
    if unset:
        os.environ["MUJOCO_GL"] = "disabled"
    try:
        from drm.cell.dmc import task_names as names

        return names()
    finally:
        logging.root.handlers = handlers  # dm_control's import adds a root handler: log lines twice
        if unset:
            del os.environ["MUJOCO_GL"]


def is_task(name: str) -> bool:
    """Whether `name` is a Control Suite task; dm_control is imported only for a task that
    drm/cfg/tasks.yaml does not configure."""
    return name in presets.configured_tasks() or name in task_names()


def _did_you_mean(word: str, known) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_keys(cfg: dict, schema: dict) -> None:
    """Unknown config keys, one line each (the schema's own error prints the whole schema):
    the key, its value, a did-you-mean, and the section a misplaced key belongs to."""
    sections = {name: spec for name, spec in schema["properties"].items()
                if spec.get("type") == "object" and "properties" in spec}
    for path, data, spec in [("", cfg, schema)] + [
            (f"{name}.", cfg.get(name), spec) for name, spec in sections.items()]:
        if not isinstance(data, dict):
            continue  # the schema says what the section must be
        known = list(spec["properties"])
        for key in data:
            if key in known:
                continue
            home = [name for name, sub in sections.items()
                    if name != path.rstrip(".") and key in sub["properties"]]
            hint = (f"; it belongs in the {home[0]!r} section ({home[0]}.{key})" if home
                    else _did_you_mean(key, known))
            where = f"in {path.rstrip('.')}" if path else "at the top level"
            raise ConfigError(f"config key {path + key!r} (value {data[key]!r}) is unknown{hint} "
                              f"(accepted {where}: {', '.join(known)})")


def check_schema(cfg: dict, schema: dict) -> None:
    """The schema's first error as one line: the key's path, the bad value and the rule."""
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(cfg))
    if error is not None:
        where = ".".join(map(str, error.absolute_path)) or "config"
        raise ConfigError(f"{where}: {error.message}")


def check_grid(cfg: dict) -> None:
    """The grid keys, checked before the schema so that errors name the accepted values."""
    for key in ("agents", "tasks", "seeds"):
        if not isinstance(cfg.get(key), list):
            raise ConfigError(f"config key {key!r} must be a list, got {cfg.get(key)!r}")
    unknown = [a for a in cfg["agents"] if a not in cell_config.AGENTS]
    if unknown:
        raise ConfigError(f"agents: unknown {unknown}; valid agents: {', '.join(cell_config.AGENTS)}")
    trains = bool(cfg["agents"] and cfg["seeds"])  # else only aggregates (published data)
    unknown = [t for t in cfg["tasks"] if trains and not is_task(t)]
    if unknown:
        raise ConfigError(f"tasks: unknown {unknown}; valid tasks: {', '.join(sorted(task_names()))}")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in cfg["seeds"]):
        raise ConfigError(f"seeds: {cfg['seeds']!r} must all be integers")
    negative = [s for s in cfg["seeds"] if s < 0]
    if negative:  # a cell's folder is seed{seed}, matched by the rules as digits only
        raise ConfigError(f"seeds: negative {negative}; seeds must be integers >= 0")
    for key in ("agents", "tasks", "seeds"):
        duplicates = sorted({x for x in cfg[key] if cfg[key].count(x) > 1}, key=str)
        if duplicates:
            raise ConfigError(f"{key}: duplicate entries {duplicates}; each may appear once")


def cells(cfg: dict) -> list[tuple[str, str, int]]:
    return [(a, t, s) for a in cfg["agents"] for t in cfg["tasks"] for s in cfg["seeds"]]


def cell_key(agent: str, task: str, seed: int) -> str:
    return f"{agent}/{task}/{seed}"


def cell_maps(cfg: dict, agent: str, task: str, seed: int) -> list[tuple[str, dict]]:
    """(name, overrides) of the maps that reach one cell: global, per agent, task and cell."""
    train, cell = cfg["train"], cell_key(agent, task, seed)
    return [("train.overrides", train["overrides"]),
            (f"train.agent_overrides.{agent}", train["agent_overrides"].get(agent, {})),
            (f"train.task_overrides.{task}", train["task_overrides"].get(task, {})),
            (f"train.cell_overrides['{cell}']", train["cell_overrides"].get(cell, {}))]


def overrides_of(cfg: dict, agent: str, task: str, seed: int) -> dict:
    """Every override of one cell, in the order of cell_maps (the last wins)."""
    return {key: value for _, overrides in cell_maps(cfg, agent, task, seed)
            for key, value in overrides.items()}


def override_maps(cfg: dict):
    """(name, overrides) of every override map of the config, named as cell_maps names them."""
    train = cfg["train"]
    yield "train.overrides", train["overrides"]
    for key in ("agent_overrides", "task_overrides"):
        for name, overrides in train[key].items():
            yield f"train.{key}.{name}", overrides
    for name, overrides in train["cell_overrides"].items():
        yield f"train.cell_overrides['{name}']", overrides


def check_overrides(cfg: dict) -> None:
    """Override maps name no cell outside the grid and set none of the keys the grid sets."""
    stray = set(cfg["train"]["cell_overrides"]) - {cell_key(*c) for c in cells(cfg)}
    if stray:
        raise ConfigError(f"train.cell_overrides: {sorted(stray)} name no cell of the grid "
                          "(keys are 'agent/task/seed')")
    # A known agent or task outside the grid is allowed (a config layered over another may
    # train fewer); a name that is neither in the grid nor known is a typo.
    for key, known, valid in (("agent_overrides", cfg["agents"], cell_config.AGENTS),
                              ("task_overrides", cfg["tasks"], None)):
        for name in cfg["train"][key]:
            if name not in known and not (name in valid if valid is not None else is_task(name)):
                raise ConfigError(f"train.{key}: {name!r} is neither in the grid's {known} nor a "
                                  f"known {key.split('_')[0]}")
    for where, overrides in override_maps(cfg):
        for key in GRID_KEYS:
            if key in overrides:
                home = (f"the folder of its cell ({layout.RUNS}/{layout.RUN_DIR})"
                        if key == "out_dir" else f"the config's {key}s list")
                raise ConfigError(f"{where}: {key!r} (value {overrides[key]!r}) cannot be overridden; "
                                  f"a cell's {key} is {home}")


def compose_all(cfg: dict) -> dict:
    """Each cell's resolved config, built and checked exactly as the cell itself would."""
    os.environ["DRM_DEVICE"] = cfg["train"]["device"]  # drm/cfg/config.yaml's default device
    check_overrides(cfg)
    resolved, composed = {}, {}
    for agent, task, seed in cells(cfg):
        overrides = overrides_of(cfg, agent, task, seed)
        # Only the seed check depends on a cell's seed: a config is composed once per distinct
        # agent, task and overrides (24 instead of 240 on the paper grid), with its first seed,
        # and each other seed is checked on its own.
        key = (agent, task, json.dumps(overrides, sort_keys=True, default=repr))
        try:
            if key not in composed:
                composed[key] = cell_config.compose(agent, task, overrides, seed)
            cell_config.check_seed(seed)
        except ValueError as err:
            raise ConfigError(f"cell {cell_key(agent, task, seed)}: {err}"
                              f"{_given_in(cfg, agent, task, seed, str(err))}") from None
        resolved[(agent, task, seed)] = composed[key]
    return resolved


def _given_in(cfg: dict, agent: str, task: str, seed: int, error: str) -> str:
    """For an unknown override key: which override map gave it, and the closest known key."""
    if not error.startswith("unknown config key "):
        return ""
    bad = error.split("'")[1]
    where = [name for name, overrides in cell_maps(cfg, agent, task, seed) if bad in overrides]
    known = _flat_keys(cell_config.compose(agent, task, {}))
    return f" (given in {', '.join(where)}){_did_you_mean(bad, known)}"


def _flat_keys(cfg, prefix: str = "") -> list[str]:
    keys = []
    for key, value in cfg.items():
        keys += _flat_keys(value, f"{prefix}{key}.") if hasattr(value, "items") else [f"{prefix}{key}"]
    return keys


def visible_gpus(environ, count_gpus) -> list[str]:
    """The GPUs local jobs may use: the user's CUDA_VISIBLE_DEVICES when set (ids or UUIDs, read
    as CUDA reads it: empty hides every GPU, an entry like -1 those after it), else every GPU
    that `count_gpus()` (nvidia_smi_gpus) counts, by index."""
    if "CUDA_VISIBLE_DEVICES" not in environ:
        return [str(index) for index in range(count_gpus())]
    gpus = []
    for entry in (e.strip() for e in environ["CUDA_VISIBLE_DEVICES"].split(",")):
        if not entry or entry.startswith("-"):
            break
        gpus.append(entry)
    return gpus


def nvidia_smi_gpus() -> int:
    """GPUs that `nvidia-smi -L` lists; 0 without nvidia-smi or when it fails."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines()) if out.returncode == 0 else 0


def detected_gpus() -> list[str]:
    """The GPU ids of this machine that the user left visible (visible_gpus)."""
    return visible_gpus(os.environ, nvidia_smi_gpus)


def claim_local_gpus(cfg: dict, gpu_limit: int | None, gpus: list[str]) -> None:
    """On a workstation, or inside a SLURM allocation (salloc) that runs the local profile: GPU
    slots for drm.gpu_slot (the train rule's launcher), never more than exist.

    `gpu_limit` is Snakemake's `--resources gpu=N` (from the command line or a profile); `gpus`
    are the GPU ids jobs may use (detected_gpus)."""
    if cfg["train"]["device"] != "cuda" or not cells(cfg):
        return
    per_gpu = cfg["resources"]["jobs_per_gpu"]
    if not gpus:
        where = (f"CUDA_VISIBLE_DEVICES={os.environ['CUDA_VISIBLE_DEVICES']!r} names none"
                 if "CUDA_VISIBLE_DEVICES" in os.environ else "nvidia-smi -L lists none")
        raise ConfigError(f"train.device is cuda but no GPU is visible here ({where}); use "
                          "--workflow-profile workflow/profiles/slurm, or set train.device: cpu")
    slots = gpu_slot.slot_gpus(gpus, per_gpu)
    if gpu_limit is not None and gpu_limit > len(slots):
        raise ConfigError(f"resources gpu={gpu_limit} asks for more GPU slots than exist: "
                          f"{len(gpus)} GPUs ({','.join(gpus)}) x resources.jobs_per_gpu={per_gpu} "
                          f"= {len(slots)}")
    os.environ[gpu_slot.SLOTS_ENV] = ",".join(slots)  # local jobs inherit the environment


def hydra_args(overrides: dict) -> str:
    """Overrides as Hydra command-line arguments, quoted for Hydra and for the shell."""
    args = []
    for key, value in overrides.items():
        if value is None:
            text = "null"
        elif isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, str):
            text = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        else:
            text = str(value)
        args.append(shlex.quote(f"{key}={text}"))
    return " ".join(args)


def mem_mb(cell, margin_mb: int) -> int:
    """The replay buffer (every frame stored once) plus a margin."""
    return int(math.ceil(cell.replay_buffer_size * ReplayBuffer.max_bytes_per_step() / 2**20 + margin_mb))


# A job's time limit: its training at the expected speed x SPEED_SLACK (the speed is an estimate)
# plus START_MINUTES (imports; on a resume, the replay read back from its chunks).
SPEED_SLACK = 1.25
START_MINUTES = 10


def trained_so_far(run: Path) -> tuple[int, float] | None:
    """(frames, seconds) of a cell that started and has not finished: the last row of its
    work/train.csv, whose total_time counts every session's training and evaluation. None before
    its first episode, and once it has finished (work/ is gone)."""
    try:
        with open(run / "work" / "train.csv", "rb") as f:  # the header and the last row only
            header = f.readline()
            f.seek(max(f.seek(0, os.SEEK_END) - 8192, len(header)))
            last = f.read().decode(errors="replace").splitlines()[-1]
        row = dict(zip(next(csv.reader([header.decode()])), next(csv.reader([last]))))
        frames, seconds = int(row["frame"]), float(row["total_time"])
    except (OSError, IndexError, KeyError, ValueError):
        return None
    return (frames, seconds) if frames > 0 and seconds > 0 else None


def training_left(num_train_frames: int, resources: dict,
                  progress: tuple[int, float] | None) -> tuple[int, float]:
    """(frames left, frames per hour) of a cell: its own measured speed once it has trained
    (progress: trained_so_far), else resources.frames_per_hour."""
    if progress is None:
        return num_train_frames, resources["frames_per_hour"]
    frames, seconds = progress
    return max(num_train_frames - frames, 0), frames / seconds * 3600


def minutes_needed(frames: int, frames_per_hour: float) -> int:
    """The training time of `frames` in one job, with slack."""
    return int(math.ceil(frames / frames_per_hour * 60 * SPEED_SLACK)) + START_MINUTES


def runtime_minutes(left: tuple[int, float], max_runtime_minutes: int, attempt: int) -> int:
    """One job's time limit: the rest of the cell (training_left), growing with each attempt in
    case the speed was overestimated, capped at resources.max_runtime_minutes."""
    frames, per_hour = left
    return min(minutes_needed(frames, per_hour / attempt), max_runtime_minutes)


def jobs_needed(left: tuple[int, float], max_runtime_minutes: int) -> int:
    """Time-limited jobs the rest of the cell needs: each starts again (START_MINUTES) and
    resumes from the last one's snapshot."""
    training = minutes_needed(*left) - START_MINUTES
    return max(1, math.ceil(training / (max_runtime_minutes - START_MINUTES)))


def train_retries(retries: int, jobs: list[int]) -> int:
    """Resubmissions the train rule is allowed: `retries` (Snakemake's --retries, for failures)
    plus the jobs beyond its first that the longest cell needs (`jobs`: jobs_needed per cell)."""
    return retries + max(jobs, default=1) - 1


# ----------------------------------------------------------------------------- what a grid costs

@dataclass(frozen=True)
class Cost:
    """What a grid costs, stated before it starts (common.smk at parse time, python -m drm.status)."""
    cells: int
    frames: int
    cells_left: int
    frames_left: int
    hours_left: float  # device-hours of the cells left
    longest_hours: float  # the longest cell left
    measured: int  # cells left planned at their own measured speed
    others_speed: str  # how the other cells are planned
    unit: str  # GPU-hours or CPU job-hours
    ram_mb: int  # the largest cell's memory request (mem_mb): replay ring + margin
    ring_mb: int  # ... of which its replay ring
    disk_bytes: int  # the largest work/ folder of a running cell: replay chunks + snapshots
    chunk_bytes: int  # ... of which its replay chunks
    snapshot_bytes: int  # ... and one of its snapshots
    at_once: int  # cells training at once
    at_once_why: str  # what bounds it

    def lines(self) -> list[str]:
        left = (f"to train: {self.cells_left:,} cells, {self.frames_left:,} frames, about "
                f"{self.hours_left:,.1f} {self.unit} ({self.measured} at their measured speed, the "
                f"others at {self.others_speed})" if self.cells_left else "to train: nothing")
        ram, ring = self.ram_mb * 2**20, self.ring_mb * 2**20
        return [
            f"cost: {self.cells:,} cells, {self.frames:,} frames; {left}",
            f"  per running cell, at most: RAM {size(ram)} (replay ring {size(ring)} + "
            f"resources.mem_margin_mb), disk {size(self.disk_bytes)} (replay chunks "
            f"{size(self.chunk_bytes)} + {footprint.SNAPSHOTS_ON_DISK} snapshots of {size(self.snapshot_bytes)})",
            f"  {self.at_once:,} cell(s) at once ({self.at_once_why}): RAM {size(self.at_once * ram)}, "
            f"disk {size(self.at_once * self.disk_bytes)}"
            + (f", at least {max(self.hours_left / self.at_once, self.longest_hours):,.1f} h to "
               "train the rest" if self.cells_left else "")]


def size(n: int) -> str:
    """Bytes in binary units, as the memory requests count them (mem_mb is MiB to SLURM)."""
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def cells_left(cfg: dict, composed: dict, runs: Path) -> dict:
    """Each cell's (frames left, frames per hour, measured) from its folder under `runs`: nothing
    once it has finished (meta.json), else training_left at its own measured speed."""
    out = {}
    for (agent, task, seed), cell in composed.items():
        run = Path(runs) / layout.run_dir(agent, task, seed)
        if (run / "meta.json").exists():
            out[(agent, task, seed)] = (0, cfg["resources"]["frames_per_hour"], False)
            continue
        progress = trained_so_far(run)
        out[(agent, task, seed)] = (*training_left(cell.num_train_frames, cfg["resources"], progress),
                                    progress is not None)
    return out


def cells_at_once(cfg: dict, left: int, jobs: int | None, cores: int | None,
                  gpu_limit: int | None) -> tuple[int, str]:
    """Cells that train at once and what bounds it: Snakemake's --jobs when given (the SLURM
    profile's `jobs:`), else its cores / train.threads; a cuda grid also its GPU slots
    (--resources gpu=N)."""
    threads = cfg["train"]["threads"]
    if jobs:
        count, why = jobs, f"--jobs {jobs}"
    else:
        count, why = max(1, (cores or 1) // threads), f"{cores or 1} cores / train.threads {threads}"
    if cfg["train"]["device"] == "cuda" and gpu_limit is not None and gpu_limit < count:
        count, why = max(1, gpu_limit), f"{gpu_limit} GPU slots"
    if 0 < left < count:
        count, why = left, "every cell left"
    return count, why


def grid_cost(cfg: dict, composed: dict, left: dict, at_once: tuple[int, str],
              others_speed: str | None = None) -> Cost:
    """The grid's Cost: `left` is cells_left's (frames left, frames per hour, measured) per cell,
    `at_once` cells_at_once's; RAM and disk are the largest cell's, so the totals are at most."""
    todo = {key: value for key, value in left.items() if value[0] > 0}
    hours = [frames / per_hour for frames, per_hour, _ in todo.values()]
    ram = max(composed.values(), key=lambda c: mem_mb(c, cfg["resources"]["mem_margin_mb"]))
    disk = max(composed.values(), key=footprint.disk_bytes)
    return Cost(
        cells=len(composed), frames=sum(int(c.num_train_frames) for c in composed.values()),
        cells_left=len(todo), frames_left=sum(frames for frames, _, _ in todo.values()),
        hours_left=sum(hours), longest_hours=max(hours, default=0.0),
        measured=sum(measured for _, _, measured in todo.values()),
        others_speed=others_speed or f"resources.frames_per_hour, {cfg['resources']['frames_per_hour']:,}",
        unit="GPU-hours" if cfg["train"]["device"] == "cuda" else "CPU job-hours",
        ram_mb=mem_mb(ram, cfg["resources"]["mem_margin_mb"]), ring_mb=mem_mb(ram, 0),
        disk_bytes=footprint.disk_bytes(disk), chunk_bytes=footprint.chunk_bytes(disk),
        snapshot_bytes=footprint.snapshot_bytes(disk), at_once=at_once[0], at_once_why=at_once[1])
