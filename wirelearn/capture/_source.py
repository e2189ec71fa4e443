"""The ``Source`` contract: a closable iterator of ``FrameBatch``.

Every source (file, stdin, TCP, serial, live NIC) is one of these. A source
knows bytes, time and link types; it never knows there is a model.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType

from wirelearn.capture._batch import FrameBatch, Interface

__all__ = ["MemorySource", "Source", "SourceStats"]


@dataclass
class SourceStats:
    """Counters a source keeps up to date while it is iterated.

    The dashboard and the summary read these; sources only ever add to them.

    Attributes:
        frames: frames yielded so far.
        bytes: captured bytes yielded so far.
        bytes_read: raw input bytes consumed (file/stream position), for progress.
        bytes_total: input size when known (files), for progress and ETA; else None.
        kernel_drops: frames the kernel dropped (live capture).
        if_drops: frames the interface dropped, when the kernel reports it.
        discarded_bytes: garbage skipped while resynchronising a stream.
        oversize_dropped: records dropped for exceeding the size limit.
        truncated_records: records cut short at end of input.
        queue_depth: batches waiting between the capture thread and the consumer.
        queue_dropped: batches a full queue had to drop (never silently).
        queue_dropped_frames: the frames in those batches.
        warnings: human-readable warnings, e.g. a truncated last record.
    """

    frames: int = 0
    bytes: int = 0
    bytes_read: int = 0
    bytes_total: int | None = None
    kernel_drops: int = 0
    if_drops: int = 0
    discarded_bytes: int = 0
    oversize_dropped: int = 0
    truncated_records: int = 0
    queue_depth: int = 0
    queue_dropped: int = 0
    queue_dropped_frames: int = 0
    warnings: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, batch: FrameBatch) -> None:
        """Add a yielded batch to ``frames`` and ``bytes``."""
        with self._lock:
            self.frames += len(batch)
            self.bytes += batch.nbytes

    def warn(self, message: str) -> None:
        """Record a warning (kept to the last 100)."""
        with self._lock:
            self.warnings.append(message)
            del self.warnings[:-100]


class Source:
    """Base class of every frame source.

    Subclasses implement ``_batches()``; iteration numbers the frames from 1,
    counts them in ``stats`` and stops cleanly after ``close()``.

    Attributes:
        name: what to show as the source (a path, ``-``, ``tcp://host:port``, an interface).
        stats: live counters, see ``SourceStats``.
        at_top_speed: frames come as fast as they can be read (files), rather than as
            the traffic arrives (devices, peers); mini-batches then close on size alone.
    """

    name: str = "source"
    at_top_speed: bool = False

    def __init__(self) -> None:
        self.stats = SourceStats()
        self._closed = False

    @property
    def interfaces(self) -> tuple[Interface, ...]:
        """The interface table known so far (it may grow while iterating)."""
        return ()

    def _batches(self) -> Iterator[FrameBatch]:
        raise NotImplementedError  # a source must say how it produces batches

    def __iter__(self) -> Iterator[FrameBatch]:
        next_frame = 1
        for batch in self._batches():
            if not len(batch):
                continue
            if int(batch.frame[0]) != next_frame:
                batch = batch.renumber(next_frame)
            next_frame += len(batch)
            self.stats.count(batch)
            yield batch
            del batch  # not held while the next batch is read (memory is two batches, not three)
            if self._closed:
                return

    def close(self) -> None:
        """Release the source; safe to call more than once."""
        self._closed = True

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class MemorySource(Source):
    """A source over batches already in memory: the test double.

    Args:
        batches: the batches to yield, in order.
        name: the name to show.
    """

    def __init__(self, batches: Iterable[FrameBatch], name: str = "memory") -> None:
        super().__init__()
        self._items = list(batches)
        self.name = name

    @property
    def interfaces(self) -> tuple[Interface, ...]:
        return self._items[-1].interfaces if self._items else ()

    def _batches(self) -> Iterator[FrameBatch]:
        yield from self._items
