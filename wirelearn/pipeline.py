"""Stream plumbing between a source and the evaluator, batch by batch.

Each stage is a generator over ``FrameBatch`` objects: filter, limit, tee to a
writer, pace, cut into mini-batches. None of them looks at a frame alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, Protocol, TypeVar, cast

import numpy as np
from numpy.typing import NDArray

from wirelearn.capture._batch import FrameBatch
from wirelearn.capture._writer import Writer
from wirelearn.errors import ConfigError

__all__ = ["MiniBatcher", "limit", "minibatches", "pace", "tee", "where"]


def where(
    batches: Iterable[FrameBatch], mask: Callable[[FrameBatch], np.ndarray]
) -> Iterator[FrameBatch]:
    """Keep the frames for which ``mask(batch)`` is true (a BPF filter, typically)."""
    for batch in batches:
        kept = batch.take(mask(batch))
        del batch  # not held while the next batch is read
        if len(kept):
            yield kept
        del kept


def limit(
    batches: Iterable[FrameBatch],
    *,
    count: int | None = None,
    duration: float | None = None,
) -> Iterator[FrameBatch]:
    """Stop after ``count`` frames or ``duration`` seconds of capture time, whichever first.

    Args:
        batches: the stream.
        count: the most frames to pass (``-c``), or None.
        duration: capture-time seconds from the first frame (``--duration``), or None.
    """
    if count is not None and count < 0:
        raise ConfigError(f"-c/--count must be positive, not {count}")
    if duration is not None and duration <= 0:
        raise ConfigError(f"--duration must be positive, not {duration}")
    seen = 0
    t_end: int | None = None
    for batch in batches:
        if count is not None and seen >= count:
            return
        if duration is not None:
            if t_end is None and len(batch):
                t_end = int(batch.ts_ns[0]) + int(duration * 1e9)
            if t_end is not None:
                inside = int(np.searchsorted(batch.ts_ns, t_end, side="left"))
                if inside < len(batch) and bool((batch.ts_ns[inside:] >= t_end).all()):
                    batch = batch.slice(0, inside)
                    if count is not None:
                        batch = batch.slice(0, count - seen)
                    if len(batch):
                        yield batch
                    return
        if count is not None and seen + len(batch) >= count:
            yield batch.slice(0, count - seen)
            return
        seen += len(batch)
        yield batch
        del batch


def tee(batches: Iterable[FrameBatch], writer: Writer) -> Iterator[FrameBatch]:
    """Write every batch to ``writer`` before passing it on (``-w``)."""
    for batch in batches:
        writer.write(batch)
        yield batch
        del batch


def pace(
    batches: Iterable[FrameBatch],
    speed: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    slice_s: float = 0.05,
) -> Iterator[FrameBatch]:
    """Replay at ``speed`` times the capture's own timing (``--speed``).

    Batches are cut into slices of at most ``slice_s`` seconds of capture time,
    and each slice waits until the wall clock catches up with its first frame.
    """
    if speed <= 0:
        raise ConfigError(f"--speed must be positive, not {speed}")
    t0_wall: float | None = None
    t0_cap = 0
    step = int(slice_s * 1e9)
    for batch in batches:
        if not len(batch):
            continue
        if t0_wall is None:
            t0_wall, t0_cap = clock(), int(batch.ts_ns[0])
        start = 0
        while start < len(batch):
            first = int(batch.ts_ns[start])
            stop = int(np.searchsorted(batch.ts_ns, first + step, side="left"))
            stop = max(stop, start + 1)
            due = t0_wall + max(0, first - t0_cap) / 1e9 / speed
            wait = due - clock()
            if wait > 0:
                sleep(wait)
            yield batch.slice(start, stop)
            start = stop
        del batch


class Rows(Protocol):
    """What ``MiniBatcher`` cuts: frames in capture-time order (``FrameBatch``, or decoded ones)."""

    @property
    def ts_ns(self) -> NDArray[np.int64]:
        """Capture times (ns since the epoch), one per frame."""
        ...

    def __len__(self) -> int: ...

    def slice(self, start: int, stop: int) -> Rows:
        """Frames ``start:stop``."""
        ...


B = TypeVar("B", bound=Rows)


def _join_frames(parts: list[FrameBatch]) -> FrameBatch:
    return FrameBatch.concat(parts).compact()


class MiniBatcher(Generic[B]):
    """Re-cuts a stream into mini-batches closed at ``size`` frames or ``interval`` s of capture time.

    Whichever comes first closes the mini-batch (``--batch-size``,
    ``--batch-interval``). The last, partial mini-batch is yielded at the end of
    the stream, and also before an error from upstream is re-raised, so that no
    frame read before a fault is lost. After an interruption (Ctrl-C),
    ``flush()`` hands over the frames still pending.

    Args:
        batches: the upstream stream: ``FrameBatch``es, or any ``Rows`` with ``join``.
        size: frames per mini-batch.
        interval: capture-time seconds per mini-batch, or None for size alone.
        join: how pieces of several upstream batches become one mini-batch
            (default: ``FrameBatch.concat``, compacted).
    """

    def __init__(
        self,
        batches: Iterable[B],
        size: int,
        interval: float | None = None,
        *,
        join: Callable[[list[B]], B] | None = None,
    ) -> None:
        if size < 1:
            raise ConfigError(f"--batch-size must be at least 1, not {size}")
        if interval is not None and interval <= 0:
            raise ConfigError(f"--batch-interval must be positive, not {interval}")
        self._batches = batches
        self.size = size
        self._span = None if interval is None else int(interval * 1e9)
        self._join = join if join is not None else cast("Callable[[list[B]], B]", _join_frames)
        self._pending: list[B] = []
        self._pending_n = 0

    def flush(self) -> B | None:
        """The frames pending in an unfinished mini-batch (and forget them), if any."""
        if not self._pending_n:
            return None
        out = self._join(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending, self._pending_n = [], 0
        return out

    def __iter__(self) -> Iterator[B]:
        try:
            yield from self._cut()
        except Exception:
            pending = self.flush()
            if pending is not None:
                yield pending
            raise
        pending = self.flush()
        if pending is not None:
            yield pending

    def _cut(self) -> Iterator[B]:
        size, span = self.size, self._span
        pending_t0 = 0
        for batch in self._batches:
            start = 0
            n = len(batch)
            while start < n:
                if not self._pending_n:
                    pending_t0 = int(batch.ts_ns[start])
                room = size - self._pending_n
                stop = min(n, start + room)
                closes = stop - start == room
                if span is not None:
                    cut = int(
                        np.searchsorted(batch.ts_ns[start:stop], pending_t0 + span, side="left")
                    )
                    if cut + start < stop:
                        stop, closes = cut + start, True
                if stop > start:
                    self._pending.append(cast("B", batch.slice(start, stop)))
                    self._pending_n += stop - start
                start = stop
                if closes:
                    done = self.flush()
                    if done is not None:
                        yield done
                        del done
            del batch  # the pending slices keep what they need; the rest is not held


def minibatches(
    batches: Iterable[FrameBatch], size: int, interval: float | None = None
) -> Iterator[FrameBatch]:
    """Re-cut a stream into mini-batches; see ``MiniBatcher``."""
    return iter(MiniBatcher[FrameBatch](batches, size, interval))
