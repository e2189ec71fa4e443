"""Streaming pcap and pcapng writers, vectorized over batches.

The encoders are pure functions from a batch to bytes, so the sender can use
them on sockets and serial ports too; the writers add files, flushing and
error mapping on top.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
from types import TracebackType
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray

from wirelearn.capture._batch import FrameBatch, Interface
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
) -> bytes:
    """Lay out ``header_i + bytes_i (+ zero padding) (+ trailer_i)`` for every frame, vectorized.

    The frame bytes are copied with one boolean-mask assignment (their positions
    are everything that is not a header, padding or trailer), which is several
    times cheaper than an index per byte; only the fixed-size parts are indexed.
    """
    n = len(batch)
    if n == 0:
        return b""
    hlen = headers.shape[1]
    tlen = 0 if trailers is None else trailers.shape[1]
    caplen = batch.caplen
    padded = (caplen + (pad_to - 1)) // pad_to * pad_to
    rec_len = hlen + padded + tlen
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(rec_len[:-1], out=starts[1:])
    total_out = int(rec_len.sum())
    out = np.zeros(total_out, dtype=np.uint8)
    # Every byte that is not a header, padding or trailer is a frame byte, in order.
    is_data = np.ones(total_out, dtype=np.bool_)
    hpos = (starts[:, None] + np.arange(hlen)).ravel()
    out[hpos] = headers.ravel()
    is_data[hpos] = False
    if pad_to > 1:
        pad = padded - caplen
        grid = np.arange(pad_to - 1)
        ppos = (starts + hlen + caplen)[:, None] + grid
        is_data[ppos[grid < pad[:, None]]] = False
    if trailers is not None:
        tpos = ((starts + hlen + padded)[:, None] + np.arange(tlen)).ravel()
        out[tpos] = trailers.ravel()
        is_data[tpos] = False
    out[is_data] = batch.data[int(batch.offsets[0]) : int(batch.offsets[-1])]
    return out.tobytes()


def encode_pcap_records(batch: FrameBatch, *, nanosecond: bool = True) -> bytes:
    """Encode every frame of a batch as little-endian pcap records."""
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
    n = len(batch)
    if n == 0:
        return b""
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


class Writer:
    """Base of the capture writers: a file (or stream), written batch by batch.

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
        if self._owned:
            self.path = os.fspath(target)  # type: ignore[arg-type]
            try:
                # Captures hold other people's traffic: create them private, as dumpcap does.
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                self._file: BinaryIO = os.fdopen(fd, "wb")
            except OSError as exc:
                raise _map_os_error(exc, self.path) from exc
        else:
            self.path = getattr(target, "name", "<stream>")
            if not isinstance(self.path, str):
                self.path = "<stream>"
            self._file = target  # type: ignore[assignment]
        self._closed = False

    def _emit(self, data: bytes) -> None:
        try:
            self._file.write(data)
            if self.flush_every_batch:
                self._file.flush()
        except OSError as exc:
            raise _map_os_error(exc, self.path) from exc

    def write(self, batch: FrameBatch) -> None:
        """Append every frame of ``batch``."""
        raise NotImplementedError  # each format encodes differently

    def close(self) -> None:
        """Flush and close (the file is only closed if the writer opened it)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._file.flush()
            if self._owned:
                os.fsync(self._file.fileno())
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
        self._emit(encode_pcap_records(batch, nanosecond=self.nanosecond))
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
        mapping = np.zeros(len(ifaces), dtype=np.int64)
        for i, itf in enumerate(ifaces):
            if itf not in self._ids:
                self._ids[itf] = len(self._ids)
                head += encode_pcapng_idb(itf)
            mapping[i] = self._ids[itf]
        iface = np.clip(batch.iface, 0, len(ifaces) - 1)
        if not np.array_equal(iface, batch.iface):
            raise ValueError("FrameBatch.iface refers past its interface table")
        self._emit(head + encode_pcapng_epbs(batch, mapping))
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
