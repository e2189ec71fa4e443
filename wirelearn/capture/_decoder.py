"""``CaptureDecoder``: the one incremental engine behind files, stdin, TCP and serial.

Push bytes in with ``feed()`` as they arrive, in chunks of any size; pull whole
frames out with ``batches()``; call ``finish()`` at the end of the input.
The decoder detects pcap or pcapng from the first bytes and keeps only what
it has not yet decoded (at most one partial record, whose length has been
checked against the limits before anything waits for it).
Frames are copied out of the input back to back, except with ``zero_copy``,
where a batch points into the buffer that was fed (pcap only).

Errors keep their place in the stream: when the input turns corrupt,
``batches()`` first yields every frame before the fault and only then raises,
so a caller that iterates gets all the good frames before the error::

    dec = CaptureDecoder(name="capture.pcap")
    for chunk in chunks:
        dec.feed(chunk)
        for batch in dec.batches():
            use(batch)
    for batch in dec.finish():
        use(batch)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from wirelearn.capture._batch import FrameBatch, Interface
from wirelearn.capture._pcap import PCAP_MAGICS, PcapParser
from wirelearn.capture._pcapng import PCAPNG_MAGIC, PcapngParser
from wirelearn.capture._source import SourceStats
from wirelearn.capture._walk import Buffer, InterfaceTable, Records, gather_frames
from wirelearn.errors import ConfigError, FormatError, WirelearnError

__all__ = ["CaptureDecoder", "describe_magic"]

#: The largest ``max_caplen`` accepted (libpcap's own ceiling is 256 KiB; allow much more).
MAX_CAPLEN_CEILING = 1 << 30

#: First bytes of formats people mistake for captures, for a helpful error.
_OTHER_MAGICS: dict[bytes, str] = {
    b"\x1f\x8b": "gzip data",
    b"BZh": "bzip2 data",
    b"\xfd7zXZ": "xz data",
    b"\x28\xb5\x2f\xfd": "zstd data",
    b"PK\x03\x04": "a zip archive",
    b"\x7fELF": "an ELF binary",
}


def describe_magic(head: bytes) -> str:
    """The "not a capture" message for a file starting with ``head``.

    >>> describe_magic(b"\\x7fELF\\x02")
    'not a pcap or pcapng file (magic 0x7f454c46: an ELF binary)'
    """
    what = next((name for m, name in _OTHER_MAGICS.items() if head.startswith(m)), None)
    suffix = f": {what}" if what else ""
    return f"not a pcap or pcapng file (magic 0x{head[:4].hex()}{suffix})"


def _positive_int(value: object, what: str, ceiling: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= ceiling:
        raise ConfigError(f"{what} must be an integer from 1 to {ceiling}, got {value!r}")
    return value


class CaptureDecoder:
    """Incremental decoder of a pcap or pcapng byte stream into ``FrameBatch``es.

    Args:
        name: what to call the input in errors and warnings (a path, ``-``, an address).
        batch_size: the most frames in one batch.
        max_caplen: a record captured longer than this raises ``RecordTooLargeError``
            (or, with ``resync``, is dropped and counted).
        resync: for noisy serial lines carrying a pcap stream: skip garbage up to
            the next plausible record or global header instead of raising, and
            count the bytes skipped in ``stats.discarded_bytes``. pcapng streams
            are not resynchronised.
        stats: the counters to update (warnings, truncated, discarded, oversize);
            frames and bytes are left to the ``Source`` that yields the batches.

    Attributes:
        format: ``"pcap"``, ``"pcapng"``, or None until the first bytes are seen.
        interfaces: the global interface table; ``FrameBatch.iface`` indexes it.
        offset: input bytes consumed: everything before it has been decoded.
        hold_bytes: when more than 0, frames decoded at the end of the input fed so far
            are held back (not yielded) until ``batch_size`` frames or this many bytes of
            frames are ready, or ``finish()``; for inputs whose next chunk is always at
            hand (a regular file), so that batches come out full. 0 (the default)
            yields what is decoded at once, as a live stream needs.
        zero_copy: pcap frames are not copied out of the buffers fed: each batch whose
            frames all lie in one buffer is a view into it (``FrameBatch.view``), and
            keeps that buffer alive. For a reader that feeds large buffers and calls
            ``rewind()`` before each one, so that a batch never spans two.
    """

    def __init__(
        self,
        *,
        name: str,
        batch_size: int = 8192,
        max_caplen: int = 262144,
        resync: bool = False,
        stats: SourceStats | None = None,
    ) -> None:
        self.name = name
        self.batch_size = _positive_int(batch_size, "batch_size", 1 << 24)
        self.max_caplen = _positive_int(max_caplen, "max_caplen", MAX_CAPLEN_CEILING)
        if not isinstance(resync, bool):
            raise ConfigError(f"resync must be True or False, got {resync!r}")
        self.resync = resync
        self.stats = stats if stats is not None else SourceStats()
        self._table = InterfaceTable()
        self._parser: PcapParser | PcapngParser | None = None
        self._head = b""
        self._fed = 0
        # Undecoded input: self._buf[self._pos:] then the chunks fed since the last merge.
        self._buf: Buffer = b""
        self._pos = 0
        self._base = 0
        self._chunks: list[Buffer] = []
        self._chunks_len = 0
        self._need = 0
        self._skip = 0
        self._fault: WirelearnError | None = None
        self._next_frame = 1
        self._finished = False
        self.hold_bytes = 0
        # Frames decoded but not yet yielded: their records, and their bytes already
        # gathered (back to back) into the next batch's buffer.
        self._recs: list[Records] = []
        self._count = 0
        self._out: NDArray[np.uint8] = np.zeros(0, dtype=np.uint8)
        self._used = 0
        self._avg = 256.0  # bytes per frame so far, to size the next batch's buffer
        self.zero_copy = False
        # Zero-copy frames not yet yielded: their records (starts as stream offsets), the
        # buffer they lie in and its stream offset. After ``rewind()`` the buffer is None
        # until the input is fed again from the frames' first byte, and ``_resume`` is
        # where decoding goes on.
        self._zrecs: list[Records] = []
        self._zsrc: Buffer | None = None
        self._zarr: NDArray[np.uint8] = np.zeros(0, dtype=np.uint8)
        self._zbase = 0
        self._resume: int | None = None
        # The buffer asked for by ``rewind()`` was cut to ``hold_bytes``: whatever it
        # holds is a full batch.
        self._capped = False

    # --- state ---------------------------------------------------------------------------------

    @property
    def format(self) -> str | None:
        """``"pcap"``, ``"pcapng"``, or None until the first bytes are seen."""
        return self._parser.format if self._parser is not None else None

    @property
    def interfaces(self) -> tuple[Interface, ...]:
        """The global interface table so far (it grows as IDBs and headers arrive)."""
        return self._table.snapshot()

    @property
    def offset(self) -> int:
        """Input bytes consumed so far."""
        return self._resume if self._resume is not None else self._base + self._pos

    @property
    def pending(self) -> int:
        """Input bytes fed but not yet decoded."""
        return len(self._buf) - self._pos + self._chunks_len

    @property
    def over_snaplen(self) -> int:
        """Frames captured longer than their interface's snaplen (kept, and warned about once)."""
        return self._parser.over_snaplen if self._parser is not None else 0

    # --- input ---------------------------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append input bytes; decode them with ``batches()``.

        Raises:
            FormatError: the first bytes are not a pcap or pcapng magic.
        """
        self._check_open("feed")
        if not data:
            return
        self._push(data if isinstance(data, bytes) else bytes(data))

    def feed_buffer(self, data: memoryview) -> None:
        """Like ``feed()``, but without copying ``data``, which must never change again
        (batches may point into it with ``zero_copy``).

        Raises:
            FormatError: the first bytes are not a pcap or pcapng magic.
        """
        self._check_open("feed_buffer")
        if len(data):
            self._push(data.toreadonly().cast("B"))

    def _check_open(self, method: str) -> None:
        """Raise the stream's fault, if any, or refuse input after ``finish()``."""
        if self._fault is not None:
            raise self._fault
        if self._finished:
            raise ValueError(f"CaptureDecoder.{method}() after finish()")

    def _push(self, chunk: Buffer) -> None:
        self._fed += len(chunk)
        if len(self._head) < 4:
            self._head += bytes(chunk[: 4 - len(self._head)])
        self._chunks.append(chunk)
        self._chunks_len += len(chunk)
        self._apply_skip()
        if self._parser is None and len(self._head) >= 4:
            self._detect()

    def _detect(self) -> None:
        head = self._head
        if head == PCAPNG_MAGIC:
            self._parser = PcapngParser(
                name=self.name, max_caplen=self.max_caplen, stats=self.stats, table=self._table
            )
        elif head in PCAP_MAGICS or self.resync:
            self._parser = PcapParser(
                name=self.name,
                max_caplen=self.max_caplen,
                resync=self.resync,
                stats=self.stats,
                table=self._table,
            )
        else:
            self._fault = FormatError(describe_magic(head), path=self.name, offset=0)
            raise self._fault

    def _apply_skip(self) -> None:
        """Drop input that belongs to a record being discarded as it streams past."""
        while self._skip and self._chunks:
            first = self._chunks[0]
            drop = min(self._skip, len(first))
            self._skip -= drop
            self._chunks_len -= drop
            if drop == len(first):
                self._chunks.pop(0)
            else:
                self._chunks[0] = first[drop:]

    def _merge(self, force: bool) -> None:
        """Bring the pending chunks into the buffer, once there is enough to make progress.

        A record cut by a chunk boundary is completed in a small buffer of its own
        (the tail plus the first bytes of the new chunk) and its frames are carried
        into the next batch, so the new chunk itself is decoded where it lies
        instead of being copied behind the tail.
        """
        if not self._chunks:
            return
        if not force and self.pending < self._need:
            return
        joined = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._chunks_len = 0
        tail = self._buf[self._pos :]
        base = self._base + self._pos
        k = 0
        parser = self._parser
        if parser is not None and not self.resync:
            while tail and self._need > len(tail) and k < len(joined) and self._fault is None:
                take = min(self._need - len(tail), len(joined) - k)
                small = b"".join((tail, joined[k : k + take]))
                k += take
                arr = np.frombuffer(small, dtype=np.uint8)
                step = parser.walk(small, arr, 0, len(small), base, self.batch_size, False)
                if len(step.records):
                    self._take(small, arr, base, step.records)
                tail = small[step.pos :]
                base += step.pos
                self._need = step.need
                self._fault = step.fault
        if tail:
            self._buf = b"".join((tail, joined[k:]))
            self._base, self._pos = base, 0
        else:
            self._buf = joined
            self._base, self._pos = base - k, k
        if self._resume is not None:
            # Fed again from an earlier offset after ``rewind()``: go on where decoding was.
            self._pos = self._resume - self._base
            self._resume = None
            if self._pos > len(self._buf):
                self._fault = self._shrunk(self._base + len(self._buf))
        if self._zrecs and self._zsrc is None and self._fault is None:
            # Frames held over a ``rewind()``: the buffer fed since holds them again.
            self._adopt(self._buf, np.frombuffer(self._buf, dtype=np.uint8), self._base)

    # --- output --------------------------------------------------------------------------------

    def _take(self, src: Buffer, arr: NDArray[np.uint8], base: int, rec: Records) -> None:
        """Add decoded frames to the next batch: by reference to ``src`` (zero-copy), or
        copying their bytes at once (``arr`` is hot).

        Args:
            src: the buffer the records were found in; ``arr`` is it as ``uint8``.
            arr: ``src`` as a numpy array.
            base: the stream offset of ``src[0]``.
            rec: the records, starts relative to ``src``.
        """
        size = int(rec.caplen.sum())
        # The average frame size of the last few thousand frames.
        weight = min(1.0, len(rec) / 4096)
        self._avg = (1.0 - weight) * self._avg + weight * (size / max(len(rec), 1))
        if self.zero_copy and not self._recs:
            if self._zrecs and self._zsrc is not src:
                self._spill()
            if not self._recs:
                if not self._zrecs:
                    self._adopt(src, arr, base)
                self._zrecs.append(
                    Records(rec.start + base, rec.caplen, rec.wirelen, rec.ts_ns, rec.iface)
                )
                self._used += size
                self._count += len(rec)
                return
        self._take_packed(arr, rec, size)

    def _adopt(self, src: Buffer, arr: NDArray[np.uint8], base: int) -> None:
        self._zsrc, self._zarr, self._zbase = src, arr, base

    def _spill(self) -> None:
        """Copy the zero-copy frames held so far into the packed buffer (they span buffers)."""
        held, self._zrecs = self._zrecs, []
        self._used = 0
        self._count = 0
        for r in held:
            rel = Records(r.start - self._zbase, r.caplen, r.wirelen, r.ts_ns, r.iface)
            self._take_packed(self._zarr, rel, int(r.caplen.sum()))

    def _take_packed(self, arr: NDArray[np.uint8], rec: Records, size: int) -> None:
        need = self._used + size
        if need > len(self._out):
            # When holding frames for a full batch, room for the whole batch at the average
            # frame size so far: the buffer is sized once, not grown chunk by chunk.
            guess = 0
            if self.hold_bytes:
                guess = int(self._avg * 1.25 * max(self.batch_size - self._count, 0))
                guess = min(guess, self.hold_bytes + need)
            grown = np.empty(max(need, 2 * len(self._out), guess), dtype=np.uint8)
            grown[: self._used] = self._out[: self._used]
            self._out = grown
        gather_frames(arr, rec.start, rec.caplen, out=self._out[self._used : need])
        self._used = need
        self._recs.append(rec)
        self._count += len(rec)

    def rewind(self) -> tuple[int, int]:
        """Drop the input not yet decoded, for a reader that will feed it again from a
        better place: a regular file read in large buffers (see ``zero_copy``).

        Frames decoded but held back for a fuller batch are dropped from memory too
        (not their records): the next input fed must start at the returned offset,
        the first byte of the first such frame, so that the batch is one buffer.

        Returns:
            The stream offset the next ``feed()`` must start at, and how many bytes to
            feed there to complete the next batch, at the average frame size so far.
        """
        resume = self.offset
        if self._recs and self._zrecs:
            self._spill()
        at = int(self._zrecs[0].start[0]) if self._zrecs else resume
        self._zsrc, self._zarr = None, np.zeros(0, dtype=np.uint8)
        self._buf, self._pos, self._base = b"", 0, at
        if isinstance(self._parser, PcapParser):
            self._parser.forget_buffer()
        self._chunks.clear()
        self._chunks_len = 0
        self._resume = resume if resume != at else None
        hs = self._parser.hs if isinstance(self._parser, PcapParser) else 0
        # Enough for the rest of the batch at the average frame size, and a little more:
        # a batch cut short by the end of the buffer costs reading it again.
        frames = max(self.batch_size - self._count, 1)
        want = int(frames * (self._avg + hs) * 1.03) + (1 << 16)
        self._capped = False
        if self.hold_bytes:
            # Or the rest of ``hold_bytes`` of frames, with their headers, and no more:
            # then the buffer's frames are the batch, however many they turn out to be.
            room = max(self.hold_bytes - self._used, 0)
            cap = int(room * (1.0 + hs / max(self._avg, 1.0)))
            if cap < want:
                want, self._capped = cap, True
        return at, (resume - at) + max(self._need, want, 1)

    def _shrunk(self, offset: int) -> FormatError:
        """The error for input fed again after ``rewind()`` that ends before ``offset``."""
        return FormatError(
            "the input is shorter than when it was first read (did the file shrink?)",
            path=self.name,
            offset=offset,
        )

    def _build(self) -> FrameBatch:
        if self._zrecs:
            rec = Records.concat(self._zrecs)
            if self._zsrc is None:
                # Fed nothing since ``rewind()``: the input ended where it had been read.
                self._fault = self._shrunk(self._base)
                raise self._fault
            batch = FrameBatch.view(
                self._zarr,
                rec.start - self._zbase,
                frame=np.arange(self._next_frame, self._next_frame + len(rec), dtype=np.int64),
                ts_ns=rec.ts_ns,
                caplen=rec.caplen,
                wirelen=rec.wirelen,
                iface=rec.iface,
                interfaces=self._table.snapshot(),
            )
            self._zrecs = []
            self._used = 0
            self._count = 0
            self._next_frame += len(rec)
            return batch
        rec = Records.concat(self._recs)
        n = len(rec)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(rec.caplen, out=offsets[1:])
        data = self._out[: self._used]
        if 2 * self._used < len(self._out):
            data = data.copy()  # a short batch (the last one) keeps no oversized buffer
        # The batch owns the buffer: the next one starts a new one.
        self._out = np.zeros(0, dtype=np.uint8)
        self._used = 0
        self._recs = []
        self._count = 0
        batch = FrameBatch(
            frame=np.arange(self._next_frame, self._next_frame + n, dtype=np.int64),
            ts_ns=rec.ts_ns,
            caplen=rec.caplen,
            wirelen=rec.wirelen,
            iface=rec.iface,
            data=data,
            offsets=offsets,
            interfaces=self._table.snapshot(),
        )
        self._next_frame += n
        return batch

    def _drain(self, final: bool) -> Iterator[FrameBatch]:
        if self._fault is not None:
            raise self._fault
        parser = self._parser
        if parser is None:
            return
        self._merge(force=final)
        if self._fault is not None:
            # Found while completing a record cut by a chunk boundary.
            if self._count:
                yield self._build()
            raise self._fault
        buf = self._buf
        arr = np.frombuffer(buf, dtype=np.uint8)
        end = len(buf)
        while True:
            if self._count >= self.batch_size:
                yield self._build()
            pos = self._pos
            step = parser.walk(buf, arr, pos, end, self._base, self.batch_size - self._count, final)
            if len(step.records):
                self._take(buf, arr, self._base, step.records)
            progressed = step.pos != pos or len(step.records) > 0
            if step.pos > end:
                # The parser is dropping a record that is still arriving.
                self._skip = step.pos - end
                self._base += step.pos
                self._buf = b""
                self._pos = 0
                self._apply_skip()
            else:
                self._pos = step.pos
            stop = bool(step.need or step.fault is not None or not progressed or step.pos > end)
            if (
                stop
                and not final
                and step.fault is None
                and step.pos <= end
                and self._used < self.hold_bytes
                and self._count < self.batch_size
                and not (self._capped and step.need and self._zrecs)
            ):
                # More input is at hand: keep these frames for a fuller batch.
                self._need = step.need
                return
            if self._count and (self._count >= self.batch_size or stop):
                yield self._build()
            if step.fault is not None:
                self._fault = step.fault
                raise step.fault
            if stop:
                self._need = step.need
                return

    def read_headers(self) -> None:
        """Read the file headers fed so far (pcap global header, pcapng SHBs and IDBs) into
        ``interfaces`` without decoding any frame.

        Raises:
            FormatError: a corrupt header.
        """
        if self._fault is not None:
            raise self._fault
        if self._parser is None:
            return
        self._merge(force=False)
        buf = self._buf
        step = self._parser.walk(
            buf, np.frombuffer(buf, dtype=np.uint8), self._pos, len(buf), self._base, 0, False
        )
        self._pos = step.pos
        if step.need:
            self._need = step.need
        if step.fault is not None:
            self._fault = step.fault
            raise step.fault

    def batches(self) -> Iterator[FrameBatch]:
        """Yield the whole frames decoded so far, in batches of up to ``batch_size``.

        Raises:
            FormatError: corrupt structure, after every frame before it was yielded.
            RecordTooLargeError: a record over ``max_caplen``, likewise.
        """
        yield from self._drain(final=False)

    def finish(self) -> Iterator[FrameBatch]:
        """End of input: yield the remaining frames and check what is left over.

        A record cut short at the end is not an error: it is counted in
        ``stats.truncated_records`` with a warning, and dropped.

        Raises:
            FormatError: empty or too-short input, a truncated file header, or a
                fault found in the remaining data (after its frames).
        """
        if self._finished:
            return
        self._need = 0
        yield from self._drain(final=True)
        self._finished = True
        parser = self._parser
        left = self.pending
        if parser is None:
            if self.resync:
                self.stats.discarded_bytes += left
                return
            if self._fed == 0:
                self._fault = FormatError("empty file: not a capture", path=self.name, offset=0)
            else:
                self._fault = FormatError(
                    f"too short to be a capture ({self._fed} bytes)", path=self.name, offset=0
                )
            raise self._fault
        if not parser.header_done:
            if self.resync:
                self.stats.discarded_bytes += left
                return
            what = "pcap file header" if parser.format == "pcap" else "pcapng section header"
            self._fault = FormatError(
                f"truncated {what} ({left} bytes)", path=self.name, offset=self.offset
            )
            raise self._fault
        if left and isinstance(parser, PcapParser) and parser.resync:
            self._merge(force=True)
            if not parser.tail_is_record(self._buf[self._pos :]):
                self.stats.discarded_bytes += left
                left = 0
        if left:
            of = f" of {self._need}" if self._need > left else ""
            self.stats.truncated_records += 1
            self.stats.warn(
                f"{self.name}: offset {self.offset}: the last record is cut short "
                f"({left}{of} bytes); dropped"
            )
        self._base += len(self._buf) + self._chunks_len
        self.release()

    def release(self) -> None:
        """Drop every reference to input buffers (at the end, or when the input is closed):
        a finished decoder must not keep its last buffer alive (``zero_copy`` buffers are
        a batch's worth). Input fed but not decoded is dropped too."""
        self._buf, self._pos = b"", 0
        self._chunks.clear()
        self._chunks_len = 0
        self._zsrc, self._zarr = None, np.zeros(0, dtype=np.uint8)
        if isinstance(self._parser, PcapParser):
            self._parser.forget_buffer()
