"""``CaptureDecoder``: the one incremental engine behind files, stdin, TCP and serial.

Push bytes in with ``feed()`` as they arrive, in chunks of any size; pull whole
frames out with ``batches()``; call ``finish()`` at the end of the input.
The decoder detects pcap or pcapng from the first bytes and keeps only what
it has not yet decoded (at most one partial record, whose length has been
checked against the limits before anything waits for it).

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
from wirelearn.capture._walk import InterfaceTable, Records, gather_frames
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
        self._buf = b""
        self._pos = 0
        self._base = 0
        self._chunks: list[bytes] = []
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
        return self._base + self._pos

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
        if self._fault is not None:
            raise self._fault
        if self._finished:
            raise ValueError("CaptureDecoder.feed() after finish()")
        if not data:
            return
        chunk = data if isinstance(data, bytes) else bytes(data)
        self._fed += len(chunk)
        if len(self._head) < 4:
            self._head += chunk[: 4 - len(self._head)]
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
                small = tail + joined[k : k + take]
                k += take
                arr = np.frombuffer(small, dtype=np.uint8)
                step = parser.walk(small, arr, 0, len(small), base, self.batch_size, False)
                if len(step.records):
                    self._take(arr, step.records)
                tail = small[step.pos :]
                base += step.pos
                self._need = step.need
                self._fault = step.fault
        if tail:
            self._buf = tail + joined[k:]
            self._base, self._pos = base, 0
        else:
            self._buf = joined
            self._base, self._pos = base - k, k

    # --- output --------------------------------------------------------------------------------

    def _take(self, arr: NDArray[np.uint8], rec: Records) -> None:
        """Add decoded frames to the next batch, copying their bytes at once (``arr`` is hot)."""
        size = int(rec.caplen.sum())
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

    def _build(self) -> FrameBatch:
        rec = Records.concat(self._recs)
        n = len(rec)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(rec.caplen, out=offsets[1:])
        data = self._out[: self._used]
        if 2 * self._used < len(self._out):
            data = data.copy()  # a short batch (the last one) keeps no oversized buffer
        self._avg = 0.75 * self._avg + 0.25 * (self._used / max(n, 1))
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
                self._take(arr, step.records)
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
        self._buf, self._pos = b"", 0
        self._chunks.clear()
        self._chunks_len = 0
