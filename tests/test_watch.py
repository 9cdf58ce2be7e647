"""Watching a cell: which evaluations are filmed, the report's choice of video, the loggers'
refusals. Real cells killed and resumed with their videos, TensorBoard and W&B: test_drm_run.py
(videos, TensorBoard) and test_alix_run.py (W&B offline); filming or not, the same returns:
test_training_cell.py."""
import json
import subprocess
import sys

import pytest

from drm.cell import config, video
from helpers import REPO, cell_command


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
