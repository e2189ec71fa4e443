"""Shared machinery of the capture parsers: record arrays, chain following, byte gathering.

A capture file is a chain of length-prefixed records: where one record ends the
next begins. Walking that chain one record at a time in Python costs several
hundred nanoseconds per record, so the parsers walk it speculatively with numpy:

1. find *candidate* record starts in a window of the buffer with a cheap
   vectorized test (the top 16 bits of the last record's timestamp for pcap,
   the EPB block type for pcapng) and compute where each candidate's record would end;
2. follow the chain from the current position through the candidates
   (``Chain.follow``): long runs where each record ends exactly where the next
   candidate begins cost one comparison per record, and a false candidate
   only costs one ``searchsorted`` to jump over it;
3. when the chain leaves the candidates (an odd record, a block of another
   type, the end of the window), the parser takes one careful step in Python,
   which is also where every error is raised, and then tries the chain again.

Candidates only speed things up: a real record that is not a candidate is
simply handled by the careful step, so both paths accept exactly the same
records.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from wirelearn.capture._batch import Interface, gather_frames
from wirelearn.errors import WirelearnError

__all__ = ["Buffer", "Chain", "InterfaceTable", "Records", "Step", "gather_frames", "u32_at"]

_I64 = NDArray[np.int64]

#: An input buffer: ``bytes``, or a read-only ``memoryview`` (a plain file read in place).
Buffer = bytes | memoryview
_EMPTY = np.zeros(0, dtype=np.int64)


@dataclass
class Records:
    """Frames found in a buffer, as parallel arrays.

    Attributes:
        start: offset of each frame's first captured byte in the buffer.
        caplen: captured lengths.
        wirelen: lengths on the wire.
        ts_ns: timestamps in ns since the epoch.
        iface: global interface index of each frame.
    """

    start: _I64
    caplen: _I64
    wirelen: _I64
    ts_ns: _I64
    iface: NDArray[np.int32]

    def __len__(self) -> int:
        return len(self.start)

    @classmethod
    def empty(cls) -> Records:
        """No records."""
        return cls(_EMPTY, _EMPTY, _EMPTY, _EMPTY, np.zeros(0, dtype=np.int32))

    @classmethod
    def concat(cls, parts: list[Records]) -> Records:
        """The records of ``parts`` in order."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(
            np.concatenate([p.start for p in parts]),
            np.concatenate([p.caplen for p in parts]),
            np.concatenate([p.wirelen for p in parts]),
            np.concatenate([p.ts_ns for p in parts]),
            np.concatenate([p.iface for p in parts]),
        )

    def head(self, n: int) -> Records:
        """The first ``n`` records."""
        return Records(
            self.start[:n], self.caplen[:n], self.wirelen[:n], self.ts_ns[:n], self.iface[:n]
        )

    def tail(self, n: int) -> Records:
        """The records after the first ``n``."""
        return Records(
            self.start[n:], self.caplen[n:], self.wirelen[n:], self.ts_ns[n:], self.iface[n:]
        )


@dataclass
class Step:
    """What one parser walk over the buffer found.

    Attributes:
        records: the complete records found, in order.
        pos: buffer offset where the walk stopped; may be past the end of the
            buffer when the parser decided to discard bytes still to come.
        need: when the walk stalled for lack of data, how many bytes from
            ``pos`` it needs before it can go on (0 when it did not stall).
        fault: the error found at ``pos``, raised once ``records`` are yielded.
    """

    records: Records
    pos: int
    need: int = 0
    fault: WirelearnError | None = None


class Chain:
    """Candidate record starts and where each candidate record would end.

    Args:
        cand: sorted candidate start offsets.
        nxt: for each candidate, the offset just past its record (> its start).
    """

    def __init__(self, cand: _I64, nxt: _I64) -> None:
        self.cand = cand
        self.nxt = nxt
        k = len(cand)
        # A "break" is a candidate whose record does not end where the next candidate starts.
        brk = np.flatnonzero(nxt[:-1] != cand[1:]) if k > 1 else _EMPTY
        self._brk = np.append(brk, k - 1).astype(np.int64) if k else _EMPTY

    def __len__(self) -> int:
        return len(self.cand)

    def follow(self, start: int, limit: int) -> tuple[_I64, int]:
        """Follow the chain of records from ``start`` through the candidates.

        Args:
            start: the offset of a record start.
            limit: the most records to take.

        Returns:
            The indices (into ``cand``) of the records on the chain, in order,
            and the offset just past the last of them (``start`` if ``start``
            is not a candidate).
        """
        cand, nxt, brk = self.cand, self.nxt, self._brk
        k = len(cand)
        i = int(np.searchsorted(cand, start))
        if i >= k or int(cand[i]) != start or limit <= 0:
            return _EMPTY, start
        pieces: list[_I64] = []
        total = 0
        while True:
            b = int(brk[int(np.searchsorted(brk, i))])
            stop = b + 1
            if total + stop - i >= limit:
                stop = i + (limit - total)
                pieces.append(np.arange(i, stop, dtype=np.int64))
                return np.concatenate(pieces), int(nxt[stop - 1])
            pieces.append(np.arange(i, stop, dtype=np.int64))
            total += stop - i
            p = int(nxt[b])
            j = int(np.searchsorted(cand, p))
            if j < k and int(cand[j]) == p:
                i = j
                continue
            return (pieces[0] if len(pieces) == 1 else np.concatenate(pieces)), p


def u32_at(buf: Buffer, order: str) -> NDArray[np.uint32]:
    """A view of ``buf`` whose item ``p`` is the 32-bit integer starting at byte ``p``.

    No copy: the view steps one byte at a time, so fancy indexing it reads any
    header field of any record directly (numpy handles the unaligned loads).

    >>> int(u32_at(bytes(range(8)), "<")[1]) == 0x04030201
    True
    """
    view: NDArray[np.uint32] = np.ndarray(
        shape=(max(len(buf) - 3, 0),), dtype=np.dtype(order + "u4"), buffer=buf, strides=(1,)
    )
    return view


class InterfaceTable:
    """The global, growing interface table a decoder shares with its parser."""

    def __init__(self) -> None:
        self._items: list[Interface] = []
        self._frozen: tuple[Interface, ...] = ()

    def add(self, interface: Interface, *, reuse: bool = False) -> int:
        """Append ``interface`` and return its index.

        Args:
            interface: the interface to add.
            reuse: return the index of an equal interface already present instead.
        """
        if reuse and interface in self._items:
            return self._items.index(interface)
        self._items.append(interface)
        self._frozen = tuple(self._items)
        return len(self._items) - 1

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Interface:
        return self._items[index]

    def snapshot(self) -> tuple[Interface, ...]:
        """The table as a tuple (the same object until it changes)."""
        return self._frozen
