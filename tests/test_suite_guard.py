"""CI's guard against a green run that did not run: with --require-all (make test), a test marked
slow or slurm that skips (a missing package, a cluster that did not start) fails the run."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SKIPPING = '''
import pytest

@pytest.mark.slow
def test_a_long_one():
    pytest.skip("wandb is not installed")

@pytest.mark.slurm
def test_on_the_cluster():
    pytest.skip("slurm: the test cluster did not start")

def test_a_quick_one():
    pytest.skip("not on this machine")
'''


def _pytest(folder: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *args,
                           str(folder)], cwd=folder, capture_output=True, text=True, timeout=300)


@pytest.fixture
def suite(tmp_path):
    """A suite of three skipping tests under this suite's own conftest.py."""
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_skips.py").write_text(SKIPPING)
    return tmp_path


def test_a_skipped_slow_or_slurm_test_fails_the_run_that_requires_all(suite):
    done = _pytest(suite, "--require-all")
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout[-2000:]
    assert "--require-all: 2 slow or slurm test(s) skipped:" in done.stdout
    assert "test_skips.py::test_a_long_one: Skipped: wandb is not installed" in done.stdout
    assert "test_skips.py::test_on_the_cluster: Skipped: slurm: the test cluster did not start" in done.stdout
    assert "test_a_quick_one" not in done.stdout.split("--require-all:")[1], "other skips are allowed"


def test_without_it_skips_pass_as_before(suite):
    done = _pytest(suite)
    assert done.returncode == pytest.ExitCode.OK, done.stdout[-2000:]
    assert "3 skipped" in done.stdout


def test_under_two_workers_the_guard_still_sees_the_skips(suite):
    done = _pytest(suite, "--require-all", "-n", "2", "--dist", "loadgroup")
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout[-2000:]
    assert "--require-all: 2 slow or slurm test(s) skipped:" in done.stdout
