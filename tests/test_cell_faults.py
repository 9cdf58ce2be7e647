"""Faults a cell meets on disk: unreadable snapshots, a full disk, a resumption on other settings.
A cell never gets stuck on one, and says in one line what happened and what it did."""
import errno
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from drm import snapshot
from drm.replay import ReplayBuffer
from helpers import REPO, cell_command
from test_replay import GAMMA, fake_episodes


def test_an_unreadable_snapshot_falls_back_to_the_previous_one(tmp_path):
    path = tmp_path / "snapshot.pt"
    snapshot.save(path, {"step": 1})
    snapshot.save(path, {"step": 2})
    path.write_bytes(path.read_bytes()[:200])  # truncated, as by a crash of the disk or the copy
    state, used, notes = snapshot.load_newest(path)
    assert state["step"] == 1 and used == snapshot.previous(path)
    assert notes == [f"{path} cannot be read (PytorchStreamReader failed reading zip archive: "
                     "failed finding central directory); moved to snapshot.pt.unreadable"]
    snapshot.save(path, {"step": 3})  # the bad file was moved aside: the good one stays the fallback
    assert torch.load(snapshot.previous(path))["step"] == 1


def test_with_no_readable_snapshot_each_bad_file_is_named(tmp_path):
    path = tmp_path / "snapshot.pt"
    path.write_bytes(b"garbage")
    snapshot.previous(path).write_bytes(b"")
    state, used, notes = snapshot.load_newest(path)
    assert state is None and used is None
    assert [n.split(" cannot be read")[0] for n in notes] == [str(path), str(snapshot.previous(path))]


def test_a_full_disk_leaves_no_partial_snapshot_and_the_last_one_intact(tmp_path, monkeypatch):
    path = tmp_path / "snapshot.pt"
    snapshot.save(path, {"step": 1})

    def full_disk(target, data):
        target.write_bytes(bytes(data[:100]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(snapshot, "_write_file", full_disk)
    with pytest.raises(OSError) as raised:
        snapshot.save(path, {"step": 2})
    assert raised.value.errno == errno.ENOSPC, "the errno survives (torch's own writer loses it)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot.pt"]
    assert torch.load(path)["step"] == 1


def test_on_a_really_full_filesystem_too(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        path = small / "snapshot.pt"
        snapshot.save(path, {"step": 1, "weights": torch.zeros(1000)})
        with pytest.raises(OSError) as raised:
            snapshot.save(path, {"step": 2, "weights": torch.zeros(1_000_000)})  # 4 MB
        assert raised.value.errno == errno.ENOSPC
        assert sorted(p.name for p in small.iterdir()) == ["snapshot.pt"]
        assert torch.load(path)["step"] == 1
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_the_fallback_snapshot_still_finds_its_replay_chunks(tmp_path):
    """Snapshots at 10, 25 and 45 steps of a 20-step ring: pruning for the newest alone would drop
    the chunks [0, 10) and [10, 25) that the one at 25 (the fallback) needs."""
    steps = [ts for episode in fake_episodes([8] * 6) for ts in episode]
    replay = ReplayBuffer(20, (3, 4, 4), (2,), frame_stack=3, nstep=3, discount=GAMMA, seed=5)
    saved = 0
    for cut in (10, 25, 45):
        for ts in steps[replay.total:cut]:
            replay.add(ts)
        fallback, saved = saved, replay.total
        replay.save_chunks(tmp_path, fallback)
        replay.prune_chunks(tmp_path, fallback)
    resumed = ReplayBuffer(20, (3, 4, 4), (2,), frame_stack=3, nstep=3, discount=GAMMA, seed=0)
    resumed.load_chunks(tmp_path, 25)
    at_25 = ReplayBuffer(20, (3, 4, 4), (2,), frame_stack=3, nstep=3, discount=GAMMA, seed=0)
    for ts in steps[:25]:
        at_25.add(ts)
    for x, y in zip(at_25.sample(64), resumed.sample(64)):
        np.testing.assert_array_equal(x, y)


# The cell's entry point with the snapshot writer failing as a full disk does, from its second
# snapshot on (the first, at frame 500, is written).
FULL_DISK_FROM_SECOND_SNAPSHOT = (
    "import errno, os\n"
    "from drm import snapshot\n"
    "write, calls = snapshot._write_file, []\n"
    "def full_disk(path, data):\n"
    "    calls.append(path)\n"
    "    if len(calls) == 1:\n"
    "        return write(path, data)\n"
    "    write(path, data[:len(data) // 2])\n"
    "    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
    "snapshot._write_file = full_disk\n"
    "from drm.train import cli\n"
    "cli()\n"
)


@pytest.fixture(scope="module")
def stopped_by_a_full_disk(tmp_path_factory):
    out = tmp_path_factory.mktemp("full-disk") / "cell"
    args = cell_command(out, "drqv2")[3:]
    done = subprocess.run([sys.executable, "-c", FULL_DISK_FROM_SECOND_SNAPSHOT, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    return out, done


def test_a_full_disk_stops_the_cell_with_what_is_intact(stopped_by_a_full_disk):
    out, done = stopped_by_a_full_disk
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"drm.train: error: no space left on {out}: the cell stopped at frame 1000; "
        "its last snapshot at frame 500 is intact")
    assert [p for p in out.rglob("*") if ".tmp" in p.name] == [], "no partial file keeps the disk full"
    assert torch.load(out / "work" / "snapshot.pt", weights_only=False)["step"] == 250
    chunks = sorted(p.name for p in (out / "work" / "replay").iterdir())
    assert chunks == ["000000000000-000000000252.npz"], "the chunk of the failed snapshot is gone"


def test_a_resumption_on_another_thread_count_says_so(stopped_by_a_full_disk):
    """threads=2 against the 1 the run started with (the tests run with OMP_NUM_THREADS unset or
    1): stopped as soon as it has said so."""
    out, _ = stopped_by_a_full_disk
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cell_command(out, "drqv2", threads=2), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "train.log"
    try:
        deadline = time.time() + 300
        while "torch threads=2" not in log.read_text() and proc.poll() is None:
            assert time.time() < deadline, "the resumed cell never logged its start"
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    text = log.read_text()
    assert "resumed from the snapshot at frame 500" in text
    assert ("warning: resuming with torch_threads=2 (the snapshot was taken with 1): from frame 500 "
            "on, the run no longer matches an uninterrupted one bit for bit") in text
    assert "torch threads=2 (threads=2)" in text
