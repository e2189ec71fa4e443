"""Deterministic, vectorized generator of labelled traffic scenarios.

A scenario is a small LAN (10-30 hosts with real vendor OUIs, a gateway, a NAS,
some external servers) whose benign traffic (DNS, HTTP and TLS sessions, NTP,
ARP, mDNS, SSDP, ICMP echo, DHCP, IPv6 ND/RA/DNS, a few 802.1Q-tagged hosts) runs
the whole time, with attack phases mixed in: a SYN port scan, a SYN flood from
spoofed sources, and ARP spoofing of the gateway. Every frame is labelled by
the generator that made it (``benign``, ``portscan``, ``synflood``,
``arpspoof``), so labels are exact.

Nothing is built per frame. Traffic is first planned as an event table (one
int64 column per header field, one row per frame) by vectorized "activity"
generators; the table is then rendered kind by kind into 2-D byte arrays from
header layouts, with payloads gathered from a bank of prebuilt byte strings,
per-frame patches (DNS ids, NTP times, TLS randoms, ...) and vectorized IPv4,
TCP, UDP, ICMP and ICMPv6 checksums.

Randomness uses only ``Generator.integers``/``random`` and integer arithmetic
(no ``exp``/``log`` on arrays), so a seed gives the same bytes on every machine.

Run ``python -m wirelearn.scenarios --out DIR`` to write captures and labels.
"""

from __future__ import annotations

import argparse
import math
import os
import struct
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import NDArray

from wirelearn.capture import FrameBatch, Interface, PcapWriter, open_writer
from wirelearn.errors import ConfigError, OutputError, WirelearnError

__all__ = ["LABELS", "SCENARIOS", "expected_pcap_size", "generate", "main", "write_scenario"]

_I64 = NDArray[np.int64]
_U8 = NDArray[np.uint8]
_Col = int | _I64  # an event column value: one for all rows, or one per row

#: Scenario names and what each one holds.
SCENARIOS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "benign": "mixed LAN traffic only: DNS, HTTP, TLS, NTP, ARP, mDNS, SSDP, ICMP, DHCP, IPv6",
        "portscan": "benign traffic with one phase of a SYN port scan of one to three LAN hosts",
        "synflood": "benign traffic with one phase of a SYN flood from spoofed sources to the NAS",
        "arpspoof": "benign traffic with one phase of ARP replies claiming the gateway's IP",
        "mixed": "benign traffic with a portscan, a synflood and an arpspoof phase, one after another",
    }
)

#: Label names, indexed by the label codes the generator uses internally.
LABELS: Final[tuple[str, ...]] = ("benign", "portscan", "synflood", "arpspoof")
_LABEL_OBJ: Final = np.array(LABELS, dtype=object)
_BENIGN, _PORTSCAN, _SYNFLOOD, _ARPSPOOF = 0, 1, 2, 3

#: Attack phases per scenario: (label, start, end) as fractions of the scenario's duration.
_PHASES: Final[Mapping[str, tuple[tuple[int, float, float], ...]]] = MappingProxyType(
    {
        "benign": (),
        "portscan": ((_PORTSCAN, 0.30, 0.70),),
        "synflood": ((_SYNFLOOD, 0.40, 0.60),),
        "arpspoof": ((_ARPSPOOF, 0.25, 0.75),),
        "mixed": ((_PORTSCAN, 0.08, 0.22), (_SYNFLOOD, 0.32, 0.41), (_ARPSPOOF, 0.52, 0.86)),
    }
)

# --- the event table ---------------------------------------------------------------------------
# One row per frame, one int64 column per header field, so that sorting a table or taking
# some of its frames is a single numpy call. ``table.T[FIELD]`` is one field of every frame.
_COLS: Final = (
    *("ts", "kind", "label", "vlan", "smac", "dmac", "sip", "dip", "sport", "dport"),
    *("seq", "ack", "flags", "win", "ttl", "ipid", "df", "var", "aux", "aux2"),
)
_C: Final[Mapping[str, int]] = MappingProxyType({name: i for i, name in enumerate(_COLS)})
_TS, _KIND, _LABEL, _VLAN, _SMAC, _DMAC, _SIP, _DIP, _SPORT, _DPORT = range(10)
_SEQ, _ACK, _FLAGS, _WIN, _TTL, _IPID, _DF, _VAR, _AUX, _AUX2 = range(10, 20)
_NCOL: Final = len(_COLS)

# Frame kinds: each is one header layout. ``sip``/``dip`` hold IPv4 addresses, except for the
# IPv6 kinds where they index the world's IPv6 address table.
_K_TCP, _K_SYN, _K_UDP, _K_ICMP, _K_ARP, _K_UDP6, _K_ICMP6 = range(7)
_HDR_LEN: Final = np.array([40, 52, 28, 28, 28, 48, 40], dtype=np.int64)  # L3+L4 bytes
_ETHERTYPE: Final = (0x0800, 0x0800, 0x0800, 0x0800, 0x0806, 0x86DD, 0x86DD)

_FIN, _SYN, _RST, _PSH, _ACKF = 0x01, 0x02, 0x04, 0x08, 0x10
_MSS: Final = 1460
_BCAST: Final = 0xFFFFFFFFFFFF

# Payload patch codes (what per-frame values a bank row needs written into it).
(_P_NONE, _P_DNS, _P_NTP_C, _P_NTP_S, _P_DHCP_C, _P_DHCP_CR, _P_DHCP_S, _P_DHCP_SR, _P_PING) = (
    range(9)
)
(_P_TLS_CH, _P_TLS_SH, _P_ND, _P_RA) = range(9, 13)

# Exponential quantiles in millionths of the mean, so that inter-arrival times are integer
# table lookups (bit-identical everywhere) instead of floating-point logs.
_EXP_K: Final = 4096
_EXP_Q: Final = np.array(
    [round(-math.log(1.0 - (i + 0.5) / _EXP_K) * 1_000_000) for i in range(_EXP_K)],
    dtype=np.int64,
)
_EXP_Q.flags.writeable = False

# TCP slow start: segment j of a burst leaves in flight searchsorted(_FLIGHTS, j).
_FLIGHTS: Final = np.array([10 * (2**k - 1) for k in range(1, 16)], dtype=np.int64)
_FLIGHTS.flags.writeable = False
_PIECE_BYTES: Final = 4 << 20  # frames rendered together: keeps the 2-D byte arrays in cache
_MS: Final = 1_000_000
_US: Final = 1_000
_SEC: Final = 1_000_000_000


def _ip(s: str) -> int:
    a, b, c, d = (int(x) for x in s.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def _mac(s: str) -> int:
    return int(s.replace(":", ""), 16)


# --- small vectorized helpers ------------------------------------------------------------------


def _exp(rng: np.random.Generator, n: int, mean_ns: int | _I64) -> _I64:
    """Exponentially distributed integers with the given mean (ns)."""
    return _EXP_Q[rng.integers(0, _EXP_K, n)] * mean_ns // 1_000_000


def _uni(rng: np.random.Generator, n: int, lo: int, hi: int) -> _I64:
    return rng.integers(lo, hi, n, dtype=np.int64)


def _pick(rng: np.random.Generator, weights: _I64, n: int) -> _I64:
    """``n`` indices drawn with integer weights (exact, no float sums)."""
    cum = np.cumsum(weights)
    if n == 0 or cum[-1] <= 0:
        return np.zeros(n, dtype=np.int64)
    return np.searchsorted(cum, rng.integers(0, int(cum[-1]), n), side="right").astype(np.int64)


def _arrivals(rng: np.random.Generator, t0: int, t1: int, rate: float) -> _I64:
    """Start times of a Poisson process of ``rate`` per second in ``[t0, t1)``."""
    if rate <= 0 or t1 <= t0:
        return np.zeros(0, dtype=np.int64)
    mean = max(1, round(_SEC / rate))
    need = int((t1 - t0) / mean * 1.25) + 16
    parts: list[_I64] = []
    last = t0
    while last < t1:
        ts = last + np.cumsum(_exp(rng, need, mean))
        parts.append(ts)
        last = int(ts[-1])
    out = np.concatenate(parts)
    return out[out < t1]


def _regular(t0: int, t1: int, p0: int, period: int) -> _I64:
    """Indexes ``k`` of a regular schedule ``p0 + k*period`` that fall in ``[t0, t1)``."""
    lo = max(0, -(-(t0 - p0) // period))
    hi = max(lo, -(-(t1 - p0) // period))
    return np.arange(lo, hi, dtype=np.int64)


def _rank(si: _I64) -> _I64:
    """Position of each element within its run of equal values (``si`` grouped)."""
    n = len(si)
    if n == 0:
        return si
    start = np.flatnonzero(np.concatenate([[True], si[1:] != si[:-1]]))
    counts = np.diff(np.concatenate([start, [n]]))
    return np.arange(n, dtype=np.int64) - np.repeat(start, counts)


def _be(x: _I64, width: int) -> _U8:
    """Big-endian bytes of non-negative integers, ``uint8[n, width]``."""
    b = np.ascontiguousarray(x, dtype=">u8").view(np.uint8).reshape(-1, 8)
    return b[:, 8 - width :]


def _le(x: _I64, width: int) -> _U8:
    b = np.ascontiguousarray(x, dtype="<u8").view(np.uint8).reshape(-1, 8)
    return b[:, :width]


def _fold(s: NDArray[Any]) -> _I64:
    """Fold a one's-complement sum to 16 bits."""
    s = s.astype(np.int64)
    for _ in range(3):
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _sum16(g: _U8) -> _I64:
    """Little-endian 16-bit one's-complement word sum of each row (even width)."""
    return _fold(g.view("<u2").sum(axis=1, dtype=np.uint64))


def _sum32(g: _U8) -> _I64:
    """Same as ``_sum16`` for widths that are a multiple of 4, twice as fast."""
    s = g.view("<u4").sum(axis=1, dtype=np.uint64).astype(np.int64)
    return _fold((s & 0xFFFFFFFF) + (s >> 32))


def _bswap16(x: _I64) -> _I64:
    return ((x & 0xFF) << 8) | ((x >> 8) & 0xFF)


# --- the payload bank ----------------------------------------------------------------------------


class _Bank:
    """Every payload byte string a world can send, as rows of one zero-padded 2-D array.

    Streams (an HTTP response, a TLS flight) are split into MSS-sized consecutive rows that
    remember their offset in the stream, so TCP sequence numbers follow from the row index.
    """

    def __init__(self) -> None:
        self._rows: list[bytes] = [b""]
        self._patch: list[int] = [_P_NONE]
        self._cum: list[int] = [0]
        self._total: list[int] = [0]

    def row(self, data: bytes, patch: int = _P_NONE) -> int:
        self._rows.append(data)
        self._patch.append(patch)
        self._cum.append(0)
        self._total.append(len(data))
        return len(self._rows) - 1

    def stream(self, data: bytes, patch: int = _P_NONE) -> tuple[int, int]:
        """Add ``data`` as MSS-sized segments; returns (first row, number of segments)."""
        first = len(self._rows)
        for k, pos in enumerate(range(0, max(len(data), 1), _MSS)):
            self._rows.append(data[pos : pos + _MSS])
            self._patch.append(patch if k == 0 else _P_NONE)
            self._cum.append(pos)
            self._total.append(len(data))
        return first, len(self._rows) - first

    def freeze(self) -> None:
        width = max(len(r) for r in self._rows)
        self.width = width + (-width) % 4
        pool = np.zeros((len(self._rows), self.width), dtype=np.uint8)
        for i, r in enumerate(self._rows):
            pool[i, : len(r)] = np.frombuffer(r, dtype=np.uint8)
        self.pool = pool
        self.length = np.array([len(r) for r in self._rows], dtype=np.int64)
        self.patch = np.array(self._patch, dtype=np.int64)
        self.cum = np.array(self._cum, dtype=np.int64)
        self.total = np.array(self._total, dtype=np.int64)
        # One's-complement sum of each row (LE word order); payloads always start at an even
        # offset, so a frame's checksum only needs its headers summed.
        self.psum_be = _bswap16(_sum32(pool))
        self._placed: dict[int, _U8] = {}

    def placed(self, offset: int) -> _U8:
        """The pool with every row shifted right by ``offset`` zero bytes (cached).

        Gathering rows of it yields frames whose payload is already in place, so a
        frame array is built in one pass.
        """
        if offset not in self._placed:
            out = np.zeros((len(self.pool), offset + self.width + 8), dtype=np.uint8)
            out[:, offset : offset + self.width] = self.pool
            self._placed[offset] = out
        return self._placed[offset]


# --- protocol payload builders (run once per world, not per frame) --------------------------------


def _qname(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def _dns_query(name: str, qtype: int, *, flags: int = 0x0100, qclass: int = 1) -> bytes:
    return (
        struct.pack(">HHHHHH", 0, flags, 1, 0, 0, 0)
        + _qname(name)
        + struct.pack(">HH", qtype, qclass)
    )


def _dns_answer(
    name: str, qtype: int, answers: Sequence[bytes], *, cname: str | None = None, rcode: int = 0
) -> bytes:
    """A response to ``name``/``qtype`` with optional CNAME, then ``answers`` as rdata."""
    q = _qname(name) + struct.pack(">HH", qtype, 1)
    an = b""
    owner = b"\xc0\x0c"
    n = 0
    if cname is not None:
        target = _qname(cname)
        an += owner + struct.pack(">HHIH", 5, 1, 300, len(target)) + target
        owner = struct.pack(">H", 0xC000 | (12 + len(q) + 12))
        n += 1
    for rdata in answers:
        an += owner + struct.pack(">HHIH", qtype, 1, 120, len(rdata)) + rdata
        n += 1
    return struct.pack(">HHHHHH", 0, 0x8180 | rcode, 1, n, 0, 0) + q + an


def _mdns_response(service: str, instance: str, port: int, host: str) -> bytes:
    full = f"{instance}.{service}"
    ptr = _qname(service) + struct.pack(">HHIH", 12, 1, 4500, len(_qname(full))) + _qname(full)
    srv_rd = struct.pack(">HHH", 0, 0, port) + _qname(host)
    srv = _qname(full) + struct.pack(">HHIH", 33, 0x8001, 120, len(srv_rd)) + srv_rd
    txt_rd = b"\x09txtvers=1\x05rs=on"
    txt = _qname(full) + struct.pack(">HHIH", 16, 0x8001, 4500, len(txt_rd)) + txt_rd
    return struct.pack(">HHHHHH", 0, 0x8400, 0, 3, 0, 0) + ptr + srv + txt


def _client_hello(sni: str) -> bytes:
    """A TLS 1.3 ClientHello; random, session id and key share are zero (patched per frame).

    The key_share extension goes first so the bytes to patch sit at fixed offsets
    (random 11, session id 44, key 122) whatever the server name.
    """
    ciphers = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8]
    ciphers += [0xC013, 0xC014, 0x009C, 0x009D, 0x002F, 0x0035]

    def ext(t: int, body: bytes) -> bytes:
        return struct.pack(">HH", t, len(body)) + body

    name = sni.encode()
    exts = ext(0x0033, struct.pack(">HHH", 36, 0x001D, 32) + bytes(32))
    exts += ext(0x0000, struct.pack(">HBH", len(name) + 3, 0, len(name)) + name)
    exts += ext(0x0017, b"") + ext(0xFF01, b"\x00")
    exts += ext(0x000A, struct.pack(">HHHH", 6, 0x001D, 0x0017, 0x0018))
    exts += ext(0x000B, b"\x01\x00") + ext(0x0023, b"")
    exts += ext(0x0010, b"\x00\x0c\x02h2\x08http/1.1")
    exts += ext(0x0005, b"\x01\x00\x00\x00\x00")
    sigs = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
    exts += ext(0x000D, struct.pack(">H", 2 * len(sigs)) + struct.pack(f">{len(sigs)}H", *sigs))
    exts += ext(0x002B, b"\x04\x03\x04\x03\x03") + ext(0x002D, b"\x01\x01")
    fixed = 2 + 32 + 1 + 32 + 2 + 2 * len(ciphers) + 2 + 2
    pad = 508 - fixed - len(exts)  # Chrome pads the handshake body to 508 (message 512)
    if pad >= 0:
        exts += ext(0x0015, bytes(pad))
    body = b"\x03\x03" + bytes(32) + b"\x20" + bytes(32)
    body += struct.pack(">H", 2 * len(ciphers)) + struct.pack(f">{len(ciphers)}H", *ciphers)
    body += b"\x01\x00" + struct.pack(">H", len(exts)) + exts
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def _tls_record(ctype: int, body: bytes) -> bytes:
    return bytes([ctype]) + b"\x03\x03" + struct.pack(">H", len(body)) + body


def _server_flight(noise: bytes) -> bytes:
    """ServerHello (random 11, session id 44, key 95 patched), CCS, then encrypted handshake."""
    exts = struct.pack(">HHH", 0x002B, 2, 0x0304) + struct.pack(">HHHH", 0x0033, 36, 0x001D, 32)
    exts += bytes(32)
    body = b"\x03\x03" + bytes(32) + b"\x20" + bytes(32) + b"\x13\x01\x00"
    body += struct.pack(">H", len(exts)) + exts
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    return _tls_record(0x16, hs) + _tls_record(0x14, b"\x01") + _tls_record(0x17, noise)


def _tls_app_stream(size: int, noise: bytes) -> bytes:
    out = b""
    pos = 0
    while size > 0:
        n = min(size, 16384)
        out += _tls_record(0x17, noise[pos : pos + n + 17])
        pos = (pos + n + 17) % 4096
        size -= n
    return out


def _ntp(mode: int, stratum: int, refid: bytes) -> bytes:
    first = (4 << 3) | mode
    precision = 0xE9 if mode == 3 else 0xE7
    delay, disp = (0, 0) if mode == 3 else (0x0000_02A0, 0x0000_0450)
    return struct.pack(">BBBBII4s", first, stratum, 6, precision, delay, disp, refid) + bytes(32)


def _dhcp(op: int, mtype: int, server_ip: int, gateway_ip: int) -> bytes:
    """A 300-byte DHCP message; addresses, xid and MACs are patched per frame."""
    head = struct.pack(">BBBBIHHIIII", op, 1, 6, 0, 0, 0, 0, 0, 0, 0, 0) + bytes(16 + 64 + 128)
    opts = b"\x63\x82\x53\x63" + bytes([53, 1, mtype])
    if op == 1:
        # Fixed layout: client id MAC at 246, requested IP at 254 (see the patch code).
        opts += bytes([61, 7, 1]) + bytes(6) + bytes([50, 4]) + bytes(4)
        opts += bytes([55, 9, 1, 3, 6, 15, 28, 51, 58, 59, 119])
    else:
        opts += bytes([54, 4]) + server_ip.to_bytes(4, "big")
        opts += bytes([51, 4]) + (86400).to_bytes(4, "big")
        opts += bytes([58, 4]) + (43200).to_bytes(4, "big")
        opts += bytes([59, 4]) + (75600).to_bytes(4, "big")
        opts += bytes([1, 4, 255, 255, 255, 0])
        opts += bytes([3, 4]) + gateway_ip.to_bytes(4, "big")
        opts += bytes([6, 4]) + gateway_ip.to_bytes(4, "big")
    msg = head + opts + b"\xff"
    return msg + bytes(300 - len(msg))


_DATE: Final = "Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n"
_HTML: Final = (
    b'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Index</title>'
    b'<link rel="stylesheet" href="/static/site.css"></head>\n<body><div class="main">'
    b"<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.</p>\n"
)


def _http_response(status: str, ctype: str, body: bytes, server: str) -> bytes:
    head = f"HTTP/1.1 {status}\r\n{_DATE}Server: {server}\r\n"
    if ctype:
        head += f"Content-Type: {ctype}\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    return head.encode() + body


def _http_request(host: str, path: str, agent: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {agent}\r\n"
        "Accept: */*\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n\r\n"
    ).encode()


# --- the world: hosts, servers and their payloads ------------------------------------------------

# Host profiles: (name, OUIs, TTL, first ephemeral port, last + 1, activity weight, role flags)
# Role flags: v=IPv6, m=mDNS responder, q=mDNS querier, s=SSDP searcher, n=SSDP notifier,
# d=DHCP client, w=web client, p=pinger, o=open TCP ports.
_PROFILES: Final = (
    ("windows", ("F8:B1:56", "D4:81:D7", "3C:52:82", "A0:36:9F", "28:18:78", "04:D9:F5"), 128, 49152, 65536, 10, "vqsdwpo"),
    ("linux", ("00:1B:21", "AC:1F:6B", "E0:D5:5E", "40:B0:76", "00:E0:4C"), 64, 32768, 61000, 10, "vdwpo"),
    ("macos", ("A4:83:E7", "F0:18:98", "8C:85:90", "38:F9:D3"), 64, 49152, 65536, 10, "vmqdwpo"),
    ("phone", ("BC:D0:74", "F4:D4:88", "3C:5A:B4"), 64, 49152, 65536, 5, "vmqsdw"),
    ("chromecast", ("F4:F5:D8", "54:60:09"), 64, 32768, 61000, 2, "vmndw"),
    ("iot", ("00:17:88", "18:B4:30", "50:C7:BF", "B0:BE:76", "DC:A6:32", "E4:5F:01"), 255, 49152, 65536, 1, "ndw"),
)  # fmt: skip
_SYN_WINDOWS: Final[Mapping[str, tuple[int, ...]]] = MappingProxyType(
    {
        "windows": (64240, 64240, 64240, 8192),
        "linux": (64240, 64240, 29200),
        "macos": (65535,),
        "phone": (65535, 65535, 29200),
        "chromecast": (29200, 64240),
        "iot": (5840, 14600, 29200, 8192),
    }
)
_NAS_OUI: Final = "00:11:32"
_PRINTER_OUIS: Final = ("3C:D9:2B", "70:5A:0F", "98:E7:F4")
_GATEWAY_OUIS: Final = ("00:0D:B9", "44:D9:E7", "24:A4:3C", "F0:9F:C2")
_OPEN_PORTS: Final[Mapping[str, tuple[int, ...]]] = MappingProxyType(
    {
        "windows": (135, 139, 445, 5357),
        "linux": (22, 111),
        "macos": (22, 5000, 7000),
        "nas": (22, 80, 139, 443, 445, 5000, 5001),
        "printer": (80, 443, 515, 631, 9100),
    }
)

# External servers: (name, IPv4, initial TTL, hops, RTT ms, Mbit/s, services).
_EXTERNAL: Final = (
    ("www.example.com", "93.184.216.34", 64, 11, 88, 40, "http tls"),
    ("www.wikipedia.org", "185.15.59.224", 64, 14, 24, 120, "tls"),
    ("www.google.com", "142.250.185.68", 128, 10, 12, 300, "tls"),
    ("fonts.gstatic.com", "142.250.186.35", 128, 10, 12, 300, "tls"),
    ("github.com", "140.82.121.4", 64, 12, 31, 150, "tls"),
    ("cdn.jsdelivr.net", "151.101.1.229", 64, 9, 9, 250, "tls"),
    ("deb.debian.org", "151.101.130.132", 64, 9, 10, 250, "http tls"),
    ("security.ubuntu.com", "91.189.91.81", 64, 13, 35, 90, "http"),
    ("detectportal.firefox.com", "34.107.221.82", 64, 11, 15, 100, "http"),
    ("connectivitycheck.gstatic.com", "142.250.74.3", 128, 10, 11, 300, "http"),
    ("www.msftconnecttest.com", "13.107.4.52", 128, 12, 14, 150, "http"),
    ("login.microsoftonline.com", "20.190.159.2", 128, 14, 22, 150, "tls"),
    ("www.bbc.co.uk", "151.101.0.81", 64, 9, 10, 250, "tls"),
    ("api.spotify.com", "35.186.224.25", 64, 11, 16, 150, "tls"),
    ("time.cloudflare.com", "162.159.200.1", 64, 8, 7, 100, "ntp"),
    ("ntp.ubuntu.com", "185.125.190.58", 64, 13, 30, 100, "ntp"),
    ("time.apple.com", "17.253.34.253", 64, 12, 20, 100, "ntp"),
    ("time.windows.com", "168.61.215.74", 128, 16, 90, 100, "ntp"),
    ("dns.google", "8.8.8.8", 128, 10, 12, 100, "dns ping"),
    ("one.one.one.one", "1.1.1.1", 64, 8, 8, 100, "dns ping"),
)

# Extra names looked up without a following connection: (name, type, answer count, NXDOMAIN).
_LOOKUPS: Final = (
    ("ocsp.digicert.com", 1, 2, False),
    ("clients4.google.com", 1, 1, False),
    ("safebrowsing.googleapis.com", 1, 1, False),
    ("outlook.office365.com", 1, 3, False),
    ("settings-win.data.microsoft.com", 1, 1, False),
    ("connectivity-check.ubuntu.com", 1, 2, False),
    ("www.google.com", 28, 1, False),
    ("github.com", 65, 0, False),
    ("wpad.lan", 1, 0, True),
    ("printer.lan", 28, 0, True),
)

_TLS_SIZES: Final = ((600, 30), (2_500, 30), (9_000, 20), (30_000, 12), (64_000, 8))
_AGENTS: Final = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Debian APT-HTTP/1.3 (2.6.1)",
)
_MDNS_SERVICES: Final = (
    ("_googlecast._tcp.local", 8009),
    ("_airplay._tcp.local", 7000),
    ("_raop._tcp.local", 7000),
    ("_companion-link._tcp.local", 49152),
    ("_spotify-connect._tcp.local", 57621),
    ("_ipp._tcp.local", 631),
)
_SSDP_TARGETS: Final = (
    "ssdp:all",
    "urn:dial-multiscreen-org:service:dial:1",
    "urn:schemas-upnp-org:device:MediaRenderer:1",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
)


@dataclass(frozen=True)
class _Attack:
    """Parameters of the attacks a world can run, fixed by the seed."""

    scan_src: int
    scan_targets: _I64
    scan_rate: float
    scan_sport: int
    scan_win: int
    scan_ports: tuple[_I64, ...]
    scan_filtered: _I64
    flood_src: int
    flood_dport: int
    flood_rate: float
    flood_reply: float
    flood_rst: float
    spoof_src: int
    spoof_victims: _I64
    spoof_period: int
    spoof_two_way: bool

    def fps(self, label: int) -> float:
        """Expected frames per second of an attack phase."""
        if label == _PORTSCAN:
            answered = 1.0 - float(self.scan_filtered.mean())
            return self.scan_rate * (1.0 + answered)
        if label == _SYNFLOOD:
            return self.flood_rate * (1.0 + self.flood_reply * (1.0 + self.flood_rst))
        per_round = len(self.spoof_victims) * (2 if self.spoof_two_way else 1) + 1
        return per_round * _SEC / self.spoof_period


class _World:
    """Hosts, servers, addresses and payloads of one seeded LAN."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng([seed, 0x5CE7])
        net = _ip(f"192.168.{int(rng.choice([0, 1, 2, 10, 50, 178]))}.0")
        self.net = net
        self.rpool = rng.integers(0, 256, 65536 + 256, dtype=np.uint8)

        # Hosts: gateway (index 0), NAS (1), printer (2), then clients.
        n_clients = int(rng.integers(8, 28))
        names = ["gateway", "nas", "printer"]
        prof = [-1, -1, -1]
        cum = np.cumsum([6, 5, 3, 4, 1, 1])
        for _ in range(n_clients):
            p = int(np.searchsorted(cum, rng.integers(0, cum[-1]), side="right"))
            prof.append(p)
            names.append(_PROFILES[p][0])
        n = len(names)
        self.n_hosts = n
        self.h_name = tuple(names)
        ouis = [str(rng.choice(_GATEWAY_OUIS)), _NAS_OUI, str(rng.choice(_PRINTER_OUIS))]
        ouis += [str(rng.choice(_PROFILES[p][1])) for p in prof[3:]]
        low = rng.choice(1 << 24, size=n, replace=False)
        self.h_mac = np.array(
            [(_mac(o) << 24) | int(x) for o, x in zip(ouis, low, strict=True)], np.int64
        )
        pool = rng.choice(np.arange(100, 200), n - 3, replace=False)
        last = [1, 10, 20, *sorted(int(x) for x in pool)]
        self.h_ip = np.array([net | x for x in last], dtype=np.int64)
        ttl = [64, 64, 64]
        ttl += [_PROFILES[p][2] if p != 5 else int(rng.choice([64, 255])) for p in prof[3:]]
        self.h_ttl = np.array(ttl, dtype=np.int64)
        # The SYN window each host's stack uses; lwIP-style stacks (TTL 255) don't set DF.
        synwin = [64240, 64240, 8192]
        synwin += [int(rng.choice(_SYN_WINDOWS[_PROFILES[p][0]])) for p in prof[3:]]
        self.h_synwin = np.array(synwin, dtype=np.int64)
        self.h_df = (self.h_ttl != 255).astype(np.int64)
        self.h_port_lo = np.array([32768] * 3 + [_PROFILES[p][3] for p in prof[3:]], np.int64)
        self.h_port_hi = np.array([61000] * 3 + [_PROFILES[p][4] for p in prof[3:]], np.int64)
        flags = ["", "vno", "no"] + [_PROFILES[p][6] for p in prof[3:]]
        weight = np.array([0, 2, 0] + [_PROFILES[p][5] for p in prof[3:]], np.int64)
        # Each host is busier or quieter than its profile says.
        weight = weight * rng.integers(5, 16, n) // 10

        def role(c: str) -> _I64:
            return np.array([c in f for f in flags], dtype=np.int64)

        self.w_web = weight * role("w")
        self.w_ping = weight * role("p")
        self.w_any = np.maximum(weight, 1)
        self.w_any[0] = 0
        self.w_dhcp = self.w_any * role("d")
        self.w_mdns_q = np.maximum(weight, 1) * role("q")
        self.w_mdns_r = np.maximum(weight, 1) * role("m")
        self.w_ssdp_s = np.maximum(weight, 1) * role("s")
        self.w_ssdp_n = role("n")
        self.has_v6 = role("v") * (rng.random(n) < 0.8)
        self.has_v6[0] = 1
        self.w_v6 = self.w_any * self.has_v6
        self.open_ports = tuple(
            np.array(
                _OPEN_PORTS.get({0: "linux", 1: "nas", 2: "printer"}.get(i, names[i]), ()),
                dtype=np.int64,
            )
            for i in range(n)
        )
        # A few clients sit on a tagged VLAN (802.1Q, seen on a trunk port).
        self.h_vlan = np.full(n, -1, dtype=np.int64)
        tagged = rng.choice(np.arange(3, n), size=int(rng.integers(1, 4)), replace=False)
        prio = rng.choice([0, 5], size=len(tagged))
        self.h_vlan[tagged] = (prio << 13) | 20
        self.h_public_dns = (rng.random(n) < 0.25).astype(np.int64)
        self.h_public_dns[:3] = 0
        self.gw = 0
        self.nas = 1

        self._v6(rng)
        self._endpoints(rng)
        self._payloads(rng)
        self.attack = self._attacks(rng, prof)

    # IPv6: SLAAC (EUI-64) global and link-local addresses, solicited-node groups, multicast.
    def _v6(self, rng: np.random.Generator) -> None:
        prefix = bytes.fromhex("20010db8") + int(rng.integers(0, 1 << 32)).to_bytes(4, "big")
        self.v6_prefix = prefix
        rows: list[bytes] = []
        g, ll, sn = [], [], []
        for i, m in enumerate(self.h_mac.tolist()):
            mb = m.to_bytes(6, "big")
            iid = bytes([mb[0] ^ 2]) + mb[1:3] + b"\xff\xfe" + mb[3:]
            if i == 0:
                iid = (1).to_bytes(8, "big")
            g.append(len(rows))
            rows.append(prefix + iid)
            ll.append(len(rows))
            rows.append(
                bytes.fromhex("fe80000000000000")
                + (bytes([mb[0] ^ 2]) + mb[1:3] + b"\xff\xfe" + mb[3:])
            )
            sn.append(len(rows))
            rows.append(bytes.fromhex("ff0200000000000000000001ff") + iid[-3:])
        self.v6_all_nodes = len(rows)
        rows.append(bytes.fromhex("ff020000000000000000000000000001"))
        self.v6_mdns = len(rows)
        rows.append(bytes.fromhex("ff0200000000000000000000000000fb"))
        self.v6 = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(-1, 16).copy()
        self.v6v = self.v6.view("V16").ravel()
        words = self.v6.reshape(-1, 8, 2).astype(np.int64)
        self.v6sum = (words[:, :, 0] * 256 + words[:, :, 1]).sum(axis=1)
        self.h_v6g = np.array(g, dtype=np.int64)
        self.h_v6ll = np.array(ll, dtype=np.int64)
        self.h_v6sn = np.array(sn, dtype=np.int64)
        # Multicast MACs 33:33 + the last four address bytes.
        tail = self.v6[:, 12:].astype(np.int64)
        self.v6_mcast_mac = (
            (0x3333 << 32)
            | (tail[:, 0] << 24)
            | (tail[:, 1] << 16)
            | (tail[:, 2] << 8)
            | tail[:, 3]
        )

    def _endpoints(self, rng: np.random.Generator) -> None:
        """Remote ends of sessions: the gateway, the NAS, and the external servers."""
        gw_mac = int(self.h_mac[self.gw])
        eps: list[tuple[str, int, int, int, int, int, str]] = [
            ("gateway.lan", int(self.h_ip[0]), gw_mac, 64, 400 * _US, 1000, "dns ping ntp"),
            (
                "nas.lan",
                int(self.h_ip[1]),
                int(self.h_mac[1]),
                64,
                300 * _US,
                1000,
                "http tls ping",
            ),
        ]
        for name, ip, ttl0, hops, rtt, mbps, svc in _EXTERNAL:
            eps.append((name, _ip(ip), gw_mac, ttl0 - hops, rtt * _MS, mbps, svc))
        self.e_name = tuple(e[0] for e in eps)
        self.e_ip = np.array([e[1] for e in eps], dtype=np.int64)
        self.e_mac = np.array([e[2] for e in eps], dtype=np.int64)
        self.e_ttl = np.array([e[3] for e in eps], dtype=np.int64)
        self.e_rtt = np.array([e[4] for e in eps], dtype=np.int64)
        self.e_gap = np.array([1514 * 8 * 1000 // e[5] for e in eps], dtype=np.int64)
        services = [e[6].split() for e in eps]

        def has(s: str) -> _I64:
            return np.array([s in x for x in services], dtype=np.int64)

        self.e_http, self.e_tls, self.e_ntp = has("http"), has("tls"), has("ntp")
        self.e_ping = has("ping")
        self.e_dns = has("dns")
        self.e_public_dns = np.flatnonzero(self.e_dns * (np.arange(len(eps)) > 1)).astype(np.int64)
        # The NAS gets a share of web sessions; external servers share the rest.
        self.w_http = self.e_http * np.where(np.arange(len(eps)) == 1, 3, 2)
        self.w_tls = self.e_tls * np.where(np.arange(len(eps)) == 1, 4, 3)
        self.w_tls[4] = 8  # www.google.com
        self.w_tls[5] = 6  # fonts.gstatic.com

    def _payloads(self, rng: np.random.Generator) -> None:
        b = _Bank()
        noise = rng.integers(0, 256, 80_000, dtype=np.uint8).tobytes()
        n_ep = len(self.e_name)
        # DNS: per endpoint an A query and its answer (the endpoint's address, maybe via a CNAME).
        self.dns_q = np.zeros(n_ep, dtype=np.int64)
        self.dns_r = np.zeros(n_ep, dtype=np.int64)
        for i, name in enumerate(self.e_name):
            cname = None
            if name.startswith("www.") and i % 3 == 0:
                cname = name[4:].replace(".", "-") + ".edgekey.net"
            self.dns_q[i] = b.row(_dns_query(name, 1), _P_DNS)
            addr = int(self.e_ip[i]).to_bytes(4, "big")
            self.dns_r[i] = b.row(_dns_answer(name, 1, [addr], cname=cname), _P_DNS)
        lq, lr = [], []
        for name, qtype, count, nx in _LOOKUPS:
            lq.append(b.row(_dns_query(name, qtype), _P_DNS))
            if qtype == 28:
                tails = rng.integers(0, 1 << 32, (count, 2))
                answers = [
                    bytes.fromhex("2a00145040010800") + struct.pack(">II", *t)
                    for t in tails.tolist()
                ]
            else:
                answers = [int(a).to_bytes(4, "big") for a in _spoofed_ips(rng, count).tolist()]
            if qtype == 65:
                answers = [b"\x00\x01\x00\x00\x01\x00\x03\x02h2"]
            lr.append(b.row(_dns_answer(name, qtype, answers, rcode=3 if nx else 0), _P_DNS))
        self.lookup_q = np.array(lq, dtype=np.int64)
        self.lookup_r = np.array(lr, dtype=np.int64)
        # HTTP requests and responses, per endpoint.
        html = (_HTML * 400)[:60_000]
        resp = {
            "204": _http_response("204 No Content", "", b"", "gws"),
            "success": _http_response("200 OK", "text/plain", b"success\n", "nginx"),
            "msft": _http_response(
                "200 OK", "text/plain", b"Microsoft Connect Test", "Microsoft-IIS/10.0"
            ),
            "small": _http_response(
                "200 OK", "text/html; charset=utf-8", html[:1_800], "nginx/1.22.1"
            ),
            "page": _http_response(
                "200 OK", "text/html; charset=utf-8", html[:7_200], "nginx/1.22.1"
            ),
            "big": _http_response(
                "200 OK", "text/html; charset=utf-8", html[:24_000], "Apache/2.4.57 (Debian)"
            ),
            "notmod": _http_response("304 Not Modified", "", b"", "Apache/2.4.57 (Debian)"),
            "deb": _http_response(
                "200 OK",
                "application/vnd.debian.binary-package",
                noise[:48_000],
                "Apache/2.4.57 (Debian)",
            ),
            "release": _http_response(
                "200 OK",
                "text/plain",
                (b"Package: libc6\nVersion: 2.36-9\n" * 400)[:12_000],
                "Apache/2.4.57 (Debian)",
            ),
            "json": _http_response(
                "200 OK",
                "application/json",
                b'{"status":"ok","items":[' + b'{"id":1,"name":"x"},' * 30 + b"{}]}",
                "nginx",
            ),
        }
        streams = {k: b.stream(v) for k, v in resp.items()}
        pages: dict[str, tuple[tuple[str, str, int], ...]] = {
            "detectportal.firefox.com": (
                ("/canonical.html", "success", 1),
                ("/success.txt?ipv4", "success", 3),
            ),
            "connectivitycheck.gstatic.com": (("/generate_204", "204", 1),),
            "www.msftconnecttest.com": (("/connecttest.txt", "msft", 1),),
            "deb.debian.org": (
                ("/debian/dists/bookworm/InRelease", "release", 3),
                ("/debian/pool/main/c/curl/libcurl4_7.88.1-10_amd64.deb", "deb", 1),
                ("/debian/dists/bookworm/InRelease", "notmod", 3),
            ),
            "security.ubuntu.com": (
                ("/ubuntu/dists/jammy-security/InRelease", "release", 2),
                ("/ubuntu/dists/jammy-security/InRelease", "notmod", 3),
            ),
            "www.example.com": (("/", "small", 2), ("/index.html", "notmod", 1)),
            "nas.lan": (
                ("/", "page", 1),
                ("/webapi/query.cgi?api=SYNO.API.Info", "json", 4),
                ("/photo/", "big", 1),
            ),
        }
        self.http_req: list[_I64] = []
        self.http_first: list[_I64] = []
        self.http_nseg: list[_I64] = []
        self.http_w: list[_I64] = []
        for name in self.e_name:
            req, first, nseg, w = [], [], [], []
            for path, key, weight in pages.get(name, ()):
                for agent in _AGENTS[:2] if "debian" not in name else _AGENTS[2:]:
                    req.append(b.row(_http_request(name, path, agent)))
                    first.append(streams[key][0])
                    nseg.append(streams[key][1])
                    w.append(weight)
            self.http_req.append(np.array(req or [0], dtype=np.int64))
            self.http_first.append(np.array(first or [0], dtype=np.int64))
            self.http_nseg.append(np.array(nseg or [1], dtype=np.int64))
            self.http_w.append(np.array(w or [1], dtype=np.int64))
        # TLS: a ClientHello per server name, server flights, client finished+request, responses.
        self.tls_ch = np.array([b.row(_client_hello(n), _P_TLS_CH) for n in self.e_name], np.int64)
        fl = [
            b.stream(_server_flight(noise[i * 997 : i * 997 + s]), _P_TLS_SH)
            for i, s in enumerate((2_600, 3_900, 5_400))
        ]
        self.tls_flight = np.array([f[0] for f in fl], dtype=np.int64)
        self.tls_flight_n = np.array([f[1] for f in fl], dtype=np.int64)
        fin = []
        for s in (180, 420, 760):
            data = _tls_record(0x14, b"\x01") + _tls_record(0x17, noise[s : s + 53])
            fin.append(b.row(data + _tls_record(0x17, noise[2 * s : 2 * s + s])))
        self.tls_fin = np.array(fin, dtype=np.int64)
        rs = [
            b.stream(_tls_app_stream(size, noise[i * 4099 :]))
            for i, (size, _) in enumerate(_TLS_SIZES)
        ]
        self.tls_resp = np.array([r[0] for r in rs], dtype=np.int64)
        self.tls_resp_n = np.array([r[1] for r in rs], dtype=np.int64)
        self.tls_resp_w = np.array([w for _, w in _TLS_SIZES], dtype=np.int64)
        # NTP: one client request; one answer per server (its own reference id).
        self.ntp_q = b.row(_ntp(3, 0, bytes(4)), _P_NTP_C)
        self.ntp_r = np.array(
            [
                b.row(_ntp(4, 2, bytes(rng.integers(0, 256, 4, dtype=np.uint8))), _P_NTP_S)
                for _ in range(n_ep)
            ],
            dtype=np.int64,
        )
        # DHCP.
        gw = int(self.h_ip[0])
        self.dhcp_discover = b.row(_dhcp(1, 1, gw, gw), _P_DHCP_C)
        self.dhcp_offer = b.row(_dhcp(2, 2, gw, gw), _P_DHCP_S)
        self.dhcp_request = b.row(_dhcp(1, 3, gw, gw), _P_DHCP_C)
        self.dhcp_ack = b.row(_dhcp(2, 5, gw, gw), _P_DHCP_S)
        self.dhcp_renew = b.row(_dhcp(1, 3, gw, gw), _P_DHCP_CR)
        self.dhcp_renew_ack = b.row(_dhcp(2, 5, gw, gw), _P_DHCP_SR)
        # ICMP echo payloads: Linux/macOS ping (timeval + pattern), Windows ping (alphabet).
        self.ping_unix = b.row(bytes(16) + bytes(range(0x10, 0x38)), _P_PING)
        self.ping_win = b.row(b"abcdefghijklmnopqrstuvwabcdefghi")
        # mDNS questions (v4 and v6 share them) and device announcements.
        self.mdns_q = np.array(
            [
                b.row(_dns_query(s, 12, flags=0, qclass=0x8001 if i % 2 else 1))
                for i, (s, _) in enumerate(_MDNS_SERVICES)
            ],
            dtype=np.int64,
        )
        self.mdns_r = np.array(
            [
                b.row(_mdns_response(s, f"Device-{i:02d}", p, f"device-{i:02d}.local"))
                for i, (s, p) in enumerate(_MDNS_SERVICES)
            ],
            dtype=np.int64,
        )
        # SSDP: searches, plus a NOTIFY and a search answer per host (LOCATION names the host).
        self.ssdp_search = np.array(
            [
                b.row(
                    f'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 1\r\nST: {st}\r\n\r\n'.encode()
                )
                for st in _SSDP_TARGETS
            ],
            dtype=np.int64,
        )
        notify, answer = [], []
        for i in range(self.n_hosts):
            ipd = ".".join(str((int(self.h_ip[i]) >> s) & 255) for s in (24, 16, 8, 0))
            loc = f"LOCATION: http://{ipd}:8008/ssdp/device-desc.xml\r\n"
            usn = f"USN: uuid:{int(self.h_mac[i]):012x}-0000-1000-8000-{int(self.h_mac[i]):012x}::upnp:rootdevice\r\n"
            notify.append(
                b.row(
                    (
                        f"NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nCACHE-CONTROL: max-age=1800\r\n{loc}NT: upnp:rootdevice\r\nNTS: ssdp:alive\r\nSERVER: Linux/3.8 UPnP/1.0 Cast/1.56\r\n{usn}\r\n"
                    ).encode()
                )
            )
            answer.append(
                b.row(
                    (
                        f"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nEXT:\r\n{loc}SERVER: Linux/3.8 UPnP/1.0 Cast/1.56\r\nST: upnp:rootdevice\r\n{usn}\r\n"
                    ).encode()
                )
            )
        self.ssdp_notify = np.array(notify, dtype=np.int64)
        self.ssdp_answer = np.array(answer, dtype=np.int64)
        # ICMPv6 Neighbor Discovery and Router Advertisement (checksums computed per frame).
        self.nd_ns = b.row(
            b"\x87\x00\x00\x00" + bytes(4) + bytes(16) + b"\x01\x01" + bytes(6), _P_ND
        )
        self.nd_na = b.row(
            b"\x88\x00\x00\x00\x60\x00\x00\x00" + bytes(16) + b"\x02\x01" + bytes(6), _P_ND
        )
        self.nd_na_router = b.row(
            b"\x88\x00\x00\x00\xe0\x00\x00\x00" + bytes(16) + b"\x02\x01" + bytes(6), _P_ND
        )
        ra = b"\x86\x00\x00\x00\x40\x00" + struct.pack(">HII", 1800, 0, 0) + b"\x01\x01" + bytes(6)
        ra += b"\x05\x01\x00\x00" + struct.pack(">I", 1500)
        ra += b"\x03\x04\x40\xc0" + struct.pack(">III", 86400, 14400, 0) + self.v6_prefix + bytes(8)
        self.nd_ra = b.row(ra, _P_RA)
        b.freeze()
        self.bank = b

    def _attacks(self, rng: np.random.Generator, prof: list[int]) -> _Attack:
        clients = np.flatnonzero((np.arange(self.n_hosts) >= 3) & (self.h_vlan < 0))
        # Attackers are ordinary-looking laptops/desktops that also send benign traffic.
        pcs = np.array([c for c in clients if prof[c] in (0, 1, 2)], dtype=np.int64)
        if len(pcs) == 0:
            pcs = clients
        scan_src, flood_src, spoof_src = (int(x) for x in rng.choice(pcs, 3))
        others = np.array([h for h in range(1, self.n_hosts) if h != scan_src], dtype=np.int64)
        n_targets = int(rng.integers(1, 4))
        targets = np.concatenate(
            [[self.nas], rng.choice(others[others != self.nas], n_targets - 1, replace=False)]
        ).astype(np.int64)
        rng.shuffle(targets)
        common = np.array(
            [
                21,
                22,
                23,
                25,
                53,
                80,
                110,
                111,
                135,
                139,
                143,
                443,
                445,
                993,
                995,
                1723,
                3306,
                3389,
                5900,
                8080,
            ],
            dtype=np.int64,
        )
        ports = []
        keep = np.ones(65536, dtype=bool)
        keep[0] = False
        keep[common] = False
        rest = np.flatnonzero(keep).astype(np.int64)
        for _ in targets:
            ports.append(np.concatenate([rng.permutation(common), rng.permutation(rest)]))
        filtered = np.array(
            [self.h_name[t] == "windows" and rng.random() < 0.7 for t in targets], dtype=np.int64
        )
        victims_pool = np.array(
            [h for h in range(3, self.n_hosts) if h != spoof_src], dtype=np.int64
        )
        # Like bettercap's default, poison the whole subnet (or, sometimes, a few hosts).
        n_vict = len(victims_pool) if rng.random() < 0.7 else min(len(victims_pool), 4)
        return _Attack(
            scan_src=scan_src,
            scan_targets=targets,
            scan_rate=float(rng.integers(250, 600)),
            scan_sport=int(rng.integers(33000, 62000)),
            scan_win=int(self.h_synwin[scan_src]),
            scan_ports=tuple(ports),
            scan_filtered=filtered,
            flood_src=flood_src,
            flood_dport=int(rng.choice([80, 443])),
            flood_rate=float(rng.integers(900, 1800)),
            flood_reply=float(rng.integers(40, 80)) / 100,
            flood_rst=float(rng.integers(10, 30)) / 100,
            spoof_src=spoof_src,
            spoof_victims=np.sort(rng.choice(victims_pool, n_vict, replace=False)).astype(np.int64),
            spoof_period=int(rng.integers(250, 600)) * _MS,
            spoof_two_way=bool(rng.random() < 0.5),
        )


# --- the event builder ------------------------------------------------------------------------


class _Blocks:
    """Collects blocks of events (columns of the event table) from the activity generators."""

    def __init__(self) -> None:
        self.parts: list[_I64] = []

    def add(self, ts: _I64, **cols: _Col) -> None:
        n = len(ts)
        if n == 0:
            return
        block = np.zeros((n, _NCOL), dtype=np.int64)
        block[:, _VLAN] = -1
        block[:, _TS] = ts
        for name, value in cols.items():
            block[:, _C[name]] = value
        self.parts.append(block)

    def table(self) -> _I64:
        if not self.parts:
            return np.zeros((0, _NCOL), dtype=np.int64)
        return np.concatenate(self.parts)


def _eph(w: _World, rng: np.random.Generator, hosts: _I64) -> _I64:
    lo, hi = w.h_port_lo[hosts], w.h_port_hi[hosts]
    return lo + rng.integers(0, 1 << 30, len(hosts)) % (hi - lo)


class _Tcp:
    """Many TCP connections at once, advanced through the same script step by step."""

    def __init__(
        self,
        w: _World,
        rng: np.random.Generator,
        out: _Blocks,
        t: _I64,
        client: _I64,
        ep: _I64,
        dport: int,
    ) -> None:
        s = len(t)
        self.w, self.rng, self.out = w, rng, out
        self.n = s
        self.t = t.copy()
        self.cmac, self.cip, self.cttl = w.h_mac[client], w.h_ip[client], w.h_ttl[client]
        self.synwin, self.cdf = w.h_synwin[client], w.h_df[client]
        self.vlan = w.h_vlan[client]
        self.smac, self.sip, self.sttl = w.e_mac[ep], w.e_ip[ep], w.e_ttl[ep]
        self.rtt = w.e_rtt[ep] * rng.integers(90, 130, s) // 100
        self.gap = w.e_gap[ep]
        self.cport = _eph(w, rng, client)
        self.sport = np.full(s, dport, dtype=np.int64)
        self.cseq = rng.integers(0, 1 << 32, s)
        self.sseq = rng.integers(0, 1 << 32, s)
        self.cid = rng.integers(0, 1 << 16, s)
        self.sid = rng.integers(0, 1 << 16, s)
        self.cwin = rng.integers(250, 2100, s)
        self.swin = rng.integers(120, 520, s)
        self.aux = rng.integers(0, 65536, s)

    def emit(
        self,
        si: _I64,
        ts: _I64,
        client: bool,
        seq: _I64,
        ack: _I64 | int,
        flags: _I64 | int,
        *,
        kind: int = _K_TCP,
        var: _I64 | int = 0,
        win: _I64 | None = None,
    ) -> None:
        rank = _rank(si)
        if client:
            ipid = (self.cid[si] + rank) & 0xFFFF
            df: _Col = self.cdf[si]
            np.add.at(self.cid, si, 1)
            cols = dict(smac=self.cmac[si], dmac=self.smac[si], sip=self.cip[si], dip=self.sip[si])
            cols.update(sport=self.cport[si], dport=self.sport[si], ttl=self.cttl[si])
            cols.update(win=self.cwin[si] if win is None else win)
        else:
            ipid = (self.sid[si] + rank) & 0xFFFF
            df = 1
            np.add.at(self.sid, si, 1)
            cols = dict(smac=self.smac[si], dmac=self.cmac[si], sip=self.sip[si], dip=self.cip[si])
            cols.update(sport=self.sport[si], dport=self.cport[si], ttl=self.sttl[si])
            cols.update(win=self.swin[si] if win is None else win)
        self.out.add(
            ts,
            kind=kind,
            vlan=self.vlan[si],
            seq=seq & 0xFFFFFFFF,
            ack=np.asarray(ack) & 0xFFFFFFFF,
            flags=flags,
            ipid=ipid,
            df=df,
            var=var,
            aux=self.aux[si],
            **cols,
        )

    def handshake(self) -> None:
        si = np.arange(self.n, dtype=np.int64)
        t0 = self.t
        self.emit(si, t0, True, self.cseq, 0, _SYN, kind=_K_SYN, win=self.synwin)
        t1 = t0 + self.rtt
        syn_win = np.where(self.sttl > 64, 65535, 65160)
        self.emit(si, t1, False, self.sseq, self.cseq + 1, _SYN | _ACKF, kind=_K_SYN, win=syn_win)
        self.cseq = self.cseq + 1
        self.sseq = self.sseq + 1
        t2 = t1 + _uni(self.rng, self.n, 30 * _US, 200 * _US)
        self.emit(si, t2, True, self.cseq, self.sseq, _ACKF)
        self.t = t2

    def send(self, client: bool, first: _I64, nseg: _I64, start: _I64) -> None:
        """Each connection sends one message of ``nseg`` bank rows from ``first``."""
        si = np.repeat(np.arange(self.n, dtype=np.int64), nseg)
        j = _rank(si)
        rows = first[si] + j
        bank = self.w.bank
        if client:
            ts = start[si] + j * 15 * _US
            base, other = self.cseq, self.sseq
        else:
            flight = np.searchsorted(_FLIGHTS, j, side="right")
            ts = start[si] + flight * self.rtt[si] + j * self.gap[si]
            base, other = self.sseq, self.cseq
        last = j == nseg[si] - 1
        seq = base[si] + bank.cum[rows]
        self.emit(si, ts, client, seq, other[si], np.where(last, _PSH | _ACKF, _ACKF), var=rows)
        end = ts[last]
        if not client:
            # The client (the capture side) ACKs every second segment and the last one at once.
            m = (j % 2 == 1) | last
            ats = ts[m] + _uni(self.rng, int(m.sum()), 20 * _US, 250 * _US)
            self.emit(si[m], ats, True, self.cseq[si[m]], seq[m] + bank.length[rows[m]], _ACKF)
            end = ats[last[m]]
        total = bank.total[first]
        if client:
            self.cseq = self.cseq + total
        else:
            self.sseq = self.sseq + total
        self.t = end

    def close(self, think: _I64) -> None:
        """Client FIN (70%), server FIN after idle (15%) or client RST (15%)."""
        mode = _pick(self.rng, np.array([70, 15, 15], dtype=np.int64), self.n)
        t = self.t + think
        a = np.flatnonzero(mode == 0)
        self.emit(a, t[a], True, self.cseq[a], self.sseq[a], _FIN | _ACKF)
        t1 = t[a] + self.rtt[a]
        self.emit(a, t1, False, self.sseq[a], self.cseq[a] + 1, _FIN | _ACKF)
        self.emit(
            a,
            t1 + _uni(self.rng, len(a), 20 * _US, 150 * _US),
            True,
            self.cseq[a] + 1,
            self.sseq[a] + 1,
            _ACKF,
        )
        b = np.flatnonzero(mode == 1)
        self.emit(b, t[b], False, self.sseq[b], self.cseq[b], _FIN | _ACKF)
        t2 = t[b] + _uni(self.rng, len(b), 20 * _US, 150 * _US)
        self.emit(b, t2, True, self.cseq[b], self.sseq[b] + 1, _ACKF)
        t3 = t2 + _uni(self.rng, len(b), 100 * _US, 5 * _MS)
        self.emit(b, t3, True, self.cseq[b], self.sseq[b] + 1, _FIN | _ACKF)
        self.emit(b, t3 + self.rtt[b], False, self.sseq[b] + 1, self.cseq[b] + 1, _ACKF)
        c = np.flatnonzero(mode == 2)
        # Aborts: some stacks send RST/ACK, others a bare RST (ACK number zero).
        bare = self.rng.random(len(c)) < 0.5
        ack = np.where(bare, 0, self.sseq[c])
        flags = np.where(bare, _RST, _RST | _ACKF)
        self.emit(c, t[c], True, self.cseq[c], ack, flags, win=np.zeros(len(c), np.int64))


# --- benign activities ----------------------------------------------------------------------------


def _dns_exchange(
    w: _World,
    rng: np.random.Generator,
    out: _Blocks,
    t: _I64,
    host: _I64,
    q: _I64,
    r: _I64,
    *,
    v6: bool = False,
) -> _I64:
    """A DNS query at ``t`` and its answer; returns the answer times."""
    n = len(t)
    gw = w.gw
    public = w.h_public_dns[host] if not v6 else np.zeros(n, np.int64)
    resolver = np.where(public == 1, w.e_public_dns[host % len(w.e_public_dns)], 0)
    # The gateway's cache answers at once; misses and public resolvers take an Internet RTT.
    miss = rng.random(n) < 0.4
    rtt = np.where(
        public == 1, w.e_rtt[resolver], np.where(miss, _uni(rng, n, 8 * _MS, 45 * _MS), 0)
    )
    rtt = rtt + _uni(rng, n, 150 * _US, 600 * _US)
    txid = rng.integers(0, 65536, n)
    sport = _eph(w, rng, host)
    vlan = w.h_vlan[host]
    gmac = int(w.h_mac[gw])
    common: dict[str, _Col] = dict(kind=_K_UDP6 if v6 else _K_UDP, vlan=vlan, aux=txid)
    if v6:
        out.add(
            t,
            smac=w.h_mac[host],
            dmac=gmac,
            sip=w.h_v6g[host],
            dip=int(w.h_v6g[gw]),
            sport=sport,
            dport=53,
            ttl=64,
            var=q,
            **common,
        )
        out.add(
            t + rtt,
            smac=gmac,
            dmac=w.h_mac[host],
            sip=int(w.h_v6g[gw]),
            dip=w.h_v6g[host],
            sport=53,
            dport=sport,
            ttl=64,
            var=r,
            **common,
        )
    else:
        rip, rttl = w.e_ip[resolver], w.e_ttl[resolver]
        ipid = rng.integers(0, 65536, (2, n))
        out.add(
            t,
            smac=w.h_mac[host],
            dmac=gmac,
            sip=w.h_ip[host],
            dip=rip,
            sport=sport,
            dport=53,
            ttl=w.h_ttl[host],
            ipid=ipid[0],
            var=q,
            **common,
        )
        out.add(
            t + rtt,
            smac=gmac,
            dmac=w.h_mac[host],
            sip=rip,
            dip=w.h_ip[host],
            sport=53,
            dport=sport,
            ttl=rttl,
            ipid=ipid[1],
            var=r,
            **common,
        )
    return t + rtt


def _act_web(w: _World, rng: np.random.Generator, out: _Blocks, t: _I64, tls: bool) -> None:
    n = len(t)
    host = _pick(rng, w.w_web, n)
    ep = _pick(rng, w.w_tls if tls else w.w_http, n)
    # Half of the sessions first resolve the server's name (the rest hit the cache).
    lookup = np.flatnonzero((rng.random(n) < 0.5) & (ep != w.nas))
    t = t.copy()
    t[lookup] = _dns_exchange(
        w, rng, out, t[lookup], host[lookup], w.dns_q[ep[lookup]], w.dns_r[ep[lookup]]
    )
    t[lookup] += _uni(rng, len(lookup), 100 * _US, 2 * _MS)
    tcp = _Tcp(w, rng, out, t, host, ep, 443 if tls else 80)
    tcp.handshake()
    proc = _exp(rng, n, 3 * _MS) + 100 * _US
    one = np.ones(n, dtype=np.int64)
    if tls:
        tcp.send(True, w.tls_ch[ep], one, tcp.t + _uni(rng, n, 50 * _US, 500 * _US))
        k = rng.integers(0, len(w.tls_flight), n)
        tcp.send(False, w.tls_flight[k], w.tls_flight_n[k], tcp.t + tcp.rtt + proc)
        fin = w.tls_fin[rng.integers(0, len(w.tls_fin), n)]
        tcp.send(True, fin, one, tcp.t + _uni(rng, n, 200 * _US, 3 * _MS))
        c = _pick(rng, w.tls_resp_w, n)
        tcp.send(
            False,
            w.tls_resp[c],
            w.tls_resp_n[c],
            tcp.t + tcp.rtt + _exp(rng, n, 8 * _MS) + 200 * _US,
        )
    else:
        req = np.zeros(n, dtype=np.int64)
        first = np.zeros(n, dtype=np.int64)
        nseg = np.ones(n, dtype=np.int64)
        for e in np.unique(ep).tolist():
            m = np.flatnonzero(ep == e)
            p = _pick(rng, w.http_w[e], len(m))
            req[m], first[m], nseg[m] = w.http_req[e][p], w.http_first[e][p], w.http_nseg[e][p]
        tcp.send(True, req, one, tcp.t + _uni(rng, n, 50 * _US, 500 * _US))
        tcp.send(False, first, nseg, tcp.t + tcp.rtt + proc)
    tcp.close(_exp(rng, n, 250 * _MS) + _MS)


def _act_lookup(w: _World, rng: np.random.Generator, out: _Blocks, t: _I64, v6: bool) -> None:
    n = len(t)
    host = _pick(rng, w.w_v6 if v6 else w.w_web, n)
    k = rng.integers(0, len(w.lookup_q), n)
    _dns_exchange(w, rng, out, t, host, w.lookup_q[k], w.lookup_r[k], v6=v6)


def _act_ntp(w: _World, rng: np.random.Generator, out: _Blocks, t: _I64) -> None:
    n = len(t)
    host = _pick(rng, w.w_any, n)
    ep = _pick(rng, w.e_ntp * 3 + (np.arange(len(w.e_ip)) == 0), n)
    rtt = w.e_rtt[ep] * rng.integers(95, 140, n) // 100
    sport = np.where(rng.random(n) < 0.5, 123, _eph(w, rng, host))
    vlan = w.h_vlan[host]
    c: dict[str, _Col] = dict(kind=_K_UDP, vlan=vlan, aux=t)
    out.add(
        t,
        smac=w.h_mac[host],
        dmac=w.e_mac[ep],
        sip=w.h_ip[host],
        dip=w.e_ip[ep],
        sport=sport,
        dport=123,
        ttl=w.h_ttl[host],
        ipid=rng.integers(0, 65536, n),
        df=1,
        var=w.ntp_q,
        **c,
    )
    out.add(
        t + rtt,
        smac=w.e_mac[ep],
        dmac=w.h_mac[host],
        sip=w.e_ip[ep],
        dip=w.h_ip[host],
        sport=123,
        dport=sport,
        ttl=w.e_ttl[ep],
        ipid=rng.integers(0, 65536, n),
        var=w.ntp_r[ep],
        **c,
    )


def _arp_pair(
    w: _World,
    rng: np.random.Generator,
    out: _Blocks,
    t: _I64,
    asker: _I64,
    target: _I64,
    vlan: _I64,
) -> None:
    n = len(t)
    out.add(
        t,
        kind=_K_ARP,
        vlan=vlan,
        smac=w.h_mac[asker],
        dmac=_BCAST,
        sip=w.h_ip[asker],
        dip=w.h_ip[target],
        flags=1,
    )
    rt = t + _uni(rng, n, 40 * _US, 900 * _US)
    out.add(
        rt,
        kind=_K_ARP,
        vlan=vlan,
        smac=w.h_mac[target],
        dmac=w.h_mac[asker],
        sip=w.h_ip[target],
        dip=w.h_ip[asker],
        flags=2,
    )


def _act_arp(w: _World, rng: np.random.Generator, out: _Blocks, t: _I64) -> None:
    n = len(t)
    host = _pick(rng, w.w_any, n)
    # Mostly hosts resolving the gateway; also the gateway resolving hosts, and host to host.
    kind = _pick(rng, np.array([6, 3, 2], dtype=np.int64), n)
    other = np.where(rng.random(n) < 0.5, w.nas, 2)
    other = np.where(other == host, w.gw, other)
    asker = np.where(kind == 1, w.gw, host)
    target = np.where(kind == 0, w.gw, np.where(kind == 1, host, other))
    _arp_pair(w, rng, out, t, asker, target, w.h_vlan[host])


def _act_nd(w: _World, rng: np.random.Generator, out: _Blocks, t: _I64) -> None:
    n = len(t)
    host = _pick(rng, w.w_v6, n)
    peers = np.flatnonzero(w.has_v6)
    target = np.where(rng.random(n) < 0.6, w.gw, peers[rng.integers(0, len(peers), n)])
    target = np.where(target == host, w.gw, target)
    vlan = w.h_vlan[host]
    sn = w.h_v6sn[target]
    out.add(
        t,
        kind=_K_ICMP6,
        vlan=vlan,
        smac=w.h_mac[host],
        dmac=w.v6_mcast_mac[sn],
        sip=w.h_v6g[host],
        dip=sn,
        ttl=255,
        var=w.nd_ns,
        aux=w.h_v6g[target],
    )
    na = np.where(target == w.gw, w.nd_na_router, w.nd_na)
    rt = t + _uni(rng, n, 50 * _US, 900 * _US)
    out.add(
        rt,
        kind=_K_ICMP6,
        vlan=vlan,
        smac=w.h_mac[target],
        dmac=w.h_mac[host],
        sip=w.h_v6g[target],
        dip=w.h_v6g[host],
        ttl=255,
        var=na,
        aux=w.h_v6g[target],
    )


def _act_ra(w: _World, rng: np.random.Generator, out: _Blocks, t: _I64) -> None:
    gw = w.gw
    out.add(
        t,
        kind=_K_ICMP6,
        smac=int(w.h_mac[gw]),
        dmac=int(w.v6_mcast_mac[w.v6_all_nodes]),
        sip=int(w.h_v6ll[gw]),
        dip=w.v6_all_nodes,
        ttl=255,
        var=w.nd_ra,
    )


def _act_mdns(w: _World, rng: np.random.Generator, out: _Blocks, t: _I64) -> None:
    n = len(t)
    asker = _pick(rng, w.w_mdns_q, n)
    k = rng.integers(0, len(w.mdns_q), n)
    v6 = (rng.random(n) < 0.4) & (w.has_v6[asker] == 1)
    answerer = _pick(rng, w.w_mdns_r, n)
    answered = (rng.random(n) < 0.6) & (answerer != asker)
    rt = t + _uni(rng, n, 2 * _MS, 120 * _MS)
    mc4 = _mac("01:00:5e:00:00:fb")
    mdns4 = _ip("224.0.0.251")
    for six in (False, True):
        m = np.flatnonzero(v6 == six)
        a = np.flatnonzero((v6 == six) & answered)
        if six:
            mcm = int(w.v6_mcast_mac[w.v6_mdns])
            out.add(
                t[m],
                kind=_K_UDP6,
                vlan=w.h_vlan[asker[m]],
                smac=w.h_mac[asker[m]],
                dmac=mcm,
                sip=w.h_v6ll[asker[m]],
                dip=w.v6_mdns,
                sport=5353,
                dport=5353,
                ttl=255,
                var=w.mdns_q[k[m]],
            )
            out.add(
                rt[a],
                kind=_K_UDP6,
                vlan=w.h_vlan[answerer[a]],
                smac=w.h_mac[answerer[a]],
                dmac=mcm,
                sip=w.h_v6ll[answerer[a]],
                dip=w.v6_mdns,
                sport=5353,
                dport=5353,
                ttl=255,
                var=w.mdns_r[k[a]],
            )
        else:
            out.add(
                t[m],
                kind=_K_UDP,
                vlan=w.h_vlan[asker[m]],
                smac=w.h_mac[asker[m]],
                dmac=mc4,
                sip=w.h_ip[asker[m]],
                dip=mdns4,
                sport=5353,
                dport=5353,
                ttl=255,
                ipid=rng.integers(0, 65536, len(m)),
                df=1,
                var=w.mdns_q[k[m]],
            )
            out.add(
                rt[a],
                kind=_K_UDP,
                vlan=w.h_vlan[answerer[a]],
                smac=w.h_mac[answerer[a]],
                dmac=mc4,
                sip=w.h_ip[answerer[a]],
                dip=mdns4,
                sport=5353,
                dport=5353,
                ttl=255,
                ipid=rng.integers(0, 65536, len(a)),
                df=1,
                var=w.mdns_r[k[a]],
            )


def _act_ssdp(w: _World, rng: np.random.Generator, out: _Blocks, t: _I64) -> None:
    n = len(t)
    mc = _mac("01:00:5e:7f:ff:fa")
    grp = _ip("239.255.255.250")
    notify = rng.random(n) < 0.5
    a = np.flatnonzero(notify)
    dev = _pick(rng, w.w_ssdp_n, len(a))
    out.add(
        t[a],
        kind=_K_UDP,
        vlan=w.h_vlan[dev],
        smac=w.h_mac[dev],
        dmac=mc,
        sip=w.h_ip[dev],
        dip=grp,
        sport=1900,
        dport=1900,
        ttl=4,
        ipid=rng.integers(0, 65536, len(a)),
        var=w.ssdp_notify[dev],
    )
    b = np.flatnonzero(~notify)
    who = _pick(rng, w.w_ssdp_s, len(b))
    st = w.ssdp_search[rng.integers(0, len(w.ssdp_search), len(b))]
    port = _eph(w, rng, who)
    # Searches go out twice, 100-300 ms apart, as Windows and Android do.
    for k in range(2):
        tk = t[b] + k * _uni(rng, len(b), 100 * _MS, 300 * _MS)
        out.add(
            tk,
            kind=_K_UDP,
            vlan=w.h_vlan[who],
            smac=w.h_mac[who],
            dmac=mc,
            sip=w.h_ip[who],
            dip=grp,
            sport=port,
            dport=1900,
            ttl=2,
            ipid=rng.integers(0, 65536, len(b)),
            var=st,
        )
    dev = _pick(rng, w.w_ssdp_n, len(b))
    ok = dev != who
    at = t[b] + _uni(rng, len(b), 5 * _MS, 900 * _MS)
    out.add(
        at[ok],
        kind=_K_UDP,
        vlan=w.h_vlan[who[ok]],
        smac=w.h_mac[dev[ok]],
        dmac=w.h_mac[who[ok]],
        sip=w.h_ip[dev[ok]],
        dip=w.h_ip[who[ok]],
        sport=1900,
        dport=port[ok],
        ttl=w.h_ttl[dev[ok]],
        ipid=rng.integers(0, 65536, int(ok.sum())),
        var=w.ssdp_answer[dev[ok]],
    )


def _act_ping(w: _World, rng: np.random.Generator, out: _Blocks, t: _I64) -> None:
    n = len(t)
    host = _pick(rng, w.w_ping, n)
    ep = _pick(rng, w.e_ping * np.array([3, 2] + [0] * (len(w.e_ip) - 2), np.int64) + w.e_ping, n)
    win = w.h_ttl[host] == 128
    var = np.where(win, w.ping_win, w.ping_unix)
    ident = np.where(win, 1, rng.integers(1, 65536, n))
    seq0 = np.where(win, rng.integers(1, 400, n), 1)
    df = np.where(win, 0, 1)
    rtt = w.e_rtt[ep] * rng.integers(95, 130, n) // 100
    for k in range(4):
        tk = t + k * _SEC + _uni(rng, n, 0, 3 * _MS)
        c: dict[str, _Col] = dict(
            kind=_K_ICMP, vlan=w.h_vlan[host], sport=ident, dport=seq0 + k, var=var, aux=tk
        )
        out.add(
            tk,
            smac=w.h_mac[host],
            dmac=w.e_mac[ep],
            sip=w.h_ip[host],
            dip=w.e_ip[ep],
            ttl=w.h_ttl[host],
            ipid=rng.integers(0, 65536, n),
            df=df,
            flags=8,
            **c,
        )
        out.add(
            tk + rtt,
            smac=w.e_mac[ep],
            dmac=w.h_mac[host],
            sip=w.e_ip[ep],
            dip=w.h_ip[host],
            ttl=w.e_ttl[ep],
            ipid=rng.integers(0, 65536, n),
            df=df,
            flags=0,
            **c,
        )


def _act_dhcp(w: _World, rng: np.random.Generator, out: _Blocks, t: _I64) -> None:
    n = len(t)
    host = _pick(rng, w.w_dhcp, n)
    gmac, gip = int(w.h_mac[w.gw]), int(w.h_ip[w.gw])
    xid = rng.integers(0, 1 << 32, n)
    hm, hip, ttl, vlan = w.h_mac[host], w.h_ip[host], w.h_ttl[host], w.h_vlan[host]
    dora = rng.random(n) < 0.3
    a = np.flatnonzero(~dora)
    # Renewal: unicast REQUEST and ACK.
    rt = t[a] + _uni(rng, len(a), 1 * _MS, 6 * _MS)
    out.add(
        t[a],
        kind=_K_UDP,
        vlan=vlan[a],
        smac=hm[a],
        dmac=gmac,
        sip=hip[a],
        dip=gip,
        sport=68,
        dport=67,
        ttl=ttl[a],
        var=w.dhcp_renew,
        aux=xid[a],
        aux2=hip[a],
    )
    out.add(
        rt,
        kind=_K_UDP,
        vlan=vlan[a],
        smac=gmac,
        dmac=hm[a],
        sip=gip,
        dip=hip[a],
        sport=67,
        dport=68,
        ttl=64,
        var=w.dhcp_renew_ack,
        aux=xid[a],
        aux2=hip[a],
    )
    # Full DORA from 0.0.0.0, then a gratuitous ARP announcing the address.
    b = np.flatnonzero(dora)
    tb = t[b]
    steps = [
        (True, w.dhcp_discover),
        (False, w.dhcp_offer),
        (True, w.dhcp_request),
        (False, w.dhcp_ack),
    ]
    for client, row in steps:
        c: dict[str, _Col] = dict(kind=_K_UDP, vlan=vlan[b], var=row, aux=xid[b], aux2=hip[b])
        if client:
            out.add(
                tb,
                smac=hm[b],
                dmac=_BCAST,
                sip=0,
                dip=0xFFFFFFFF,
                sport=68,
                dport=67,
                ttl=ttl[b],
                **c,
            )
        else:
            out.add(
                tb,
                smac=gmac,
                dmac=hm[b],
                sip=gip,
                dip=hip[b],
                sport=67,
                dport=68,
                ttl=64,
                ipid=rng.integers(0, 65536, len(b)),
                **c,
            )
        tb = tb + _uni(rng, len(b), 500 * _US, 20 * _MS)
    out.add(
        tb + 200 * _MS,
        kind=_K_ARP,
        vlan=vlan[b],
        smac=hm[b],
        dmac=_BCAST,
        sip=hip[b],
        dip=hip[b],
        # Announcements are requests (RFC 5227) from most stacks, replies from some.
        flags=np.where(rng.random(len(b)) < 0.6, 1, 2),
    )


def _act_refused(w: _World, rng: np.random.Generator, out: _Blocks, t: _I64) -> None:
    """A connection to a closed LAN port: SYN answered by RST (benign RSTs exist too)."""
    n = len(t)
    host = _pick(rng, w.w_web, n)
    target = np.where(rng.random(n) < 0.5, w.nas, 2)
    dport = np.array([8080, 9100, 5357, 8443, 3689, 515], dtype=np.int64)[rng.integers(0, 6, n)]
    sport = _eph(w, rng, host)
    seq = rng.integers(0, 1 << 32, n)
    vlan = w.h_vlan[host]
    out.add(
        t,
        kind=_K_SYN,
        vlan=vlan,
        smac=w.h_mac[host],
        dmac=w.h_mac[target],
        sip=w.h_ip[host],
        dip=w.h_ip[target],
        sport=sport,
        dport=dport,
        seq=seq,
        flags=_SYN,
        win=64240,
        ttl=w.h_ttl[host],
        ipid=rng.integers(0, 65536, n),
        df=1,
    )
    rt = t + _uni(rng, n, 150 * _US, 700 * _US)
    out.add(
        rt,
        kind=_K_TCP,
        vlan=vlan,
        smac=w.h_mac[target],
        dmac=w.h_mac[host],
        sip=w.h_ip[target],
        dip=w.h_ip[host],
        sport=dport,
        dport=sport,
        seq=0,
        ack=(seq + 1) & 0xFFFFFFFF,
        flags=_RST | _ACKF,
        ttl=64,
        df=1,
    )


def _act_tls(w: _World, rng: np.random.Generator, out: _Blocks, t: _I64) -> None:
    _act_web(w, rng, out, t, True)


def _act_http(w: _World, rng: np.random.Generator, out: _Blocks, t: _I64) -> None:
    _act_web(w, rng, out, t, False)


def _act_dns(w: _World, rng: np.random.Generator, out: _Blocks, t: _I64) -> None:
    _act_lookup(w, rng, out, t, False)


def _act_dns6(w: _World, rng: np.random.Generator, out: _Blocks, t: _I64) -> None:
    _act_lookup(w, rng, out, t, True)


_Activity = Callable[[_World, np.random.Generator, _Blocks, _I64], None]
#: Benign activities and how many start per second (about 600 frames/s in all).
_BENIGN_ACTS: Final[tuple[tuple[_Activity, float], ...]] = (
    (_act_tls, 14.0),
    (_act_http, 3.5),
    (_act_dns, 9.0),
    (_act_dns6, 2.5),
    (_act_ntp, 1.0),
    (_act_arp, 5.0),
    (_act_nd, 1.8),
    (_act_ra, 1 / 30),
    (_act_mdns, 3.5),
    (_act_ssdp, 1.4),
    (_act_ping, 0.4),
    (_act_dhcp, 0.2),
    (_act_refused, 0.35),
)


def _benign(w: _World, rng: np.random.Generator, out: _Blocks, t0: int, t1: int) -> None:
    for activity, rate in _BENIGN_ACTS:
        t = _arrivals(rng, t0, t1, rate)
        if len(t):
            activity(w, rng, out, t)


# --- attacks -------------------------------------------------------------------------------------


def _portscan(w: _World, rng: np.random.Generator, out: _Blocks, t0: int, t1: int, p0: int) -> None:
    a = w.attack
    period = round(_SEC / a.scan_rate)
    k = _regular(t0, t1, p0, period)
    n = len(k)
    if n == 0:
        return
    ts = p0 + k * period + _uni(rng, n, 0, period * 3 // 4)
    nt = len(a.scan_targets)
    ti = k % nt
    target = a.scan_targets[ti]
    port = np.zeros(n, dtype=np.int64)
    for i in range(nt):
        m = ti == i
        port[m] = a.scan_ports[i][(k[m] // nt) % 65535]
    src = a.scan_src
    seq = rng.integers(0, 1 << 32, n)
    vlan = int(w.h_vlan[src])
    lab: dict[str, _Col] = dict(label=_PORTSCAN, vlan=vlan)
    out.add(
        ts,
        kind=_K_SYN,
        smac=int(w.h_mac[src]),
        dmac=w.h_mac[target],
        sip=int(w.h_ip[src]),
        dip=w.h_ip[target],
        sport=a.scan_sport,
        dport=port,
        seq=seq,
        flags=_SYN,
        win=a.scan_win,
        ttl=int(w.h_ttl[src]),
        ipid=rng.integers(0, 65536, n),
        df=1,
        **lab,
    )
    is_open = np.zeros(n, dtype=bool)
    for i in range(nt):
        m = ti == i
        is_open[m] = np.isin(port[m], w.open_ports[int(a.scan_targets[i])])
    rt = ts + _uni(rng, n, 80 * _US, 600 * _US)
    closed = np.flatnonzero(~is_open & (a.scan_filtered[ti] == 0))
    c = closed
    out.add(
        rt[c],
        kind=_K_TCP,
        smac=w.h_mac[target[c]],
        dmac=int(w.h_mac[src]),
        sip=w.h_ip[target[c]],
        dip=int(w.h_ip[src]),
        sport=port[c],
        dport=a.scan_sport,
        seq=0,
        ack=(seq[c] + 1) & 0xFFFFFFFF,
        flags=_RST | _ACKF,
        ttl=w.h_ttl[target[c]],
        ipid=rng.integers(0, 65536, len(c)),
        df=1,
        **lab,
    )
    o = np.flatnonzero(is_open)
    sseq = rng.integers(0, 1 << 32, len(o))
    out.add(
        rt[o],
        kind=_K_SYN,
        smac=w.h_mac[target[o]],
        dmac=int(w.h_mac[src]),
        sip=w.h_ip[target[o]],
        dip=int(w.h_ip[src]),
        sport=port[o],
        dport=a.scan_sport,
        seq=sseq,
        ack=(seq[o] + 1) & 0xFFFFFFFF,
        flags=_SYN | _ACKF,
        win=65160,
        ttl=w.h_ttl[target[o]],
        ipid=rng.integers(0, 65536, len(o)),
        df=1,
        **lab,
    )
    # The scanner's kernel resets the half-open connection (it never called connect()).
    out.add(
        rt[o] + _uni(rng, len(o), 20 * _US, 90 * _US),
        kind=_K_TCP,
        smac=int(w.h_mac[src]),
        dmac=w.h_mac[target[o]],
        sip=int(w.h_ip[src]),
        dip=w.h_ip[target[o]],
        sport=a.scan_sport,
        dport=port[o],
        seq=(seq[o] + 1) & 0xFFFFFFFF,
        flags=_RST,
        win=0,
        ttl=int(w.h_ttl[src]),
        ipid=rng.integers(0, 65536, len(o)),
        df=1,
        **lab,
    )


def _spoofed_ips(rng: np.random.Generator, n: int) -> _I64:
    ip = rng.integers(0x0B000000, 0xDF000000, n)
    first = ip >> 24
    bad = (first == 127) | (first == 100) | (first == 169) | (first == 172) | (first == 192)
    return np.where(bad, ip + (7 << 24), ip)


def _synflood(w: _World, rng: np.random.Generator, out: _Blocks, t0: int, t1: int, p0: int) -> None:
    a = w.attack
    period = round(_SEC / a.flood_rate)
    k = _regular(t0, t1, p0, period)
    n = len(k)
    if n == 0:
        return
    ts = p0 + k * period + _uni(rng, n, 0, period)
    src, nas = a.flood_src, w.nas
    sip = _spoofed_ips(rng, n)
    sport = rng.integers(1024, 65536, n)
    seq = rng.integers(0, 1 << 32, n)
    windows = np.unique(w.h_synwin)
    win = windows[rng.integers(0, len(windows), n)]
    lab: dict[str, _Col] = dict(label=_SYNFLOOD, vlan=int(w.h_vlan[src]))
    nmac, nip, gmac = int(w.h_mac[nas]), int(w.h_ip[nas]), int(w.h_mac[w.gw])
    out.add(
        ts,
        kind=_K_SYN,
        smac=int(w.h_mac[src]),
        dmac=nmac,
        sip=sip,
        dip=nip,
        sport=sport,
        dport=a.flood_dport,
        seq=seq,
        flags=_SYN,
        win=win,
        ttl=int(w.h_ttl[src]),
        ipid=rng.integers(0, 65536, n),
        df=rng.integers(0, 2, n),
        **lab,
    )
    # The victim answers what its backlog still holds; spoofed addresses are off-link,
    # so the SYN-ACKs go to the gateway. Some real owners of those addresses reset them.
    r = np.flatnonzero(rng.random(n) < a.flood_reply)
    rt = ts[r] + _uni(rng, len(r), 60 * _US, 400 * _US)
    sseq = rng.integers(0, 1 << 32, len(r))
    out.add(
        rt,
        kind=_K_SYN,
        smac=nmac,
        dmac=gmac,
        sip=nip,
        dip=sip[r],
        sport=a.flood_dport,
        dport=sport[r],
        seq=sseq,
        ack=(seq[r] + 1) & 0xFFFFFFFF,
        flags=_SYN | _ACKF,
        win=65160,
        ttl=64,
        ipid=rng.integers(0, 65536, len(r)),
        df=1,
        **lab,
    )
    x = np.flatnonzero(rng.random(len(r)) < a.flood_rst)
    xt = rt[x] + _uni(rng, len(x), 15 * _MS, 180 * _MS)
    ttl = w.e_ttl[rng.integers(2, len(w.e_ttl), len(x))]
    out.add(
        xt,
        kind=_K_TCP,
        smac=gmac,
        dmac=nmac,
        sip=sip[r[x]],
        dip=nip,
        sport=sport[r[x]],
        dport=a.flood_dport,
        seq=(seq[r[x]] + 1) & 0xFFFFFFFF,
        flags=_RST,
        win=0,
        ttl=ttl,
        ipid=rng.integers(0, 65536, len(x)),
        **lab,
    )


def _arpspoof(w: _World, rng: np.random.Generator, out: _Blocks, t0: int, t1: int, p0: int) -> None:
    a = w.attack
    k = _regular(t0, t1, p0, a.spoof_period)
    if len(k) == 0:
        return
    src, gw = a.spoof_src, w.gw
    amac, gip = int(w.h_mac[src]), int(w.h_ip[gw])
    base = p0 + k * a.spoof_period + _uni(rng, len(k), 0, 2 * _MS)
    vict = a.spoof_victims
    nv = len(vict)
    # Each round: tell every victim "the gateway is at my MAC" (and, two-way, tell the gateway
    # "the victim is at my MAC"), then one broadcast gratuitous reply claiming the gateway.
    rs = np.repeat(base, nv) + np.tile(np.arange(nv, dtype=np.int64) * 150 * _US, len(k))
    rv = np.tile(vict, len(k))
    lab: dict[str, _Col] = dict(label=_ARPSPOOF, kind=_K_ARP, flags=2, smac=amac)
    out.add(rs, dmac=w.h_mac[rv], sip=gip, dip=w.h_ip[rv], vlan=w.h_vlan[rv], **lab)
    if a.spoof_two_way:
        out.add(rs + 60 * _US, dmac=int(w.h_mac[gw]), sip=w.h_ip[rv], dip=gip, **lab)
    out.add(base + nv * 150 * _US + 50 * _US, dmac=_BCAST, sip=gip, dip=gip, **lab)


_AttackFn = Callable[[_World, np.random.Generator, _Blocks, int, int, int], None]
#: Attack generators by label: each fills ``[t0, t1)`` of a phase that starts at ``p0``.
_ATTACKS: Final[Mapping[int, _AttackFn]] = MappingProxyType(
    {_PORTSCAN: _portscan, _SYNFLOOD: _synflood, _ARPSPOOF: _arpspoof}
)


# --- planning and streaming events ---------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Where a scenario's attack phases sit in time, and how time is cut into epochs."""

    start: int
    epoch: int
    phases: tuple[tuple[int, int, int], ...]  # (label, t_start, t_end) in ns


def _plan(w: _World, scenario: str, frames: int, seed: int, start: int) -> _Plan:
    # Measure this world's benign rate on a private stream, so phases land where asked.
    rng = np.random.default_rng([seed, 0xCA11B])
    out = _Blocks()
    window = 120 * _SEC
    _benign(w, rng, out, 0, window)
    fps = max(1.0, out.table().shape[0] / (window / _SEC))
    spans = _PHASES[scenario]
    total_fps = fps + sum((e - s) * w.attack.fps(lab) for lab, s, e in spans)
    duration = max(1.0, frames) / total_fps
    phases = tuple(
        (lab, start + round(s * duration * _SEC), start + round(e * duration * _SEC))
        for lab, s, e in spans
    )
    # Epochs of ~64k frames amortize numpy calls; small scenarios use smaller ones.
    epoch_frames = min(65536, max(4096, frames // 4))
    epoch = max(100 * _MS, round(epoch_frames / total_fps * _SEC))
    return _Plan(start=start, epoch=epoch, phases=phases)


def _events(w: _World, plan: _Plan, seed: int, scenario_id: int) -> Iterator[_I64]:
    """Event tables in time order, one per epoch (frames whose time falls in it)."""
    pending = np.zeros((0, _NCOL), dtype=np.int64)
    e = 0
    while True:
        t0 = plan.start + e * plan.epoch
        t1 = t0 + plan.epoch
        rng = np.random.default_rng([seed, scenario_id, e])
        out = _Blocks()
        out.parts.append(pending)
        _benign(w, rng, out, t0, t1)
        for lab, p0, p1 in plan.phases:
            lo, hi = max(t0, p0), min(t1, p1)
            if lo < hi:
                _ATTACKS[lab](w, rng, out, lo, hi, p0)
        table = out.table()
        order = np.argsort(table[:, _TS], kind="stable")
        table = table[order]
        cut = int(np.searchsorted(table[:, _TS], t1, side="left"))
        pending = table[cut:]
        yield table[:cut]
        e += 1


# --- rendering ---------------------------------------------------------------------------------------


def _frame_lengths(ev: _I64, bank: _Bank) -> tuple[_I64, _I64]:
    """(wire length, L2 header length) of every event."""
    ev = ev.T  # column view
    tagged = (ev[_VLAN] >= 0).astype(np.int64)
    l2 = 14 + 4 * tagged
    plen = np.where(ev[_KIND] == _K_SYN, 0, bank.length[ev[_VAR]])
    plen = np.where(ev[_KIND] == _K_ARP, 0, plen)
    n = l2 + _HDR_LEN[ev[_KIND]] + plen
    return np.maximum(n, 60 + 4 * tagged), l2


def _patch(g: _U8, p: int, r: _I64, code: _I64, e: _I64, w: _World) -> None:
    """Write per-frame payload fields (ids, times, randoms) of rows ``r`` at offset ``p``."""
    for pc in np.flatnonzero(np.bincount(code)).tolist():
        sel = code == pc
        rr, ee = r[sel], e[sel].T
        ts = ee[_TS]
        if pc == _P_DNS:
            g[rr, p : p + 2] = _be(ee[_AUX] & 0xFFFF, 2)
        elif pc in (_P_NTP_C, _P_NTP_S):
            g[rr, p + 40 : p + 48] = _ntp_ts(ts - (0 if pc == _P_NTP_C else 30 * _US))
            if pc == _P_NTP_S:
                g[rr, p + 16 : p + 24] = _ntp_ts(ts - 1024 * _SEC - (ee[_AUX] % _SEC))
                g[rr, p + 24 : p + 32] = _ntp_ts(ee[_AUX])
                g[rr, p + 32 : p + 40] = _ntp_ts(ts - 45 * _US)
        elif pc in (_P_DHCP_C, _P_DHCP_CR, _P_DHCP_S, _P_DHCP_SR):
            client = pc in (_P_DHCP_C, _P_DHCP_CR)
            mac = _be(ee[_SMAC] if client else ee[_DMAC], 6)
            g[rr, p + 4 : p + 8] = _be(ee[_AUX], 4)
            g[rr, p + 28 : p + 34] = mac
            ip = _be(ee[_AUX2], 4)
            if client:
                g[rr, p + 246 : p + 252] = mac
                g[rr, p + 254 : p + 258] = ip
            else:
                g[rr, p + 16 : p + 20] = ip
            if pc in (_P_DHCP_CR, _P_DHCP_SR):
                g[rr, p + 12 : p + 16] = ip
        elif pc == _P_PING:
            g[rr, p : p + 8] = _le(ee[_AUX] // _SEC, 8)
            g[rr, p + 8 : p + 16] = _le(ee[_AUX] % _SEC // _US, 8)
        elif pc in (_P_TLS_CH, _P_TLS_SH):
            key = 122 if pc == _P_TLS_CH else 95
            pool = as_strided(w.rpool, shape=(65536, 96), strides=(1, 1), writeable=False)
            rnd = pool[(ee[_AUX] * 7) & 0xFFFF]
            g[rr, p + 11 : p + 43] = rnd[:, :32]
            g[rr, p + 44 : p + 76] = rnd[:, 32:64]
            g[rr, p + key : p + key + 32] = rnd[:, 64:]
        elif pc == _P_ND:
            g[rr, p + 8 : p + 24] = w.v6[ee[_AUX]]
            g[rr, p + 26 : p + 32] = _be(ee[_SMAC], 6)
        elif pc == _P_RA:
            g[rr, p + 18 : p + 24] = _be(ee[_SMAC], 6)


def _ntp_ts(ns: _I64) -> _U8:
    sec = ns // _SEC + 2_208_988_800
    frac = (ns % _SEC) * (1 << 32) // _SEC
    return np.concatenate([_be(sec, 4), _be(frac, 4)], axis=1)


def _layout(kind: int, tagged: bool) -> np.dtype[np.void]:
    """The header layout (Ethernet to L4) of a frame kind, as a big-endian structured dtype."""
    f: list[tuple[str, str]] = [
        ("ed_hi", ">u2"),
        ("ed_lo", ">u4"),
        ("es_hi", ">u2"),
        ("es_lo", ">u4"),
    ]
    if tagged:
        f += [("tpid", ">u2"), ("tci", ">u2")]
    f += [("etype", ">u2")]
    if kind == _K_ARP:
        f += [("htype", ">u2"), ("ptype", ">u2"), ("hlen", "u1"), ("plen", "u1"), ("op", ">u2")]
        f += [("sha_hi", ">u2"), ("sha_lo", ">u4"), ("spa", ">u4")]
        f += [("tha_hi", ">u2"), ("tha_lo", ">u4"), ("tpa", ">u4")]
        return np.dtype(f)
    if kind in (_K_UDP6, _K_ICMP6):
        f += [("vtf", ">u4"), ("plen6", ">u2"), ("nh", "u1"), ("hlim", "u1")]
        f += [("src6", "V16"), ("dst6", "V16")]
    else:
        f += [("vihl", "u1"), ("tos", "u1"), ("tot", ">u2"), ("ipid", ">u2"), ("frag", ">u2")]
        f += [("ttl", "u1"), ("proto", "u1"), ("ipsum", ">u2"), ("src", ">u4"), ("dst", ">u4")]
    if kind in (_K_TCP, _K_SYN):
        f += [("sport", ">u2"), ("dport", ">u2"), ("seq", ">u4"), ("ack", ">u4"), ("off", "u1")]
        f += [("flags", "u1"), ("win", ">u2"), ("l4sum", ">u2"), ("urg", ">u2")]
        if kind == _K_SYN:
            f += [("opt", "V12")]
    elif kind in (_K_UDP, _K_UDP6):
        f += [("sport", ">u2"), ("dport", ">u2"), ("ulen", ">u2"), ("l4sum", ">u2")]
    elif kind == _K_ICMP:
        f += [
            ("type", "u1"),
            ("code", "u1"),
            ("l4sum", ">u2"),
            ("icmp_id", ">u2"),
            ("icmp_seq", ">u2"),
        ]
    return np.dtype(f)


_LAYOUTS: Final[Mapping[tuple[int, bool], np.dtype[np.void]]] = MappingProxyType(
    {(k, t): _layout(k, t) for k in range(7) for t in (False, True)}
)
_L4HDR: Final = (20, 32, 8, 8, 0, 8, 0)  # L4 header bytes before the payload, per kind
# MSS 1460, NOP, window scale 8, NOP, NOP, SACK permitted; and its word sum.
_SYN_OPTIONS: Final = bytes([2, 4, 5, 180, 1, 3, 3, 8, 1, 1, 4, 2])
_SYN_OPT_SUM: Final = sum(struct.unpack(">6H", _SYN_OPTIONS))


def _w32(x: _I64) -> _I64:
    """Sum of the two big-endian 16-bit words of 32-bit values."""
    return (x >> 16) + (x & 0xFFFF)


def _csum(total: _I64) -> _I64:
    return (~_fold(total)) & 0xFFFF


def _render_piece(rows: _I64, kind: int, tagged: bool, wirelen: _I64, w: _World) -> _U8:
    """Render frames of one kind (all tagged or all untagged) into a 2-D byte array.

    Headers are filled as a structured array; checksums come from the header fields
    plus each payload's precomputed word sum, so payload bytes are touched once.
    """
    n = rows.shape[0]
    ev = rows.T  # column view: ev[FIELD] is one field of every frame
    l2 = 18 if tagged else 14
    bank = w.bank
    l4 = l2 + (40 if kind in (_K_UDP6, _K_ICMP6) else 20)
    l4hdr = _L4HDR[kind]
    p = l4 + l4hdr
    width = int(wirelen.max())
    width += (-(width - l4)) % 4
    var = ev[_VAR]
    if kind in (_K_SYN, _K_ARP):
        g = np.zeros((n, width), dtype=np.uint8)
        plen = np.zeros(n, dtype=np.int64)
        psum = plen
    else:
        # One gather builds the frames with their payloads in place (and zero padding).
        g = bank.placed(p)[var, :width]
        plen = bank.length[var]
        psum = bank.psum_be[var]
        code = bank.patch[var]
        if code.any():
            patched = np.flatnonzero(code)
            _patch(g, p, patched, code[patched], rows[patched], w)
            maxp = int(plen[patched].max())
            psum = psum.copy()
            psum[patched] = _bswap16(_sum16(g[patched, p : p + maxp + (maxp & 1)]))
    h = np.zeros(n, dtype=_LAYOUTS[kind, tagged])
    h["ed_hi"], h["ed_lo"] = ev[_DMAC] >> 32, ev[_DMAC] & 0xFFFFFFFF
    h["es_hi"], h["es_lo"] = ev[_SMAC] >> 32, ev[_SMAC] & 0xFFFFFFFF
    if tagged:
        h["tpid"] = 0x8100
        h["tci"] = ev[_VLAN]
    h["etype"] = _ETHERTYPE[kind]
    l4len = l4hdr + plen
    if kind == _K_ARP:
        h["htype"], h["ptype"], h["hlen"], h["plen"], h["op"] = 1, 0x0800, 6, 4, ev[_FLAGS]
        h["sha_hi"], h["sha_lo"], h["spa"] = h["es_hi"], h["es_lo"], ev[_SIP]
        tha = np.where(ev[_FLAGS] == 2, ev[_DMAC], 0)
        h["tha_hi"], h["tha_lo"], h["tpa"] = tha >> 32, tha & 0xFFFFFFFF, ev[_DIP]
    elif kind in (_K_UDP6, _K_ICMP6):
        nh = 17 if kind == _K_UDP6 else 58
        h["vtf"], h["plen6"], h["nh"], h["hlim"] = 0x60000000, l4len, nh, ev[_TTL]
        h["src6"], h["dst6"] = w.v6v[ev[_SIP]], w.v6v[ev[_DIP]]
        total = w.v6sum[ev[_SIP]] + w.v6sum[ev[_DIP]] + l4len + nh + psum
        if kind == _K_UDP6:
            h["sport"], h["dport"], h["ulen"] = ev[_SPORT], ev[_DPORT], l4len
            c = _csum(total + ev[_SPORT] + ev[_DPORT] + l4len)
            h["l4sum"] = np.where(c == 0, 0xFFFF, c)
        else:
            # The ICMPv6 header is part of the bank row; its checksum goes into the payload.
            g[:, l4 + 2 : l4 + 4] = _be(_csum(total), 2)
    else:
        proto = 1 if kind == _K_ICMP else 17 if kind == _K_UDP else 6
        tot = 20 + l4len
        frag = ev[_DF] << 14
        ttlp = (ev[_TTL] << 8) | proto
        h["vihl"], h["tot"], h["ipid"], h["frag"] = 0x45, tot, ev[_IPID], frag
        h["ttl"], h["proto"], h["src"], h["dst"] = ev[_TTL], proto, ev[_SIP], ev[_DIP]
        addr = _w32(ev[_SIP]) + _w32(ev[_DIP])
        h["ipsum"] = _csum(0x4500 + tot + ev[_IPID] + frag + ttlp + addr)
        if kind == _K_ICMP:
            h["type"], h["icmp_id"], h["icmp_seq"] = ev[_FLAGS], ev[_SPORT], ev[_DPORT]
            h["l4sum"] = _csum((ev[_FLAGS] << 8) + ev[_SPORT] + ev[_DPORT] + psum)
        elif kind == _K_UDP:
            h["sport"], h["dport"], h["ulen"] = ev[_SPORT], ev[_DPORT], l4len
            c = _csum(addr + 17 + 2 * l4len + ev[_SPORT] + ev[_DPORT] + psum)
            h["l4sum"] = np.where(c == 0, 0xFFFF, c)
        else:
            offf = ((l4hdr // 4) << 12) | ev[_FLAGS]
            h["sport"], h["dport"], h["seq"], h["ack"] = ev[_SPORT], ev[_DPORT], ev[_SEQ], ev[_ACK]
            h["off"], h["flags"], h["win"] = l4hdr << 2, ev[_FLAGS], ev[_WIN]
            total = addr + 6 + l4len + ev[_SPORT] + ev[_DPORT] + _w32(ev[_SEQ]) + _w32(ev[_ACK])
            total += offf + ev[_WIN] + psum
            if kind == _K_SYN:
                h["opt"] = np.void(_SYN_OPTIONS)
                total += _SYN_OPT_SUM
            h["l4sum"] = _csum(total)
    g[:, : h.itemsize] = h.view(np.uint8).reshape(n, h.itemsize)
    return g


def _render(ev: _I64, w: _World, snaplen: int) -> tuple[_U8, _I64, _I64, _I64]:
    """Render an event table into (data, offsets, caplen, wirelen)."""
    n = ev.shape[0]
    cols = ev.T
    wirelen, l2 = _frame_lengths(ev, w.bank)
    caplen = np.minimum(wirelen, snaplen)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(caplen, out=offsets[1:])
    total = int(offsets[-1])
    widest = int(caplen.max()) if n else 0
    buf = np.empty(total + widest, dtype=np.uint8)
    # A strided view whose row i starts at byte i: writing frame rows at their offsets
    # is one row copy per frame instead of per-byte index arithmetic.
    view = as_strided(buf, shape=(max(total, 1), max(widest, 1)), strides=(1, 1), writeable=True)
    # Group by layout (TCP also by size, so ACKs are not padded to full segments);
    # inside a group, equal captured lengths are adjacent.
    group = (cols[_KIND] * 2 + (l2 == 18)) * 2 + ((cols[_KIND] == _K_TCP) & (wirelen > 128))
    order = np.argsort((group << 20) | caplen, kind="stable")
    sgroup = group[order]
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(sgroup)) + 1, [n]])
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        kind = int(cols[_KIND, order[a]])
        tagged = bool(l2[order[a]] == 18)
        step = max(256, _PIECE_BYTES // int(wirelen[order[b - 1]]))
        for s in range(a, b, step):
            idx = order[s : min(b, s + step)]
            g = _render_piece(ev[idx], kind, tagged, wirelen[idx], w)
            cap = caplen[idx]
            runs = np.concatenate([[0], np.flatnonzero(np.diff(cap)) + 1, [len(idx)]])
            for r0, r1 in zip(runs[:-1].tolist(), runs[1:].tolist(), strict=True):
                c = int(cap[r0])
                view[offsets[idx[r0:r1]], :c] = g[r0:r1, :c]
    return buf[:total], offsets, caplen, wirelen


# --- public API ---------------------------------------------------------------------------------------


def _check(scenario: str, frames: int, seed: int, batch_size: int, snaplen: int | None) -> None:
    if scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    for name, value, low in (
        ("frames", frames, 0),
        ("seed", seed, 0),
        ("batch_size", batch_size, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, not {value!r}")
    if snaplen is not None and (not isinstance(snaplen, (int, np.integer)) or snaplen < 14):
        raise ConfigError(f"snaplen must be an integer >= 14 or None, not {snaplen!r}")


def generate(
    scenario: str,
    *,
    frames: int,
    seed: int = 0,
    start_ts: float = 1_700_000_000.0,
    batch_size: int = 8192,
    snaplen: int | None = None,
) -> Iterator[tuple[FrameBatch, NDArray[np.object_]]]:
    """Generate a labelled scenario as batches of raw Ethernet frames.

    The output depends only on ``scenario``, ``frames``, ``seed``, ``start_ts`` and
    ``snaplen``: the same bytes on every run and machine, whatever ``batch_size``.
    Attack phases sit at fixed fractions of the scenario's duration, which grows with
    ``frames`` (benign traffic runs at about 600 frames/s), so a shorter run is not a
    prefix of a longer one. Batches share one buffer per ~32k frames (they are views).

    Args:
        scenario: a name from ``SCENARIOS``.
        frames: how many frames to generate in total.
        seed: the random seed (a non-negative integer).
        start_ts: the capture time of the scenario's start, in seconds since the epoch.
        batch_size: frames per yielded batch (the last one may be shorter).
        snaplen: cut frames to this many captured bytes (``wirelen`` keeps the full size).

    Yields:
        ``(batch, labels)``: a ``FrameBatch`` (link type 1, increasing ns timestamps,
        frames numbered from 1) and an object array of its label names, one per frame.

    Raises:
        ConfigError: an unknown scenario or an invalid number.
    """
    _check(scenario, frames, seed, batch_size, snaplen)
    if not math.isfinite(start_ts) or start_ts < 0:
        raise ConfigError(f"start_ts must be a non-negative number of seconds, not {start_ts!r}")
    return _generate(scenario, int(frames), int(seed), start_ts, int(batch_size), snaplen)


def _generate(
    scenario: str, frames: int, seed: int, start_ts: float, batch_size: int, snaplen: int | None
) -> Iterator[tuple[FrameBatch, NDArray[np.object_]]]:
    if frames == 0:
        return
    snap = 262144 if snaplen is None else int(snaplen)
    interfaces = (Interface(linktype=1, snaplen=snap),)
    w = _World(seed)
    start = round(start_ts * 1_000_000) * 1000
    plan = _plan(w, scenario, frames, seed, start)
    # Render in units of whole batches of at least ~32k frames, enough to amortize numpy
    # calls. The bytes do not depend on it.
    unit = batch_size * max(1, -(-32768 // batch_size))
    events = _events(w, plan, seed, list(SCENARIOS).index(scenario))
    done = 0
    last_ts = start - 1
    for ev in _rechunk(events, frames, unit):
        n = ev.shape[0]
        # Strictly increasing timestamps (simultaneous events end up 1 ns apart).
        idx = np.arange(done, done + n, dtype=np.int64)
        base = np.maximum.accumulate(np.maximum(ev[:, _TS] - idx, last_ts - (done - 1)))
        ts = base + idx
        last_ts = int(ts[-1])
        data, offsets, caplen, wirelen = _render(ev, w, snap)
        labels = _LABEL_OBJ[ev[:, _LABEL]]
        for lo in range(0, n, batch_size):
            hi = min(n, lo + batch_size)
            # Each batch gets its own slice of the unit's buffer (a view, not a copy).
            yield (
                FrameBatch(
                    frame=idx[lo:hi] + 1,
                    ts_ns=ts[lo:hi],
                    caplen=caplen[lo:hi],
                    wirelen=wirelen[lo:hi],
                    iface=np.zeros(hi - lo, dtype=np.int32),
                    data=data[offsets[lo] : offsets[hi]],
                    offsets=offsets[lo : hi + 1] - offsets[lo],
                    interfaces=interfaces,
                ),
                labels[lo:hi],
            )
        done += n


def _rechunk(tables: Iterator[_I64], frames: int, unit: int) -> Iterator[_I64]:
    """Re-cut event tables into tables of ``unit`` rows, ``frames`` rows in all."""
    queue: list[_I64] = []
    queued = 0
    taken = 0
    for table in tables:
        table = table[: frames - taken]
        taken += table.shape[0]
        queue.append(table)
        queued += table.shape[0]
        if queued >= unit or taken >= frames:
            merged = np.concatenate(queue) if len(queue) > 1 else queue[0]
            cut = queued - queued % unit if taken < frames else queued
            for pos in range(0, cut, unit):
                yield merged[pos : min(cut, pos + unit)]
            queue = [merged[cut:]]
            queued -= cut
        if taken >= frames:
            return


def expected_pcap_size(
    scenario: str, *, frames: int, seed: int = 0, snaplen: int | None = None
) -> int:
    """The byte size of the pcap ``write_scenario`` writes, found without rendering frames.

    Useful to tell a complete cached capture from a stale or partial one.

    Args:
        scenario: a name from ``SCENARIOS``.
        frames: how many frames.
        seed: the random seed.
        snaplen: the snapshot length the capture was written with.

    Raises:
        ConfigError: bad arguments.
    """
    _check(scenario, frames, seed, 1, snaplen)
    if frames == 0:
        return 24
    snap = 262144 if snaplen is None else int(snaplen)
    w = _World(seed)
    plan = _plan(w, scenario, frames, seed, 0)
    size = 24 + 16 * frames
    events = _events(w, plan, seed, list(SCENARIOS).index(scenario))
    for ev in _rechunk(events, frames, 1 << 16):
        size += int(np.minimum(_frame_lengths(ev, w.bank)[0], snap).sum())
    return size


def _fmt_ts(ns: int) -> str:
    return f"{ns // _SEC}.{ns % _SEC:09d}"


def write_scenario(
    scenario: str,
    pcap_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    *,
    frames: int,
    seed: int,
    ranges_path: str | os.PathLike[str] | None = None,
    snaplen: int | None = None,
) -> dict[str, int]:
    """Write a scenario as a capture file plus label CSVs.

    Args:
        scenario: a name from ``SCENARIOS``.
        pcap_path: the capture to write (pcapng for ``.pcapng``, else pcap).
        labels_path: per-frame labels, CSV with header ``frame,label`` (frames from 1).
        frames: how many frames to write.
        seed: the random seed.
        ranges_path: if given, one CSV row ``ts_start,ts_end,label`` per attack phase
            (first and last frame time of that label, in seconds).
        snaplen: cut frames to this many captured bytes.

    Returns:
        The number of frames written per label.

    Raises:
        ConfigError: bad arguments.
        OutputError: a file cannot be written.
    """
    _check(scenario, frames, seed, 1, snaplen)
    counts = dict.fromkeys(LABELS, 0)
    first: dict[str, int] = {}
    lastseen: dict[str, int] = {}
    label_path = os.fspath(labels_path)
    writer = open_writer(pcap_path)
    if snaplen is not None and isinstance(writer, PcapWriter):
        writer.snaplen = int(snaplen)
    try:
        with writer, open(label_path, "w", encoding="ascii", newline="") as lf:
            lf.write("frame,label\n")
            for batch, labels in generate(scenario, frames=frames, seed=seed, snaplen=snaplen):
                writer.write(batch)
                lf.write("".join(map("{},{}\n".format, batch.frame.tolist(), labels.tolist())))
                codes, idx, cnt = np.unique(
                    labels.astype(str), return_index=True, return_counts=True
                )
                for name, i, c in zip(codes.tolist(), idx.tolist(), cnt.tolist(), strict=True):
                    counts[name] += c
                    first.setdefault(name, int(batch.ts_ns[i]))
                    mask = labels == name
                    lastseen[name] = int(batch.ts_ns[np.flatnonzero(mask)[-1]])
        if ranges_path is not None:
            rows = sorted((first[k], lastseen[k], k) for k in first if k != "benign")
            with open(os.fspath(ranges_path), "w", encoding="ascii", newline="") as rf:
                rf.write("ts_start,ts_end,label\n")
                rf.writelines(f"{_fmt_ts(a)},{_fmt_ts(b)},{k}\n" for a, b, k in rows)
    except OSError as exc:
        raise OutputError(exc.strerror or str(exc), path=exc.filename or label_path) from exc
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m wirelearn.scenarios``: write scenario captures and labels into a folder."""
    parser = argparse.ArgumentParser(
        prog="python -m wirelearn.scenarios",
        description="Write labelled synthetic traffic: NAME.pcap, NAME.labels.csv, NAME.ranges.csv.",
    )
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument(
        "--frames", type=int, default=10_000, help="frames per scenario (default 10000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--scenario", choices=list(SCENARIOS), help="one scenario (default: all)")
    parser.add_argument("--snaplen", type=int, default=None, help="cut frames to this many bytes")
    args = parser.parse_args(argv)
    names = [args.scenario] if args.scenario else list(SCENARIOS)
    try:
        try:
            os.makedirs(args.out, exist_ok=True)
        except OSError as exc:
            raise OutputError(exc.strerror or str(exc), path=args.out) from exc
        for name in names:
            stem = os.path.join(args.out, name)
            counts = write_scenario(
                name,
                stem + ".pcap",
                stem + ".labels.csv",
                frames=args.frames,
                seed=args.seed,
                ranges_path=stem + ".ranges.csv",
                snaplen=args.snaplen,
            )
            summary = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
            print(f"{stem}.pcap: {summary}")
    except WirelearnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
