"""``BackgroundSource``: any source, iterated on its own thread behind a bounded queue.

The capture side never waits for the consumer: when the queue is full the
newest batch is dropped and counted (``stats.queue_dropped`` batches,
``dropped_frames`` frames, and a warning), so a slow learner costs sampled
batches rather than kernel drops. The consumer can watch ``depth()`` to
decide to sample before that happens.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator

from wirelearn.capture._batch import FrameBatch, Interface
from wirelearn.capture._source import Source
from wirelearn.errors import ConfigError

__all__ = ["BackgroundSource"]

#: At most one "queue full" warning per this many seconds.
WARN_INTERVAL_S = 5.0
#: How long ``close()`` waits for the capture thread to finish.
JOIN_TIMEOUT_S = 5.0


class BackgroundSource(Source):
    """Run another source's iteration on a daemon thread, feeding a bounded queue.

    Iterating yields the inner source's batches in order (frame numbers are
    the inner source's, so dropped batches leave gaps). An exception from the
    inner source is raised in the consumer after every batch queued before it.
    The thread starts on first iteration (or ``start()``).

    ``stats`` is the inner source's ``SourceStats`` object, so its counters
    (frames captured, kernel drops, ...) are live; this wrapper adds
    ``queue_depth`` (current) and ``queue_dropped`` (batches dropped).

    Args:
        inner: the source to run; closed by ``close()``.
        max_batches: queue capacity in batches, at least 1.

    Raises:
        ConfigError: ``max_batches`` below 1.
    """

    def __init__(self, inner: Source, *, max_batches: int = 64) -> None:
        if isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1:
            raise ConfigError(f"max_batches must be an integer of at least 1, not {max_batches!r}")
        super().__init__()
        self.inner = inner
        self.name = inner.name
        self.stats = inner.stats
        self.max_batches = max_batches
        self.dropped_frames = 0
        self._queue: deque[FrameBatch] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._done = False
        self._error: BaseException | None = None
        self._last_warning = -WARN_INTERVAL_S

    @property
    def interfaces(self) -> tuple[Interface, ...]:
        return self.inner.interfaces

    def depth(self) -> int:
        """Batches waiting in the queue now."""
        return len(self._queue)

    @property
    def running(self) -> bool:
        """Whether the capture thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the capture thread (iteration does this by itself); idempotent."""
        with self._cond:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(
                target=self._produce, name=f"wirelearn-capture:{self.name}", daemon=True
            )
            self._thread.start()

    # --- producer (capture thread) ---------------------------------------------------------------

    def _produce(self) -> None:
        try:
            for batch in self.inner:
                if self._closed:
                    break
                with self._cond:
                    if len(self._queue) >= self.max_batches:
                        self._drop(batch)
                    else:
                        self._queue.append(batch)
                        self.stats.queue_depth = len(self._queue)
                        self._cond.notify()
        except BaseException as exc:  # handed to the consumer, re-raised there
            if not self._closed:
                self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _drop(self, batch: FrameBatch) -> None:
        """Count a batch the full queue cannot take; the caller holds the condition."""
        self.stats.queue_dropped += 1
        self.dropped_frames += len(batch)
        self.stats.queue_dropped_frames += len(batch)
        now = time.monotonic()
        if now - self._last_warning >= WARN_INTERVAL_S:
            self._last_warning = now
            self.stats.warn(
                f"{self.name}: consumer too slow, queue of {self.max_batches} batches full: "
                f"dropped {self.stats.queue_dropped} batches ({self.dropped_frames} frames) so far"
            )

    # --- consumer ---------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[FrameBatch]:
        # Not Source.__iter__: the inner source already numbers and counts the frames.
        self.start()
        while True:
            with self._cond:
                while not self._queue and not self._done and not self._closed:
                    self._cond.wait()
                if self._queue:
                    batch = self._queue.popleft()
                    self.stats.queue_depth = len(self._queue)
                elif self._closed:
                    return
                else:
                    error, self._error = self._error, None
                    if error is not None:
                        raise error
                    return
            yield batch

    def close(self) -> None:
        """Stop the capture thread and close the inner source; safe from any thread."""
        with self._cond:
            first = not self._closed
            self._closed = True
            self._queue.clear()
            self.stats.queue_depth = 0
            self._cond.notify_all()
        if first:
            self.inner.close()
        # Every caller waits for the thread, not just the first one.
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                self.stats.warn(
                    f"{self.name}: capture thread did not stop within {JOIN_TIMEOUT_S} s"
                )
