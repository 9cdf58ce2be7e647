"""The `videos` rule: the behaviour page from the finished cells' meta.json and their videos."""
from drm.analysis import videos

shown = videos.choose(snakemake.input.metas)
videos.write_page(shown, snakemake.params.agents, snakemake.params.tasks, snakemake.output[0])
with open(snakemake.log[0], "w") as log:
    for run in sorted(shown, key=lambda r: (r.task, r.agent)):
        log.write(f"{run.task} {run.agent}: seed {run.seed} of {run.seeds}, frame {run.frame}, "
                  f"return {run.final_return:.1f}, video {run.video or 'none'}\n")
