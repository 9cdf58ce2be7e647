"""Evaluation videos: the first episode of chosen evaluations as `<out_dir>/videos/<frame>.mp4`.

As the official VideoRecorder (DrQ-v2's and DrM's `video.py`): 256 x 256 renders, one per agent
step from the reset on, 20 frames/s. The camera is the one the agent sees (the task's camera:
2 for quadruped, else 0); the official recorder films camera 0 in every domain, which differs only
for quadruped (its distant `global` camera). H.264 (yuv420p, `+faststart`) in mp4, through
imageio-ffmpeg, whose wheel ships the encoder; frames stream to the encoder as the episode plays.
A video is written under a `*.tmp.mp4` name and renamed when complete, so a kill never leaves a
partial `<frame>.mp4`.
"""
import os
from pathlib import Path

VIDEO_DIR = "videos"  # in the cell's folder
RENDER_SIZE = 256
FPS = 20


def video_path(run: Path, frame: int) -> Path:
    """Where a cell's video of its evaluation at `frame` is (the analysis reads it here)."""
    return Path(run) / VIDEO_DIR / f"{frame}.mp4"


def evaluation_frames(num_train_frames: int, eval_every_frames: int, action_repeat: int) -> list[int]:
    """The frames the cell evaluates at: every eval_every_frames from 0, and the final frame."""
    train_steps = num_train_frames // action_repeat
    every = max(eval_every_frames // action_repeat, 1)
    return [s * action_repeat for s in sorted(set(range(0, train_steps, every)) | {train_steps})]


def filmed_frames(evaluations: list[int], count: int) -> list[int]:
    """`count` of the evaluations: the first, the last and evenly between (1: the last only)."""
    if count >= len(evaluations):
        return list(evaluations)
    if count == 1:
        return [evaluations[-1]]
    last = len(evaluations) - 1
    return sorted({evaluations[round(i * last / (count - 1))] for i in range(count)})


class Recording:
    """One episode streamed to ffmpeg; `close` renames the finished file into place."""

    def __init__(self, path: Path):
        import imageio_ffmpeg

        self.path, self.tmp = path, path.with_name(path.stem + ".tmp.mp4")
        self.bytes = 0
        self._encoder = imageio_ffmpeg.write_frames(
            str(self.tmp), (RENDER_SIZE, RENDER_SIZE), fps=FPS, codec="libx264", pix_fmt_out="yuv420p",
            macro_block_size=16, ffmpeg_log_level="error",
            output_params=["-threads", "1", "-movflags", "+faststart"])
        self._encoder.send(None)

    def add(self, pixels) -> None:
        """One RGB frame, (RENDER_SIZE, RENDER_SIZE, 3) uint8."""
        import numpy as np

        self._encoder.send(np.ascontiguousarray(pixels))

    def close(self) -> None:
        self._encoder.close()
        os.replace(self.tmp, self.path)
        self.bytes = self.path.stat().st_size

    def abandon(self) -> None:
        try:
            self._encoder.close()
        except (OSError, RuntimeError):
            pass  # the encoder had already failed
        self.tmp.unlink(missing_ok=True)


class Videos:
    """The cell's videos: which evaluations are filmed, the one being filmed, cutting back."""

    def __init__(self, run: Path, frames, warn):
        self.folder = Path(run) / VIDEO_DIR
        self.frames, self.warn = set(frames), warn
        self.recording = None

    def start(self, frame: int) -> None:
        """Film the next episode when the evaluation at `frame` is one of those filmed."""
        if frame in self.frames:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._try(lambda: setattr(self, "recording", Recording(video_path(self.folder.parent, frame))))

    def add(self, pixels) -> None:
        self._try(lambda: self.recording.add(pixels))

    def finish(self) -> Recording | None:
        """The finished recording (None when nothing was being filmed or it failed)."""
        done = self.recording
        if done is not None and self._try(done.close):
            self.recording = None
            return done
        return None

    def _try(self, action) -> bool:
        """A video that cannot be written is a warning, not the end of the cell."""
        try:
            action()
            return True
        except (OSError, ValueError, RuntimeError) as err:
            failed, self.recording = self.recording, None
            if failed is not None:
                failed.abandon()
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
            self.warn(f"an evaluation video was not written: {first_line}")
            return False

    def keep_until(self, frame: int | None) -> None:
        """Resuming: keep the videos of the evaluations the snapshot knew (at or before `frame`;
        None: none), remove the rest and any partial file; those evaluations are played again."""
        if not self.folder.exists():
            return
        for path in self.folder.glob("*.mp4"):
            stem = path.name[:-len(".mp4")]
            if not stem.isdigit() or frame is None or int(stem) > frame:
                path.unlink()


def filmed(cfg) -> list[int]:
    """The frames of a cell's filmed evaluations (none with save_video=false)."""
    if not cfg.save_video:
        return []
    return filmed_frames(evaluation_frames(cfg.num_train_frames, cfg.eval_every_frames, cfg.action_repeat),
                         cfg.num_eval_videos)
