"""Reading what a watched cell wrote: its TensorBoard scalars, its videos' frames, its offline
W&B records."""
from pathlib import Path

import numpy as np


def events(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the run's event files, read by TensorBoard's own reader without its
    purging of orphaned steps (which would hide a duplicated or rewound step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    reader = EventAccumulator(str(run), size_guidance={"scalars": 0}, purge_orphaned_data=False)
    reader.Reload()
    return {tag: [(e.step, e.value) for e in reader.Scalars(tag)] for tag in reader.Tags()["scalars"]}


def video_frames(path: Path) -> list[np.ndarray]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["size"] == (256, 256) and meta["fps"] == 20
    return [np.frombuffer(f, np.uint8).reshape(256, 256, 3) for f in reader]


def wandb_records(path: Path) -> list:
    """The records of an offline W&B run file: a ':W&B' header, then LevelDB's log format
    (32 KiB blocks of records, each a 7-byte header: CRC, length, type 1 full / 2-4 parts)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, parts, records = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block  # a block's tail too short for a header is padding
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        parts += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            records.append(wandb_internal_pb2.Record.FromString(parts))
            parts = b""
    return records


def wandb_history(records: list) -> list[dict[str, float]]:
    """The logged rows of W&B records, each as {key: value}."""
    return [{i.key or "/".join(i.nested_key): float(i.value_json) for i in r.history.item}
            for r in records if r.WhichOneof("record_type") == "history"]
