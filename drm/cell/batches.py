"""The updates' batches, drawn ahead in a thread and copied to the GPU while the loop acts.

The serial path samples a batch in the main thread when the update is due, then copies its
32.5 MB (batch 256) to the device from pageable memory: the GPU waits through the sample, the
copy and the environment's steps. The official loaders sample in 4 workers into pinned memory.

Here the next update's batch is drawn right after this one, in one background thread, into
pinned buffers, and copied with `non_blocking` on a side stream, while the loop steps the
environment and acts. It must be the batch the serial path would draw, bit for bit: a sample
depends on the replay's generator and on its view (steps added, steps in finished episodes)
when it is drawn (drm.cell.replay.ReplayBuffer.sample_from). So the draw ahead uses a copy of
the generator and the view the ring will have by then if no episode ends in between (the loop
says how many steps it will add). When the update comes, a batch whose view came true is taken
and the generator moves to where the copy ended; otherwise (an episode ended, about one update
in 250 on 1000-frame episodes) it is dropped and the batch is drawn serially. The generator the
snapshots save is therefore always the serial path's.

An agent that samples the running episode (A-LIX) needs steps not yet added for its view, so
its batches are drawn serially (`ahead` is False).
"""
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from drm.cell.replay import ReplayBuffer


class BatchPrefetcher:
    def __init__(self, replay: ReplayBuffer, batch_size: int, device: torch.device, enabled: bool = True):
        self.replay, self.batch_size, self.device = replay, batch_size, torch.device(device)
        self.ahead = enabled and not replay.sample_running_episode
        self.cuda = self.device.type == "cuda"
        self.drawn_ahead = self.drawn_serially = 0  # how many batches came each way
        self.wait_s = 0.0  # the loop's time in `next`: what was not hidden
        self.draw_s = 0.0  # the time drawing (and copying) took, in the thread or serially
        self._pending: tuple[Future, tuple[int, int]] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batches") if self.ahead else None
        self._buffers: list[tuple[torch.Tensor, ...]] = []  # pinned host buffers, used in turn
        self._buffer_done: list[torch.cuda.Event | None] = []  # their last copy's event
        self._next_buffer = 0
        self._stream = torch.cuda.Stream(self.device) if self.ahead and self.cuda else None

    def next(self, adds_before_next: int) -> tuple[torch.Tensor, ...]:
        """This update's batch; then the next one is drawn ahead on the view the ring will have
        after `adds_before_next` more steps, if no episode ends among them."""
        start = time.perf_counter()
        batch = self._take_pending()
        if batch is None:
            self.drawn_serially += 1
            batch = tuple(torch.from_numpy(x) for x in self.replay.sample(self.batch_size))
            if self.cuda:  # the serial path's copy, counted as the serial path pays it
                batch = tuple(x.to(self.device) for x in batch)
            self.draw_s += time.perf_counter() - start
        else:
            self.drawn_ahead += 1
        self.wait_s += time.perf_counter() - start
        if self.ahead:
            total, finished_total = self.replay.view()
            view = (total + adds_before_next, finished_total)
            rng = np.random.Generator(type(self.replay.rng.bit_generator)())
            rng.bit_generator.state = self.replay.rng.bit_generator.state
            self._pending = (self._executor.submit(self._draw, rng, view), view)
        return batch

    def _take_pending(self):
        if self._pending is None:
            return None
        future, view = self._pending
        self._pending = None
        try:
            rng, batch, copied = future.result()
        except RuntimeError:  # e.g. no finished episode at that view: the serial draw says so
            return None
        if view != self.replay.view():
            return None
        self.replay.rng.bit_generator.state = rng.bit_generator.state
        if copied is not None:  # the side stream's copy precedes this stream's use of it
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(copied)
            for tensor in batch:
                tensor.record_stream(stream)
        return batch

    def _draw(self, rng: np.random.Generator, view: tuple[int, int]):
        """In the thread: the batch at `view`, on the device, and the event its copy records."""
        start = time.perf_counter()
        try:
            return self._draw_at(rng, view)
        finally:
            self.draw_s += time.perf_counter() - start

    def _draw_at(self, rng: np.random.Generator, view: tuple[int, int]):
        if not self.cuda:
            arrays = self.replay.sample_from(rng, view, self.batch_size)
            return rng, tuple(torch.from_numpy(x) for x in arrays), None
        pinned, index = self._pinned_buffers()
        self.replay.sample_from(rng, view, self.batch_size, out=tuple(t.numpy() for t in pinned))
        with torch.cuda.stream(self._stream):
            batch = tuple(t.to(self.device, non_blocking=True) for t in pinned)
            copied = torch.cuda.Event()
            copied.record(self._stream)
        self._buffer_done[index] = copied
        return rng, batch, copied

    def _pinned_buffers(self) -> tuple[tuple[torch.Tensor, ...], int]:
        """Two sets of pinned buffers in turn; a set is refilled only once its copy has ended."""
        if not self._buffers:
            for _ in range(2):
                self._buffers.append(tuple(
                    torch.empty(shape, dtype=getattr(torch, np.dtype(dtype).name), pin_memory=True)
                    for shape, dtype in self.replay.batch_layout(self.batch_size)))
                self._buffer_done.append(None)
        index = self._next_buffer
        self._next_buffer = 1 - index
        if self._buffer_done[index] is not None:
            self._buffer_done[index].synchronize()
        return self._buffers[index], index

    def summary(self) -> dict:
        """What the pipeline did this start (meta.json's `batches`): `hidden` is the share of
        the drawing and copying time the loop did not wait for."""
        return {"drawn_ahead": self.drawn_ahead, "drawn_serially": self.drawn_serially,
                "draw_s": round(self.draw_s, 3), "wait_s": round(self.wait_s, 3),
                "hidden": round(max(0.0, 1.0 - self.wait_s / self.draw_s), 4) if self.draw_s > 0 else None}

    def close(self) -> None:
        """Wait for a draw in flight and drop it (the replay's generator is untouched)."""
        if self._pending is not None:
            self._pending[0].exception()
            self._pending = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
