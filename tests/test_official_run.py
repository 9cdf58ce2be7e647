"""`python -m drm.bench --official-run`: the official A-LIX code's run judged as ours. The official
code is never in this repo (CI has no checkout), so these check what surrounds it: the refusals,
each in one line before anything trains; the official files read into our columns (formats as
the official logger wrote them in docs/validation/official); the verdicts against the real
published seeds; the hook's arithmetic on the official LearnS convention; and the snapshot a
stopped official run continues from, put back with a real dm_control environment."""
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from drm.bench import official_run

REPO = Path(__file__).resolve().parents[1]
PROG = "python -m drm.bench --official-run"
RECORDED = REPO / "docs/validation/official/alix/cartpole_balance_sparse/seed1"  # 20k, in one piece
RECORDED_40K = REPO / "docs/validation/official/alix/cartpole_balance_sparse/seed1-40k"  # continued twice


def _bench(*args, cwd=REPO):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "drm.bench", "--official-run", *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


def _checkout(root: Path) -> Path:
    """A folder with the official file names, each of which would say so if imported."""
    for name in official_run.OFFICIAL_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("raise SystemExit('the official code was imported')\n")
    return root


def test_a_bad_official_path_is_refused_in_one_line_before_any_import(tmp_path):
    (tmp_path / "train.py").write_text("raise SystemExit('the official code was imported')\n")
    expected = ("expected a checkout of Aladoro/Stabilizing-Off-Policy-RL holding "
                + ", ".join(official_run.OFFICIAL_FILES))
    lacks = ", ".join(official_run.OFFICIAL_FILES[1:])
    for path, problem in [(tmp_path / "absent", "does not exist"),
                          (tmp_path / "train.py", "is not a directory"),
                          (tmp_path, f"lacks {lacks}")]:
        done = _bench(path, "--out", tmp_path / "out")
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.strip().splitlines() == [f"{PROG}: {path} {problem}: {expected}"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--frames", "30000"], "--frames 30000 is not a multiple of --eval-every 20000"),
    (["--eval-every", "1500", "--frames", "3000"], "--eval-every 1500: give whole 1000-frame episodes"),
    (["--threads", "0"], "--threads 0: give a positive integer"),
    (["--snapshot-every", "2500"], "--snapshot-every 2500: give whole 1000-frame episodes"),
])
def test_bad_budgets_are_refused_in_one_line(tmp_path, args, message):
    done = _bench(_checkout(tmp_path / "official"), "--out", tmp_path / "out", *args)
    assert done.returncode == 2 and message in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


def _unfinished(out: Path, argv: list[str], commit: str | None, snapshot: bool = True) -> Path:
    """An official run stopped after its first snapshot, as `run` leaves its work folder."""
    work = out / "work"
    work.mkdir(parents=True)
    (work / "eval.csv").write_text("episode,episode_length,episode_reward,frame,step,total_time\n")
    (work / "settings.json").write_text(json.dumps(dict(argv=argv, official=dict(commit=commit))))
    if snapshot:
        (work / official_run.SNAPSHOT).write_bytes(b"state")
    return work


def test_an_unfinished_official_run_that_cannot_continue_is_refused_and_kept(tmp_path):
    out = tmp_path / "out"
    argv = official_run.overrides("cartpole_balance_sparse", 1, 20000, 20000, "cpu", (out / "work").resolve())
    work = _unfinished(out, argv, None, snapshot=False)
    keep = f"or delete {work} to train again from frame 0"
    done = _bench(_checkout(tmp_path / "official"), "--out", out)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"{PROG}: {work} holds an unfinished official run without a snapshot to continue from (one "
        f"is taken every --snapshot-every frames): {keep}"]
    (work / official_run.SNAPSHOT).write_bytes(b"state")  # a snapshot, but other settings
    done = _bench(_checkout(tmp_path / "official"), "--out", out, "--seed", "2")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"{PROG}: {work} holds an official run of other settings: seed=2 (was seed=1); give its "
        f"settings to continue it, {keep}"]
    shutil.rmtree(out)  # the same settings, another official commit
    work = _unfinished(out, argv, "0123abc")
    with pytest.raises(SystemExit) as raised:
        official_run.continued(work, argv, "4567def")
    assert str(raised.value) == (f"{PROG}: {work} was started with the official code at 0123abc, the "
                                 f"checkout is at 4567def: check that commit out to continue it, {keep}")
    assert official_run.continued(work, argv, "0123abc")["argv"] == argv  # it continues
    assert sorted(p.name for p in work.iterdir()) == ["eval.csv", official_run.SNAPSHOT, "settings.json"]


def test_missing_official_packages_are_named_with_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setattr(official_run, "OFFICIAL_PACKAGES",
                        {"json": "json", "no_such_module_here": "no-such-package"})
    args = official_run.parse_args([str(_checkout(tmp_path / "official")), "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as raised:
        official_run.run(args)
    assert str(raised.value) == (f"{PROG}: the official train.py imports packages this Python lacks: "
                                 "pip install no-such-package")
    assert not (tmp_path / "out").exists()


def test_the_official_loop_runs_one_step_past_the_budget_so_its_last_evaluation_happens(tmp_path):
    # train.py evaluates at the top of a step and stops when the step reaches num_train_frames / 2.
    argv = official_run.overrides("cartpole_balance_sparse", 3, 20000, 20000, "cpu", tmp_path)
    values = dict(a.split("=", 1) for a in argv)
    budget, every = int(values["num_train_frames"]), int(values["eval_every_frames"])
    evaluated = [2 * step for step in range(budget // 2) if (2 * step) % every == 0]
    assert evaluated == [0, 20000]
    assert values["task@_global_"] == "cartpole_balance_sparse" and values["seed"] == "3"
    assert values["num_eval_episodes"] == "10" and values["hydra.run.dir"] == str(tmp_path)


@pytest.mark.parametrize("recorded, frames", [(RECORDED, [0, 20000]), (RECORDED_40K, [0, 20000, 40000])])
def test_the_recorded_official_run_reads_back_and_its_verdicts_are_recomputed_from_the_published_seeds(
        tmp_path, recorded, frames):
    # A finished run (eval.csv present) is judged again without a checkout or any training.
    out = tmp_path / "run"
    out.mkdir()
    (out / "eval.csv").write_bytes((recorded / "eval.csv").read_bytes())
    done = _bench(tmp_path / "no-checkout", "--out", out)
    assert done.returncode == 0, done.stderr
    with open(out / "verdict.csv", newline="") as f:
        fresh = list(csv.DictReader(f))
    with open(recorded / "verdict.csv", newline="") as f:
        kept = list(csv.DictReader(f))
    assert fresh == kept and [int(r["frame"]) for r in fresh] == frames
    assert all(r["published_seeds"] == "10" and r["agent"] == "alix-official" for r in fresh)
    assert done.stdout.splitlines()[-1].startswith("alix-official cartpole_balance_sparse seed 1: ")


def test_the_official_run_continued_from_snapshots_is_the_uninterrupted_one_to_20k():
    """docs/validation.md's full-scale check of the resume, on the kept files: the 40k run, stopped
    at 6k and continued, evaluates and trains as the 20k run made in one piece, bit for bit."""
    def rows(folder, name, limit=20000):
        with open(folder / name, newline="") as f:
            return [{k: v for k, v in r.items() if k not in ("fps", "total_time")}
                    for r in csv.DictReader(f) if int(r["frame"]) <= limit]

    assert json.loads((RECORDED_40K / "meta.json").read_text())["starts"][1]["snapshot"] is True
    train = rows(RECORDED_40K, "train.csv")
    assert train == rows(RECORDED, "train.csv") and len(train) == 16  # 5k-20k
    assert rows(RECORDED_40K, "eval.csv") == rows(RECORDED, "eval.csv")


def test_stopping_the_tool_stops_the_official_child(tmp_path):
    # `kill PID` of the tool must not leave its child training beside the next start.
    child, training = tmp_path / "child.pid", tmp_path / "training.py"
    training.write_text(f"import os, time\nopen({str(child)!r}, 'w').write(str(os.getpid()))\ntime.sleep(120)\n")
    script = f"import sys\nfrom drm.bench import official_run\nsys.exit(official_run.run_child([sys.executable, {str(training)!r}]))\n"
    tool = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (child.is_file() and child.read_text()) and time.time() < deadline:
            time.sleep(0.1)
        pid = int(child.read_text())
        tool.terminate()
        _, err = tool.communicate(timeout=30)
    finally:
        tool.kill()
    assert tool.returncode == 1
    assert err.strip().splitlines()[-1].startswith(f"{PROG}: stopped (signal 15); the same command continues")
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_run_within_the_seed_frames_has_no_training_rows(tmp_path):
    # The official loop writes train.csv only once updates ran (measured: 3,000 of 4,000 seed frames).
    (tmp_path / "lix.csv").write_text("frame,lix_nd_score,lix_s\n")
    assert official_run.official_train(tmp_path / "train.csv", tmp_path / "lix.csv") == []


def test_official_files_are_read_into_our_columns(tmp_path):
    # The official logger sorts its columns by name and writes floats; ours are the harness's.
    (tmp_path / "eval.csv").write_text("episode,episode_length,episode_reward,frame,step,total_time\n"
                                       "0.0,1000.0,43.1,0,0.0,0.02\n20.0,1000.0,12.5,20000,10000.0,9000.5\n")
    assert official_run.official_eval(tmp_path / "eval.csv") == [
        dict(frame=0, step=0, episode=0, episode_reward=43.1, episode_length=1000.0, total_time=0.02),
        dict(frame=20000, step=10000, episode=20, episode_reward=12.5, episode_length=1000.0,
             total_time=9000.5)]
    (tmp_path / "train.csv").write_text(
        "buffer_size,episode,episode_length,episode_reward,fps,frame,step,total_time\n"
        "5000,5.0,1000,20.0,2.5,5000,2500,400.0\n6000,6.0,1000,11.0,2.9,6000,3000,750.0\n")
    (tmp_path / "lix.csv").write_text("frame,lix_nd_score,lix_s\n5000,0.7,0.75\n")
    rows = official_run.official_train(tmp_path / "train.csv", tmp_path / "lix.csv")
    assert rows[0] == dict(frame=5000, step=2500, episode=5, episode_reward=20.0, episode_length=1000,
                           buffer_size=5000, fps=2.5, total_time=400.0, lix_nd_score=0.7, lix_s=0.75)
    assert rows[1]["lix_s"] == "" and rows[1]["frame"] == 6000  # a frame the hook missed stays empty


def test_the_hook_reads_nd_from_the_official_gradient_of_s_and_writes_one_row_per_episode(tmp_path):
    # LearnS.backward gives S the gradient target - ND; the update steps S with it.
    class Agent:
        update_every_steps = 2

        def __init__(self):
            self.encoder = torch.nn.Module()
            self.encoder.aug = torch.nn.Module()
            self.encoder.aug.P = torch.nn.Parameter(torch.tensor(0.5))

        def update(self, replay_buffer, step):
            if step % 2:
                return {}
            self.encoder.aug.P.grad = torch.tensor(0.535 - (0.6 + step / 10000))  # ND = 0.6 + step/1e4
            with torch.no_grad():
                self.encoder.aug.P += 0.0015
            return {}

    agent = Agent()
    hook = official_run._Hook(agent, tmp_path / "lix.csv", 0.535)
    for step in range(2000, 3000):
        hook(None, step)
    with open(tmp_path / "lix.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["frame"]) for r in rows] == [5000, 6000]
    nd = [0.6 + s / 10000 for s in range(2000, 2500, 2)]
    assert float(rows[0]["lix_nd_score"]) == pytest.approx(sum(nd) / len(nd), abs=1e-6)
    assert float(rows[0]["lix_s"]) == pytest.approx(0.875, abs=1e-5)  # 0.5 + 250 steps of 0.0015
    assert float(rows[1]["lix_s"]) == 1.0  # 1.25, read through the official clamp to [0, 1]


class _Agent(torch.nn.Module):
    """Enough of the official agent for a snapshot: weights, and an update the hook wraps."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(3, 2)

    def update(self, replay_buffer, step):
        return {}


class _Buffer:
    """The official EfficientReplayBuffer's layout: arrays for the whole capacity, filled from 0."""

    def __init__(self):
        self.buffer_size, self.index, self.full = 1000, -1, False

    def add(self, value):
        if self.index == -1:
            self.obs, self.index = np.zeros((self.buffer_size, 3), np.uint8), 0
        self.obs[self.index] = value
        self.index += 1


def _workspace():
    from dm_control import suite

    timer = types.SimpleNamespace(_start_time=time.time() - 50, _last_time=time.time() - 5)
    return types.SimpleNamespace(
        agent=_Agent(), timer=timer, _global_step=1000, _global_episode=2, global_frame=2000,
        replay_buffer=_Buffer(), train_env=suite.load("cartpole", "balance_sparse", task_kwargs={"random": 1}),
        eval_env=suite.load("cartpole", "balance_sparse", task_kwargs={"random": 1}),
        device=torch.device("cpu"))


def test_a_snapshot_put_back_continues_as_the_uninterrupted_run(tmp_path):
    """What the hooked Workspace saves at an episode's end, written and put back into a freshly
    built one: the next episode of the real dm_control environment and every random draw
    as the run that went on, the buffer whole with the loop's repeated first add skipped, the hook
    around the restored agent with its rows cut back to the snapshot, the pause left out of the timer."""
    path = tmp_path / "lix.csv"
    run = _workspace()
    hook = official_run._Hook(run.agent, path, 0.535)
    run.agent.update = hook
    with open(path, "a") as f:
        f.write("1000,0.7,0.9\n2000,0.6,1.0\n")
    run.eval_env.reset()  # the evaluation at frame 0 moved its random state
    for value in range(5):
        run.replay_buffer.add(value)
    before = run.train_env.task.random.get_state()
    first = run.train_env.reset()  # the episode end: reset, add, snapshot
    run.replay_buffer.add(first.observation["position"][:3] * 0 + 7)
    official_run.save(run, hook, before, tmp_path / "resume.pt")
    assert run.agent.update is hook  # the agent keeps its hook
    went_on = [random.random(), float(np.random.rand()), float(torch.rand(1))]
    evaluated = run.eval_env.reset().observation["position"]
    with open(path, "a") as f:
        f.write("3000,0.5,1.0\n")  # written after the snapshot, before the run was stopped
    run.replay_buffer.add(8)

    back = _workspace()
    state = official_run.load(tmp_path / "resume.pt")
    assert "update" not in vars(state["agent"])  # saved without the hook (which lives in __main__)
    state["saved_at"] -= 100  # stopped for 100 s
    restored = official_run.restore(back, state, path, 0.535)
    again = back.train_env.reset()  # the official loop's first lines on a continued run
    back.replay_buffer.add(7)  # already in the buffer: skipped
    assert np.array_equal(again.observation["position"], first.observation["position"])
    assert [random.random(), float(np.random.rand()), float(torch.rand(1))] == went_on
    assert np.array_equal(back.eval_env.reset().observation["position"], evaluated)
    back.replay_buffer.add(8)
    assert back.replay_buffer.index == run.replay_buffer.index == 7
    assert np.array_equal(back.replay_buffer.obs, run.replay_buffer.obs)
    assert back.replay_buffer.obs.shape == (1000, 3)
    assert len(state["replay_buffer"]["arrays"]["obs"][0]) == 6  # only the slots written
    assert back.agent.update is restored and restored.agent is back.agent
    assert torch.equal(back.agent.net.weight, run.agent.net.weight)
    assert path.read_text().splitlines() == ["frame,lix_nd_score,lix_s", "1000,0.7,0.9", "2000,0.6,1.0"]
    assert back.timer._start_time - run.timer._start_time == pytest.approx(100, abs=5)


def test_a_damaged_snapshot_falls_back_to_the_one_before(tmp_path, capsys):
    """Each snapshot is read back before it replaces the last, which is kept: a newest one
    damaged on disk is set aside (said so) and the run continues from the one before; with
    neither readable, one line and nothing deleted."""
    run, path = _workspace(), tmp_path / "resume.pt"
    hook = official_run._Hook(run.agent, tmp_path / "lix.csv", 0.535)
    run.agent.update = hook
    official_run.save(run, hook, run.train_env.task.random.get_state(), path)
    run._global_step = 2000
    official_run.save(run, hook, run.train_env.task.random.get_state(), path)
    assert official_run.has_snapshot(path) and official_run.load(path)["step"] == 2000
    path.write_bytes(path.read_bytes()[:1000])  # cut short, as a full disk leaves it
    assert official_run.load(path)["step"] == 1000
    assert "resume.pt cannot be read" in capsys.readouterr().out
    assert (tmp_path / "resume.pt.unreadable").is_file() and official_run.has_snapshot(path)
    (tmp_path / "resume.prev.pt").write_bytes(b"not a snapshot")
    with pytest.raises(SystemExit, match="no readable snapshot to continue from in "):
        official_run.load(path)
    assert not official_run.has_snapshot(path)
    assert sorted(p.name for p in tmp_path.glob("resume*")) == [
        "resume.prev.pt.unreadable", "resume.pt.unreadable"]
