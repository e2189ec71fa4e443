"""SLIP framing (RFC 1055) for serial lines, encoded and decoded over whole batches.

A SLIP stream is frames separated by ``END`` (0xC0) bytes; an ``END`` or
``ESC`` (0xDB) inside a frame is sent as ``ESC ESC_END`` (0xDB 0xDC) or
``ESC ESC_ESC`` (0xDB 0xDD). SLIP carries no length, checksum or timestamp, so:

- frames are timestamped with their arrival time (when their closing ``END``
  was read);
- line noise is recognised only when it breaks the framing: a segment between
  two ``END`` bytes with an invalid escape, or shorter than ``min_frame``
  (a minimal Ethernet header), is discarded and its bytes counted in
  ``stats.discarded_bytes``. Noise that happens to form a plausible frame
  cannot be told apart from one and is passed on;
- bytes before the first ``END`` are discarded (the line may have been joined
  mid-frame), which is why ``slip_encode`` also sends an ``END`` before each frame.

Both directions are vectorized with numpy: escaping through a position map,
splitting on ``END`` with ``flatnonzero``, unescaping with boolean masks. There
is no per-byte or per-frame Python loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
from numpy.typing import NDArray

from wirelearn.capture._batch import FrameBatch, Interface
from wirelearn.capture._source import SourceStats
from wirelearn.errors import ConfigError

__all__ = ["END", "ESC", "ESC_END", "ESC_ESC", "SlipDecoder", "slip_encode"]

END = 0xC0  #: frame delimiter
ESC = 0xDB  #: escape
ESC_END = 0xDC  #: ESC ESC_END stands for a data END byte
ESC_ESC = 0xDD  #: ESC ESC_ESC stands for a data ESC byte

_END_B = bytes([END])
_ESC_B = bytes([ESC])

#: The largest ``max_frame`` accepted.
MAX_FRAME_CEILING = 1 << 24


def slip_encode(batch: FrameBatch) -> bytes:
    """Encode every frame of ``batch`` as ``END escaped-bytes END``.

    >>> b = FrameBatch.from_frames([b"a\\xc0b", b"\\xdb"])
    >>> slip_encode(b).hex(" ")
    'c0 61 db dc 62 c0 c0 db dd c0'
    """
    n = len(batch)
    if n == 0:
        return b""
    lo, hi = int(batch.offsets[0]), int(batch.offsets[-1])
    data = batch.data[lo:hi]
    special = (data == END) | (data == ESC)
    # Output position of input byte j: j + specials before j + one END before its frame
    # + two ENDs for every earlier frame.
    extra = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum(special, out=extra[1:])
    owner = np.repeat(np.arange(n, dtype=np.int64), batch.caplen)
    pos = np.arange(len(data), dtype=np.int64) + extra[:-1] + 2 * owner + 1
    out = np.full(len(data) + int(extra[-1]) + 2 * n, END, dtype=np.uint8)
    out[pos] = np.where(special, np.uint8(ESC), data)
    sp = pos[special]
    out[sp + 1] = np.where(data[special] == END, np.uint8(ESC_END), np.uint8(ESC_ESC))
    return out.tobytes()


def _int_in(value: object, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{what} must be an integer from {lo} to {hi}, got {value!r}")
    return value


class SlipDecoder:
    """Incremental SLIP decoder: push bytes with ``feed()``, pull ``FrameBatch``es.

    Used like ``CaptureDecoder``: ``feed(chunk)`` as bytes arrive, then
    ``batches()``; ``finish()`` at the end of the input.

    Memory is bounded: the decoder keeps at most the frame in progress, and a
    frame in progress that grows past ``max_frame`` is discarded as it streams
    in, up to the next ``END`` (counted once in ``stats.oversize_dropped``).

    Args:
        max_frame: the largest frame accepted, in unescaped bytes.
        min_frame: shorter non-empty frames are line noise (default 14, an Ethernet header).
        linktype: the link type of the frames (SLIP does not say).
        stats: the counters to update (discarded bytes, oversize, truncated, warnings).
        batch_size: the most frames in one batch.
        name: what to call the input in warnings.
        clock: the arrival clock in ns since the epoch (injected in tests).

    Attributes:
        interfaces: the one interface the frames belong to.
    """

    def __init__(
        self,
        *,
        max_frame: int = 65535,
        min_frame: int = 14,
        linktype: int = 1,
        stats: SourceStats | None = None,
        batch_size: int = 8192,
        name: str = "slip",
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.max_frame = _int_in(max_frame, "max_frame", 1, MAX_FRAME_CEILING)
        self.min_frame = _int_in(min_frame, "min_frame", 1, self.max_frame)
        self.linktype = _int_in(linktype, "linktype", 0, 0xFFFF)
        self.batch_size = _int_in(batch_size, "batch_size", 1, 1 << 24)
        self.stats = stats if stats is not None else SourceStats()
        self.name = name
        self._clock = clock
        self.interfaces: tuple[Interface, ...] = (
            Interface(linktype=self.linktype, snaplen=self.max_frame, name=name),
        )
        # The frame in progress: raw (escaped) chunks since the last END.
        self._tail: list[bytes] = []
        self._tail_len = 0
        self._tail_esc = 0
        # What the bytes before the next END are: "frame", "hunt" (before the first END:
        # discarded as noise), "oversize" (a frame past max_frame) or "garbage" (past any
        # valid escaped length through invalid escapes).
        self._mode = "hunt"
        self._last_ts = 0
        self._next_frame = 1
        self._ready: list[FrameBatch] = []
        self._finished = False

    @property
    def pending(self) -> int:
        """Raw bytes of the frame in progress held in memory."""
        return self._tail_len

    # --- input ---------------------------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append input bytes that arrived now; decode the frames they complete."""
        if self._finished:
            raise ValueError("SlipDecoder.feed() after finish()")
        if not data:
            return
        chunk = data if isinstance(data, bytes) else bytes(data)
        last_end = chunk.rfind(_END_B)
        if last_end < 0:
            self._extend_tail(chunk)
            return
        now = max(self._clock(), self._last_ts)
        self._last_ts = now
        head = b"".join([*self._tail, chunk[: last_end + 1]])
        self._tail, self._tail_len, self._tail_esc = [], 0, 0
        first_mode, self._mode = self._mode, "frame"
        self._split(head, first_mode, now)
        self._extend_tail(chunk[last_end + 1 :])

    def _extend_tail(self, chunk: bytes) -> None:
        """Add bytes of the frame in progress, discarding it once it cannot be valid."""
        if not chunk:
            return
        if self._mode == "hunt":
            self.stats.discarded_bytes += len(chunk)
            return
        if self._mode == "garbage":
            self.stats.discarded_bytes += len(chunk)
            return
        if self._mode == "oversize":
            return
        self._tail.append(chunk)
        self._tail_len += len(chunk)
        self._tail_esc += chunk.count(_ESC_B)
        if self._tail_len - self._tail_esc > self.max_frame:
            self._mode = "oversize"
            self._drop_tail(counted=False)
        elif self._tail_len > 2 * self.max_frame:
            # More ESC bytes than data: invalid escapes, whatever follows.
            self._mode = "garbage"
            self._drop_tail(counted=True)

    def _drop_tail(self, *, counted: bool) -> None:
        if counted:
            self.stats.discarded_bytes += self._tail_len
        self._tail, self._tail_len, self._tail_esc = [], 0, 0

    def _split(self, head: bytes, first_mode: str, now: int) -> None:
        """Decode ``head``, which ends with an END; its first segment is in ``first_mode``."""
        arr = np.frombuffer(head, dtype=np.uint8)
        is_end = arr == END
        ends = np.flatnonzero(is_end)
        starts = np.empty(len(ends), dtype=np.int64)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        raw_len = ends - starts
        is_esc = arr == ESC
        nxt = np.empty_like(arr)
        nxt[:-1] = arr[1:]
        nxt[-1] = END
        # An ESC must be followed by ESC_END or ESC_ESC inside its segment (an END ends it).
        bad = is_esc & (nxt != ESC_END) & (nxt != ESC_ESC)
        bad_cs = np.zeros(len(arr) + 1, dtype=np.int64)
        np.cumsum(bad, out=bad_cs[1:])
        esc_cs = np.zeros(len(arr) + 1, dtype=np.int64)
        np.cumsum(is_esc, out=esc_cs[1:])
        n_bad = bad_cs[ends] - bad_cs[starts]
        length = raw_len - (esc_cs[ends] - esc_cs[starts])
        empty = raw_len == 0
        oversize = ~empty & (n_bad == 0) & (length > self.max_frame)
        noise = ~empty & ~oversize & ((n_bad > 0) | (length < self.min_frame))
        good = ~empty & ~oversize & ~noise
        if first_mode != "frame":
            # The first segment is the end of something already judged.
            good[0] = oversize[0] = noise[0] = False
            if first_mode == "oversize":
                oversize[0] = True
            elif raw_len[0]:
                noise[0] = True
        self.stats.discarded_bytes += int(raw_len[noise].sum())
        n_over = int(oversize.sum())
        if n_over:
            self.stats.oversize_dropped += n_over
            self.stats.warn(
                f"{self.name}: dropped {n_over} SLIP frame(s) over max_frame ({self.max_frame} bytes)"
            )
        if not good.any():
            return
        # Unescape: keep the non-END, non-ESC bytes of good segments; a byte after an ESC
        # is ESC_END or ESC_ESC (the segment is good) and stands for END or ESC.
        seg = np.cumsum(is_end) - is_end
        keep = good[seg] & ~is_end & ~is_esc
        vals = arr.copy()
        after_esc = np.zeros(len(arr), dtype=np.bool_)
        after_esc[1:] = is_esc[:-1]
        vals[after_esc & (arr == ESC_END)] = END
        vals[after_esc & (arr == ESC_ESC)] = ESC
        self._emit(vals[keep], length[good], now)

    def _emit(self, data: NDArray[np.uint8], lengths: NDArray[np.int64], now: int) -> None:
        for lo in range(0, len(lengths), self.batch_size):
            lens = lengths[lo : lo + self.batch_size].astype(np.int64)
            n = len(lens)
            offsets = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(lens, out=offsets[1:])
            start = int(lengths[:lo].sum()) if lo else 0
            self._ready.append(
                FrameBatch(
                    frame=np.arange(self._next_frame, self._next_frame + n, dtype=np.int64),
                    ts_ns=np.full(n, now, dtype=np.int64),
                    caplen=lens,
                    wirelen=lens.copy(),
                    iface=np.zeros(n, dtype=np.int32),
                    data=data[start : start + int(offsets[-1])],
                    offsets=offsets,
                    interfaces=self.interfaces,
                )
            )
            self._next_frame += n

    # --- output --------------------------------------------------------------------------------

    def batches(self) -> Iterator[FrameBatch]:
        """Yield the frames decoded so far, in batches of up to ``batch_size``."""
        ready, self._ready = self._ready, []
        if len(ready) <= 1:
            yield from ready
            return
        # Many small feeds: regroup their frames into full batches.
        group: list[FrameBatch] = []
        count = 0
        for b in ready:
            if count + len(b) > self.batch_size and group:
                yield FrameBatch.concat(group).compact()
                group, count = [], 0
            group.append(b)
            count += len(b)
        if group:
            yield FrameBatch.concat(group).compact() if len(group) > 1 else group[0]

    def finish(self) -> Iterator[FrameBatch]:
        """End of input: yield what is left; an unterminated last frame is dropped.

        A plausible frame cut short by the end of the input counts in
        ``stats.truncated_records`` with a warning; anything else there is noise.
        """
        if self._finished:
            return
        yield from self.batches()
        self._finished = True
        if self._mode == "frame" and self._tail_len:
            raw = b"".join(self._tail)
            arr = np.frombuffer(raw, dtype=np.uint8)
            is_esc = arr == ESC
            nxt = np.append(arr[1:], np.uint8(END))
            valid = not bool((is_esc & (nxt != ESC_END) & (nxt != ESC_ESC)).any())
            if valid and len(raw) - int(is_esc.sum()) >= self.min_frame:
                self.stats.truncated_records += 1
                self.stats.warn(
                    f"{self.name}: the input ended inside a SLIP frame ({len(raw)} bytes); dropped"
                )
            else:
                self.stats.discarded_bytes += len(raw)
        elif self._mode == "oversize":
            self.stats.oversize_dropped += 1
        self._tail, self._tail_len, self._tail_esc = [], 0, 0
