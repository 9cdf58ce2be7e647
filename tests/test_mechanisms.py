"""The mechanisms figure and its numbers: DrM's run beside DrQ-v2's recorded run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from drm.analysis import mechanisms

REPO = Path(__file__).resolve().parents[1]
DRQV2 = REPO / "docs" / "validation" / "runs" / "drqv2" / "cartpole_balance_sparse" / "seed1"
AWAKE_STEP = 4500  # the synthetic DrM run's awakening, an agent step: frame 9000


def write_drm_run(folder: Path, awake_step: int | None = AWAKE_STEP, finished: bool = True) -> Path:
    """A DrM-shaped run on the recorded DrQ-v2 run's frames: its train.csv with DrM's columns
    (a dormant ratio that falls below 0.2, the awakening, sigma and lambda as DrM's formulas
    make them from it) and an evaluation return that reaches 1000 at 20k frames."""
    train = pd.read_csv(DRQV2 / "train.csv")
    beta = (train["actor_dormant_ratio"] * 0.8).round(4)
    awake = np.where(train["step"] >= awake_step, float(awake_step), np.nan) if awake_step else np.nan
    train = train.assign(
        actor_dormant_ratio=beta,
        stddev=(1 / (1 + np.exp(-10 * (beta - 0.2)))).where(beta.notna()),
        exploit_lambda=(0.6 / (1 + np.exp(50 * (beta - 0.2)))).where(beta.notna()),
        v_loss=0.1, perturb_count=0, awaken_step=awake)
    logs = folder if finished else folder / "work"
    logs.mkdir(parents=True)
    train.to_csv(logs / "train.csv", index=False)
    pd.DataFrame(dict(frame=[0, 20000, 40000], step=[0, 10000, 20000], episode=[0, 20, 40],
                      episode_reward=[48.0, 1000.0, 1000.0], episode_length=1000.0,
                      total_time=[1.0, 2.0, 3.0])).to_csv(logs / "eval.csv", index=False)
    (folder / "config.yaml").write_text(yaml.safe_dump(dict(
        agent=dict(name="drm", target_dormant_ratio=0.2, target_lambda=0.6),
        task="cartpole_balance_sparse", seed=1, action_repeat=2)))
    if finished:
        (folder / "meta.json").write_text("{}")
    return folder


@pytest.fixture(autouse=True)
def close_figures():
    yield
    mechanisms.plt.close("all")


def test_the_numbers_of_a_drm_run_and_of_the_baseline_over_its_spans(tmp_path):
    drm = mechanisms.read_run(write_drm_run(tmp_path / "drm"))
    n = mechanisms.numbers(drm.train, drm.evals)
    assert n.awakening_frame == 2 * AWAKE_STEP  # agent steps x the action repeat train.csv records
    known = drm.train.dropna(subset=["actor_dormant_ratio"])
    assert known["frame"].min() == 5000 and n.awakening_frame == 9000
    assert n.dormant_before == pytest.approx(known["actor_dormant_ratio"][known["frame"] <= 9000].mean())
    assert n.dormant_after == pytest.approx(known["actor_dormant_ratio"][known["frame"] > 9000].mean())
    assert n.dormant_before > 0.2 > n.dormant_after  # the synthetic dormant ratio falls through 0.2
    assert n.first_frame_1000 == 20000
    drqv2 = mechanisms.read_run(DRQV2, "drqv2")
    b = mechanisms.numbers(drqv2.train, drqv2.evals, split=n.awakening_frame)
    assert (b.awakening_frame, b.first_frame_1000) == (9000, 40000)  # the recorded run: 1000 at 40k
    assert b.dormant_before == pytest.approx(drqv2.train["actor_dormant_ratio"][:9].mean())
    own = mechanisms.numbers(drqv2.train, drqv2.evals)  # no awakening of its own: nothing to split
    assert (own.awakening_frame, own.dormant_before, own.dormant_after) == (None, None, None)


def test_a_run_never_awake_and_never_at_1000_says_none(tmp_path):
    drm = mechanisms.read_run(write_drm_run(tmp_path / "drm", awake_step=None))
    drm.evals["episode_reward"] = [48.0, 300.0, 999.9]
    assert mechanisms.numbers(drm.train, drm.evals) == mechanisms.Numbers(None, None, None, None)


def _dashed_x(ax):
    return [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"]


def test_the_figure_draws_every_mechanism_on_one_frame_axis(tmp_path):
    drm = mechanisms.read_run(write_drm_run(tmp_path / "drm"))
    fig = mechanisms.figure(drm, mechanisms.read_run(DRQV2, "drqv2"))
    dormant, stddev, lam, ret = fig.axes
    assert all(_dashed_x(ax) == [9.0] for ax in fig.axes)  # the awakening, in thousands of frames
    assert all(ax.get_xlim()[0] == 0 for ax in fig.axes) and ret.get_xlabel().endswith("(thousands)")
    drawn = {ax: {line.get_color() for line in ax.get_lines() if line.get_linestyle() == "-"}
             for ax in fig.axes}
    assert drawn[dormant] == drawn[stddev] == drawn[ret] == {"#D55E00", "#0072B2"}  # DrM, DrQ-v2
    assert drawn[lam] == {"#D55E00"}
    lam_line, = (line for line in lam.get_lines() if line.get_linestyle() == "-")
    assert lam_line.get_ydata().max() == pytest.approx(0.6, abs=1e-3)
    evaluations = [line for line in ret.get_lines() if line.get_marker() == "o"]
    assert [line.get_xydata().tolist() for line in evaluations] == [
        [[0, 48], [20, 1000], [40, 1000]], [[0, 51.1], [20, 207.3], [40, 1000]]]
    assert "awakens at 9,000 frames" in fig._suptitle.get_text()
    assert not [t for ax in fig.axes for t in ax.texts if t.get_text().startswith("no data")]
    assert [t.get_text() for t in ret.texts] == ["DrM: 1000 first at 20k", "DrQ-v2: 1000 first at 40k"]


def test_a_drm_run_still_training_and_not_awake_yet_says_so(tmp_path):
    """The first minutes of a run: evaluated once, no update yet, read from its work/ folder."""
    folder = write_drm_run(tmp_path / "drm", awake_step=None, finished=False)
    early = pd.read_csv(folder / "work" / "train.csv").head(4)  # the seed frames: nothing logged
    early.to_csv(folder / "work" / "train.csv", index=False)
    pd.read_csv(folder / "work" / "eval.csv").head(1).to_csv(folder / "work" / "eval.csv", index=False)
    drm = mechanisms.read_run(folder)
    assert not drm.finished and len(drm.train) == 4
    fig = mechanisms.figure(drm, mechanisms.read_run(DRQV2, "drqv2"))
    dormant, stddev, lam, ret = fig.axes
    assert not any(_dashed_x(ax) for ax in fig.axes)
    text, = (t for t in lam.texts if t.get_text().startswith("no data"))
    assert "has updated the critic yet" in text.get_text().replace("\n", " ")
    drm_eval, = (line for line in ret.get_lines()
                 if line.get_marker() == "o" and line.get_color() == "#D55E00")
    assert drm_eval.get_xydata().tolist() == [[0, 48]]  # one evaluation: a visible marker
    assert "still training" in fig._suptitle.get_text() and "not awake yet" in fig._suptitle.get_text()
    assert all(ax.patches for ax in fig.axes)  # the frames DrM has not reached yet are shaded


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "drm.analysis.mechanisms", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_the_command_draws_and_prints_the_numbers(tmp_path):
    drm = write_drm_run(tmp_path / "drm")
    done = run_cli("--drm", drm, "--drqv2", DRQV2, "--out", tmp_path / "m.png", tmp_path / "m.pdf")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("DrM: awakens at frame 9,000; actor dormant ratio 0.28 before the "
                               "awakening, 0.07 after; evaluation return 1000 first at frame 20,000")
    assert lines[1].startswith("DrQ-v2: actor dormant ratio 0.35 before DrM's awakening, 0.08 after; "
                               "evaluation return 1000 first at frame 40,000")
    assert (tmp_path / "m.png").stat().st_size > 50_000
    assert (tmp_path / "m.pdf").read_bytes()[:5] == b"%PDF-"


@pytest.mark.parametrize("case, expected", [
    ("missing", "no such folder"),
    ("drqv2 as drm", "missing column(s) exploit_lambda, awaken_step"),
    ("no eval.csv", "eval.csv: missing"),
    ("bad value", "line 7: stddev 'high' is not a number"),
    ("other task", "are of different tasks: cartpole_balance, cartpole_balance_sparse"),
    ("bad step", "train.csv: frame / step is [2.0, 4.0], not one whole action repeat"),
    ("bad out", "--out"),
])
def test_bad_input_is_one_line_naming_it(tmp_path, case, expected):
    drm = write_drm_run(tmp_path / "drm")
    out = tmp_path / "m.png"
    if case == "missing":
        drm = tmp_path / "nowhere"
    elif case == "drqv2 as drm":
        drm = DRQV2
    elif case == "no eval.csv":
        (drm / "eval.csv").unlink()
    elif case == "bad value":
        train = pd.read_csv(drm / "train.csv").astype({"stddev": object})
        train.loc[5, "stddev"] = "high"
        train.to_csv(drm / "train.csv", index=False)
    elif case == "other task":
        config = yaml.safe_load((drm / "config.yaml").read_text())
        (drm / "config.yaml").write_text(yaml.safe_dump({**config, "task": "cartpole_balance"}))
    elif case == "bad step":
        train = pd.read_csv(drm / "train.csv")
        train.loc[3, "step"] = train.loc[3, "frame"] // 4
        train.to_csv(drm / "train.csv", index=False)
    elif case == "bad out":
        out = tmp_path / "m.svg"
    done = run_cli("--drm", drm, "--drqv2", DRQV2, "--out", out)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert expected in done.stderr
    assert not out.exists()


def test_an_awakening_before_any_logged_dormant_ratio_has_no_before(tmp_path):
    """As the DrM validation run did: awake at step 2448 (frame 4,896), within the first episode
    with updates, which ends at 5,000 frames."""
    drm = mechanisms.read_run(write_drm_run(tmp_path / "drm", awake_step=2448))
    n = mechanisms.numbers(drm.train, drm.evals)
    assert (n.awakening_frame, n.dormant_before) == (4896, None)
    assert n.dormant_after == pytest.approx(drm.train["actor_dormant_ratio"].mean())
    title = mechanisms.figure(drm)._suptitle.get_text().replace("\n", " ")
    assert f"averages {n.dormant_after:.2f} after (no training episode with updates ended before it)" in title
