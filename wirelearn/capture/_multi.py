"""Several captures read one after the other as one source (``replay a.pcap b.pcapng``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np

from wirelearn.capture._batch import FrameBatch, Interface
from wirelearn.capture._reader import CaptureFileSource, open_capture
from wirelearn.capture._source import Source

__all__ = ["ConcatSource"]


class ConcatSource(Source):
    """Captures in order, numbered as one stream, with one interface table for all.

    Every file is opened (and so checked) at construction, before anything is
    read, so that a typo in the last path fails at once.

    Args:
        paths: capture paths, or ``-`` for stdin.
        batch_size: the most frames per batch; the default is the command line's
            ``--batch-size``, so that mini-batches are source batches, not copies.
    """

    def __init__(self, paths: Sequence[str], *, batch_size: int = 65536) -> None:
        super().__init__()
        if not paths:
            raise ValueError("ConcatSource needs at least one capture")
        self.name = paths[0] if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more)"
        self._sources: list[CaptureFileSource] = []
        try:
            for p in paths:
                self._sources.append(open_capture(p, batch_size=batch_size))
        except BaseException:
            for s in self._sources:
                s.close()
            raise
        totals = [s.stats.bytes_total for s in self._sources]
        self.stats.bytes_total = (
            None if any(t is None for t in totals) else sum(t or 0 for t in totals)
        )
        self._interfaces: list[Interface] = []
        self.at_top_speed = "-" not in paths

    @property
    def interfaces(self) -> tuple[Interface, ...]:
        return tuple(self._interfaces)

    @property
    def sources(self) -> tuple[CaptureFileSource, ...]:
        """The captures, in reading order."""
        return tuple(self._sources)

    def _batches(self) -> Iterator[FrameBatch]:
        done_bytes = 0
        for k, src in enumerate(self._sources):
            base = len(self._interfaces)
            seen = 0
            try:
                for batch in src:
                    # Interfaces of later files follow those of earlier ones.
                    while seen < len(batch.interfaces):
                        itf = batch.interfaces[seen]
                        if itf.name is None and len(self._sources) > 1:
                            itf = replace(itf, name=f"{src.name}#{seen}")
                        self._interfaces.append(itf)
                        seen += 1
                    self.stats.bytes_read = done_bytes + src.stats.bytes_read
                    yield batch.with_interfaces(
                        tuple(self._interfaces),
                        iface=(batch.iface + base).astype(np.int32) if base else None,
                    )
                    del batch  # not held while the next batch is read
                    if self.closed:
                        return
            finally:
                done_bytes += src.stats.bytes_read
                self.stats.bytes_read = done_bytes
                self.stats.truncated_records += src.stats.truncated_records
                self.stats.oversize_dropped += src.stats.oversize_dropped
                self.stats.discarded_bytes += src.stats.discarded_bytes
                for w in src.stats.warnings:
                    self.stats.warn(w)
                src.close()
            if k + 1 < len(self._sources) and self.closed:
                return

    def close(self) -> None:
        super().close()
        for s in self._sources:
            s.close()
