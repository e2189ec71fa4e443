"""Vectorized decoding of a ``FrameBatch`` into the fixed feature columns.

``decode`` walks the link, network and transport headers of every frame of a
batch at once with numpy: each step gathers the same field from every frame
that has it, using per-frame absolute positions into the batch's byte buffer.
The only Python loops are over chunks of frames (to keep the gathered header
bytes in cache) and over header depth (VLAN tags, IPv6 extension headers),
both with a fixed bound. No Python object is created per frame.

Safety: a gather never reads past the batch buffer (``mode="clip"``), and a
value is only stored when the field lies within its own frame's captured
bytes (``position + width <=`` the frame's end); everything else stays null.

Decoding rules (also the contract for the columns' meaning):

* **Link types.** Ethernet (1, with up to ``MAX_VLAN_TAGS`` tags of TPID
  0x8100, 0x88A8 or 0x9100); Linux SLL (113) and SLL2 (276), whose source
  address is a MAC when the address length is 6 (ARPHRD_NETLINK excluded) and
  whose protocol field is an ethertype when it is above 1536 (the rest are
  Linux-internal protocol numbers, so ``ethertype`` is null); raw IP (101, and
  12 and 14 as they appear in files; the first nibble picks IPv4 or IPv6);
  IPV4 (228); IPV6 (229); NULL (0, the address family in either byte order,
  resolved as tshark does) and LOOP (108, network byte order), with AF_INET 2
  and AF_INET6 10, 24, 28 and 30. Any other link type gets only the
  link-independent columns and ``STATUS_UNDECODED``.
* **ethertype** is the type/length field after any VLAN tags; for IEEE 802.3
  frames it is the length. Link types without such a field leave it null.
* **payload_len** counts the captured bytes after the link-layer header and
  its VLAN tags (for raw IP link types, the whole frame).
* **ip_proto** is the IPv4 protocol, or for IPv6 the upper-layer protocol
  after walking up to ``MAX_IPV6_EXT`` extension headers (hop-by-hop 0,
  routing 43, fragment 44, destination options 60, AH 51, mobility 135,
  HIP 139, shim6 140, experimental 253 and 254). ESP (50) and no-next-header
  (59) end the walk and are reported as such. A chain longer than the bound
  reports the extension header where the walk stopped.
* **sport/dport** are filled for TCP, UDP, UDP-Lite, SCTP and DCCP, which all
  start with 16-bit source and destination ports (useful for flows), and only
  on the first fragment. **tcp_flags** is the 12-bit field as tshark's
  ``tcp.flags``. ICMP errors and tunnels report the *outer* headers only.
* A zero IPv4 total length is taken as TCP segmentation offload (the frame
  length counts instead), as tshark does; so is a zero IPv6 payload length.

Status: each frame gets exactly one code. Decoding stops at the first header
that fails, so the status names that header's problem:

* ``STATUS_TRUNCATED``: a header runs past the captured bytes. Every field
  that still fits is filled (e.g. ``dst_mac`` from 6 bytes on). This is about
  the captured bytes only; the wire length is not consulted (many sources do
  not know it), except to stand in for a zero IP length.
* ``STATUS_MALFORMED``: a header is present but impossible (a non-4 version
  in IPv4, IHL < 5, total length < header length, a non-6 version in IPv6,
  a raw-IP frame that is neither, a TCP data offset < 5, a UDP length below 8
  or a DCCP data offset below 3, a transport header longer than the datagram
  its IP header announces). The columns of the layers
  below are kept, as dpkt degrades rather than fails; the impossible header
  keeps only what identifies it (``ip_version`` for a bad IPv4 header, the
  ports for a bad TCP header, as tshark shows them).
* Precedence: a header whose captured bytes already prove it impossible is
  malformed even if it is also cut short; it is truncated only when what is
  missing could have made it valid.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from wirelearn.capture._batch import FrameBatch
from wirelearn.features._schema import (
    STATUS_MALFORMED,
    STATUS_TRUNCATED,
    STATUS_UNDECODED,
    FeatureBatch,
)

__all__ = ["DECODED_LINKTYPES", "MAX_IPV6_EXT", "MAX_VLAN_TAGS", "decode"]

# Link types (LINKTYPE_* values as they appear in pcap/pcapng files).
LT_NULL: Final = 0
LT_EN10MB: Final = 1
LT_RAW_12: Final = 12  # DLT_RAW on most BSDs
LT_RAW_14: Final = 14  # DLT_RAW on OpenBSD
LT_RAW: Final = 101
LT_LOOP: Final = 108
LT_LINUX_SLL: Final = 113
LT_IPV4: Final = 228
LT_IPV6: Final = 229
LT_LINUX_SLL2: Final = 276

#: The link types ``decode`` understands; others get ``STATUS_UNDECODED``.
DECODED_LINKTYPES: Final = frozenset(
    {
        LT_NULL,
        LT_EN10MB,
        LT_RAW_12,
        LT_RAW_14,
        LT_RAW,
        LT_LOOP,
        LT_LINUX_SLL,
        LT_IPV4,
        LT_IPV6,
        LT_LINUX_SLL2,
    }
)

#: At most this many VLAN tags are skipped; a deeper stack reports the last TPID.
MAX_VLAN_TAGS: Final = 8
#: At most this many IPv6 extension headers are walked.
MAX_IPV6_EXT: Final = 8

ETH_IPV4: Final = 0x0800
ETH_IPV6: Final = 0x86DD
ETH_8021Q: Final = 0x8100
ETH_8021AD: Final = 0x88A8
ETH_QINQ_OLD: Final = 0x9100  # pre-standard QinQ, tshark's vlan.qinq_ethertype
ETH_MAX_LEN: Final = 1500  # type field at or below this is an 802.3 length
SLL_MAX_LTYPE: Final = 1536  # SLL protocols up to this are Linux-internal numbers
ARPHRD_NETLINK: Final = 824  # SLL frames whose whole content is a netlink message

AF_INET: Final = 2
AF_INET6_ALL: Final = (10, 24, 28, 30)  # Linux, NetBSD/OpenBSD, FreeBSD, Darwin

IP_TCP: Final = 6
IP_UDP: Final = 17
IP_DCCP: Final = 33
IP_SCTP: Final = 132
IP_UDPLITE: Final = 136
IP6_FRAGMENT: Final = 44
IP6_AH: Final = 51
#: IPv6 extension headers walked with the (len + 1) * 8 length rule.
IP6_EXT_GENERIC: Final = (0, 43, 60, 135, 139, 140, 253, 254)

# Minimum transport header lengths; ports are the first 4 bytes of each.
_L4_MIN: Final = {IP_TCP: 20, IP_UDP: 8, IP_UDPLITE: 8, IP_SCTP: 12, IP_DCCP: 12}

#: Frames decoded per inner step: small enough that the header bytes gathered
#: by one step are still in cache for the next (a tuning knob, not a contract).
CHUNK = 16384

# Network-layer kinds found by the link layer.
_K_NONE: Final = 0
_K_IPV4: Final = 4
_K_IPV6: Final = 6
_K_NIBBLE: Final = 1  # raw IP: the first nibble says which

_I64 = NDArray[np.int64]
_B = NDArray[np.bool_]
_U8 = NDArray[np.uint8]


# --- byte access --------------------------------------------------------------------------------


class _Bytes:
    """Header reads from a batch buffer: ``k`` bytes at each of many absolute positions.

    Each read is one numpy fancy index over a ``V{k}`` view of the buffer with a
    stride of one byte, so numpy copies ``k`` bytes per frame with no index
    matrix. Positions too close to the end of the buffer are read byte by byte
    with clipping; their out-of-frame bytes are garbage the callers mask out.
    """

    def __init__(self, data: _U8) -> None:
        self.data = data
        self._views: dict[int, NDArray[np.void]] = {}

    def block(self, pos: _I64, k: int) -> _U8:
        """``k`` bytes from each position, as a ``(len(pos), k)`` array."""
        m = len(pos)
        limit = len(self.data) - k
        if m == 0:
            return np.zeros((0, k), dtype=np.uint8)
        if limit < 0 or int(pos.max()) > limit:
            safe = np.minimum(pos, max(limit, 0))
            near_end = pos > limit
            out = self._fast(safe, k) if limit >= 0 else np.zeros((m, k), dtype=np.uint8)
            idx = pos[near_end][:, None] + np.arange(k, dtype=np.int64)
            out[near_end] = self.data.take(idx, mode="clip")
            return out
        return self._fast(pos, k)

    def _fast(self, pos: _I64, k: int) -> _U8:
        view = self._views.get(k)
        if view is None:
            view = np.ndarray(
                shape=(len(self.data) - k + 1,),
                dtype=np.dtype(f"V{k}"),
                buffer=self.data,
                strides=(1,),
            )
            self._views[k] = view
        return view[pos].view(np.uint8).reshape(len(pos), k)


def _be16(b: _U8, i: int) -> _I64:
    """The big-endian 16-bit value at column ``i`` of a block."""
    return (b[:, i].astype(np.int64) << 8) | b[:, i + 1]


def _mac(b: _U8, i: int) -> _I64:
    """The 48-bit MAC address at column ``i`` of a block, as an integer."""
    wide = np.zeros((len(b), 8), dtype=np.uint8)
    wide[:, 2:] = b[:, i : i + 6]
    return wide.view(">u8")[:, 0].astype(np.int64)


# --- output columns -----------------------------------------------------------------------------


class _Out:
    """The output columns, allocated null, plus the per-frame status."""

    def __init__(self, n: int) -> None:
        self.dst_mac = np.full(n, -1, dtype=np.int64)
        self.src_mac = np.full(n, -1, dtype=np.int64)
        self.ethertype = np.full(n, -1, dtype=np.int32)
        self.vlan = np.full(n, -1, dtype=np.int32)
        self.payload_len = np.full(n, -1, dtype=np.int32)
        self.ip_version = np.full(n, -1, dtype=np.int8)
        self.ip_src = np.zeros((n, 16), dtype=np.uint8)
        self.ip_dst = np.zeros((n, 16), dtype=np.uint8)
        self.ip_src_valid = np.zeros(n, dtype=np.bool_)
        self.ip_dst_valid = np.zeros(n, dtype=np.bool_)
        self.ip_proto = np.full(n, -1, dtype=np.int16)
        self.ttl = np.full(n, -1, dtype=np.int16)
        self.sport = np.full(n, -1, dtype=np.int32)
        self.dport = np.full(n, -1, dtype=np.int32)
        self.tcp_flags = np.full(n, -1, dtype=np.int32)
        self.status = np.zeros(n, dtype=np.uint8)


class _Net:
    """Where each frame's network header starts, as found by the link layer."""

    def __init__(self) -> None:
        self.rows: list[_I64] = []
        self.pos: list[_I64] = []
        self.kind: list[NDArray[np.int8]] = []

    def add(self, rows: _I64, pos: _I64, kind: NDArray[np.int8]) -> None:
        keep = kind != _K_NONE
        if keep.all():
            self.rows.append(rows)
            self.pos.append(pos)
            self.kind.append(kind)
        elif keep.any():
            self.rows.append(rows[keep])
            self.pos.append(pos[keep])
            self.kind.append(kind[keep])

    def take(self, kind: int) -> tuple[_I64, _I64]:
        """Rows and header positions of one kind."""
        if not self.rows:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        if len(self.rows) == 1:
            rows, pos, kinds = self.rows[0], self.pos[0], self.kind[0]
        else:
            rows = np.concatenate(self.rows)
            pos = np.concatenate(self.pos)
            kinds = np.concatenate(self.kind)
        sel = kinds == kind
        if sel.all():
            return rows, pos
        return rows[sel], pos[sel]


# --- public entry point -------------------------------------------------------------------------


def decode(batch: FrameBatch) -> FeatureBatch:
    """Decode every frame of a batch into the feature columns.

    Never raises on frame contents: truncated or impossible headers and
    unknown link types are reported per frame in ``FeatureBatch.status``.
    See the module docstring for the rules.

    Args:
        batch: the raw frames.

    Returns:
        One row per frame, in the batch's order.

    >>> from wirelearn.capture import FrameBatch
    >>> arp = bytes.fromhex("ffffffffffff020000000001" "0806") + bytes(28)
    >>> fb = decode(FrameBatch.from_frames([arp]))
    >>> int(fb.ethertype[0]), int(fb.ip_version[0]), int(fb.status[0])
    (2054, -1, 0)
    """
    n = len(batch)
    out = _Out(n)
    # Where each frame lies, packed or in the buffer a file was read into: no copy either way.
    raw, start, end = batch.spans()
    data = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    # An empty buffer still needs a byte for clipped reads; every field is masked anyway.
    buf = _Bytes(data if len(data) else np.zeros(1, dtype=np.uint8))
    start_all = np.asarray(start, dtype=np.int64)
    end_all = np.asarray(end, dtype=np.int64)
    wirelen = np.asarray(batch.wirelen, dtype=np.int64)
    # Where each frame ends on the wire: what a zero IP length (offload) stands for.
    wire_all = np.maximum(start_all + wirelen, end_all)
    linktype = np.asarray(batch.linktype, dtype=np.int64)
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        _decode_chunk(buf, lo, hi, start_all, end_all, wire_all, linktype[lo:hi], out)
    return FeatureBatch(
        frame=np.asarray(batch.frame, dtype=np.int64),
        ts_ns=np.asarray(batch.ts_ns, dtype=np.int64),
        linktype=linktype,
        cap_len=end_all - start_all,
        frame_len=wirelen,
        dst_mac=out.dst_mac,
        src_mac=out.src_mac,
        ethertype=out.ethertype,
        vlan=out.vlan,
        payload_len=out.payload_len,
        ip_version=out.ip_version,
        ip_src=out.ip_src,
        ip_dst=out.ip_dst,
        ip_proto=out.ip_proto,
        ttl=out.ttl,
        sport=out.sport,
        dport=out.dport,
        tcp_flags=out.tcp_flags,
        status=out.status,
        ip_src_valid=out.ip_src_valid,
        ip_dst_valid=out.ip_dst_valid,
    )


def _decode_chunk(
    buf: _Bytes,
    lo: int,
    hi: int,
    start_all: _I64,
    end_all: _I64,
    wire_all: _I64,
    linktype: _I64,
    out: _Out,
) -> None:
    """Decode frames ``lo:hi`` of the batch (``linktype`` holds theirs)."""
    net = _Net()
    first = int(linktype[0])
    if bool((linktype == first).all()):
        groups: list[tuple[int, _I64]] = [(first, np.arange(lo, hi, dtype=np.int64))]
    else:
        groups = [(int(v), lo + np.flatnonzero(linktype == v)) for v in np.unique(linktype)]
    for lt, r in groups:
        s, e = start_all[r], end_all[r]
        if lt == LT_EN10MB:
            _ethernet(buf, r, s, e, out, net)
        elif lt in (LT_LINUX_SLL, LT_LINUX_SLL2):
            _sll(buf, r, s, e, out, net, v2=lt == LT_LINUX_SLL2)
        elif lt in (LT_RAW, LT_RAW_12, LT_RAW_14, LT_IPV4, LT_IPV6):
            out.payload_len[r] = e - s
            kind = {LT_IPV4: _K_IPV4, LT_IPV6: _K_IPV6}.get(lt, _K_NIBBLE)
            net.add(r, s, np.full(len(r), kind, dtype=np.int8))
        elif lt in (LT_NULL, LT_LOOP):
            _null(buf, r, s, e, out, net, loop=lt == LT_LOOP)
        else:
            out.status[r] = STATUS_UNDECODED

    # Raw IP: the version nibble decides; anything else is not IP at all.
    r, p = net.take(_K_NIBBLE)
    if len(r):
        has = p < end_all[r]
        out.status[r[~has]] = STATUS_TRUNCATED
        ver = np.where(has, buf.block(p, 1)[:, 0] >> 4, 0)
        out.status[r[has & (ver != 4) & (ver != 6)]] = STATUS_MALFORMED
        by_nibble = np.where(ver == 4, _K_IPV4, np.where(ver == 6, _K_IPV6, _K_NONE))
        net.add(r, p, by_nibble.astype(np.int8))

    found: list[tuple[_I64, _I64, _I64, _I64]] = []
    r, p = net.take(_K_IPV4)
    if len(r):
        found.append(_ipv4(buf, r, p, end_all[r], wire_all[r], out))
    r, p = net.take(_K_IPV6)
    if len(r):
        found.append(_ipv6(buf, r, p, end_all[r], wire_all[r], out))
    found = [f for f in found if len(f[0])]
    if len(found) == 2:
        (r4, p4, d4, t4), (r6, p6, d6, t6) = found
        found = [(np.r_[r4, r6], np.r_[p4, p6], np.r_[d4, d6], np.r_[t4, t6])]
    if found:
        r, p, dgram_end, proto = found[0]
        _transport(buf, r, p, dgram_end, proto, end_all, out)


# --- link layer ---------------------------------------------------------------------------------


def _ethernet(buf: _Bytes, r: _I64, s: _I64, e: _I64, out: _Out, net: _Net) -> None:
    cap = e - s
    b = buf.block(s, 16)  # 14 bytes of header; 16 read as eight big-endian 16-bit words
    full = cap >= 14
    if bool(full.all()):
        w = b.view(">u2").astype(np.int64)
        out.dst_mac[r] = (w[:, 0] << 32) | (w[:, 1] << 16) | w[:, 2]
        out.src_mac[r] = (w[:, 3] << 32) | (w[:, 4] << 16) | w[:, 5]
        _ethertype(buf, r, w[:, 6], s + 14, e, out, net)
        return
    else:
        has_dst = cap >= 6
        out.dst_mac[r[has_dst]] = _mac(b, 0)[has_dst]
        has_src = cap >= 12
        out.src_mac[r[has_src]] = _mac(b, 6)[has_src]
        out.status[r[~full]] = STATUS_TRUNCATED
        r, s, e, b = r[full], s[full], e[full], b[full]
    _ethertype(buf, r, _be16(b, 12), s + 14, e, out, net)


def _ethertype(buf: _Bytes, r: _I64, etype: _I64, pos: _I64, e: _I64, out: _Out, net: _Net) -> None:
    """Walk VLAN tags from a captured type value ``etype`` whose header ends at ``pos``,
    then record the ethertype, the payload length and the network layer."""
    vlan = np.full(len(r), -1, dtype=np.int64)
    ok = np.ones(len(r), dtype=np.bool_)  # the current type field is captured
    for depth in range(MAX_VLAN_TAGS):
        tagged = (etype == ETH_8021Q) | (etype == ETH_8021AD) | (etype == ETH_QINQ_OLD)
        tagged &= ok
        if not tagged.any():
            break
        if depth == 0:
            etype, pos = etype.copy(), pos.copy()  # the caller's arrays stay as they were
        t = np.flatnonzero(tagged)
        tci_at = pos[t]
        et = e[t]
        b = buf.block(tci_at, 4)
        if depth == 0:
            has_tci = tci_at + 2 <= et
            vlan[t[has_tci]] = (_be16(b, 0) & 0x0FFF)[has_tci]
        has_type = tci_at + 4 <= et
        ok[t] = has_type
        etype[t] = np.where(has_type, _be16(b, 2), -1)
        pos[t] = tci_at + 4
    out.vlan[r] = vlan
    if bool(ok.all()):
        out.ethertype[r] = etype
        out.payload_len[r] = e - pos
    else:
        out.ethertype[r[ok]] = etype[ok]
        out.status[r[~ok]] = STATUS_TRUNCATED
        out.payload_len[r[ok]] = (e - pos)[ok]
    kind = np.zeros(len(r), dtype=np.int8)
    kind[ok & (etype == ETH_IPV4)] = _K_IPV4
    kind[ok & (etype == ETH_IPV6)] = _K_IPV6
    net.add(r, pos, kind)


def _sll(buf: _Bytes, r: _I64, s: _I64, e: _I64, out: _Out, net: _Net, *, v2: bool) -> None:
    """Linux cooked capture v1 (16-byte header) or v2 (20 bytes)."""
    cap = e - s
    b = buf.block(s, 20)
    if v2:
        hlen, proto, addr_at = 20, _be16(b, 0), 12
        hatype = np.where(cap >= 10, _be16(b, 8), -1)
        halen = np.where(cap >= 12, b[:, 11].astype(np.int64), -1)
    else:
        hlen, proto, addr_at = 16, _be16(b, 14), 6
        hatype = np.where(cap >= 4, _be16(b, 2), -1)
        halen = np.where(cap >= 6, _be16(b, 4), -1)
    has_src = (halen == 6) & (hatype != ARPHRD_NETLINK) & (cap >= addr_at + 6)
    out.src_mac[r[has_src]] = _mac(b, addr_at)[has_src]
    full = cap >= hlen
    out.status[r[~full]] = STATUS_TRUNCATED
    out.payload_len[r[full]] = (cap - hlen)[full]
    # Netlink frames carry a netlink family, and small values are Linux-internal
    # protocol numbers; only the rest are ethertypes (tshark's sll.etype/gretype).
    is_etype = full & (hatype != ARPHRD_NETLINK) & (proto > SLL_MAX_LTYPE)
    if is_etype.any():
        _ethertype(buf, r[is_etype], proto[is_etype], (s + hlen)[is_etype], e[is_etype], out, net)


def _null(buf: _Bytes, r: _I64, s: _I64, e: _I64, out: _Out, net: _Net, *, loop: bool) -> None:
    """BSD loopback: a 4-byte address family (host byte order for NULL, network for LOOP)."""
    full = e - s >= 4
    out.status[r[~full]] = STATUS_TRUNCATED
    r, s, e = r[full], s[full], e[full]
    if not len(r):
        return
    raw = buf.block(s, 4)
    big = raw.view(">u4")[:, 0].astype(np.int64)
    if loop:
        family = big
        etype = np.full(len(r), -1, dtype=np.int64)
    else:
        # tshark's reading (packet-null.c), as on a little-endian host.
        h = raw.view("<u4")[:, 0].astype(np.int64)
        irix_be = ((h & 0xFF000000) == 0) & ((h & 0x00FF0000) < 0x00060000)
        upper = (h & 0xFFFF0000) != 0
        irix_le = ~upper & ((h & 0xFF) == 0) & ((h & 0xFF00) < 0x0600)
        family = np.where(
            upper,
            np.where(irix_be, h >> 16, big),
            np.where(irix_le, ((h & 0xFF) << 8) | ((h >> 8) & 0xFF), h),
        )
        # Old Linux DLT_NULL put an ethertype there; PPP in HDLC framing starts FF 03.
        ppp = (raw[:, 0] == 0xFF) & (raw[:, 1] == 0x03)
        etype = np.where(~ppp & (family > ETH_MAX_LEN), family & 0xFFFF, -1)
        family = np.where(ppp | (family > ETH_MAX_LEN), -1, family)
    out.payload_len[r] = e - s - 4
    out.ethertype[r] = etype
    kind = np.zeros(len(r), dtype=np.int8)
    kind[(family == AF_INET) | (etype == ETH_IPV4)] = _K_IPV4
    kind[np.isin(family, AF_INET6_ALL) | (etype == ETH_IPV6)] = _K_IPV6
    net.add(r, s + 4, kind)


# --- network layer ------------------------------------------------------------------------------


def _ipv4(
    buf: _Bytes, r: _I64, p: _I64, e: _I64, wire: _I64, out: _Out
) -> tuple[_I64, _I64, _I64, _I64]:
    """Decode IPv4 headers at ``p``; return the rows, positions, datagram ends and
    protocols of the transport headers to decode next."""
    cap = e - p
    b = buf.block(p, 20)
    ver = b[:, 0] >> 4
    ihl = (b[:, 0] & 0x0F).astype(np.int64) * 4
    total = _be16(b, 2)
    # A zero total length is TCP segmentation offload: the frame's length counts.
    total = np.where(total == 0, wire - p, total)
    if bool((cap >= 20).all() & (ver == 4).all() & (ihl >= 20).all() & (total >= ihl).all()):
        good = np.ones(len(r), dtype=np.bool_)  # the common case: nothing to mask
        out.ip_version[r] = 4
        out.ttl[r] = b[:, 8]
        out.ip_proto[r] = b[:, 9]
        # Addresses as 32-bit words: a 1-D gather instead of a 4-byte-row fancy copy.
        words = b.view(np.uint32)  # (m, 5): the 20-byte header, bytes 12:16 and 16:20 last
        out.ip_src.view(np.uint32)[r, 0] = words[:, 3]
        out.ip_dst.view(np.uint32)[r, 0] = words[:, 4]
        out.ip_src_valid[r] = True
        out.ip_dst_valid[r] = True
        has_dst = good
    else:
        has = cap >= 1
        out.status[r[~has]] = STATUS_TRUNCATED
        bad = has & ((ver != 4) | (ihl < 20))
        out.ip_version[r[has & (ver == 4)]] = 4
        bad |= has & ~bad & (cap >= 4) & (total < ihl)
        out.status[r[bad]] = STATUS_MALFORMED
        good = has & ~bad
        out.status[r[good & (cap < 20)]] = STATUS_TRUNCATED
        sel = good & (cap >= 9)
        out.ttl[r[sel]] = b[sel, 8]
        sel = good & (cap >= 10)
        out.ip_proto[r[sel]] = b[sel, 9]
        sel = good & (cap >= 16)
        out.ip_src[r[sel], :4] = b[sel, 12:16]
        out.ip_src_valid[r[sel]] = True
        has_dst = good & (cap >= 20)
        out.ip_dst[r[has_dst], :4] = b[has_dst, 16:20]
        out.ip_dst_valid[r[has_dst]] = True
    # Options cut short: the transport header cannot be reached.
    opts_cut = has_dst & (cap < ihl)
    out.status[r[opts_cut]] = STATUS_TRUNCATED
    first_frag = (_be16(b, 6) & 0x1FFF) == 0
    proto = b[:, 9].astype(np.int64)
    go = has_dst & ~opts_cut & first_frag & _is_l4(proto)
    return r[go], (p + ihl)[go], (p + total)[go], proto[go]


def _ipv6(
    buf: _Bytes, r: _I64, p: _I64, e: _I64, wire: _I64, out: _Out
) -> tuple[_I64, _I64, _I64, _I64]:
    """Decode IPv6 headers and walk their extension headers; like ``_ipv4``."""
    cap = e - p
    b = buf.block(p, 40)
    ver = b[:, 0] >> 4
    has = cap >= 1
    out.status[r[~has]] = STATUS_TRUNCATED
    bad = has & (ver != 6)
    out.status[r[bad]] = STATUS_MALFORMED
    good = has & ~bad
    out.ip_version[r[good]] = 6
    out.status[r[good & (cap < 40)]] = STATUS_TRUNCATED
    nxt = b[:, 6].astype(np.int64)
    sel = good & (cap >= 8)
    out.ttl[r[sel]] = b[sel, 7]
    sel = good & (cap >= 24)
    out.ip_src[r[sel]] = b[sel, 8:24]
    out.ip_src_valid[r[sel]] = True
    full = good & (cap >= 40)
    out.ip_dst[r[full]] = b[full, 24:40]
    out.ip_dst_valid[r[full]] = True
    # A header cut before the extension walk still names a final next header.
    short_nxt = good & (cap >= 7) & ~full & ~_is_ext6(nxt)
    out.ip_proto[r[short_nxt]] = nxt[short_nxt]

    if not bool(full.all()):
        r, p, e, wire, nxt, b = r[full], p[full], e[full], wire[full], nxt[full], b[full]
    plen = _be16(b, 4)
    # A zero payload length is a jumbogram or offload: the frame's length counts.
    rep = np.where(plen == 0, wire, p + 40 + plen)
    pos = p + 40
    nh = nxt
    walking = np.ones(len(r), dtype=np.bool_)
    for depth in range(MAX_IPV6_EXT):
        ext = walking & _is_ext6(nh)
        if not ext.any():
            break
        if depth == 0:
            nh, pos = nh.copy(), pos.copy()
        t = np.flatnonzero(ext)
        tp, th = pos[t], nh[t]
        hb = buf.block(tp, 4)
        is_frag = th == IP6_FRAGMENT
        fits = tp + np.where(is_frag, 4, 2) <= e[t]
        cut = t[~fits]
        out.status[r[cut]] = STATUS_TRUNCATED
        walking[cut] = False
        nh[cut] = -1
        n1 = hb[:, 1].astype(np.int64)
        hdr_len = np.where(is_frag, 8, np.where(th == IP6_AH, (n1 + 2) * 4, (n1 + 1) * 8))
        # A fragment other than the first carries no transport header.
        later = t[fits & is_frag & ((_be16(hb, 2) & 0xFFF8) != 0)]
        walking[later] = False
        ok = t[fits]
        pos[ok] = (tp + hdr_len)[fits]
        nh[ok] = hb[fits, 0]
    known = nh >= 0
    out.ip_proto[r[known]] = nh[known]
    # The last extension header read ran past the capture: its next header is
    # known (and kept), but the chain was cut.
    out.status[r[known & (pos > e)]] = STATUS_TRUNCATED
    go = walking & _is_l4(nh)
    return r[go], pos[go], rep[go], nh[go]


def _table(values: tuple[int, ...]) -> _B:
    """A lookup table over byte values and ``-1`` (index ``value + 1``)."""
    table = np.zeros(257, dtype=np.bool_)
    table[np.asarray(values) + 1] = True
    return table


_EXT6_TABLE: Final = _table((*IP6_EXT_GENERIC, IP6_FRAGMENT, IP6_AH))
_L4_TABLE: Final = _table(tuple(_L4_MIN))
_L4_NEED: Final = np.zeros(257, dtype=np.int64)
_L4_NEED[np.array(list(_L4_MIN)) + 1] = list(_L4_MIN.values())


def _is_ext6(nh: _I64) -> _B:
    """Whether an IPv6 next-header value (or -1) is an extension header the walk follows."""
    found: _B = _EXT6_TABLE[nh + 1]
    return found


def _is_l4(proto: _I64) -> _B:
    """Whether a protocol value (or -1) starts with 16-bit ports we decode."""
    found: _B = _L4_TABLE[proto + 1]
    return found


# --- transport layer ----------------------------------------------------------------------------


def _transport(
    buf: _Bytes,
    r: _I64,
    p: _I64,
    rep: _I64,
    proto: _I64,
    end_all: _I64,
    out: _Out,
) -> None:
    """Ports (and TCP flags) from transport headers at ``p``, in datagrams ending at ``rep``."""
    b = buf.block(p, 14)
    cap = end_all[r] - p
    dgram = rep - p  # what the IP header says the datagram holds
    avail = np.minimum(cap, dgram)
    tcp = proto == IP_TCP
    need = _L4_NEED[proto + 1]
    sport, dport = _be16(b, 0), _be16(b, 2)
    flags = ((b[:, 12].astype(np.int64) & 0x0F) << 8) | b[:, 13]
    doff = (b[:, 12] >> 4).astype(np.int64) * 4
    if bool((avail >= need).all() & (doff[tcp] >= 20).all()) and bool((doff <= cap)[tcp].all()):
        out.sport[r] = sport  # the common case: every header complete and sane
        out.dport[r] = dport
        out.tcp_flags[r[tcp]] = flags[tcp]
    else:
        has_ports = avail >= 4
        out.sport[r[has_ports]] = sport[has_ports]
        out.dport[r[has_ports]] = dport[has_ports]
        # A datagram too short for the header is impossible; a capture too short is a cut.
        short_dgram = dgram < need
        out.status[r[short_dgram]] = STATUS_MALFORMED
        out.status[r[~short_dgram & (cap < need)]] = STATUS_TRUNCATED
        bad_off = tcp & (avail >= 13) & (doff < 20)
        out.status[r[bad_off]] = STATUS_MALFORMED
        has_flags = tcp & (avail >= 14) & ~bad_off
        out.tcp_flags[r[has_flags]] = flags[has_flags]
        # Options: past the datagram is impossible, past the capture is a cut.
        ok_hdr = has_flags & (avail >= 20)
        out.status[r[ok_hdr & (doff > dgram)]] = STATUS_MALFORMED
        out.status[r[ok_hdr & (doff <= dgram) & (doff > cap)]] = STATUS_TRUNCATED
    udp = (proto == IP_UDP) & (avail >= 6)
    if udp.any():
        ulen = _be16(b, 4)
        out.status[r[udp & (ulen > 0) & (ulen < 8)]] = STATUS_MALFORMED
    dccp = (proto == IP_DCCP) & (avail >= 5)
    if dccp.any():
        out.status[r[dccp & (b[:, 4] < 3)]] = STATUS_MALFORMED
