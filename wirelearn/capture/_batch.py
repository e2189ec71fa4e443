"""``FrameBatch``: the unit that flows from every source to every consumer.

A batch holds thousands of raw frames as a handful of numpy arrays: one byte
buffer plus offsets, and one array per per-frame attribute. There is no Python
object per frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = ["LINKTYPE_NAMES", "FrameBatch", "Interface", "linktype_name"]

#: Link types wirelearn names; others print as their number.
LINKTYPE_NAMES: dict[int, str] = {
    0: "NULL",
    1: "EN10MB",
    8: "SLIP",
    9: "PPP",
    12: "RAW",
    14: "RAW",
    50: "PPP_HDLC",
    101: "RAW",
    104: "C_HDLC",
    105: "IEEE802_11",
    108: "LOOP",
    113: "LINUX_SLL",
    127: "IEEE802_11_RADIOTAP",
    228: "IPV4",
    229: "IPV6",
    276: "LINUX_SLL2",
}


def linktype_name(linktype: int) -> str:
    """Return the libpcap name of a link type, or ``LINKTYPE_<n>``.

    >>> linktype_name(1), linktype_name(4242)
    ('EN10MB', 'LINKTYPE_4242')
    """
    return LINKTYPE_NAMES.get(int(linktype), f"LINKTYPE_{int(linktype)}")


@dataclass(frozen=True)
class Interface:
    """One capture interface, as a pcapng IDB describes it.

    Args:
        linktype: the LINKTYPE_* value of its frames.
        snaplen: the snapshot length, 0 when unlimited.
        name: the interface name, if known.
        tsresol: timestamp units per second in the file it came from.
    """

    linktype: int
    snaplen: int = 262144
    name: str | None = None
    tsresol: int = 1_000_000


_I64 = NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class FrameBatch:
    """A batch of raw frames held in numpy arrays.

    Args:
        frame: 1-based frame numbers in the stream (``int64[n]``). They are
            contiguous for a fresh batch and keep their numbers after filtering.
        ts_ns: capture timestamps, integer nanoseconds since the epoch (``int64[n]``).
        caplen: captured lengths (``int64[n]``); ``offsets[i+1] - offsets[i]``.
        wirelen: lengths on the wire (``int64[n]``).
        iface: index into ``interfaces`` for each frame (``int32[n]``).
        data: every captured byte, frames back to back (``uint8``).
        offsets: start of frame ``i`` in ``data`` at ``offsets[i]``, with a final
            end offset (``int64[n+1]``).
        interfaces: the interface table ``iface`` indexes into.
    """

    frame: _I64
    ts_ns: _I64
    caplen: _I64
    wirelen: _I64
    iface: NDArray[np.int32]
    data: NDArray[np.uint8]
    offsets: _I64
    interfaces: tuple[Interface, ...] = field(default=())

    def __post_init__(self) -> None:
        n = len(self.frame)
        for name in ("ts_ns", "caplen", "wirelen", "iface"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"FrameBatch.{name} has {len(getattr(self, name))} items, not {n}")
        if len(self.offsets) != n + 1:
            raise ValueError(f"FrameBatch.offsets has {len(self.offsets)} items, not {n + 1}")

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def empty(cls, interfaces: tuple[Interface, ...] = ()) -> FrameBatch:
        """A batch of no frames."""
        z = np.zeros(0, dtype=np.int64)
        return cls(
            frame=z,
            ts_ns=z,
            caplen=z,
            wirelen=z,
            iface=np.zeros(0, dtype=np.int32),
            data=np.zeros(0, dtype=np.uint8),
            offsets=np.zeros(1, dtype=np.int64),
            interfaces=interfaces,
        )

    @classmethod
    def from_frames(
        cls,
        frames: Sequence[bytes],
        *,
        ts_ns: Sequence[int] | NDArray[np.int64] | None = None,
        linktype: int = 1,
        wirelen: Sequence[int] | NDArray[np.int64] | None = None,
        first_frame: int = 1,
        interfaces: tuple[Interface, ...] | None = None,
        iface: Sequence[int] | NDArray[np.int32] | None = None,
    ) -> FrameBatch:
        """Build a batch from a list of frame byte strings (tests, generators).

        Args:
            frames: the captured bytes of each frame.
            ts_ns: timestamps in ns; defaults to one frame per millisecond from 0.
            linktype: link type of a single default interface.
            wirelen: wire lengths; default to the captured lengths.
            first_frame: the frame number of the first frame.
            interfaces: an explicit interface table (overrides ``linktype``).
            iface: interface index of each frame; defaults to 0.
        """
        n = len(frames)
        caplen = np.fromiter((len(f) for f in frames), dtype=np.int64, count=n)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(caplen, out=offsets[1:])
        data = np.frombuffer(b"".join(frames), dtype=np.uint8).copy()
        ts = (
            np.arange(n, dtype=np.int64) * 1_000_000
            if ts_ns is None
            else np.asarray(ts_ns, dtype=np.int64)
        )
        wl = caplen.copy() if wirelen is None else np.asarray(wirelen, dtype=np.int64)
        ifs = interfaces if interfaces is not None else (Interface(linktype=linktype),)
        ifc = np.zeros(n, dtype=np.int32) if iface is None else np.asarray(iface, dtype=np.int32)
        return cls(
            frame=np.arange(first_frame, first_frame + n, dtype=np.int64),
            ts_ns=ts,
            caplen=caplen,
            wirelen=wl,
            iface=ifc,
            data=data,
            offsets=offsets,
            interfaces=ifs,
        )

    @classmethod
    def concat(cls, batches: Iterable[FrameBatch]) -> FrameBatch:
        """Concatenate batches that share one interface table (the last one wins)."""
        bs = [b for b in batches]
        if not bs:
            return cls.empty()
        if len(bs) == 1:
            return bs[0]
        interfaces = max((b.interfaces for b in bs), key=len)
        datas = [b.data[b.offsets[0] : b.offsets[-1]] for b in bs]
        sizes = np.array([len(d) for d in datas], dtype=np.int64)
        base = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        offsets = np.concatenate(
            [b.offsets[:-1] - b.offsets[0] + base[i] for i, b in enumerate(bs)]
            + [np.array([int(sizes.sum())], dtype=np.int64)]
        )
        return cls(
            frame=np.concatenate([b.frame for b in bs]),
            ts_ns=np.concatenate([b.ts_ns for b in bs]),
            caplen=np.concatenate([b.caplen for b in bs]),
            wirelen=np.concatenate([b.wirelen for b in bs]),
            iface=np.concatenate([b.iface for b in bs]),
            data=np.concatenate(datas) if datas else np.zeros(0, np.uint8),
            offsets=offsets.astype(np.int64),
            interfaces=interfaces,
        )

    # --- access -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def linktype(self) -> NDArray[np.int64]:
        """The link type of each frame (``int64[n]``), from the interface table."""
        if not self.interfaces:
            return np.ones(len(self), dtype=np.int64)
        table = np.array([i.linktype for i in self.interfaces], dtype=np.int64)
        return table[np.clip(self.iface, 0, len(table) - 1)]

    @property
    def nbytes(self) -> int:
        """Captured bytes in the batch."""
        return int(self.caplen.sum())

    def frame_bytes(self, i: int) -> bytes:
        """The captured bytes of the ``i``-th frame of this batch (not frame number ``i``)."""
        return self.data[self.offsets[i] : self.offsets[i + 1]].tobytes()

    def take(self, index: NDArray[np.bool_] | NDArray[np.integer]) -> FrameBatch:
        """A new batch of the selected frames, in the given order, keeping frame numbers.

        Args:
            index: a boolean mask of length ``n`` or an array of positions.
        """
        idx = np.asarray(index)
        if idx.dtype == np.bool_:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False)
        if len(idx) == len(self) and np.array_equal(idx, np.arange(len(self))):
            return self
        starts = self.offsets[idx]
        lens = self.caplen[idx]
        new_off = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lens, out=new_off[1:])
        total = int(new_off[-1])
        # Gather every selected byte with one fancy index: position = start + (k - new_start).
        if total:
            owner = np.repeat(np.arange(len(idx)), lens)
            pos = starts[owner] + (np.arange(total, dtype=np.int64) - new_off[owner])
            data = self.data[pos]
        else:
            data = np.zeros(0, dtype=np.uint8)
        return FrameBatch(
            frame=self.frame[idx],
            ts_ns=self.ts_ns[idx],
            caplen=lens,
            wirelen=self.wirelen[idx],
            iface=self.iface[idx],
            data=data,
            offsets=new_off,
            interfaces=self.interfaces,
        )

    def slice(self, start: int, stop: int) -> FrameBatch:
        """Frames ``start:stop`` of this batch, sharing the byte buffer."""
        start, stop, _ = slice(start, stop).indices(len(self))
        stop = max(stop, start)
        return FrameBatch(
            frame=self.frame[start:stop],
            ts_ns=self.ts_ns[start:stop],
            caplen=self.caplen[start:stop],
            wirelen=self.wirelen[start:stop],
            iface=self.iface[start:stop],
            data=self.data,
            offsets=self.offsets[start : stop + 1],
            interfaces=self.interfaces,
        )

    def compact(self) -> FrameBatch:
        """A copy whose buffer holds only this batch's bytes and whose offsets start at 0."""
        lo, hi = int(self.offsets[0]), int(self.offsets[-1])
        if lo == 0 and hi == len(self.data):
            return self
        return FrameBatch(
            frame=self.frame,
            ts_ns=self.ts_ns,
            caplen=self.caplen,
            wirelen=self.wirelen,
            iface=self.iface,
            data=self.data[lo:hi].copy(),
            offsets=self.offsets - lo,
            interfaces=self.interfaces,
        )

    def renumber(self, first_frame: int) -> FrameBatch:
        """The same frames numbered ``first_frame, first_frame + 1, ...``."""
        return FrameBatch(
            frame=np.arange(first_frame, first_frame + len(self), dtype=np.int64),
            ts_ns=self.ts_ns,
            caplen=self.caplen,
            wirelen=self.wirelen,
            iface=self.iface,
            data=self.data,
            offsets=self.offsets,
            interfaces=self.interfaces,
        )
