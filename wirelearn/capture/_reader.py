"""Capture sources over ``CaptureDecoder``: files, stdin and binary streams, plain or gzip'd.

``open_capture`` takes a path, ``"-"`` for stdin, or a binary file object (a
``BytesIO``, a socket's ``makefile("rb")``). Streams are read with partial
reads (``read1``/``os.read``), so ``tcpdump -U -w - | wirelearn -r -`` yields
batches as packets arrive rather than when a chunk fills. gzip is recognised
by its content, not its name, and inflated incrementally with bounded output
per step, so a decompression bomb costs time, never memory. A plain pcap
file opened by path is read a batch at a time instead, into buffers its
batches point into, so that no frame's bytes are copied (``FrameBatch.view``).
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import stat
import sys
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from wirelearn.capture._batch import FrameBatch, Interface
from wirelearn.capture._decoder import CaptureDecoder
from wirelearn.capture._source import Source, SourceStats
from wirelearn.errors import ConfigError, FormatError, InputError

__all__ = ["CaptureFileSource", "open_capture", "read_batches"]

_GZIP_MAGIC = b"\x1f\x8b"
_MAX_CHUNK = 1 << 30
#: Compressed bytes handed to zlib per call.
_SLICE = 1 << 16
#: The most frame bytes a plain file's decoder holds back to fill a batch.
_HOLD_BYTES = 8 << 20
#: Read buffers this big ask for huge pages.
_HUGE_MIN = 4 << 20


def map_open_error(exc: OSError, path: str) -> InputError:
    """The ``InputError`` to raise for an ``OSError`` from opening ``path``.

    >>> str(map_open_error(PermissionError(errno.EACCES, "Permission denied"), "a.pcap"))
    'a.pcap: permission denied'
    """
    if exc.errno == errno.ENOENT:
        return InputError("no such file", path=path)
    if exc.errno == errno.EISDIR:
        return InputError("is a directory, not a capture file", path=path)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return InputError("permission denied", path=path)
    if exc.errno == errno.ENOTDIR:
        return InputError("no such file (a parent is not a directory)", path=path)
    return InputError(f"cannot open: {exc.strerror or exc}", path=path)


class _Inflater:
    """Incremental gzip decompression, member after member, with bounded output per step.

    Input is handed to zlib in slices of at most ``_SLICE`` bytes, so a corrupt
    stream is reported within that many bytes of where it breaks.

    Args:
        name: the input's name, for errors.
        limit: the most bytes one ``pull()`` returns.
        stats: where to warn about trailing garbage.
    """

    def __init__(self, name: str, limit: int, stats: SourceStats) -> None:
        self.name = name
        self.limit = limit
        self.stats = stats
        self.consumed = 0
        self._d = zlib.decompressobj(wbits=31)
        self._in = b""
        self._at = 0
        self._between = False  # a member ended; what follows is not yet known
        self._more = False  # the last pull hit the limit: output may be pending
        self._ignore = False  # trailing garbage was found and is being ignored

    def push(self, data: bytes) -> None:
        """Add compressed input."""
        if self._ignore:
            self.consumed += len(data)
            return
        rest = self._in[self._at :]
        self._in = rest + data if rest else data
        self._at = 0

    @property
    def complete(self) -> bool:
        """Whether the input ended at the end of a member."""
        return self._between or self._ignore

    def _next_member(self) -> bool:
        """At the end of a member: start the next one, or dispose of what follows.

        Returns:
            Whether decompression can go on now.
        """
        rest = self._in[self._at :]
        if not rest.strip(b"\0"):
            # Zero padding after the last member (tape blocks): gzip ignores it too.
            self.consumed += len(rest)
            self._in, self._at = b"", 0
            return False
        if len(rest) < 2 and _GZIP_MAGIC.startswith(rest):
            return False
        if not rest.startswith(_GZIP_MAGIC):
            self.stats.warn(
                f"{self.name}: offset {self.consumed}: trailing garbage after the gzip data; ignored"
            )
            self.consumed += len(rest)
            self._in, self._at = b"", 0
            self._ignore = True
            return False
        self._d = zlib.decompressobj(wbits=31)
        self._between = False
        return True

    def pull(self) -> bytes:
        """Up to ``limit`` decompressed bytes; empty when more input is needed."""
        while self._at < len(self._in) or self._more:
            if self._between and not self._next_member():
                return b""
            data = memoryview(self._in)[self._at : self._at + _SLICE]
            try:
                out = self._d.decompress(data, self.limit)
            except zlib.error as exc:
                raise InputError(
                    f"corrupt gzip data ({exc})", path=self.name, offset=self.consumed
                ) from exc
            if self._d.eof:
                left = len(self._d.unused_data)
                self._between = True
                self._more = False
            else:
                left = len(self._d.unconsumed_tail)
                self._more = len(out) == self.limit
            used = len(data) - left
            self.consumed += used
            self._at += used
            if out:
                return out
        return b""


class CaptureFileSource(Source):
    """A capture file or stream (pcap or pcapng, optionally gzip'd) as a ``Source``.

    Use ``open_capture`` to make one. Errors about the file itself (missing, a
    directory, unreadable, empty, not a capture) are raised when a regular file
    is opened; errors inside the data are raised while iterating, after every
    frame before them.

    Args:
        src: a path, ``"-"`` for stdin, or a binary file object (not closed here).
        batch_size: the most frames per batch.
        chunk_size: the most bytes read (and inflated) per step; a plain pcap file
            opened by path is read a batch at a time instead (at most about 8 MiB).
        max_caplen: the largest captured length accepted.

    Attributes:
        name: the path, ``-``, or the stream's name.
        compressed: whether the input is gzip'd (known once the first bytes are read).
        decoder: the ``CaptureDecoder`` doing the work.
    """

    def __init__(
        self,
        src: str | os.PathLike[str] | BinaryIO,
        *,
        batch_size: int = 8192,
        chunk_size: int = 1 << 20,
        max_caplen: int = 262144,
    ) -> None:
        super().__init__()
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
            raise ConfigError(f"chunk_size must be an integer from 1 to {_MAX_CHUNK}")
        if not 1 <= chunk_size <= _MAX_CHUNK:
            raise ConfigError(f"chunk_size must be an integer from 1 to {_MAX_CHUNK}")
        self.chunk_size = chunk_size
        self.compressed = False
        self._file: BinaryIO | None = None
        self._owned = False
        self._inflater: _Inflater | None = None
        self._started = False
        # A plain pcap file opened here is read in large buffers its batches point into.
        self._direct = False
        regular = False
        if isinstance(src, str) and src == "-":
            self.name = "-"
            self._file = getattr(sys.stdin, "buffer", None)
        elif isinstance(src, (str, os.PathLike)):
            path = os.fspath(src)
            self.name = os.fsdecode(path)
            try:
                self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
            except OSError as exc:
                raise map_open_error(exc, self.name) from exc
            self._owned = True
            try:
                st = os.fstat(self._file.fileno())
            except OSError as exc:
                self.close()
                raise map_open_error(exc, self.name) from exc
            regular = stat.S_ISREG(st.st_mode)
            if regular:
                self.stats.bytes_total = st.st_size
                if st.st_size == 0:
                    self.close()
                    raise FormatError("empty file: not a capture", path=self.name, offset=0)
        elif hasattr(src, "read"):
            name = getattr(src, "name", None)
            self.name = name if isinstance(name, str) else "<stream>"
            self._file = src
        else:
            raise ConfigError(
                f"a capture source is a path, '-' or a binary file object, not {type(src).__name__}"
            )
        self.decoder = CaptureDecoder(
            name=self.name, batch_size=batch_size, max_caplen=max_caplen, stats=self.stats
        )
        if regular:
            # A file can be checked now: fail at open, before any dashboard starts.
            try:
                self._start()
            except BaseException:
                self.close()
                raise
            if not self.compressed:
                # The next chunk of a plain file is always at hand: yield full batches
                # (bounded in bytes) rather than one per chunk read.
                self.decoder.hold_bytes = _HOLD_BYTES
                if (
                    self.decoder.format == "pcap"
                    and self._file is not None
                    and self._file.seekable()
                ):
                    # Frames stay where they were read: no copy of their bytes.
                    self._direct = True
                    self.decoder.zero_copy = True

    # --- properties ----------------------------------------------------------------------------

    @property
    def format(self) -> str | None:
        """``"pcap"``, ``"pcapng"``, or None until the first bytes are read."""
        return self.decoder.format

    @property
    def interfaces(self) -> tuple[Interface, ...]:
        return self.decoder.interfaces

    # --- reading -------------------------------------------------------------------------------

    def _read(self) -> bytes:
        """One read of at most ``chunk_size`` bytes: what is available, b"" at EOF."""
        f = self._file
        size = self.chunk_size
        try:
            if f is None:
                data = os.read(0, size)
            else:
                read1 = getattr(f, "read1", None)
                data = read1(size) if read1 is not None else f.read(size)
        except OSError as exc:
            raise InputError(
                f"read error: {exc.strerror or exc}", path=self.name, offset=self.stats.bytes_read
            ) from exc
        except ValueError:
            if self.closed:
                return b""
            raise
        if not data:
            return b""
        self.stats.bytes_read += len(data)
        return data if isinstance(data, bytes) else bytes(data)

    def _start(self) -> None:
        """Read the first bytes: detect gzip, and let the decoder check the capture magic."""
        self._started = True
        head = self._read()
        while 0 < len(head) < 2:
            more = self._read()
            if not more:
                break
            head += more
        if head[:2] == _GZIP_MAGIC:
            self.compressed = True
            self._inflater = _Inflater(self.name, self.chunk_size, self.stats)
            self._inflater.push(head)
            while self.decoder.format is None:
                out = self._inflater.pull()
                if not out:
                    break
                self.decoder.feed(out)
        else:
            self.decoder.feed(head)
        self.decoder.read_headers()

    def _inflated(self) -> Iterator[FrameBatch]:
        assert self._inflater is not None
        while True:
            out = self._inflater.pull()
            if not out:
                return
            self.decoder.feed(out)
            yield from self.decoder.batches()

    def _read_at(self, at: int, size: int) -> memoryview:
        """Read up to ``size`` bytes at file offset ``at`` (a plain file), into new memory.

        The memory is an anonymous mapping of its own, returned to the system as
        soon as nothing points into it (the heap would keep big blocks of varying
        sizes), and read-only once read: batches point into it. It is never reused.
        """
        f = self._file
        assert f is not None
        buf = mmap.mmap(-1, max(size, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if size >= _HUGE_MIN and hasattr(mmap, "MADV_HUGEPAGE"):
            # Huge pages: faulting a fresh buffer in 4 KiB pages costs more than reading it.
            buf.madvise(mmap.MADV_HUGEPAGE)
        got = 0
        try:
            f.seek(at)
            while got < size:
                n = f.readinto(memoryview(buf)[got:])  # type: ignore[attr-defined]
                if not n:
                    break
                got += n
        except OSError as exc:
            raise InputError(
                f"read error: {exc.strerror or exc}", path=self.name, offset=at + got
            ) from exc
        except ValueError:
            if not self.closed:
                raise
        # Bytes read again after a rewind are counted once.
        self.stats.bytes_read = max(self.stats.bytes_read, at + got)
        return memoryview(buf)[:got].toreadonly()

    def _direct_batches(self) -> Iterator[FrameBatch]:
        """A plain pcap file, read in buffers sized to hold a batch each.

        Each buffer starts at the first frame not yet yielded (the decoder's
        ``rewind()``), so every batch is a view into one buffer and no frame is
        copied; what a buffer's end cut short is read again with the next one.
        """
        decoder = self.decoder
        while not self.closed:
            at, size = decoder.rewind()
            data = self._read_at(at, size)
            got = len(data)
            if got:
                decoder.feed_buffer(data)
                # Not held here: the batches and the decoder keep what they need of it,
                # and the previous buffer must be free before the next one is read.
                del data
                yield from decoder.batches()
            if got < size:
                break
        if self.closed:
            return
        yield from decoder.finish()

    def _batches(self) -> Iterator[FrameBatch]:
        if not self._started:
            self._start()
        if self._direct:
            yield from self._direct_batches()
            return
        decoder = self.decoder
        yield from decoder.batches()
        if self._inflater is not None:
            yield from self._inflated()
        while not self.closed:
            raw = self._read()
            if not raw:
                break
            if self._inflater is not None:
                self._inflater.push(raw)
                yield from self._inflated()
            else:
                decoder.feed(raw)
                yield from decoder.batches()
        if self.closed:
            return
        if self._inflater is not None and not self._inflater.complete:
            raise InputError(
                "truncated gzip data: the compressed stream ends early",
                path=self.name,
                offset=self._inflater.consumed,
            )
        yield from decoder.finish()

    def close(self) -> None:
        super().close()
        # A closed source keeps no buffer alive (``ConcatSource`` keeps its sources).
        decoder: CaptureDecoder | None = self.__dict__.get("decoder")
        if decoder is not None:
            decoder.release()
        if self._owned and self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()


def open_capture(
    src: str | os.PathLike[str] | BinaryIO,
    *,
    batch_size: int = 8192,
    chunk_size: int = 1 << 20,
    max_caplen: int = 262144,
) -> CaptureFileSource:
    """Open a pcap or pcapng capture (optionally gzip'd) as a source of ``FrameBatch``es.

    Args:
        src: a path, ``"-"`` for stdin, or a binary file object.
        batch_size: the most frames per batch.
        chunk_size: the most bytes read per step (streams, gzip, pcapng).
        max_caplen: a record captured longer than this raises ``RecordTooLargeError``.

    Raises:
        InputError: the file is missing, a directory, or unreadable.
        FormatError: the file is empty or not a capture.

    Example:
        >>> with open_capture("fixtures/lldp.pcap") as src:  # doctest: +SKIP
        ...     frames = sum(len(batch) for batch in src)
    """
    return CaptureFileSource(
        src, batch_size=batch_size, chunk_size=chunk_size, max_caplen=max_caplen
    )


def read_batches(
    src: str | os.PathLike[str] | BinaryIO,
    *,
    batch_size: int = 8192,
    chunk_size: int = 1 << 20,
    max_caplen: int = 262144,
) -> Iterator[FrameBatch]:
    """Yield the batches of a capture, closing it at the end; see ``open_capture``."""
    with open_capture(
        src, batch_size=batch_size, chunk_size=chunk_size, max_caplen=max_caplen
    ) as source:
        yield from source
