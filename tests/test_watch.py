"""Watching a cell: evaluation videos and TensorBoard events written by real cells, killed and
resumed; W&B in offline mode; the loggers' refusals."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from drm.cell import config, video
from helpers import REPO, cell_command, kill_and_resume, read_csv, run_cell


def test_evaluations_filmed_are_the_first_the_last_and_evenly_between():
    assert video.evaluation_frames(2000, 1000, 2) == [0, 1000, 2000]
    assert video.evaluation_frames(2100, 1000, 2) == [0, 1000, 2000, 2100], "plus the final frame"
    paper = video.evaluation_frames(1_100_000, 10_000, 2)
    assert len(paper) == 111
    assert video.filmed_frames(paper, 5) == [0, 280_000, 550_000, 820_000, 1_100_000]
    assert video.filmed_frames(paper, 1) == [1_100_000], "one: the final evaluation"
    assert video.filmed_frames([0, 200, 400], 5) == [0, 200, 400], "never more than there are"


def test_the_report_shows_each_agents_median_seed_by_final_return(tmp_path):
    from drm.analysis import videos

    returns = {("drm", 1): 300.0, ("drm", 2): 100.0, ("drm", 3): 200.0,  # median: seed 3
               ("drqv2", 1): 50.0, ("drqv2", 2): 70.0, ("drqv2", 3): 60.0, ("drqv2", 4): 60.0}  # lower middle
    metas = []
    for (agent, seed), final in returns.items():
        run = tmp_path / agent / "cartpole_balance" / f"seed{seed}"
        (run / "videos").mkdir(parents=True)
        # The folder names the cell and eval.csv's last row its final return: a meta.json from
        # before meta.json named the cell (here drqv2 seed 4's) is shown as well.
        meta = {"frames": 400} if (agent, seed) == ("drqv2", 4) else {
            "agent": agent, "task": "cartpole_balance", "seed": seed, "frames": 400, "final_eval_return": final}
        (run / "meta.json").write_text(json.dumps(meta))
        (run / "eval.csv").write_text(f"frame,step,episode,episode_reward\n0,0,0,1.0\n400,200,1,{final}\n")
        if (agent, seed) != ("drqv2", 3):
            (run / "videos" / "400.mp4").write_bytes(b"not played here")
        metas.append(run / "meta.json")
    shown = {run.agent: run for run in videos.choose(metas)}
    assert (shown["drm"].seed, shown["drm"].seeds, shown["drm"].final_return) == (3, 3, 200.0)
    assert shown["drm"].video == tmp_path / "drm" / "cartpole_balance" / "seed3" / "videos" / "400.mp4"
    assert (shown["drqv2"].seed, shown["drqv2"].seeds) == (3, 4), "of 60, 60: the lower seed"
    assert shown["drqv2"].video is None, "its cell recorded no final video"
    page = tmp_path / "behaviour.html"
    videos.write_page(list(shown.values()), ["drm", "drqv2", "alix"], ["cartpole_balance"], page)
    text = page.read_text()
    assert text.count("<video") == 1 and "no video recorded" in text
    assert text.index("<b>drm</b>") < text.index("<b>drqv2</b>"), "the config's agent order"


@pytest.mark.parametrize("overrides, message", [
    ({"loggers": ["tensorbord"]}, "loggers=['tensorbord'] is invalid: must be a list of tensorboard, wandb (or [])"),
    ({"loggers": "tensorboard"}, "loggers='tensorboard' is invalid: must be a list of"),
    ({"num_eval_videos": 0}, "num_eval_videos=0 is invalid: must be an integer >= 1"),
    ({"save_video": "yes"}, "save_video='yes' is invalid: must be true or false"),
])
def test_bad_watching_keys_are_refused_in_one_line(overrides, message):
    with pytest.raises(ValueError, match=None) as refused:
        config.compose("drqv2", "cartpole_balance", overrides)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_wandb_asked_for_where_it_is_not_installed_is_refused_before_any_work(tmp_path):
    """`import wandb` fails here as it does where the package is absent."""
    out = tmp_path / "cell"
    args = cell_command(out, "drqv2", loggers="[tensorboard,wandb]")[3:]
    code = ("import sys; sys.modules['wandb'] = None; sys.argv = ['drm.train', *sys.argv[1:]]; "
            "from drm.train import cli; cli()")
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "drm.train: error: loggers asks for wandb, which is not installed here: pip install "
        "'drm-repro[wandb]' (or pip install wandb), or leave wandb out"]
    assert not out.exists(), "refused before the cell's folder was made"


def _events(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the run's event files, read by TensorBoard's own reader without its
    purging of orphaned steps (which would hide a duplicated or rewound step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(run), size_guidance={"scalars": 0}, purge_orphaned_data=False)
    reader.Reload()
    return {tag: [(e.step, e.value) for e in reader.Scalars(tag)] for tag in reader.Tags()["scalars"]}


def _frames_of(path: Path) -> list[np.ndarray]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["size"] == (256, 256) and meta["fps"] == 20
    return [np.frombuffer(f, np.uint8).reshape(256, 256, 3) for f in reader]


@pytest.mark.slow
def test_a_killed_and_resumed_cell_has_each_video_once_and_its_curves_without_repeats(tmp_path):
    """DrM, killed after its evaluation at frame 1000 reached the disk (video and event file)
    but before the next snapshot; the resumption plays that evaluation again."""
    out = tmp_path / "cell"
    seen_at_kill = tmp_path / "at_kill"

    def after_the_second_evaluation(d: Path) -> bool:
        evals, events = d / "work" / "eval.csv", sorted(d.glob("events.out.tfevents.*"))
        if not (evals.exists() and len(read_csv(evals)) == 2 and events):
            return False
        if events[-1].stat().st_mtime_ns < evals.stat().st_mtime_ns:
            return False  # the event file has not been flushed since
        shutil.copytree(d, seen_at_kill, ignore=shutil.ignore_patterns("work"))
        return True

    kill_and_resume(out, "drm", kill_when=after_the_second_evaluation, snapshot_every_frames=1000,
                    **{"agent.dormant_perturb_interval": 200})
    assert (seen_at_kill / "videos" / "1000.mp4").exists()
    assert 1000 in [step for step, _ in _events(seen_at_kill)["eval/episode_reward"]], \
        "the killed run had logged the evaluation its resumption plays again"

    assert sorted(p.name for p in (out / "videos").iterdir()) == ["0.mp4", "1000.mp4", "2000.mp4"]
    for name in ("0.mp4", "1000.mp4", "2000.mp4"):
        frames = _frames_of(out / "videos" / name)
        assert len(frames) == 500 // 2 + 1, "the reset and every agent step of a 500-frame episode"
        assert frames[0].std() > 10, "a rendered scene, not a blank"

    events = _events(out)
    evals, trains = read_csv(out / "eval.csv"), read_csv(out / "train.csv")
    assert [step for step, _ in events["eval/episode_reward"]] == [0, 1000, 2000], "each once, in order"
    assert [value for _, value in events["eval/episode_reward"]] == pytest.approx(
        [float(r["episode_reward"]) for r in evals], rel=1e-6), "the values eval.csv holds"
    assert [step for step, _ in events["train/episode_reward"]] == [int(r["frame"]) for r in trains]
    for tag in ("train/fps", "train/actor_dormant_ratio", "train/critic_loss", "train/actor_loss",
                "train/stddev", "train/exploit_lambda", "train/v_loss", "train/perturb_count"):
        steps = [step for step, _ in events[tag]]
        assert steps == sorted(set(steps)) and steps, f"{tag}: {steps}"
    assert len(list(out.glob("events.out.tfevents.*"))) == 2, "one event file per start"
    assert not list(out.rglob("*.tmp*"))


@pytest.mark.slow
def test_save_video_false_films_nothing_and_the_returns_do_not_depend_on_filming(tmp_path):
    filmed, unfilmed = tmp_path / "filmed", tmp_path / "unfilmed"
    short = dict(num_train_frames=1000, num_seed_frames=1000, loggers="[]")
    run_cell(filmed, "drqv2", **short)
    run_cell(unfilmed, "drqv2", save_video="false", **short)
    assert sorted(p.name for p in (filmed / "videos").iterdir()) == ["0.mp4", "1000.mp4"]
    assert not (unfilmed / "videos").exists()
    assert not list(filmed.glob("events.out.tfevents.*")), "loggers=[]: no event file"
    returns = [[r["episode_reward"] for r in read_csv(run / "eval.csv")] for run in (filmed, unfilmed)]
    assert returns[0] == returns[1]


def _wandb_records(path: Path) -> list:
    """The records of an offline W&B run file: a ':W&B' header, then LevelDB's log format
    (32 KiB blocks of records, each a 7-byte header: CRC, length, type 1 full / 2-4 parts)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, parts, records = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block  # a block's tail too short for a header is padding
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        parts += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(parts))
            parts = b""
    return records


@pytest.mark.slow
def test_wandb_offline_logs_the_cell_as_one_run_named_agent_task_seed_across_a_resumption(tmp_path, monkeypatch):
    """A-LIX with TensorBoard and W&B, killed after its evaluation at frame 1000 (after the
    snapshot at frame 1000), resumed: one W&B run, the resolved config, every row logged; the
    rows before the snapshot once."""
    pytest.importorskip("wandb", reason="the optional W&B logger: pip install 'drm-repro[wandb]'")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for kind in ("CONFIG", "CACHE", "DATA"):
        monkeypatch.setenv(f"WANDB_{kind}_DIR", str(tmp_path / kind.lower()))
    out = tmp_path / "cell"
    kill_and_resume(out, "alix", kill_when=lambda d: (d / "work" / "eval.csv").exists()
                    and len(read_csv(d / "work" / "eval.csv")) == 2,
                    snapshot_every_frames=1000, loggers="[tensorboard,wandb]")

    run_files = sorted((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == 2, "one offline record per start"
    records = [r for f in run_files for r in _wandb_records(f)]
    runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert {(run.run_id, run.project, run.run_group, run.display_name) for run in runs} == {
        (runs[0].run_id, "drm-repro", "alix/cartpole_balance", "alix/cartpole_balance/seed1")}, "one run"
    logged_config = {u.key: u.value_json for u in runs[0].config.update}
    assert logged_config["batch_size"] == "16" and logged_config["lr"] == "0.0001", "the resolved config"
    history = [{i.key or "/".join(i.nested_key): float(i.value_json) for i in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    evals = {(int(h["frame"]), h["eval/episode_reward"]) for h in history if "eval/episode_reward" in h}
    assert evals == {(int(r["frame"]), float(r["episode_reward"])) for r in read_csv(out / "eval.csv")}, \
        "every evaluation, with eval.csv's return (the CPU replays the post-snapshot one bit for bit)"
    trains = [int(h["frame"]) for h in history if "train/episode_reward" in h]
    assert set(trains) == {int(r["frame"]) for r in read_csv(out / "train.csv")}
    assert trains[:2] == [500, 1000] and trains.count(500) == trains.count(1000) == 1, \
        "the rows the snapshot knew, once"
    assert any("train/lix_s" in h for h in history), "A-LIX's S"
    assert "train/lix_s" in _events(out), "and in TensorBoard"
