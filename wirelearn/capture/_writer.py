"""Streaming pcap and pcapng writers, vectorized over batches.

The encoders are pure functions from a batch to bytes, so the sender can use
them on sockets and serial ports too; the writers add files, flushing and
error mapping on top.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
from types import TracebackType
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray

from wirelearn.capture._batch import FrameBatch, Interface, gather_frames
from wirelearn.errors import ConfigError, OutputError

__all__ = [
    "PcapWriter",
    "PcapngWriter",
    "Writer",
    "encode_pcap_header",
    "encode_pcap_records",
    "encode_pcapng_epbs",
    "encode_pcapng_idb",
    "encode_pcapng_shb",
    "open_writer",
]

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D


def encode_pcap_header(linktype: int, snaplen: int = 262144, *, nanosecond: bool = True) -> bytes:
    """The 24-byte little-endian pcap global header."""
    magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
    return struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def _interleave(
    headers: NDArray[np.uint8],
    batch: FrameBatch,
    pad_to: int = 1,
    trailers: NDArray[np.uint8] | None = None,
) -> NDArray[np.uint8]:
    """Lay out ``header_i + bytes_i (+ zero padding) (+ trailer_i)`` for every frame, vectorized.

    The frame bytes are placed first, read where they lie (``batch.spans()``: a
    view batch is never packed), then every header, padding and trailer byte is
    written over whatever lay between them. Only the fixed-size parts are indexed.
    """
    n = len(batch)
    if n == 0:
        return np.zeros(0, dtype=np.uint8)
    hlen = headers.shape[1]
    tlen = 0 if trailers is None else trailers.shape[1]
    caplen = batch.caplen
    padded = (caplen + (pad_to - 1)) // pad_to * pad_to
    rec_len = hlen + padded + tlen
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(rec_len[:-1], out=starts[1:])
    total_out = int(rec_len.sum())
    out = np.empty(total_out, dtype=np.uint8)
    _place_frames(out, starts + hlen, batch)
    # Every byte that is not a frame byte is written now, over what the frames' copy left there.
    hpos = (starts[:, None] + np.arange(hlen)).ravel()
    out[hpos] = headers.ravel()
    if pad_to > 1:
        pad = padded - caplen
        grid = np.arange(pad_to - 1)
        ppos = (starts + hlen + caplen)[:, None] + grid
        out[ppos[grid < pad[:, None]]] = 0
    if trailers is not None:
        tpos = ((starts + hlen + padded)[:, None] + np.arange(tlen)).ravel()
        out[tpos] = trailers.ravel()
    return out


def _place_frames(out: NDArray[np.uint8], dst: NDArray[np.int64], batch: FrameBatch) -> None:
    """Copy frame ``i`` of ``batch`` to ``out[dst[i]:dst[i] + caplen[i]]``.

    Bytes of ``out`` between the frames may be overwritten with anything: the
    caller writes them afterwards. The cheapest correct copy is chosen:

    - frames that lie as far apart in the batch's buffer as in ``out`` (pcap
      records read from a pcap file and written as pcap) are copied as whole
      runs, record headers and all, one slice per run;
    - otherwise, if the bytes between frames in the buffer fit in the gaps of
      ``out`` (a packed batch, or pcap records written as pcapng), the whole
      stretch of buffer is scattered with one boolean mask, each gap's bytes
      landing just before the next frame;
    - otherwise (frames far apart in their buffer) they are gathered first.
    """
    n = len(dst)
    caplen = batch.caplen
    buf, start, end = batch.spans()
    shift = dst - start
    breaks = np.flatnonzero(shift[1:] != shift[:-1]) + 1
    if 4 * len(breaks) < n:
        # Few runs (a run is at least as long as its frames): slice copies at memcpy speed.
        firsts = [0, *breaks.tolist()]
        lasts = [*(breaks - 1).tolist(), n - 1]
        for a, z in zip(firsts, lasts, strict=True):
            out[int(dst[a]) : int(dst[z] + caplen[z])] = buf[int(start[a]) : int(end[z])]
        return
    gap = start[1:] - end[:-1]
    room = dst[1:] - (dst[:-1] + caplen[:-1])
    lo, hi = int(start[0]), int(end[-1])
    counts = np.empty(2 * n + 1, dtype=np.int64)
    pattern = np.zeros(2 * n + 1, dtype=np.bool_)
    pattern[1::2] = True
    counts[0] = dst[0]
    counts[-1] = len(out) - int(dst[-1] + caplen[-1])
    if bool((gap >= 0).all()) and bool((gap <= room).all()):
        # Frame i and the buffer's gap before it land at the end of out's gap before frame i.
        counts[1] = caplen[0]
        counts[3::2] = gap + caplen[1:]
        counts[2:-1:2] = room - gap
        out[np.repeat(pattern, counts)] = buf[lo:hi]
        return
    counts[1::2] = caplen
    counts[2:-1:2] = room
    out[np.repeat(pattern, counts)] = gather_frames(buf, start, caplen)


def encode_pcap_records(batch: FrameBatch, *, nanosecond: bool = True) -> bytes:
    """Encode every frame of a batch as little-endian pcap records."""
    return _pcap_records(batch, nanosecond=nanosecond).tobytes()


def _pcap_records(batch: FrameBatch, *, nanosecond: bool) -> NDArray[np.uint8]:
    """``encode_pcap_records`` as an array: the writer hands it to ``os.write`` uncopied."""
    n = len(batch)
    unit = 1 if nanosecond else 1000
    sec, frac = np.divmod(batch.ts_ns, 1_000_000_000)
    hdr = np.empty((n, 4), dtype="<u4")
    hdr[:, 0] = sec.astype(np.uint32)
    hdr[:, 1] = (frac // unit).astype(np.uint32)
    hdr[:, 2] = batch.caplen.astype(np.uint32)
    hdr[:, 3] = batch.wirelen.astype(np.uint32)
    return _interleave(hdr.view(np.uint8).reshape(n, 16), batch)


def encode_pcapng_shb() -> bytes:
    """A little-endian pcapng Section Header Block with no options."""
    return struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)


def _option(code: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


def encode_pcapng_idb(interface: Interface) -> bytes:
    """An Interface Description Block with ``if_name`` and a nanosecond ``if_tsresol``."""
    opts = b""
    if interface.name:
        opts += _option(2, interface.name.encode("utf-8", "replace"))
    opts += _option(9, b"\x09")
    opts += _option(0, b"")
    body = struct.pack("<HHI", interface.linktype, 0, interface.snaplen) + opts
    total = 12 + len(body)
    return struct.pack("<II", 1, total) + body + struct.pack("<I", total)


def encode_pcapng_epbs(batch: FrameBatch, iface_map: NDArray[np.int64] | None = None) -> bytes:
    """Encode every frame as an Enhanced Packet Block with nanosecond timestamps.

    Args:
        batch: the frames.
        iface_map: maps the batch's ``iface`` values to the file's interface ids
            (identity when omitted).
    """
    return _pcapng_epbs(batch, iface_map).tobytes()


def _pcapng_epbs(batch: FrameBatch, iface_map: NDArray[np.int64] | None) -> NDArray[np.uint8]:
    """``encode_pcapng_epbs`` as an array: the writer hands it to ``os.write`` uncopied."""
    n = len(batch)
    if n == 0:
        return np.zeros(0, dtype=np.uint8)
    padded = (batch.caplen + 3) // 4 * 4
    total = 32 + padded
    ifid = batch.iface.astype(np.int64) if iface_map is None else iface_map[batch.iface]
    hdr = np.empty((n, 7), dtype="<u4")
    hdr[:, 0] = 6
    hdr[:, 1] = total.astype(np.uint32)
    hdr[:, 2] = ifid.astype(np.uint32)
    ts = batch.ts_ns.astype(np.uint64)
    hdr[:, 3] = (ts >> np.uint64(32)).astype(np.uint32)
    hdr[:, 4] = (ts & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    hdr[:, 5] = batch.caplen.astype(np.uint32)
    hdr[:, 6] = batch.wirelen.astype(np.uint32)
    trailer = total.astype("<u4").reshape(n, 1)
    return _interleave(
        hdr.view(np.uint8).reshape(n, 28),
        batch,
        pad_to=4,
        trailers=trailer.view(np.uint8).reshape(n, 4),
    )


def _map_os_error(exc: OSError, path: str) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return OutputError("no space left on device; frames written so far are kept", path=path)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return OutputError("permission denied", path=path)
    if exc.errno == errno.EISDIR:
        return OutputError("is a directory", path=path)
    if exc.errno == errno.ENOENT:
        return OutputError("no such directory", path=path)
    return OutputError(exc.strerror or str(exc), path=path)


def _open_private(path: str) -> int:
    """Open ``path`` for a capture: created 0600, never written through a symlink to a file.

    Captures hold other people's traffic, so they are created private (as dumpcap
    does), and an existing file keeps no wider permissions. A symbolic link is
    refused unless it leads to a pipe or a device (``/dev/stdout``): run as root in a
    shared directory, ``-w`` must not be steered into ``/etc/passwd``. The check is
    made on the opened file itself (``O_NOFOLLOW``, then ``fstat``), so there is no
    window between checking and opening.
    """
    flags = os.O_WRONLY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise _map_os_error(exc, path) from exc
        refused = OutputError(
            "is a symbolic link: refusing to write a capture through it "
            "(name the file itself, or remove the link)",
            path=path,
        )
        try:
            # Opened without O_TRUNC: a regular file behind the link is left untouched.
            fd = os.open(path, flags)
        except OSError as exc2:
            raise refused from exc2
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise refused from exc
        return fd
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077 and st.st_uid == os.geteuid():
        # An existing file keeps its mode on O_TRUNC: make it private too.
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o600)
    return fd


class Writer:
    """Base of the capture writers: a file (or stream), written batch by batch.

    A file the writer opened is written without a user-space buffer, so it always
    knows how much reached the disk: when a write fails (disk full), the file is cut
    back to the end of the last whole record and stays a valid capture, and the
    writer refuses further writes.

    Args:
        target: a path, or a binary file object the writer does not own.
        flush_every_batch: flush after each batch so readers see whole records.
    """

    def __init__(
        self, target: str | os.PathLike[str] | BinaryIO, *, flush_every_batch: bool = True
    ):
        self.flush_every_batch = flush_every_batch
        self.frames = 0
        self._owned = not hasattr(target, "write")
        self._size = 0
        self._kept = 0
        self._failed: OutputError | None = None
        if self._owned:
            self.path = os.fspath(target)  # type: ignore[arg-type]
            self._file: BinaryIO = os.fdopen(_open_private(self.path), "wb", buffering=0)
        else:
            self.path = getattr(target, "name", "<stream>")
            if not isinstance(self.path, str):
                self.path = "<stream>"
            self._file = target  # type: ignore[assignment]
        self._closed = False

    def _emit(self, data: bytes | NDArray[np.uint8], ends: NDArray[np.int64] | None = None) -> None:
        """Write ``data`` (whole records), keeping the file valid if the write fails.

        Args:
            data: whole records (and headers) to append, as bytes or a uint8 array.
            ends: the offset in ``data`` just past each record; None for one unit.

        Raises:
            OutputError: the write failed; the file then ends at the last whole record.
        """
        if self._failed is not None:
            raise self._failed
        if not self._owned:
            try:
                # Someone else's file object: plain bytes, whatever it does with them.
                self._file.write(data if isinstance(data, bytes) else data.tobytes())
                if self.flush_every_batch:
                    self._file.flush()
            except OSError as exc:
                raise _map_os_error(exc, self.path) from exc
            return
        view = memoryview(data) if isinstance(data, bytes) else data.data
        done = 0
        fd = self._file.fileno()
        try:
            while done < len(data):
                done += os.write(fd, view[done:])
        except OSError as exc:
            marks = ends if ends is not None else np.array([len(data)], dtype=np.int64)
            whole = int(np.searchsorted(marks, done, side="right"))
            keep = int(marks[whole - 1]) if whole else 0
            with contextlib.suppress(OSError):
                # Drop the part of a record that did not fit: the file stays readable.
                os.ftruncate(fd, self._size + keep)
            self._size += keep
            self._kept = keep
            self._failed = _map_os_error(exc, self.path)
            raise self._failed from exc
        self._size += len(data)

    def write(self, batch: FrameBatch) -> None:
        """Append every frame of ``batch``."""
        raise NotImplementedError  # each format encodes differently

    def _whole_frames(self, frame_ends: NDArray[np.int64]) -> int:
        """Frames of the batch whose write failed that are in the file whole."""
        return int(np.searchsorted(frame_ends, self._kept, side="right"))

    def close(self) -> None:
        """Flush and close (the file is only closed if the writer opened it)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._owned:
                fd = self._file.fileno()
                # Pipes and devices (-w /dev/stdout) cannot be synced (EINVAL): files only.
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    os.fsync(fd)
            else:
                self._file.flush()
        except OSError as exc:
            raise _map_os_error(exc, self.path) from exc
        finally:
            if self._owned:
                with contextlib.suppress(OSError):
                    self._file.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class PcapWriter(Writer):
    """Writes classic pcap (nanosecond magic by default); one link type per file."""

    def __init__(
        self,
        target: str | os.PathLike[str] | BinaryIO,
        *,
        nanosecond: bool = True,
        snaplen: int = 262144,
        flush_every_batch: bool = True,
    ):
        super().__init__(target, flush_every_batch=flush_every_batch)
        self.nanosecond = nanosecond
        self.snaplen = snaplen
        self.linktype: int | None = None

    def write(self, batch: FrameBatch) -> None:
        if not len(batch):
            return
        lts = np.unique(batch.linktype)
        if self.linktype is None:
            self.linktype = int(lts[0])
            self._emit(encode_pcap_header(self.linktype, self.snaplen, nanosecond=self.nanosecond))
        if len(lts) > 1 or int(lts[0]) != self.linktype:
            raise ConfigError(
                "frames of several link types cannot share a pcap file; write .pcapng instead",
                path=self.path,
            )
        ends = np.cumsum(batch.caplen + 16)
        try:
            self._emit(_pcap_records(batch, nanosecond=self.nanosecond), ends)
        except OutputError:
            self.frames += self._whole_frames(ends)
            raise
        self.frames += len(batch)

    def close(self) -> None:
        if self.linktype is None and not self._closed:
            # An empty capture is still a valid file.
            self.linktype = 1
            self._emit(encode_pcap_header(1, self.snaplen, nanosecond=self.nanosecond))
        super().close()


class PcapngWriter(Writer):
    """Writes pcapng with one IDB per source interface, added as they appear."""

    def __init__(
        self, target: str | os.PathLike[str] | BinaryIO, *, flush_every_batch: bool = True
    ):
        super().__init__(target, flush_every_batch=flush_every_batch)
        self._emit(encode_pcapng_shb())
        self._ids: dict[Interface, int] = {}

    def write(self, batch: FrameBatch) -> None:
        if not len(batch):
            return
        ifaces = batch.interfaces or (Interface(linktype=1),)
        head = b""
        new: list[Interface] = []
        mapping = np.zeros(len(ifaces), dtype=np.int64)
        for i, itf in enumerate(ifaces):
            if itf not in self._ids:
                self._ids[itf] = len(self._ids)
                head += encode_pcapng_idb(itf)
                new.append(itf)
            mapping[i] = self._ids[itf]
        iface = np.clip(batch.iface, 0, len(ifaces) - 1)
        if not np.array_equal(iface, batch.iface):
            raise ValueError("FrameBatch.iface refers past its interface table")
        # Record ends: each IDB, then each EPB (32 bytes of header and trailer + padded data).
        idb_ends = np.cumsum([len(encode_pcapng_idb(itf)) for itf in new], dtype=np.int64)
        epb_ends = len(head) + np.cumsum(32 + (batch.caplen + 3) // 4 * 4)
        try:
            epbs = _pcapng_epbs(batch, mapping)
            data = epbs if not head else np.concatenate([np.frombuffer(head, np.uint8), epbs])
            self._emit(data, np.concatenate([idb_ends, epb_ends]))
        except OutputError:
            self.frames += self._whole_frames(epb_ends)
            raise
        self.frames += len(batch)


def open_writer(
    path: str | os.PathLike[str], *, fmt: str | None = None, snaplen: int = 262144
) -> Writer:
    """Open a capture writer, pcapng for ``.pcapng``/``.ntar`` and pcap otherwise.

    Args:
        path: the file to create (mode 0600).
        fmt: ``"pcap"`` or ``"pcapng"`` to override the extension.
        snaplen: the snapshot length recorded in a pcap header.
    """
    p = os.fspath(path)
    if fmt is None:
        fmt = "pcapng" if p.lower().endswith((".pcapng", ".ntar", ".pcapng.tmp")) else "pcap"
    if fmt == "pcapng":
        return PcapngWriter(p)
    if fmt == "pcap":
        return PcapWriter(p, snaplen=snaplen)
    raise ConfigError(f"unknown capture format {fmt!r}; choose pcap or pcapng")
