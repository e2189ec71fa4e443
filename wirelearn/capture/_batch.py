"""``FrameBatch``: the unit that flows from every source to every consumer.

A batch holds thousands of raw frames as a handful of numpy arrays: one byte
buffer plus offsets, and one array per per-frame attribute. There is no Python
object per frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import FrozenInstanceError, dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["LINKTYPE_NAMES", "FrameBatch", "Interface", "gather_frames", "linktype_name"]

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
_U8 = NDArray[np.uint8]


def gather_frames(buf: _U8, start: _I64, caplen: _I64, out: _U8 | None = None) -> _U8:
    """Copy the bytes of each frame out of ``buf``, back to back.

    ``start`` must be increasing and the frames must not overlap (true of any
    capture file). One boolean mask over the span, then one boolean-index
    gather: no per-frame Python and one byte of temporary memory per byte of
    input. (``np.compress`` with ``out=`` would avoid nothing: it builds an
    8-byte index per selected byte, and is slower than the gather plus a copy.)

    Args:
        buf: the buffer.
        start: where each frame starts in ``buf``.
        caplen: each frame's length.
        out: where to put the bytes (exactly ``caplen.sum()`` long), or None for a new array.

    >>> buf = np.frombuffer(b"..ab...cde", dtype=np.uint8)
    >>> gather_frames(buf, np.array([2, 7]), np.array([2, 3])).tobytes()
    b'abcde'
    """
    n = len(start)
    if n == 0:
        return np.zeros(0, dtype=np.uint8) if out is None else out
    lo = int(start[0])
    hi = int(start[-1] + caplen[-1])
    span: _U8 = buf[lo:hi]
    if n == 1 or hi - lo == int(caplen.sum()):
        # One frame, or frames already back to back: a plain copy.
        if out is not None:
            out[:] = span
            return out
        one: _U8 = span.copy()
        return one
    ends = start + caplen
    counts = np.empty(2 * n - 1, dtype=np.int64)
    counts[0::2] = caplen
    counts[1::2] = start[1:] - ends[:-1]
    pattern = np.zeros(2 * n - 1, dtype=np.bool_)
    pattern[0::2] = True
    mask = np.repeat(pattern, counts)
    data: _U8 = span[mask]
    if out is not None:
        out[:] = data
        return out
    return data


def _offsets(caplen: _I64) -> _I64:
    """Where each frame starts when frames of ``caplen`` bytes are packed back to back, then the end."""
    offsets = np.zeros(len(caplen) + 1, dtype=np.int64)
    np.cumsum(caplen, out=offsets[1:])
    return offsets


class FrameBatch:
    """A batch of raw frames held in numpy arrays.

    A batch is immutable. Its bytes are held one of two ways, invisibly to its
    users: *packed*, frames back to back in ``data`` as ``offsets`` describes;
    or as a *view* into the buffer a file was read into (``FrameBatch.view``),
    frame ``i`` at ``buffer[start[i] : start[i] + caplen[i]]``, so that reading
    a file copies no frame bytes. A view packs its bytes the first time
    ``data`` or ``offsets`` is read, and keeps them; ``spans()`` gives every
    frame's bytes either way without packing (the decoder's access).

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
    interfaces: tuple[Interface, ...]

    def __init__(
        self,
        frame: _I64,
        ts_ns: _I64,
        caplen: _I64,
        wirelen: _I64,
        iface: NDArray[np.int32],
        data: _U8,
        offsets: _I64,
        interfaces: tuple[Interface, ...] = (),
    ) -> None:
        self._init(frame, ts_ns, caplen, wirelen, iface, interfaces)
        if len(offsets) != len(frame) + 1:
            raise ValueError(f"FrameBatch.offsets has {len(offsets)} items, not {len(frame) + 1}")
        d = self.__dict__
        d["_data"], d["_offsets"] = data, offsets
        d["_buf"], d["_start"] = None, None

    def _init(
        self,
        frame: _I64,
        ts_ns: _I64,
        caplen: _I64,
        wirelen: _I64,
        iface: NDArray[np.int32],
        interfaces: tuple[Interface, ...],
    ) -> None:
        n = len(frame)
        d = self.__dict__
        d["frame"], d["ts_ns"], d["caplen"], d["wirelen"], d["iface"] = (
            frame,
            ts_ns,
            caplen,
            wirelen,
            iface,
        )
        d["interfaces"] = interfaces
        for name in ("ts_ns", "caplen", "wirelen", "iface"):
            if len(d[name]) != n:
                raise ValueError(f"FrameBatch.{name} has {len(d[name])} items, not {n}")

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __repr__(self) -> str:
        how = "view" if self.is_view else "packed"
        return f"FrameBatch({len(self)} frames, {self.nbytes} bytes, {how})"

    @classmethod
    def view(
        cls,
        buffer: _U8,
        start: _I64,
        *,
        frame: _I64,
        ts_ns: _I64,
        caplen: _I64,
        wirelen: _I64,
        iface: NDArray[np.int32],
        interfaces: tuple[Interface, ...] = (),
    ) -> FrameBatch:
        """A batch whose frame ``i`` is ``buffer[start[i] : start[i] + caplen[i]]``.

        No byte is copied. ``buffer`` must never change afterwards (a read-only
        array over ``bytes`` is safest), ``start`` must be increasing and the
        frames must not overlap, as in any capture file.

        Args:
            buffer: the bytes the frames lie in (``uint8``).
            start: where each frame starts in ``buffer`` (``int64[n]``).
            frame: as for the constructor; likewise ``ts_ns`` to ``interfaces``.
            ts_ns: capture timestamps in ns.
            caplen: captured lengths.
            wirelen: lengths on the wire.
            iface: interface indices.
            interfaces: the interface table.

        >>> buf = np.frombuffer(b"hdrABChdrDE", dtype=np.uint8)
        >>> b = FrameBatch.view(buf, np.array([3, 9]), frame=np.array([1, 2]),
        ...     ts_ns=np.zeros(2, np.int64), caplen=np.array([3, 2]),
        ...     wirelen=np.array([3, 2]), iface=np.zeros(2, np.int32))
        >>> b.frame_bytes(1), b.is_view, b.data.tobytes(), b.offsets.tolist()
        (b'DE', True, b'ABCDE', [0, 3, 5])
        """
        self = cls.__new__(cls)
        self._init(frame, ts_ns, caplen, wirelen, iface, interfaces)
        if len(start) != len(frame):
            raise ValueError(f"FrameBatch.view start has {len(start)} items, not {len(frame)}")
        d = self.__dict__
        d["_data"], d["_offsets"] = None, None
        d["_buf"], d["_start"] = buffer, start
        return self

    # --- the bytes ----------------------------------------------------------------------------

    @property
    def is_view(self) -> bool:
        """Whether the bytes are still a view into a read buffer (not yet packed)."""
        return self.__dict__["_data"] is None

    @property
    def data(self) -> _U8:
        """Every captured byte, frames back to back (``uint8``); packs a view once."""
        d = self.__dict__
        if d["_data"] is None:
            self._pack()
        packed: _U8 = d["_data"]
        return packed

    @property
    def offsets(self) -> _I64:
        """Start of frame ``i`` in ``data`` at ``offsets[i]``, with a final end (``int64[n+1]``)."""
        d = self.__dict__
        if d["_offsets"] is None:
            self._pack()
        offsets: _I64 = d["_offsets"]
        return offsets

    def _packed(self) -> tuple[_U8, _I64]:
        """A view's bytes packed back to back, and their offsets (the view is unchanged)."""
        d = self.__dict__
        return gather_frames(d["_buf"], d["_start"], self.caplen), _offsets(self.caplen)

    def _pack(self) -> None:
        d = self.__dict__
        # Packed once and for all: the read buffer is no longer needed.
        d["_data"], d["_offsets"] = self._packed()
        d["_buf"], d["_start"] = None, None

    def spans(self) -> tuple[_U8, _I64, _I64]:
        """The buffer the frames lie in and where each starts and ends in it, without packing.

        Returns:
            ``(buffer, start, end)``: frame ``i`` is ``buffer[start[i]:end[i]]``.
        """
        d = self.__dict__
        if d["_data"] is not None:
            offsets: _I64 = d["_offsets"]
            return d["_data"], offsets[:-1], offsets[1:]
        start: _I64 = d["_start"]
        return d["_buf"], start, start + self.caplen

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
        offsets = _offsets(caplen)
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
        joined = _join_views(bs)
        if joined is not None:
            buf, start = joined
            return cls.view(
                buf,
                start,
                frame=np.concatenate([b.frame for b in bs]),
                ts_ns=np.concatenate([b.ts_ns for b in bs]),
                caplen=np.concatenate([b.caplen for b in bs]),
                wirelen=np.concatenate([b.wirelen for b in bs]),
                iface=np.concatenate([b.iface for b in bs]),
                interfaces=interfaces,
            )
        caplen = np.concatenate([b.caplen for b in bs])
        offsets = _offsets(caplen)
        # Each part's bytes go straight to their place: a view is not packed on its own first.
        data = np.empty(int(offsets[-1]), dtype=np.uint8)
        at = 0
        for b in bs:
            buf, start, _end = b.spans()
            size = int(b.caplen.sum())
            gather_frames(buf, start, b.caplen, out=data[at : at + size])
            at += size
        return cls(
            frame=np.concatenate([b.frame for b in bs]),
            ts_ns=np.concatenate([b.ts_ns for b in bs]),
            caplen=caplen,
            wirelen=np.concatenate([b.wirelen for b in bs]),
            iface=np.concatenate([b.iface for b in bs]),
            data=data,
            offsets=offsets,
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
        buf, start, end = self.spans()
        return buf[start[i] : end[i]].tobytes()

    def _with(
        self,
        *,
        frame: _I64 | None = None,
        iface: NDArray[np.int32] | None = None,
        interfaces: tuple[Interface, ...] | None = None,
    ) -> FrameBatch:
        """The same bytes (packed or view) with frame numbers or interfaces replaced."""
        fr = self.frame if frame is None else frame
        ifc = self.iface if iface is None else iface
        ifs = self.interfaces if interfaces is None else interfaces
        d = self.__dict__
        if d["_data"] is not None:
            return FrameBatch(
                frame=fr,
                ts_ns=self.ts_ns,
                caplen=self.caplen,
                wirelen=self.wirelen,
                iface=ifc,
                data=d["_data"],
                offsets=d["_offsets"],
                interfaces=ifs,
            )
        return FrameBatch.view(
            d["_buf"],
            d["_start"],
            frame=fr,
            ts_ns=self.ts_ns,
            caplen=self.caplen,
            wirelen=self.wirelen,
            iface=ifc,
            interfaces=ifs,
        )

    def with_interfaces(
        self, interfaces: tuple[Interface, ...], iface: NDArray[np.int32] | None = None
    ) -> FrameBatch:
        """The same frames, sharing their bytes (packed or not), with another interface table.

        Args:
            interfaces: the new table.
            iface: new interface indices, or None to keep them.
        """
        return self._with(iface=iface, interfaces=interfaces)

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
        buf, all_starts, _end = self.spans()
        starts = all_starts[idx]
        lens = self.caplen[idx]
        new_off = _offsets(lens)
        total = int(new_off[-1])
        if total and _dense_run(starts, lens, total):
            # Frames in buffer order, not sparse: one mask over their span (an index per
            # byte costs about 8 bytes of temporaries and ~15x the time).
            data = gather_frames(buf, starts, lens)
        elif total:
            # Gather every selected byte with one fancy index: position = start + (k - new_start).
            owner = np.repeat(np.arange(len(idx)), lens)
            pos = starts[owner] + (np.arange(total, dtype=np.int64) - new_off[owner])
            data = buf[pos]
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
        d = self.__dict__
        if d["_data"] is None:
            return FrameBatch.view(
                d["_buf"],
                d["_start"][start:stop],
                frame=self.frame[start:stop],
                ts_ns=self.ts_ns[start:stop],
                caplen=self.caplen[start:stop],
                wirelen=self.wirelen[start:stop],
                iface=self.iface[start:stop],
                interfaces=self.interfaces,
            )
        return FrameBatch(
            frame=self.frame[start:stop],
            ts_ns=self.ts_ns[start:stop],
            caplen=self.caplen[start:stop],
            wirelen=self.wirelen[start:stop],
            iface=self.iface[start:stop],
            data=d["_data"],
            offsets=d["_offsets"][start : stop + 1],
            interfaces=self.interfaces,
        )

    def compact(self) -> FrameBatch:
        """A copy whose buffer holds only this batch's bytes and whose offsets start at 0.

        A view stays a view (its bytes are packed only when asked for) over a copy
        of the stretch of its buffer its frames lie in, record headers included.
        """
        d = self.__dict__
        if d["_data"] is None and len(self):
            buf, start, end = self.spans()
            lo, hi = int(start[0]), int(end[-1])
            if lo == 0 and hi == len(buf):
                return self
            if _dense(hi - lo, self):
                return self._with_buffer(buf[lo:hi].copy(), start - lo)
        if d["_data"] is None:
            data, offsets = self._packed()
            return FrameBatch(
                frame=self.frame,
                ts_ns=self.ts_ns,
                caplen=self.caplen,
                wirelen=self.wirelen,
                iface=self.iface,
                data=data,
                offsets=offsets,
                interfaces=self.interfaces,
            )
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

    def _with_buffer(self, buffer: _U8, start: _I64) -> FrameBatch:
        return FrameBatch.view(
            buffer,
            start,
            frame=self.frame,
            ts_ns=self.ts_ns,
            caplen=self.caplen,
            wirelen=self.wirelen,
            iface=self.iface,
            interfaces=self.interfaces,
        )

    def renumber(self, first_frame: int) -> FrameBatch:
        """The same frames numbered ``first_frame, first_frame + 1, ...``."""
        return self._with(frame=np.arange(first_frame, first_frame + len(self), dtype=np.int64))


def _dense(span: int, batch: FrameBatch) -> bool:
    """Whether ``span`` bytes holding ``batch``'s frames are little more than the frames
    (record headers between them): then copying the span beats gathering the frames."""
    return span <= 2 * batch.nbytes + 64 * len(batch)


def _dense_run(starts: _I64, lens: _I64, total: int) -> bool:
    """Whether frames at ``starts`` are in buffer order without overlap, and fill at least an
    eighth of the span from the first to the last: then ``gather_frames`` (a mask over the
    span, ~1 ns per byte of it) beats an index per selected byte (~10 ns each)."""
    if len(starts) < 2:
        return True
    span = int(starts[-1] + lens[-1] - starts[0])
    return 8 * total >= span and bool((starts[1:] >= starts[:-1] + lens[:-1]).all())


def _join_views(batches: list[FrameBatch]) -> tuple[_U8, _I64] | None:
    """One buffer holding the stretches of buffer of ``batches`` (some of them views)
    back to back, and where each frame starts in it; None to pack them instead."""
    parts = [b for b in batches if len(b)]
    if not any(b.is_view for b in parts):
        return None
    spans = []
    for b in parts:
        buf, start, end = b.spans()
        lo, hi = int(start[0]), int(end[-1])
        if not _dense(hi - lo, b):
            return None
        spans.append((buf, start, lo, hi))
    out = np.empty(sum(hi - lo for _b, _s, lo, hi in spans), dtype=np.uint8)
    starts = []
    at = 0
    # One copy of each stretch (headers and all): much cheaper than gathering frames.
    for buf, start, lo, hi in spans:
        out[at : at + hi - lo] = buf[lo:hi]
        starts.append(start - (lo - at))
        at += hi - lo
    return out, (np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64))
