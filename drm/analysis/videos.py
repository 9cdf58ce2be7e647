"""The report's behaviour section: per task, each agent's final evaluation on video.

Of an agent's seeds on a task, the one shown is the median by final return (meta.json's
`final_eval_return`; the lower of the two middle seeds for an even count, ties by seed), so the
video shows a typical run, not the best. Its video is the one the cell recorded of its final
evaluation (drm/cell/video.py); a cell without it (save_video=false, or trained before videos)
gets a line saying so. The page embeds the videos, so it plays inside the report's single file.
"""
import base64
import html
import csv
import json
from dataclasses import dataclass
from pathlib import Path

from drm.cell.video import video_path


@dataclass(frozen=True)
class Shown:
    agent: str
    task: str
    seed: int
    seeds: int  # how many finished seeds it is the median of
    frame: int
    final_return: float
    video: Path | None  # None: the cell recorded no final video


def median_run(runs: list[dict]) -> dict:
    """The median run by final return (the lower middle one for an even count; ties by seed)."""
    ordered = sorted(runs, key=lambda run: (run["final_eval_return"], run["seed"]))
    return ordered[(len(ordered) - 1) // 2]


def finished_run(meta_path: str | Path) -> dict:
    """A finished cell as the page needs it. Its agent, task and seed come from its folder
    (results/runs/<agent>/<task>/seed<seed>/, as the importer reads them: runs from before
    meta.json named them, or made by other tools, have only the folder), its final frame and
    return from its eval.csv's last row."""
    folder = Path(meta_path).parent
    with open(folder / "eval.csv", newline="") as f:
        last = list(csv.DictReader(f))[-1]
    return {"agent": folder.parent.parent.name, "task": folder.parent.name,
            "seed": int(folder.name.removeprefix("seed")), "folder": folder,
            "frames": int(float(last["frame"])), "final_eval_return": float(last["episode_reward"])}


def choose(metas: list[str | Path]) -> list[Shown]:
    """The run shown per (task, agent), from the finished cells (their meta.json files)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for path in metas:
        run = finished_run(path)
        groups.setdefault((run["task"], run["agent"]), []).append(run)
    shown = []
    for (task, agent), runs in groups.items():
        run = median_run(runs)
        final = video_path(run["folder"], run["frames"])
        shown.append(Shown(agent, task, run["seed"], len(runs), run["frames"],
                           run["final_eval_return"], final if final.exists() else None))
    return shown


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Behaviour</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1rem; color: #222; }}
h2 {{ font-size: 1.1rem; margin: 1.2rem 0 0.4rem; }}
.row {{ display: flex; flex-wrap: wrap; gap: 1rem; }}
figure {{ margin: 0; width: 256px; }}
video, .none {{ width: 256px; height: 256px; background: #eee; display: block; }}
.none {{ display: flex; align-items: center; justify-content: center; text-align: center; font-size: 0.85rem; }}
figcaption {{ font-size: 0.85rem; line-height: 1.3; margin-top: 0.3rem; }}
</style></head><body>
<p>Each agent's final evaluation (its first episode, mean action), the median seed by final return.</p>
{sections}
</body></html>
"""


def _figure(run: Shown) -> str:
    if run.video is None:
        picture = '<div class="none">no video recorded<br>(save_video=false?)</div>'
    else:
        data = base64.b64encode(run.video.read_bytes()).decode("ascii")
        picture = (f'<video controls loop muted playsinline preload="metadata" '
                   f'src="data:video/mp4;base64,{data}"></video>')
    caption = (f"<b>{html.escape(run.agent)}</b>, seed {run.seed} (median of {run.seeds})<br>"
               f"frame {run.frame:,}, return {run.final_return:.1f}")
    return f"<figure>{picture}<figcaption>{caption}</figcaption></figure>"


def write_page(shown: list[Shown], agents: list[str], tasks: list[str], out: str | Path) -> None:
    """One row per task (the config's order), one figure per agent."""
    by_key = {(run.task, run.agent): run for run in shown}
    sections = []
    for task in tasks:
        figures = [_figure(by_key[(task, agent)]) for agent in agents if (task, agent) in by_key]
        if figures:
            sections.append(f'<h2>{html.escape(task)}</h2>\n<div class="row">{"".join(figures)}</div>')
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(PAGE.format(sections="\n".join(sections)))
