"""The train rule's launcher: `python workflow/scripts/gpu_slot.py CMD ...` runs CMD on a GPU of
its own (drm.gpu_slot says how). A file of its own so that the rule's command, and so Snakemake's
record of it, stays what it was."""
import sys

from drm.gpu_slot import main

main(sys.argv[1:])
