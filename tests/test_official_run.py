"""`python -m drm.bench --official-run`: the official A-LIX code's run judged as ours. The official
code is never in this repo (CI has no checkout), so these check what surrounds it: the refusals,
each in one line before anything trains; the official files read into our columns (formats as
the official logger wrote them in docs/validation/official); the verdicts against the real
published seeds; and the hook's arithmetic on the official LearnS convention."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from drm.bench import official_run

REPO = Path(__file__).resolve().parents[1]
PROG = "python -m drm.bench --official-run"
RECORDED = REPO / "docs/validation/official/alix/cartpole_balance_sparse/seed1"


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
])
def test_bad_budgets_are_refused_in_one_line(tmp_path, args, message):
    done = _bench(_checkout(tmp_path / "official"), "--out", tmp_path / "out", *args)
    assert done.returncode == 2 and message in done.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_an_unfinished_official_run_is_refused_and_kept(tmp_path):
    # The official replay buffer lives in memory: its run cannot resume. Its files stay.
    out = tmp_path / "out"
    (out / "work").mkdir(parents=True)
    (out / "work" / "eval.csv").write_text("episode,episode_length,episode_reward,frame,step,total_time\n")
    done = _bench(_checkout(tmp_path / "official"), "--out", out)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"{PROG}: {out / 'work'} holds an unfinished official run; the official A-LIX code cannot "
        "resume (its replay buffer lives in memory): delete that folder to train again from frame 0"]
    assert (out / "work" / "eval.csv").is_file()


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


def test_the_recorded_official_run_reads_back_and_its_verdicts_are_recomputed_from_the_published_seeds(tmp_path):
    # A finished run (eval.csv present) is judged again without a checkout or any training.
    out = tmp_path / "run"
    out.mkdir()
    (out / "eval.csv").write_bytes((RECORDED / "eval.csv").read_bytes())
    done = _bench(tmp_path / "no-checkout", "--out", out)
    assert done.returncode == 0, done.stderr
    with open(out / "verdict.csv", newline="") as f:
        fresh = list(csv.DictReader(f))
    with open(RECORDED / "verdict.csv", newline="") as f:
        kept = list(csv.DictReader(f))
    assert fresh == kept and [int(r["frame"]) for r in fresh] == [0, 20000]
    assert all(r["published_seeds"] == "10" and r["agent"] == "alix-official" for r in fresh)
    assert done.stdout.splitlines()[-1].startswith("alix-official cartpole_balance_sparse seed 1: ")


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
