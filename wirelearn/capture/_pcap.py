"""The classic pcap format (libpcap's savefile), as a parser over a byte buffer.

A 24-byte global header (magic, version, snaplen, link type) is followed by
records of a 16-byte header (seconds, fraction, captured length, wire length)
and the captured bytes. The magic tells the byte order and the fraction unit:

=============  ===========  ================================================
magic (file)   fraction     notes
=============  ===========  ================================================
``a1b2c3d4``   microsecond  the common format
``a1b23c4d``   nanosecond
``a1b2cd34``   microsecond  Kuznetzov's patched libpcap: 8 more header bytes
=============  ===========  ================================================

each in either byte order. See ``_walk`` for how records are found without a
Python step per record.
"""

from __future__ import annotations

import struct
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from wirelearn.capture._batch import Interface
from wirelearn.capture._source import SourceStats
from wirelearn.capture._walk import Buffer, Chain, InterfaceTable, Records, Step, u32_at
from wirelearn.errors import FormatError, RecordTooLargeError, WirelearnError

__all__ = ["PCAP_MAGICS", "PcapParser"]

#: Magic as it appears in the file -> (byte order, ns per fraction unit, record header size).
PCAP_MAGICS: dict[bytes, tuple[str, int, int]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000, 16),
    b"\xa1\xb2\xc3\xd4": (">", 1000, 16),
    b"\x4d\x3c\xb2\xa1": ("<", 1, 16),
    b"\xa1\xb2\x3c\x4d": (">", 1, 16),
    b"\x34\xcd\xb2\xa1": ("<", 1000, 24),
    b"\xa1\xb2\xcd\x34": (">", 1000, 24),
}

_GLOBAL_HEADER = 24
#: Bytes of buffer examined per round of candidate search.
_WINDOW = 1 << 20
#: Below this many bytes the careful walk is cheaper than a candidate search.
_FAST_MIN = 4096
#: Candidate searches allowed per window (the first, and after runs of misses).
_SEARCHES = 3
#: Careful steps in a row after which the candidates are searched again.
_MISSES = 16
#: Bytes of garbage examined per round while resynchronising.
_SCAN = 1 << 16
#: A resync candidate's timestamp must lie in [previous - BACK, previous + FWD] seconds.
_RESYNC_BACK = 3600
_RESYNC_FWD = 30 * 86400
#: ... and the record after it must be within this many seconds of it.
_RESYNC_PAIR = 86400
#: Bytes searched for a record near in time before trusting one far from it.
_LOOKAHEAD = 4096


class PcapParser:
    """Walks pcap records in a buffer; see ``CaptureDecoder`` for the buffer side.

    Args:
        name: the input's name, for error messages.
        max_caplen: the largest captured length accepted.
        resync: skip garbage instead of failing (noisy serial lines).
        stats: counters for warnings, discarded and oversize records.
        table: the decoder's global interface table.
    """

    format = "pcap"

    def __init__(
        self,
        *,
        name: str,
        max_caplen: int,
        resync: bool,
        stats: SourceStats,
        table: InterfaceTable,
    ) -> None:
        self.name = name
        self.max_caplen = max_caplen
        self.resync = resync
        self.stats = stats
        self.table = table
        self.header_done = False
        self.order = "<"
        self.unit = 1000
        self.hs = 16
        self.snaplen = 0
        self.iface = 0
        self.over_snaplen = 0
        self._rec = struct.Struct("<IIII")
        self._ref: int | None = None
        self._prev_s: int | None = None
        self._confirm = False
        # The candidates of the current window: (buffer, window start, window end, chain).
        self._cache: tuple[Buffer, int, int, Chain | None] | None = None

    # --- the global header ----------------------------------------------------------------------

    def _header(self, buf: Buffer, pos: int, base: int) -> WirelearnError | None:
        """Adopt the global header at ``pos`` (24 bytes are there)."""
        order, unit, hs = PCAP_MAGICS[bytes(buf[pos : pos + 4])]
        major, minor, _zone, _sigfigs, snaplen, network = struct.unpack_from(
            order + "HHiIII", buf, pos + 4
        )
        if major < 2:
            return FormatError(
                f"unsupported pcap version {major}.{minor}", path=self.name, offset=base + pos + 4
            )
        self.order, self.unit, self.hs, self.snaplen = order, unit, hs, snaplen
        self._rec = struct.Struct(order + "IIII")
        self._ref = None
        self._cache = None
        # The upper 16 bits carry FCS information (libpcap's LT_FCS_*); the link type is below.
        linktype = network & 0xFFFF
        itf = Interface(linktype=linktype, snaplen=snaplen, tsresol=1_000_000_000 // unit)
        self.iface = self.table.add(itf, reuse=True)
        self.header_done = True
        return None

    # --- records -------------------------------------------------------------------------------

    def _records(self, arr: NDArray[np.uint8], hdr: NDArray[np.int64], base: int) -> Records:
        """Decode the record headers at offsets ``hdr`` into record arrays."""
        n = len(hdr)
        if n == 0:
            return Records.empty()
        # One gather of every header's first 16 bytes (a fancy index over a 16-byte item
        # view with a one-byte stride: no index matrix), then read as four 32-bit columns.
        heads = np.ndarray(
            shape=(max(len(arr) - 15, 0),), dtype=np.dtype("V16"), buffer=arr, strides=(1,)
        )
        words = heads[hdr].view(self.order + "u4").reshape(n, 4).astype(np.int64)
        caplen = words[:, 2]
        ts = words[:, 0] * 1_000_000_000 + words[:, 1] * self.unit
        if self.snaplen:
            over = caplen > self.snaplen
            k = int(np.count_nonzero(over))
            if k:
                if not self.over_snaplen:
                    i = int(np.argmax(over))
                    self.stats.warn(
                        f"{self.name}: offset {base + int(hdr[i])}: captured length "
                        f"{int(caplen[i])} exceeds the snaplen {self.snaplen}; "
                        "kept whole, as tshark does (libpcap cuts them to the snaplen)"
                    )
                self.over_snaplen += k
        return Records(
            start=hdr + self.hs,
            caplen=caplen,
            wirelen=words[:, 3],
            ts_ns=ts,
            iface=np.full(n, self.iface, dtype=np.int32),
        )

    def _candidates(
        self, arr: NDArray[np.uint8], u32: NDArray[np.uint32], pos: int, wend: int, end: int
    ) -> Chain | None:
        """Likely record starts in ``[pos, wend)``: the seconds' top 16 bits of the last record.

        Those bits change every 18 hours; records they miss are found by the
        careful step, which also searches again after a run of misses.
        """
        if self._ref is None:
            return None
        hs = self.hs
        lim = min(wend, end - hs + 1)
        if lim - pos < _FAST_MIN:
            return None
        # The seconds' top 16 bits, compared as 16-bit words: two views of the window
        # (even and odd offsets), so half as many compares as bytes and no second test.
        at = pos + (2 if self.order == "<" else 0)
        ref = np.uint16(self._ref)
        found = []
        for par in (0, 1):
            k = (lim - pos - par + 1) // 2
            words = arr[at + par : at + par + 2 * k].view(self.order + "u2")
            found.append(np.flatnonzero(words == ref) * 2 + (pos + par))
        c = np.concatenate(found)
        c.sort(kind="stable")  # two sorted runs: one merge
        if len(c) == 0:
            return None
        cap = u32[c + 8].astype(np.int64)
        nxt = c + hs + cap
        ok = (cap <= self.max_caplen) & (nxt <= end)
        c = c[ok]
        return Chain(c, nxt[ok]) if len(c) else None

    def forget_buffer(self) -> None:
        """Drop what refers to the current buffer (its candidates), so it can be freed."""
        self._cache = None

    def _too_large(self, cap: int, at: int) -> RecordTooLargeError:
        return RecordTooLargeError(
            f"record captured length {cap} exceeds the limit of {self.max_caplen} bytes",
            path=self.name,
            offset=at,
        )

    def walk(
        self,
        buf: Buffer,
        arr: NDArray[np.uint8],
        pos: int,
        end: int,
        base: int,
        max_records: int,
        final: bool,
    ) -> Step:
        """Walk records from ``pos`` in ``buf[:end]``; see ``Step``.

        Args:
            buf: the buffer; ``arr`` is the same bytes as a numpy array.
            arr: ``buf`` as ``uint8``.
            pos: where to start (a record or global header boundary).
            end: the end of valid data.
            base: the stream offset of ``buf[0]``, for error offsets.
            max_records: the most records to return.
            final: no more data will come.
        """
        if self.resync:
            return self._walk_resync(buf, arr, pos, end, base, max_records, final)
        if not self.header_done:
            if end - pos < _GLOBAL_HEADER:
                return Step(Records.empty(), pos, need=_GLOBAL_HEADER)
            bad = self._header(buf, pos, base)
            if bad is not None:
                return Step(Records.empty(), pos, fault=bad)
            pos += _GLOBAL_HEADER
        hs = self.hs
        unpack = self._rec.unpack_from
        maxcap = self.max_caplen
        u32 = u32_at(buf, self.order)
        pieces: list[NDArray[np.int64]] = []
        slow: list[int] = []
        n = 0
        need = 0
        fault: WirelearnError | None = None
        while n < max_records and need == 0 and fault is None and pos < end:
            cached = self._cache
            if cached is not None and cached[0] is buf and cached[1] <= pos < cached[2]:
                wend, chain = cached[2], cached[3]
            else:
                wend = min(end, pos + _WINDOW)
                chain = self._candidates(arr, u32, pos, wend, end)
                self._cache = (buf, pos, wend, chain)
            searches = 1
            misses = 0
            while n < max_records and pos < wend:
                if chain is not None:
                    idx, newpos = chain.follow(pos, max_records - n)
                    if len(idx):
                        if slow:
                            pieces.append(np.array(slow, dtype=np.int64))
                            slow = []
                        pieces.append(chain.cand[idx])
                        n += len(idx)
                        pos = newpos
                        misses = 0
                        continue
                # The careful step: one record, every check, every error.
                if pos + hs > end:
                    need = hs
                    break
                sec, _frac, cap, _wl = unpack(buf, pos)
                if cap > maxcap:
                    fault = self._too_large(cap, base + pos + 8)
                    break
                if pos + hs + cap > end:
                    need = hs + cap
                    break
                slow.append(pos)
                pos += hs + cap
                n += 1
                misses += 1
                if (chain is None or misses >= _MISSES) and searches < _SEARCHES:
                    self._ref = sec >> 16
                    chain = self._candidates(arr, u32, pos, wend, end)
                    self._cache = (buf, pos, wend, chain)
                    searches += 1
                    misses = 0
        if slow:
            pieces.append(np.array(slow, dtype=np.int64))
        hdr = (pieces[0] if len(pieces) == 1 else np.concatenate(pieces)) if pieces else None
        records = self._records(arr, hdr, base) if hdr is not None else Records.empty()
        if hdr is not None:
            self._ref = int(u32[int(hdr[-1])]) >> 16
        return Step(records, pos, need=need, fault=fault)

    # --- resynchronising walk (noisy serial lines) ----------------------------------------------

    def _plausible(self, frac: int, cap: int, wl: int) -> bool:
        """Whether a record header could be real, ignoring the size limit."""
        snap = self.snaplen if self.snaplen else 0x7FFFFFFF
        return frac < 1_000_000_000 // self.unit and cap <= snap and wl >= cap

    def _header_plausible(self, buf: Buffer, q: int) -> bool:
        """Whether the 24 bytes at ``q`` look like a real global header."""
        info = PCAP_MAGICS.get(bytes(buf[q : q + 4]))
        if info is None:
            return False
        major, minor, _z, _s, snaplen, _net = struct.unpack_from(info[0] + "HHiIII", buf, q + 4)
        return bool(major == 2 and minor == 4 and snaplen <= 0x7FFFFFFF)

    def tail_is_record(self, tail: Buffer) -> bool:
        """Whether bytes left at the end of a resynchronised stream start a plausible record."""
        if not self.header_done or len(tail) < self.hs:
            return False
        _sec, frac, cap, wl = self._rec.unpack_from(tail, 0)
        return self._plausible(frac, cap, wl)

    def _discard(self, count: int) -> None:
        if count > 0:
            self.stats.discarded_bytes += count

    def _first_in_window(
        self, buf: Buffer, arr: NDArray[np.uint8], start: int, stop: int
    ) -> int | None:
        """The first offset in ``[start, stop)`` holding a global header or a plausible
        record header near in time to the last record."""
        count = stop - self.hs + 1 - start
        if count <= 0 or self._prev_s is None:
            return None
        words = u32_at(buf, self.order)[start : start + count + 12]
        sec, frac = words[:count], words[4 : 4 + count]
        cap, wl = words[8 : 8 + count], words[12 : 12 + count]
        snap = self.snaplen if self.snaplen else 0x7FFFFFFF
        ok = (frac < 1_000_000_000 // self.unit) & (cap <= min(snap, self.max_caplen)) & (wl >= cap)
        ok &= (sec >= max(self._prev_s - _RESYNC_BACK, 0)) & (sec <= self._prev_s + _RESYNC_FWD)
        for magic in PCAP_MAGICS:
            ok |= sec == np.uint32(int.from_bytes(magic, _ORDER[self.order]))
        hits = np.flatnonzero(ok)
        return start + int(hits[0]) if len(hits) else None

    def _in_window(self, sec: int) -> bool:
        prev = self._prev_s
        return prev is None or prev - _RESYNC_BACK <= sec <= prev + _RESYNC_FWD

    def _accept_candidate(self, buf: Buffer, q: int, end: int, final: bool) -> bool | None:
        """Judge a record candidate at ``q``: True, False, or None when more data is needed.

        A plausible header whose time is near the last record's is enough (random
        bytes pass these tests about once in 2^39, and the record after it may well be
        garbage too). With no record yet it needs one plausible header after it; far
        in time from the last one (a clock jump, or shifted bytes that look like a
        header) it needs a chain of three, each close in time to the one before.
        """
        hs = self.hs
        sec, frac, cap, wl = self._rec.unpack_from(buf, q)
        if not (self._plausible(frac, cap, wl) and cap <= self.max_caplen):
            return False
        if self._prev_s is None:
            links = 1
        else:
            links = 0 if self._in_window(sec) else 3
        nq = q + hs + cap
        for _ in range(links):
            if nq + 4 <= end and buf[nq : nq + 4] in PCAP_MAGICS:
                return True
            if nq + hs > end:
                return bool(nq <= end) if final else None
            s2, f2, c2, w2 = self._rec.unpack_from(buf, nq)
            if not (self._plausible(f2, c2, w2) and abs(s2 - sec) <= _RESYNC_PAIR):
                return False
            sec = s2
            nq += hs + c2
        return True

    def _scan(
        self, buf: Buffer, arr: NDArray[np.uint8], pos: int, end: int, final: bool
    ) -> tuple[int, bool]:
        """Look for a global header or a record from ``pos``.

        Returns:
            The offset reached and whether a record/header starts there (False:
            more data is needed before anything at that offset can be judged).
            Bytes before the offset are counted as discarded.
        """
        hs = self.hs
        start = pos
        while True:
            if self.header_done:
                count = min(_SCAN, end - hs + 1 - pos)
                ulen = count + 12
            else:
                count = min(_SCAN, end - 3 - pos)
                ulen = count
            if count <= 0:
                break
            words = u32_at(buf, self.order)[pos : pos + ulen]
            heads = np.zeros(count, dtype=np.bool_)
            for magic in PCAP_MAGICS:
                heads |= words[:count] == np.uint32(int.from_bytes(magic, _ORDER[self.order]))
            if self.header_done:
                frac, cap, wl = words[4 : 4 + count], words[8 : 8 + count], words[12 : 12 + count]
                snap = self.snaplen if self.snaplen else 0x7FFFFFFF
                recs = (frac < 1_000_000_000 // self.unit) & (cap <= min(snap, self.max_caplen))
                recs &= wl >= cap
                heads |= recs
            for q in np.flatnonzero(heads).tolist():
                q += pos
                if buf[q : q + 4] in PCAP_MAGICS:
                    if q + _GLOBAL_HEADER > end:
                        self._discard(q - start)
                        return q, False
                    if self._header_plausible(buf, q):
                        self._discard(q - start)
                        return q, True
                    continue
                verdict = self._accept_candidate(buf, q, end, final)
                if verdict is None:
                    self._discard(q - start)
                    self._confirm = True
                    return q, False
                if verdict:
                    self._discard(q - start)
                    return q, True
            pos += count
        if final:
            self._discard(end - start)
            return end, False
        self._discard(pos - start)
        return pos, False

    def _walk_resync(
        self,
        buf: Buffer,
        arr: NDArray[np.uint8],
        pos: int,
        end: int,
        base: int,
        max_records: int,
        final: bool,
    ) -> Step:
        slow: list[int] = []
        need = 0
        while len(slow) < max_records:
            if not self.header_done or self._confirm:
                if pos + 4 > end:
                    need = 4
                    break
                if self._confirm and self.header_done:
                    if pos + self.hs > end:
                        need = self.hs
                        break
                    verdict = self._accept_candidate(buf, pos, end, final)
                    if verdict is None:
                        need = end - pos + 1
                        break
                    self._confirm = False
                    if not verdict:
                        pos, found = self._scan(buf, arr, pos + 1, end, final)
                        self._discard(1)
                        if not found:
                            need = 0 if final else end - pos + 1
                            break
                        continue
                elif buf[pos : pos + 4] not in PCAP_MAGICS:
                    pos, found = self._scan(buf, arr, pos, end, final)
                    if not found:
                        need = 0 if final else end - pos + 1
                        break
                    continue
            if buf[pos : pos + 4] in PCAP_MAGICS and end - pos >= 4:
                if end - pos < _GLOBAL_HEADER:
                    need = _GLOBAL_HEADER
                    break
                if self._header_plausible(buf, pos) or not self.header_done:
                    if slow:
                        break  # a new header may change the record layout: flush first
                    fault = self._header(buf, pos, base)
                    if fault is None:
                        pos += _GLOBAL_HEADER
                        continue
                if not self.header_done:
                    pos, found = self._scan(buf, arr, pos + 1, end, final)
                    self._discard(1)
                    if not found:
                        need = 0 if final else end - pos + 1
                        break
                    continue
            hs = self.hs
            if pos + hs > end:
                need = hs
                break
            sec, frac, cap, wl = self._rec.unpack_from(buf, pos)
            plausible = self._plausible(frac, cap, wl)
            if plausible and not self._in_window(sec):
                # Far in time from the last record: a clock jump, or garbage that shifted
                # the records (whose shifted headers can look plausible, even in a chain).
                # A record near in time a little further on wins; failing that, a chain.
                # (An oversize record is only trusted near in time: it cannot be checked.)
                near = self._first_in_window(buf, arr, pos + 1, min(end, pos + _LOOKAHEAD))
                if near is not None:
                    self._discard(near - pos)
                    pos = near
                    continue
                if end - pos < _LOOKAHEAD and not final:
                    need = end - pos + 1
                    break
                verdict = self._accept_candidate(buf, pos, end, final)
                if verdict is None:
                    need = end - pos + 1
                    break
                plausible = verdict
            if plausible:
                if cap > self.max_caplen:
                    # A real record over the limit: drop it as it streams past, never buffer it.
                    self.stats.oversize_dropped += 1
                    self.stats.warn(
                        f"{self.name}: offset {base + pos}: dropped a {cap}-byte record "
                        f"over the {self.max_caplen}-byte limit"
                    )
                    pos += hs + cap
                    if pos > end:
                        break
                    continue
                if pos + hs + cap > end:
                    need = hs + cap
                    break
                slow.append(pos)
                self._prev_s = sec
                pos += hs + cap
                continue
            pos, found = self._scan(buf, arr, pos + 1, end, final)
            self._discard(1)
            if not found:
                need = 0 if final else end - pos + 1
                break
        hdr = np.array(slow, dtype=np.int64)
        return Step(self._records(arr, hdr, base), pos, need=need)


_ORDER: dict[str, Literal["little", "big"]] = {"<": "little", ">": "big"}
