"""glibc malloc settings that make CPU updates about 2x faster (docs/harness.md §4).

By default glibc unmaps every large activation buffer after use, so half of an update goes to
page faults. The settings only act if present when the process starts, hence the re-exec.
"""
import os
import sys

ALLOCATOR_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "17179869184",
    "MALLOC_TRIM_THRESHOLD_": "17179869184",
    "MALLOC_TOP_PAD_": "1073741824",
}


def restart_with_allocator_env(module: str) -> None:
    """Re-run `python -m <module> <args>` with the settings, unless they are already set."""
    if sys.platform.startswith("linux") and any(k not in os.environ for k in ALLOCATOR_ENV):
        env = {**ALLOCATOR_ENV, **os.environ}  # a value the user set wins
        os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], env)
