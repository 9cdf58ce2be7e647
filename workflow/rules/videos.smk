# The report's behaviour section: per task, each agent's final evaluation on video (its median
# seed by final return; drm/analysis/videos.py), from the videos the cells recorded
# (<cell>/videos/<frame>.mp4, drm/cell/video.py). Part of `all` when the grid films its cells.

localrules: videos

BEHAVIOUR = "results/videos/behaviour.html"
BEHAVIOUR_PAGE = [BEHAVIOUR] if any(cell.save_video for cell in CELLS.values()) else []


rule videos:
    input:
        metas=grid_outputs("meta.json"),
    output:
        report(BEHAVIOUR, caption="../report/behaviour.rst", category="Behaviour"),
    params:
        agents=config["agents"],
        tasks=config["tasks"],
    conda:
        "../../environment.yml"
    log:
        "results/logs/videos.log",
    script:
        "../scripts/videos.py"
