"""The pcapng format, as a parser over a byte buffer.

A pcapng stream is a sequence of blocks ``type, length, body, length``, each a
multiple of 4 bytes. A Section Header Block (SHB) starts each section and sets
its byte order; Interface Description Blocks (IDB) describe the section's
interfaces (link type, snaplen, ``if_tsresol``, ``if_tsoffset``); frames come
in Enhanced (EPB), Simple (SPB) and obsolete Packet Blocks (OPB). Every other
block (name resolution, statistics, decryption secrets, custom, ...) is
checked for a sound length and skipped.

Interface ids in packet blocks are local to their section; this parser maps
them into the decoder's one global, growing interface table.
"""

from __future__ import annotations

import struct

import numpy as np
from numpy.typing import NDArray

from wirelearn.capture._batch import Interface
from wirelearn.capture._source import SourceStats
from wirelearn.capture._walk import Buffer, Chain, InterfaceTable, Records, Step
from wirelearn.errors import FormatError, RecordTooLargeError, WirelearnError

__all__ = ["PCAPNG_MAGIC", "PcapngParser"]

#: The SHB block type; the same bytes in either byte order.
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_SHB = 0x0A0D0D0A
_IDB = 1
_OPB = 2
_SPB = 3
_EPB = 6
_BOM = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
#: Smallest valid length of each block type we read (header, fixed fields, trailer).
_MIN_LEN = {_SHB: 28, _IDB: 20, _OPB: 32, _SPB: 16, _EPB: 32}
_PACKET_NAMES = {_EPB: "enhanced packet block", _OPB: "packet block", _SPB: "simple packet block"}
#: No block may be longer than this (nor than the frame limit plus room for options).
_MAX_BLOCK = 16 << 20
_WINDOW = 1 << 20
_FAST_MIN = 4096
_SEARCHES = 3
_MISSES = 16
#: Seconds are clamped here so that ns stay within int64 (the year 2262).
_MAX_SEC = 9_223_372_035
_NS = 1_000_000_000


class PcapngParser:
    """Walks pcapng blocks in a buffer; see ``CaptureDecoder`` for the buffer side.

    Args:
        name: the input's name, for error messages.
        max_caplen: the largest captured length accepted.
        stats: counters for warnings.
        table: the decoder's global interface table.
    """

    format = "pcapng"

    def __init__(
        self, *, name: str, max_caplen: int, stats: SourceStats, table: InterfaceTable
    ) -> None:
        self.name = name
        self.max_caplen = max_caplen
        self.stats = stats
        self.table = table
        self.max_block = max(_MAX_BLOCK, max_caplen + 65536 + 32)
        self.header_done = False
        self.sections = 0
        self.order = "<"
        self._u32 = struct.Struct("<I")
        self._hdr = struct.Struct("<II")
        self._pkt = struct.Struct("<IIIII")
        # The current section's interfaces: global index, units per second, offset (s), snaplen.
        self._gid: list[int] = []
        self._res: list[int] = []
        self._off: list[int] = []
        self._snap: list[int] = []
        self._arrays: tuple[NDArray[np.int64], NDArray[np.uint64], NDArray[np.int64]] | None = None
        self._last_ts = 0
        self.over_snaplen = 0

    # --- timestamps ----------------------------------------------------------------------------

    def _section_arrays(
        self,
    ) -> tuple[NDArray[np.int64], NDArray[np.uint64], NDArray[np.int64]]:
        if self._arrays is None:
            self._arrays = (
                np.array(self._gid, dtype=np.int64),
                np.array(self._res, dtype=np.uint64),
                np.array(self._off, dtype=np.int64),
            )
        return self._arrays

    def _make(
        self,
        start: NDArray[np.int64],
        caplen: NDArray[np.int64],
        wirelen: NDArray[np.int64],
        units: NDArray[np.uint64],
        local: NDArray[np.int64],
        no_ts: NDArray[np.bool_] | None,
    ) -> Records:
        """Records from packet fields, converting timestamps with each interface's resolution."""
        n = len(start)
        if n == 0:
            return Records.empty()
        gid, res, off = self._section_arrays()
        r = res[local]
        q, rem = np.divmod(units, r)
        frac = np.zeros(n, dtype=np.uint64)
        small = r <= np.uint64(1 << 34)
        if small.all():
            frac = rem * np.uint64(_NS) // r
        else:
            # Resolutions finer than 2^-34 s: keep the arithmetic inside 64 bits.
            frac[small] = rem[small] * np.uint64(_NS) // r[small]
            big = ~small
            rb, remb = r[big], rem[big]
            dec = rb % np.uint64(_NS) == 0
            out = np.empty(len(rb), dtype=np.uint64)
            out[dec] = remb[dec] // (rb[dec] // np.uint64(_NS))
            shift = np.log2(rb[~dec].astype(np.float64)).astype(np.uint64) - np.uint64(34)
            out[~dec] = ((remb[~dec] >> shift) * np.uint64(_NS)) >> np.uint64(34)
            frac[big] = out
        sec = np.minimum(q, np.uint64(_MAX_SEC)).astype(np.int64) + off[local]
        ts = np.clip(sec, -_MAX_SEC, _MAX_SEC) * _NS + frac.astype(np.int64)
        if no_ts is not None and no_ts.any():
            # Simple packet blocks carry no time: repeat the previous frame's.
            idx = np.where(no_ts, -1, np.arange(n))
            idx = np.maximum.accumulate(idx)
            ts = np.where(idx >= 0, ts[np.maximum(idx, 0)], self._last_ts)
        self._last_ts = int(ts[-1])
        snaps = np.array(self._snap, dtype=np.int64)[local]
        over = (snaps > 0) & (caplen > snaps)
        k = int(np.count_nonzero(over))
        if k:
            if not self.over_snaplen:
                i = int(np.argmax(over))
                self.stats.warn(
                    f"{self.name}: captured length {int(caplen[i])} exceeds the snaplen "
                    f"{int(snaps[i])} of its interface; kept, as tshark does"
                )
            self.over_snaplen += k
        return Records(start, caplen, wirelen, ts, gid[local].astype(np.int32))

    # --- blocks --------------------------------------------------------------------------------

    def _error(self, message: str, at: int) -> FormatError:
        return FormatError(message, path=self.name, offset=at)

    def _too_large(self, cap: int, at: int) -> RecordTooLargeError:
        return RecordTooLargeError(
            f"record captured length {cap} exceeds the limit of {self.max_caplen} bytes",
            path=self.name,
            offset=at,
        )

    def _set_order(self, order: str) -> None:
        self.order = order
        self._u32 = struct.Struct(order + "I")
        self._hdr = struct.Struct(order + "II")
        self._pkt = struct.Struct(order + "IIIII")

    def _section_header(self, buf: Buffer, p: int, base: int) -> WirelearnError | None:
        major, minor = struct.unpack_from(self.order + "HH", buf, p + 12)
        if major != 1:
            return self._error(f"unsupported pcapng version {major}.{minor}", base + p + 12)
        self.header_done = True
        self.sections += 1
        self._gid, self._res, self._off, self._snap = [], [], [], []
        self._arrays = None
        return None

    def _interface(self, buf: Buffer, p: int, blen: int, base: int) -> WirelearnError | None:
        order = self.order
        linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", buf, p + 8)
        res, off, name = 1_000_000, 0, None
        o, oend = p + 16, p + blen - 4
        while o + 4 <= oend:
            code, olen = struct.unpack_from(order + "HH", buf, o)
            if code == 0:
                break
            if o + 4 + olen > oend:
                return self._error(
                    f"interface option {code} of {olen} bytes overflows its block", base + o
                )
            value = bytes(buf[o + 4 : o + 4 + olen])
            if code == 2:
                name = value.rstrip(b"\0").decode("utf-8", "replace")
            elif code == 9 and olen >= 1:
                exp = value[0] & 0x7F
                if value[0] & 0x80:
                    if exp > 63:
                        return self._error(f"if_tsresol 2^-{exp} is not supported", base + o + 4)
                    res = 1 << exp
                else:
                    if exp > 19:
                        return self._error(f"if_tsresol 10^-{exp} is not supported", base + o + 4)
                    res = 10**exp
            elif code == 14 and olen == 8:
                (off,) = struct.unpack_from(order + "q", buf, o + 4)
                off = max(-_MAX_SEC, min(_MAX_SEC, off))
            o += 4 + ((olen + 3) & ~3)
        itf = Interface(linktype=linktype, snaplen=snaplen, name=name, tsresol=res)
        self._gid.append(self.table.add(itf))
        self._res.append(res)
        self._off.append(off)
        self._snap.append(snaplen)
        self._arrays = None
        return None

    def _candidates(self, buf: Buffer, pos: int, wend: int, end: int) -> Chain | None:
        """Enhanced packet blocks in ``[pos, wend)`` that are complete and sound."""
        nloc = len(self._gid)
        if nloc == 0 or wend - pos < _FAST_MIN:
            return None
        count = (end - pos) // 4
        words = np.frombuffer(buf, dtype=self.order + "u4", count=count, offset=pos)
        wn = min(count, (wend - pos) // 4) - 7
        if wn <= 0:
            return None
        w = np.flatnonzero(words[:wn] == _EPB).astype(np.int64)
        blen = words[w + 1].astype(np.int64)
        nw = blen // 4
        ok = (blen >= 32) & (blen % 4 == 0) & (blen <= self.max_block) & (w + nw <= count)
        w, blen, nw = w[ok], blen[ok], nw[ok]
        cap = words[w + 5].astype(np.int64)
        ok = (words[w + nw - 1] == blen) & (cap <= blen - 32) & (cap <= self.max_caplen)
        ok &= words[w + 2] < nloc
        cand = pos + 4 * w[ok]
        return Chain(cand, cand + blen[ok]) if len(cand) else None

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
        """Walk blocks from ``pos`` in ``buf[:end]``; see ``PcapParser.walk``."""
        pieces: list[Records] = []
        s_start: list[int] = []
        s_cap: list[int] = []
        s_wl: list[int] = []
        s_units: list[int] = []
        s_local: list[int] = []
        s_nots: list[bool] = []

        def flush() -> None:
            if s_start:
                pieces.append(
                    self._make(
                        np.array(s_start, dtype=np.int64),
                        np.array(s_cap, dtype=np.int64),
                        np.array(s_wl, dtype=np.int64),
                        np.array(s_units, dtype=np.uint64),
                        np.array(s_local, dtype=np.int64),
                        np.array(s_nots, dtype=np.bool_) if any(s_nots) else None,
                    )
                )
                for lst in (s_start, s_cap, s_wl, s_units, s_local, s_nots):
                    lst.clear()

        n = 0
        need = 0
        fault: WirelearnError | None = None
        full = False
        while not full and need == 0 and fault is None and pos < end:
            wend = min(end, pos + _WINDOW)
            chain = self._candidates(buf, pos, wend, end) if self.header_done else None
            searches = 1
            misses = 0
            while pos < wend:
                if n >= max_records and not self._metadata_at(buf, pos, end):
                    # Enough frames; section and interface blocks are still read, so
                    # that ``max_records=0`` reads the headers alone.
                    full = True
                    break
                if chain is not None:
                    idx, newpos = chain.follow(pos, max_records - n)
                    if len(idx):
                        flush()
                        pieces.append(self._fast(buf, chain.cand[idx]))
                        n += len(idx)
                        pos = newpos
                        misses = 0
                        continue
                # The careful step: one block, every check, every error.
                if end - pos < 12:
                    need = 12
                    break
                btype = self._u32.unpack_from(buf, pos)[0]
                order = self.order
                if btype == _SHB or not self.header_done:
                    if buf[pos : pos + 4] != PCAPNG_MAGIC:
                        fault = self._error(
                            f"expected a pcapng section header block, found type 0x{btype:08x}",
                            base + pos,
                        )
                        break
                    bom = bytes(buf[pos + 8 : pos + 12])
                    if bom not in _BOM:
                        fault = self._error(
                            f"bad pcapng byte-order magic 0x{bom.hex()} in a section header",
                            base + pos + 8,
                        )
                        break
                    order = _BOM[bom]
                    btype = _SHB
                blen = struct.unpack_from(order + "I", buf, pos + 4)[0]
                if btype in (_EPB, _OPB) and end - pos < 28 and not final:
                    # The captured length is checked before the block length: wait for it,
                    # so the error found does not depend on where the input was cut.
                    need = 28
                    break
                if btype in (_EPB, _OPB) and end - pos >= 28:
                    cap = self._u32.unpack_from(buf, pos + 20)[0]
                    if cap > self.max_caplen:
                        fault = self._too_large(cap, base + pos + 20)
                        break
                    if blen >= 32 and cap > blen - 32:
                        fault = self._error(
                            f"captured length {cap} overflows its {blen}-byte "
                            f"{_PACKET_NAMES[btype]}",
                            base + pos + 20,
                        )
                        break
                if blen % 4 or blen < _MIN_LEN.get(btype, 12) or blen > self.max_block:
                    fault = self._error(
                        f"bad block length {blen} for block type 0x{btype:08x}", base + pos + 4
                    )
                    break
                if pos + blen > end:
                    need = blen
                    break
                trailer = struct.unpack_from(order + "I", buf, pos + blen - 4)[0]
                if trailer != blen:
                    fault = self._error(
                        f"block length mismatch: {blen} at the start, {trailer} at the end",
                        base + pos + blen - 4,
                    )
                    break
                if btype == _SHB:
                    flush()
                    self._set_order(order)
                    fault = self._section_header(buf, pos, base)
                    if fault is not None:
                        break
                    chain = None
                elif btype == _IDB:
                    flush()
                    fault = self._interface(buf, pos, blen, base)
                    if fault is not None:
                        break
                    chain = None
                elif btype in (_EPB, _OPB, _SPB):
                    lists = (s_start, s_cap, s_wl, s_units, s_local, s_nots)
                    fault = self._packet(buf, pos, blen, btype, base, lists)
                    if fault is not None:
                        break
                    n += 1
                pos += blen
                misses += 1
                if (chain is None or misses >= _MISSES) and searches < _SEARCHES:
                    chain = self._candidates(buf, pos, wend, end)
                    searches += 1
                    misses = 0
        flush()
        return Step(Records.concat(pieces), pos, need=need, fault=fault)

    def _metadata_at(self, buf: Buffer, pos: int, end: int) -> bool:
        """Whether the block at ``pos`` (if its type is known yet) describes rather than carries."""
        if not self.header_done or end - pos < 4:
            return True
        return buf[pos : pos + 4] == PCAPNG_MAGIC or self._u32.unpack_from(buf, pos)[0] == _IDB

    def _fast(self, buf: Buffer, cand: NDArray[np.int64]) -> Records:
        """Records of the sound enhanced packet blocks starting at ``cand``."""
        lo = int(cand[0])
        hi = int(cand[-1]) + 28
        words = np.frombuffer(buf, dtype=self.order + "u4", count=(hi - lo) // 4, offset=lo)
        w = (cand - lo) // 4
        local = words[w + 2].astype(np.int64)
        units = (words[w + 3].astype(np.uint64) << np.uint64(32)) | words[w + 4].astype(np.uint64)
        return self._make(
            cand + 28,
            words[w + 5].astype(np.int64),
            words[w + 6].astype(np.int64),
            units,
            local,
            None,
        )

    def _packet(
        self,
        buf: Buffer,
        p: int,
        blen: int,
        btype: int,
        base: int,
        lists: tuple[list[int], list[int], list[int], list[int], list[int], list[bool]],
    ) -> WirelearnError | None:
        """Check one packet block and append its fields to ``lists``."""
        s_start, s_cap, s_wl, s_units, s_local, s_nots = lists
        nloc = len(self._gid)
        if btype == _SPB:
            if nloc == 0:
                return self._error("simple packet block in a section with no interface", base + p)
            (wl,) = self._u32.unpack_from(buf, p + 8)
            room = blen - 16
            snap = self._snap[0]
            cap = min(wl, room, snap) if snap else min(wl, room)
            if cap > self.max_caplen:
                return self._too_large(cap, base + p + 8)
            s_start.append(p + 12)
            s_cap.append(cap)
            s_wl.append(wl)
            s_units.append(0)
            s_local.append(0)
            s_nots.append(True)
            return None
        if btype == _EPB:
            ifc, hi, lo, cap, wl = self._pkt.unpack_from(buf, p + 8)
        else:
            ifc, _drops, hi, lo, cap, wl = struct.unpack_from(self.order + "HHIIII", buf, p + 8)
        if ifc >= nloc:
            return self._error(
                f"{_PACKET_NAMES[btype]} refers to interface {ifc}, "
                f"but its section describes {nloc}",
                base + p + 8,
            )
        s_start.append(p + 28)
        s_cap.append(cap)
        s_wl.append(wl)
        s_units.append((hi << 32) | lo)
        s_local.append(ifc)
        s_nots.append(False)
        return None
