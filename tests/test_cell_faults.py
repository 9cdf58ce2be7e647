"""Faults a cell meets on disk: unreadable snapshots, a full disk, a resumption on other settings.
A cell never gets stuck on one, and says in one line what happened and what it did."""
import errno
import json
import os
import subprocess

import numpy as np
import pytest
import torch

from drm.cell import snapshot
from drm.cell.replay import ChunkError
from helpers import read_csv, without_wall_clock
from test_replay import fake_episodes, ring


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
    replay = ring(20, seed=5, running=True)
    saved = 0
    for cut in (10, 25, 45):
        for ts in steps[replay.total:cut]:
            replay.add(ts)
        fallback, saved = saved, replay.total
        replay.save_chunks(tmp_path, fallback)
        replay.prune_chunks(tmp_path, fallback)
    at_25 = ring(20, seed=0, running=True)
    for ts in steps[:25]:
        at_25.add(ts)
    resumed = ring(20, seed=0, running=True)
    resumed.load_chunks(tmp_path, 25, at_25.finished_total)
    for x, y in zip(at_25.sample(64), resumed.sample(64)):
        np.testing.assert_array_equal(x, y)


# Cells run in this process, in four 100-frame episodes of seed frames (no updates: what is
# tested is the bookkeeping), a snapshot after each episode but the last.
SHORT = dict(num_train_frames=400, num_seed_frames=400, eval_every_frames=400, num_eval_episodes=1,
             batch_size=16, episode_frames=100, snapshot_every_frames=100, replay_buffer_size=1000)


class Killed(BaseException):
    """Stands for a SIGKILL: nothing in the cell catches it."""


def kill_after_snapshots(monkeypatch, count: int):
    """Makes the cell die (as if SIGKILLed) right after its `count`-th snapshot is written."""
    save, saves = snapshot.save, []

    def save_then_die(path, state):
        save(path, state)
        saves.append(path)
        if len(saves) == count:
            raise Killed

    monkeypatch.setattr(snapshot, "save", save_then_die)
    return save


def cell(out, **overrides):
    from drm.cell import config
    from drm.train import TrainingRun

    cfg = config.compose("drqv2", "cartpole_balance", {**SHORT, **overrides})
    cfg.out_dir = str(out)
    return TrainingRun(cfg)


@pytest.fixture
def keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    cell(out).run()
    return out


@pytest.mark.slow
def test_a_full_disk_stops_the_cell_with_what_is_intact(tmp_path, monkeypatch, keep_torch_threads):
    from drm.train import CellStopped

    out = tmp_path / "cell"
    write, calls = snapshot._write_file, []

    def full_from_the_second_snapshot(path, data):
        calls.append(path)
        if len(calls) == 1:
            return write(path, data)
        write(path, data[:len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(snapshot, "_write_file", full_from_the_second_snapshot)
    with pytest.raises(CellStopped) as stopped:
        cell(out).run()
    assert str(stopped.value) == (f"no space left on {out}: the cell stopped at frame 200; "
                                  "its last snapshot at frame 100 is intact")
    assert [p for p in out.rglob("*") if ".tmp" in p.name] == [], "no partial file keeps the disk full"
    assert torch.load(out / "work" / "snapshot.pt", weights_only=False)["step"] == 50
    assert sorted(p.name for p in (out / "work" / "replay").iterdir()) == [
        "000000000000-000000000051.npz"], "the chunk of the snapshot that failed is gone too"

    # Space again, and a resumption on another thread count: it says so, and goes on (killed at
    # its first snapshot: two threads oversubscribe a busy test machine).
    monkeypatch.setattr(snapshot, "_write_file", write)
    kill_after_snapshots(monkeypatch, 1)
    with pytest.raises(Killed):
        cell(out, threads=2).run()
    log = (out / "train.log").read_text()
    assert "resumed from the snapshot at frame 100" in log
    assert ("warning: resuming with torch_threads=2 (the snapshot was taken with 1): from frame 100 "
            "on, the run no longer matches an uninterrupted one bit for bit") in log
    assert "torch threads=2 (threads=2)" in log
    assert len((out / "work" / "starts.jsonl").read_text().splitlines()) == 2


def resume_from_a_spoiled_snapshot(out, monkeypatch, snapshots: int, spoil, uninterrupted) -> None:
    """Kill the cell after its N-th snapshot, spoil what it left, run it again: it must end with
    the files of an uninterrupted run."""
    save = kill_after_snapshots(monkeypatch, snapshots)
    with pytest.raises(Killed):
        cell(out).run()
    monkeypatch.setattr(snapshot, "save", save)
    spoil()
    cell(out).run()
    for name in ("eval.csv", "train.csv"):
        assert without_wall_clock(read_csv(out / name)) == without_wall_clock(read_csv(uninterrupted / name))


@pytest.mark.slow
def test_an_unreadable_snapshot_resumes_from_the_previous_one(uninterrupted, tmp_path, monkeypatch):
    out = tmp_path / "cell"
    newest = out / "work" / "snapshot.pt"
    resume_from_a_spoiled_snapshot(out, monkeypatch, 2, lambda: newest.write_bytes(newest.read_bytes()[:1000]),
                                   uninterrupted)
    assert (f"warning: {newest} cannot be read (PytorchStreamReader failed reading zip archive: failed "
            "finding central directory); moved to snapshot.pt.unreadable; resumed from snapshot.prev.pt "
            "at frame 100") in (out / "train.log").read_text()
    assert json.loads((out / "meta.json").read_text())["starts"] == 2


@pytest.mark.slow
def test_with_no_readable_snapshot_the_run_starts_again_and_says_so(uninterrupted, tmp_path, monkeypatch):
    out = tmp_path / "cell"
    resume_from_a_spoiled_snapshot(out, monkeypatch, 1,
                                   lambda: (out / "work" / "snapshot.pt").write_bytes(b"not a snapshot"),
                                   uninterrupted)
    assert ("; no readable snapshot is left, so the run starts again from frame 0"
            in (out / "train.log").read_text())


def test_a_cell_is_complete_when_constructed(tmp_path, keep_torch_threads):
    fresh = cell(tmp_path / "cell", progress=False)
    (tmp_path / "cell").mkdir()
    fresh.log("a line before the run")  # what log and warn need exists from the start
    fresh.warn("a warning before the run")
    assert "a warning before the run" in (tmp_path / "cell" / "train.log").read_text()
    assert fresh.eval_log.rows == fresh.train_log.rows == 0 and fresh.last_eval != fresh.last_eval
    for method in (fresh.restore, fresh.save_snapshot):
        with pytest.raises(RuntimeError, match="call build\\(\\) first"):
            method()


# ----------------------------------------------------------------------------- replay chunks

def chunks_of_three_snapshots(directory):
    """A 30-step ring's chunks after snapshots at 10, 25 and 45 steps, and the steps added."""
    steps = [ts for episode in fake_episodes([8] * 6) for ts in episode]
    replay, saved = ring(30, seed=5), 0
    for cut in (10, 25, 45):
        for ts in steps[replay.total:cut]:
            replay.add(ts)
        replay.save_chunks(directory, saved)
        saved = replay.total
    return replay


def test_a_truncated_chunk_is_named_and_moved_aside(tmp_path):
    written = chunks_of_three_snapshots(tmp_path)
    chunk = tmp_path / "000000000010-000000000025.npz"
    chunk.write_bytes(chunk.read_bytes()[:300])
    resumed = ring(30)
    with pytest.raises(ChunkError) as raised:
        resumed.load_chunks(tmp_path, 45, written.finished_total)
    assert str(raised.value) == (f"replay chunk {chunk} cannot be read (File is not a zip file); "
                                 "moved to 000000000010-000000000025.npz.unreadable")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "000000000000-000000000010.npz", "000000000010-000000000025.npz.unreadable",
        "000000000025-000000000045.npz"]
    assert resumed.total == 0 and len(resumed) == 0, "nothing half-loaded to sample from"
    # the snapshot at 10 steps needs only the first chunk: it still loads
    resumed.load_chunks(tmp_path, 10, 9)
    assert resumed.total == 10


def test_a_missing_chunk_or_one_of_the_wrong_length_is_named(tmp_path):
    written = chunks_of_three_snapshots(tmp_path)
    (tmp_path / "000000000010-000000000025.npz").unlink()
    with pytest.raises(ChunkError, match=f"^replay steps 15-25 have no chunk in {tmp_path}$"):
        ring(30).load_chunks(tmp_path, 45, written.finished_total)  # the ring holds steps 15-45
    np.savez(tmp_path / "000000000010-000000000025.npz",
             **{k: getattr(written, k)[:3] for k in written.FIELDS})  # 3 steps under a 15-step name
    with pytest.raises(ChunkError, match=r"cannot be read \(holds \[3\] steps for the 15 of its name\)"):
        ring(30).load_chunks(tmp_path, 45, written.finished_total)
    (tmp_path / "000000000025-000000000045.npz").unlink()  # the one of the wrong length is aside
    with pytest.raises(ChunkError, match="^replay steps 15-45 have no chunk"):
        ring(30).load_chunks(tmp_path, 45, written.finished_total)


@pytest.mark.slow
def test_a_truncated_chunk_resumes_from_the_snapshot_whose_chunks_are_readable(uninterrupted, tmp_path,
                                                                              monkeypatch):
    out = tmp_path / "cell"
    work = out / "work"
    newest = work / "replay" / "000000000051-000000000102.npz"  # written with the second snapshot
    resume_from_a_spoiled_snapshot(out, monkeypatch, 2, lambda: newest.write_bytes(newest.read_bytes()[:1000]),
                                   uninterrupted)
    assert (f"warning: replay chunk {newest} cannot be read (File is not a zip file); moved to "
            "000000000051-000000000102.npz.unreadable, so snapshot.pt is set aside as "
            "snapshot.pt.unreadable; resumed from snapshot.prev.pt at frame 100\n"
            ) in (out / "train.log").read_text()
    assert json.loads((out / "meta.json").read_text())["starts"] == 2


@pytest.mark.slow
def test_a_missing_chunk_that_every_snapshot_needs_starts_the_run_again(uninterrupted, tmp_path, monkeypatch):
    out = tmp_path / "cell"
    first = out / "work" / "replay" / "000000000000-000000000051.npz"
    resume_from_a_spoiled_snapshot(out, monkeypatch, 2, first.unlink, uninterrupted)
    log = (out / "train.log").read_text()
    assert (f"warning: replay steps 0-51 have no chunk in {first.parent}, so snapshot.pt is set aside "
            f"as snapshot.pt.unreadable; replay steps 0-51 have no chunk in {first.parent}, so "
            "snapshot.prev.pt is set aside as snapshot.prev.pt.unreadable; no readable snapshot is "
            "left, so the run starts again from frame 0\n") in log
    assert log.count("warning:") == 1, "one line, and no loop"
