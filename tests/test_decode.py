"""Unit tests of ``wirelearn.features.decode`` with frames built by scapy.

Every branch of the decoder gets a frame whose expected columns are written
out by hand; truncation is checked by cutting frames at every byte; a
hypothesis test feeds random bytes, link types and lengths.
"""

from __future__ import annotations

import ipaddress
import json
import struct
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, LLC, Dot1AD, Dot1Q, Dot3, Ether
from scapy.layers.sctp import SCTP
from scapy.packet import Raw

from wirelearn.capture import FrameBatch, Interface
from wirelearn.features import (
    COLUMN_DTYPES,
    COLUMNS,
    DECODED_LINKTYPES,
    STATUS_MALFORMED,
    STATUS_OK,
    STATUS_TRUNCATED,
    STATUS_UNDECODED,
    FeatureBatch,
    decode,
    ip_to_text,
    mac_to_text,
)
from wirelearn.features import _decode as decode_module

SRC = "02:00:00:00:00:01"
DST = "02:00:00:00:00:02"


def rows(frames: list[bytes], linktype: int = 1, **kw: Any) -> list[dict[str, Any]]:
    """Decode frames of one link type; each row is ``to_records()`` plus ``status``."""
    fb = decode(FrameBatch.from_frames(frames, linktype=linktype, **kw))
    out = fb.to_records()
    for rec, status in zip(out, fb.status.tolist(), strict=True):
        rec["status"] = status
    return out


def row(frame: bytes, linktype: int = 1, **kw: Any) -> dict[str, Any]:
    return rows([frame], linktype, **kw)[0]


def eth(payload: Any) -> bytes:
    return bytes(Ether(src=SRC, dst=DST) / payload)


def sub(rec: dict[str, Any], *names: str) -> tuple[Any, ...]:
    return tuple(rec[n] for n in names)


IP_COLS = ("ip_version", "ip_src", "ip_dst", "ip_proto", "ttl")
L4_COLS = ("sport", "dport", "tcp_flags")


# --- Ethernet and VLANs ---------------------------------------------------------------------------


def test_ethernet_ipv4_tcp_every_column() -> None:
    frame = eth(
        IP(src="192.0.2.1", dst="198.51.100.7", ttl=33)
        / TCP(sport=40000, dport=443, flags="SEC")
        / Raw(b"x" * 10)
    )
    rec = row(frame, ts_ns=[1_500_000_000_250_000_000])
    assert rec == {
        "frame": 1,
        "ts": 1_500_000_000.25,
        "linktype": 1,
        "cap_len": 64,
        "frame_len": 64,
        "dst_mac": DST,
        "src_mac": SRC,
        "ethertype": 0x0800,
        "vlan": None,
        "payload_len": 50,
        "ip_version": 4,
        "ip_src": "192.0.2.1",
        "ip_dst": "198.51.100.7",
        "ip_proto": 6,
        "ttl": 33,
        "sport": 40000,
        "dport": 443,
        "tcp_flags": 0x0C2,
        "status": STATUS_OK,
    }


def test_tcp_flags_are_the_12_bit_field() -> None:
    # NS/AE (0x100) and the three reserved bits (0xE00) are part of tshark's tcp.flags.
    rec = row(eth(IP() / TCP(flags="FSRPAUECN", reserved=7)))
    assert rec["tcp_flags"] == 0xFFF


def test_frame_len_comes_from_the_wire_length() -> None:
    frame = eth(IP() / UDP() / Raw(bytes(100)))
    rec = row(frame[:60], wirelen=[len(frame)])
    assert sub(rec, "cap_len", "frame_len", "payload_len", "status") == (60, 142, 46, STATUS_OK)


def test_vlan_tag() -> None:
    rec = row(eth(Dot1Q(vlan=42, prio=5) / IP(src="10.0.0.1") / UDP(sport=1, dport=2)))
    assert sub(rec, "vlan", "ethertype", "ip_src", "sport", "dport", "status") == (
        42,
        0x0800,
        "10.0.0.1",
        1,
        2,
        STATUS_OK,
    )
    assert rec["payload_len"] == rec["cap_len"] - 18


def test_qinq_reports_the_outer_vlan_and_the_inner_ethertype() -> None:
    frame = eth(Dot1AD(vlan=100) / Dot1Q(vlan=200) / IPv6(src="2001:db8::1") / UDP(dport=53))
    rec = row(frame)
    assert sub(rec, "vlan", "ethertype", "ip_version", "ip_src", "dport") == (
        100,
        0x86DD,
        6,
        "2001:db8::1",
        53,
    )
    assert rec["payload_len"] == len(frame) - 22


def test_old_qinq_tpid_0x9100_and_a_deep_stack() -> None:
    frame = eth(Dot1Q(type=0x9100, vlan=7) / Dot1Q(vlan=8) / Dot1Q(vlan=9) / ARP())
    rec = row(frame)
    assert sub(rec, "vlan", "ethertype", "payload_len", "status") == (7, 0x0806, 28, STATUS_OK)


def test_a_vlan_stack_deeper_than_the_bound_stops_at_a_tag() -> None:
    tags = Dot1Q(vlan=1)
    for v in range(2, decode_module.MAX_VLAN_TAGS + 3):
        tags = tags / Dot1Q(vlan=v)
    rec = row(eth(tags / IP()))
    assert rec["vlan"] == 1
    assert rec["ethertype"] == 0x8100
    assert rec["ip_version"] is None


def test_ieee_802_3_length_frame() -> None:
    frame = bytes(
        Dot3(src=SRC, dst="01:80:c2:00:00:00") / LLC(dsap=0x42, ssap=0x42, ctrl=3) / Raw(bytes(35))
    )
    rec = row(frame)
    assert sub(rec, "dst_mac", "src_mac", "ethertype", "payload_len", "ip_version", "status") == (
        "01:80:c2:00:00:00",
        SRC,
        38,
        38,
        None,
        STATUS_OK,
    )


def test_arp_has_no_ip_columns() -> None:
    rec = row(eth(ARP(psrc="10.0.0.1", pdst="10.0.0.2")))
    assert rec["ethertype"] == 0x0806
    assert all(rec[c] is None for c in IP_COLS + L4_COLS)
    assert rec["status"] == STATUS_OK


# --- IPv4 -----------------------------------------------------------------------------------------


def test_ipv4_options_move_the_transport_header() -> None:
    frame = eth(IP(options=[IPOption_RR(routers=["1.1.1.1", "2.2.2.2"])]) / TCP(sport=7, dport=9))
    rec = row(frame)
    assert sub(rec, "sport", "dport", "tcp_flags", "status") == (7, 9, 2, STATUS_OK)


def test_ipv4_fragments_have_ports_only_on_the_first() -> None:
    packet = IP(src="10.0.0.1", dst="10.0.0.2", id=9) / UDP(sport=1111, dport=2222) / Raw(bytes(64))
    from scapy.layers.inet import fragment

    frags = [eth(f) for f in fragment(packet, fragsize=32)]
    recs = rows(frags)
    assert len(recs) == 3
    assert sub(recs[0], "ip_proto", "sport", "dport", "status") == (17, 1111, 2222, STATUS_OK)
    for rec in recs[1:]:
        assert sub(rec, "ip_proto", "sport", "dport", "status") == (17, None, None, STATUS_OK)
        assert rec["ip_src"] == "10.0.0.1"


def test_ipv4_zero_total_length_is_segmentation_offload() -> None:
    frame = bytearray(eth(IP() / TCP(sport=5, dport=6) / Raw(bytes(3000))))
    frame[16:18] = b"\0\0"
    rec = row(bytes(frame))
    assert sub(rec, "sport", "dport", "status") == (5, 6, STATUS_OK)


def test_icmp_has_no_ports() -> None:
    rec = row(eth(IP() / ICMP(type=3, code=3) / IP() / UDP(sport=53, dport=5353)))
    assert sub(rec, "ip_proto", "sport", "dport", "status") == (1, None, None, STATUS_OK)


@pytest.mark.parametrize(
    ("proto", "header"),
    [
        (136, struct.pack("!HHHH", 1000, 2000, 8, 0)),  # UDP-Lite
        (132, bytes(SCTP(sport=1000, dport=2000))),
        (33, struct.pack("!HHBBHI", 1000, 2000, 3, 0, 0, 0)),  # DCCP, data offset 3
    ],
)
def test_other_transports_with_ports(proto: int, header: bytes) -> None:
    rec = row(eth(IP(proto=proto) / Raw(header)))
    assert sub(rec, "ip_proto", "sport", "dport", "tcp_flags", "status") == (
        proto,
        1000,
        2000,
        None,
        STATUS_OK,
    )


# --- IPv6 -----------------------------------------------------------------------------------------


def test_ipv6_extension_chain_to_the_transport() -> None:
    chain = (
        IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting(addresses=["2001:db8::9"])
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrFragment(offset=0, m=1)
    )
    frame = eth(IPv6(src="2001:db8::1", dst="ff02::1", hlim=7) / chain / TCP(sport=80, dport=81))
    rec = row(frame)
    assert sub(rec, "ip_version", "ip_src", "ip_dst", "ttl", "ip_proto") == (
        6,
        "2001:db8::1",
        "ff02::1",
        7,
        6,
    )
    assert sub(rec, "sport", "dport", "tcp_flags", "status") == (80, 81, 2, STATUS_OK)


def test_ipv6_later_fragment_has_no_ports() -> None:
    rec = row(eth(IPv6() / IPv6ExtHdrFragment(offset=10, nh=17) / Raw(bytes(16))))
    assert sub(rec, "ip_proto", "sport", "dport", "status") == (17, None, None, STATUS_OK)


def test_ipv6_ah_is_walked_with_its_own_length_rule() -> None:
    frame = eth(IPv6() / AH(nh=17, payloadlen=4, spi=1, icv=bytes(12)) / UDP(sport=3, dport=4))
    rec = row(frame)
    assert sub(rec, "ip_proto", "sport", "dport", "status") == (17, 3, 4, STATUS_OK)


@pytest.mark.parametrize("nh", [50, 59])
def test_esp_and_no_next_header_end_the_walk(nh: int) -> None:
    rec = row(eth(IPv6() / IPv6ExtHdrHopByHop(nh=nh) / Raw(bytes(24))))
    assert sub(rec, "ip_proto", "sport", "status") == (nh, None, STATUS_OK)


def test_ipv6_chain_longer_than_the_bound_reports_where_it_stopped() -> None:
    chain = IPv6ExtHdrDestOpt()
    for _ in range(decode_module.MAX_IPV6_EXT):
        chain = chain / IPv6ExtHdrDestOpt()
    rec = row(eth(IPv6() / chain / UDP()))
    assert sub(rec, "ip_proto", "sport", "status") == (60, None, STATUS_OK)


# --- other link types ----------------------------------------------------------------------------


def sll(protocol: int, payload: bytes, *, hatype: int = 1, halen: int = 6) -> bytes:
    return (
        struct.pack("!HHH8sH", 0, hatype, halen, bytes.fromhex("020000000001") + b"\0\0", protocol)
        + payload
    )


def sll2(protocol: int, payload: bytes, *, hatype: int = 1, halen: int = 6) -> bytes:
    addr = bytes.fromhex("020000000001") + b"\0\0"
    return struct.pack("!HHIHBB8s", protocol, 0, 3, hatype, 4, halen, addr) + payload


IPV4_UDP = bytes(IP(src="10.1.1.1", dst="10.1.1.2", ttl=5) / UDP(sport=10, dport=20))
IPV6_TCP = bytes(IPv6(src="::1", dst="fe80::1", hlim=9) / TCP(sport=30, dport=40))


def test_linux_sll() -> None:
    rec = row(sll(0x0800, IPV4_UDP), linktype=113)
    assert sub(rec, "dst_mac", "src_mac", "ethertype", "payload_len") == (None, SRC, 0x0800, 28)
    assert sub(rec, "ip_src", "ttl", "sport", "dport", "status") == (
        "10.1.1.1",
        5,
        10,
        20,
        STATUS_OK,
    )


def test_linux_sll_vlan_and_non_ethernet_addresses() -> None:
    tagged = sll(0x8100, struct.pack("!HH", 12, 0x86DD) + IPV6_TCP, hatype=772)
    rec = row(tagged, linktype=113)
    assert sub(rec, "src_mac", "vlan", "ethertype", "ip_dst", "dport") == (
        SRC,
        12,
        0x86DD,
        "fe80::1",
        40,
    )
    # A 4-byte address (e.g. an IPIP tunnel) is not a MAC.
    rec = row(sll(0x0800, IPV4_UDP, hatype=768, halen=4), linktype=113)
    assert sub(rec, "src_mac", "ip_src") == (None, "10.1.1.1")


def test_linux_sll_internal_protocols_and_netlink() -> None:
    rec = row(sll(0x0004, bytes(LLC() / Raw(bytes(10)))), linktype=113)
    assert sub(rec, "src_mac", "ethertype", "ip_version", "status") == (SRC, None, None, STATUS_OK)
    rec = row(sll(0x0800, IPV4_UDP, hatype=824, halen=6), linktype=113)
    assert sub(rec, "src_mac", "ethertype", "ip_version", "status") == (None, None, None, STATUS_OK)


def test_linux_sll2() -> None:
    rec = row(sll2(0x86DD, IPV6_TCP), linktype=276)
    assert sub(rec, "src_mac", "ethertype", "payload_len", "ip_src", "ttl", "sport") == (
        SRC,
        0x86DD,
        60,
        "::1",
        9,
        30,
    )


@pytest.mark.parametrize("linktype", [101, 12, 14])
def test_raw_ip_picks_the_version_from_the_first_nibble(linktype: int) -> None:
    v4, v6, bad = rows([IPV4_UDP, IPV6_TCP, b"\x50" + bytes(30)], linktype=linktype)
    assert sub(v4, "ip_version", "sport", "payload_len", "status") == (4, 10, 28, STATUS_OK)
    assert sub(v6, "ip_version", "sport", "status") == (6, 30, STATUS_OK)
    assert sub(bad, "ip_version", "payload_len", "status") == (None, 31, STATUS_MALFORMED)
    assert all(r["dst_mac"] is None and r["ethertype"] is None for r in (v4, v6, bad))


def test_linktype_ipv4_and_ipv6() -> None:
    assert row(IPV4_UDP, linktype=228)["ip_dst"] == "10.1.1.2"
    assert row(IPV6_TCP, linktype=229)["ip_dst"] == "fe80::1"
    # The link type says which; the wrong version is an impossible header.
    assert row(IPV6_TCP, linktype=228)["status"] == STATUS_MALFORMED
    assert row(IPV4_UDP, linktype=229)["status"] == STATUS_MALFORMED


@pytest.mark.parametrize(
    ("header", "version"),
    [
        (struct.pack("<I", 2), 4),
        (struct.pack(">I", 2), 4),  # written on a big-endian host
        (struct.pack("<I", 24), 6),
        (struct.pack("<I", 28), 6),
        (struct.pack(">I", 30), 6),
        (struct.pack("<I", 10), 6),
        (struct.pack(">HH", 2, 0), 4),  # IRIX snoop: 16-bit family
        (struct.pack(">HH", 0, 0x0800), 4),  # old Linux: an ethertype
        (struct.pack("<I", 7), None),  # some other family
    ],
)
def test_null_family_in_either_byte_order(header: bytes, version: int | None) -> None:
    payload = IPV4_UDP if version == 4 else IPV6_TCP
    rec = row(header + payload, linktype=0)
    assert sub(rec, "ip_version", "payload_len", "status") == (version, len(payload), STATUS_OK)


def test_loop_family_in_network_order() -> None:
    v4, v6 = rows([struct.pack(">I", 2) + IPV4_UDP, struct.pack(">I", 30) + IPV6_TCP], linktype=108)
    assert (v4["ip_version"], v6["ip_version"]) == (4, 6)
    assert v4["ethertype"] is None


def test_unknown_link_type_is_undecoded() -> None:
    frame = eth(IP() / TCP())
    rec = row(frame, linktype=105, ts_ns=[5_000_000_000])
    assert sub(rec, "frame", "ts", "linktype", "cap_len", "frame_len") == (1, 5.0, 105, 54, 54)
    assert all(rec[c] is None for c in COLUMNS[5:])
    assert rec["status"] == STATUS_UNDECODED


def test_mixed_link_types_in_one_batch() -> None:
    frames = [eth(IP() / UDP(sport=1)), sll(0x0800, IPV4_UDP), IPV6_TCP, eth(ARP())]
    batch = FrameBatch.from_frames(
        frames,
        interfaces=(Interface(1), Interface(113), Interface(101)),
        iface=[0, 1, 2, 0],
    )
    fb = decode(batch)
    assert fb.linktype.tolist() == [1, 113, 101, 1]
    assert fb.sport.tolist() == [1, 10, 30, -1]
    assert fb.ethertype.tolist() == [0x0800, 0x0800, -1, 0x0806]


# --- truncation and malformed headers -------------------------------------------------------------

#: A VLAN-tagged IPv4 frame with 4 bytes of options and a TCP header, and where
#: each column's bytes end: cut before that offset, the column must be null.
TRUNC_FRAME = eth(
    Dot1Q(vlan=5)
    / IP(src="10.0.0.1", dst="10.0.0.2", ttl=3, options=[IPOption_RR(routers=[])])
    / TCP(sport=1, dport=2, flags="A")
    / Raw(b"payload")
)
TRUNC_ENDS = {
    "dst_mac": 6,
    "src_mac": 12,
    "vlan": 16,
    "ethertype": 18,
    "payload_len": 18,
    "ip_version": 19,
    "ttl": 27,
    "ip_proto": 28,
    "ip_src": 34,
    "ip_dst": 38,
    "sport": 46,
    "dport": 46,
    "tcp_flags": 56,
}
TRUNC_HEADERS_END = 62  # Ethernet 14 + tag 4 + IPv4 24 + TCP 20


def test_truncation_at_every_byte() -> None:
    full = row(TRUNC_FRAME)
    assert full["status"] == STATUS_OK
    cuts = list(range(len(TRUNC_FRAME)))
    recs = rows([TRUNC_FRAME[:k] for k in cuts], wirelen=[len(TRUNC_FRAME)] * len(cuts))
    for k, rec in zip(cuts, recs, strict=True):
        expected_status = STATUS_TRUNCATED if k < TRUNC_HEADERS_END else STATUS_OK
        assert rec["status"] == expected_status, k
        for column, end in TRUNC_ENDS.items():
            want = full[column] if k >= end else None
            if column == "payload_len" and want is not None:
                want = k - 18
            assert rec[column] == want, (k, column)
        assert sub(rec, "cap_len", "frame_len") == (k, len(TRUNC_FRAME))


def test_ipv6_truncation_at_every_byte() -> None:
    frame = eth(
        IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / UDP(sport=9, dport=8)
    )
    full = row(frame)
    ends = {"ip_version": 15, "ttl": 22, "ip_src": 38, "ip_dst": 54, "ip_proto": 56, "sport": 66}
    headers_end = 14 + 40 + 8 + 8
    recs = rows([frame[:k] for k in range(len(frame) + 1)])
    for k, rec in enumerate(recs):
        assert rec["status"] == (STATUS_TRUNCATED if k < headers_end else STATUS_OK), k
        for column, end in ends.items():
            assert rec[column] == (full[column] if k >= end else None), (k, column)


def test_truncated_sll_header() -> None:
    frame = sll(0x0800, IPV4_UDP)
    recs = rows([frame[:k] for k in range(17)], linktype=113)
    for k, rec in enumerate(recs):
        assert rec["status"] == STATUS_TRUNCATED, k  # even at 16 bytes: no IPv4 header
        assert rec["src_mac"] == (SRC if k >= 12 else None), k
        assert rec["ethertype"] == (0x0800 if k >= 16 else None), k
        assert rec["payload_len"] == (0 if k == 16 else None), k


def test_a_frame_cut_at_the_very_end_of_the_buffer() -> None:
    # The last frame's header runs to the end of the batch buffer: reads there
    # must not shift (the decoder reads byte by byte near the end).
    frames = [eth(IP() / TCP()) for _ in range(3)] + [eth(IP(src="9.9.9.9"))[:30]]
    recs = rows(frames)
    assert sub(recs[-1], "ip_src", "ip_dst", "status") == ("9.9.9.9", None, STATUS_TRUNCATED)
    assert [r["status"] for r in recs[:-1]] == [STATUS_OK] * 3


def with_bytes(frame: bytes, at: int, value: bytes) -> bytes:
    return frame[:at] + value + frame[at + len(value) :]


BASE = eth(IP(src="10.0.0.1", dst="10.0.0.2", ttl=9) / TCP(sport=1, dport=2) / Raw(bytes(8)))


MALFORMED = [
    (
        "ipv4 version 5",
        with_bytes(BASE, 14, b"\x55"),
        ("ethertype", "src_mac"),
        IP_COLS + L4_COLS,
    ),
    (
        "ihl 4",
        with_bytes(BASE, 14, b"\x44"),
        ("ethertype", "ip_version"),
        IP_COLS[1:] + L4_COLS,
    ),
    (
        "total length < header",
        with_bytes(BASE, 16, b"\x00\x13"),
        ("ethertype", "ip_version"),
        IP_COLS[1:] + L4_COLS,
    ),
    (
        "tcp offset 4",
        with_bytes(BASE, 46, b"\x40"),
        (*IP_COLS, "sport", "dport"),
        ("tcp_flags",),
    ),
    (
        "tcp longer than its datagram",
        with_bytes(BASE, 16, b"\x00\x24"),  # 20 + 16 bytes: TCP needs 20
        IP_COLS + L4_COLS,
        (),
    ),
    (
        "tcp options past the datagram",
        with_bytes(BASE, 46, b"\xf0"),
        IP_COLS + L4_COLS,
        (),
    ),
    (
        "udp length 3",
        eth(IP() / UDP(sport=5, dport=6, len=3)),
        (*IP_COLS, "sport", "dport"),
        ("tcp_flags",),
    ),
    (
        "ipv6 version 4",
        with_bytes(eth(IPv6() / UDP()), 14, b"\x40"),
        ("ethertype",),
        IP_COLS + L4_COLS,
    ),
]


@pytest.mark.parametrize(
    ("name", "frame", "kept", "nulled"), MALFORMED, ids=[case[0] for case in MALFORMED]
)
def test_malformed_headers_keep_the_lower_layers(
    name: str, frame: bytes, kept: tuple[str, ...], nulled: tuple[str, ...]
) -> None:
    rec = row(frame)
    assert rec["status"] == STATUS_MALFORMED, name
    assert all(rec[c] is not None for c in ("dst_mac", *kept)), (name, rec)
    assert all(rec[c] is None for c in nulled), (name, rec)


def test_malformed_beats_truncated_within_one_header() -> None:
    # IHL 3 is impossible whatever the missing bytes would have said.
    rec = row(with_bytes(BASE, 14, b"\x43")[:20])
    assert rec["status"] == STATUS_MALFORMED
    assert rec["ip_version"] == 4


# --- batches ---------------------------------------------------------------------------------------


def mixed_frames(n: int, seed: int = 7) -> list[bytes]:
    rng = np.random.default_rng(seed)
    kinds = [
        eth(IP(src="10.0.0.1") / TCP(sport=1, dport=2)),
        eth(Dot1Q(vlan=3) / IP() / UDP(sport=3, dport=4) / Raw(bytes(40))),
        eth(IPv6() / IPv6ExtHdrHopByHop() / UDP(sport=5, dport=6)),
        eth(ARP()),
        eth(IP() / ICMP()),
        eth(IP(options=[IPOption_RR(routers=["1.2.3.4"])]) / TCP(sport=7, dport=8)),
    ]
    out = []
    for i in rng.integers(0, len(kinds), size=n).tolist():
        frame = kinds[i]
        out.append(frame[: int(rng.integers(0, len(frame) + 1))] if rng.random() < 0.2 else frame)
    return out


def assert_same(a: FeatureBatch, b: FeatureBatch) -> None:
    for name in FeatureBatch.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_chunked_decode_matches_frame_by_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = mixed_frames(300)
    monkeypatch.setattr(decode_module, "CHUNK", 64)  # many chunks, mixed per chunk
    whole = decode(FrameBatch.from_frames(frames, ts_ns=np.zeros(len(frames), np.int64)))
    one_by_one = FeatureBatch.concat(
        [decode(FrameBatch.from_frames([f], first_frame=i + 1)) for i, f in enumerate(frames)]
    )
    assert_same(whole, one_by_one)


def test_slices_of_a_shared_buffer_decode_like_the_whole() -> None:
    batch = FrameBatch.from_frames(mixed_frames(50))
    whole = decode(batch)
    assert_same(decode(batch.slice(10, 35)), whole.take(np.arange(10, 35)))


def test_empty_batch() -> None:
    fb = decode(FrameBatch.empty())
    assert len(fb) == 0
    assert list(fb.to_pandas().columns) == list(COLUMNS)
    assert fb.to_records() == []


TEMPLATES = [
    TRUNC_FRAME,
    eth(IPv6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment() / UDP()),
    eth(Dot1AD() / Dot1Q() / IP() / SCTP()),
    sll(0x86DD, IPV6_TCP),
    sll2(0x0800, IPV4_UDP),
    struct.pack("<I", 2) + IPV4_UDP,
    IPV6_TCP,
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real frame with a few bytes overwritten and maybe cut: reaches the deep branches."""
    frame = bytearray(draw(st.sampled_from(TEMPLATES)))
    for _ in range(draw(st.integers(0, 4))):
        frame[draw(st.integers(0, len(frame) - 1))] = draw(st.integers(0, 255))
    return bytes(frame[: draw(st.integers(0, len(frame)))])


FRAMES = st.lists(st.one_of(st.binary(max_size=120), mutated()), max_size=40)
LINKTYPES = st.sampled_from(sorted(DECODED_LINKTYPES | {105, 127, 4242}))


@settings(max_examples=150, deadline=None)
@given(frames=FRAMES, linktypes=st.lists(LINKTYPES, min_size=1, max_size=3), data=st.data())
def test_decode_never_raises_on_random_bytes(
    frames: list[bytes], linktypes: list[int], data: st.DataObject
) -> None:
    n = len(frames)
    iface = data.draw(st.lists(st.integers(0, len(linktypes) - 1), min_size=n, max_size=n))
    wirelen = [len(f) + data.draw(st.integers(0, 70000)) for f in frames]
    batch = FrameBatch.from_frames(
        frames,
        interfaces=tuple(Interface(lt) for lt in linktypes),
        iface=iface,
        wirelen=wirelen,
    )
    fb = decode(batch)
    assert len(fb) == n
    expected = {
        "dst_mac": np.int64,
        "ethertype": np.int32,
        "ip_version": np.int8,
        "ip_src": np.uint8,
        "ip_proto": np.int16,
        "ttl": np.int16,
        "sport": np.int32,
        "tcp_flags": np.int32,
        "status": np.uint8,
    }
    for name, dtype in expected.items():
        assert getattr(fb, name).dtype == dtype, name
        assert len(getattr(fb, name)) == n
    assert fb.ip_src.shape == (n, 16)
    assert set(fb.status.tolist()) <= {0, 1, 2, 3}
    assert ((fb.sport >= -1) & (fb.sport < 65536)).all()
    assert ((fb.tcp_flags >= -1) & (fb.tcp_flags < 4096)).all()
    assert ((fb.vlan >= -1) & (fb.vlan < 4096)).all()
    assert ((fb.payload_len >= -1) & (fb.payload_len <= fb.cap_len)).all()
    assert np.isin(fb.ip_version, (-1, 4, 6)).all()
    # Frame by frame gives the same answer as the whole batch.
    if n:
        k = data.draw(st.integers(0, n - 1))
        assert_same(decode(batch.take(np.array([k]))), fb.take(np.array([k])))
    fb.to_pandas()


# --- output forms ---------------------------------------------------------------------------------


def test_to_pandas_has_the_contract_columns_and_dtypes() -> None:
    frames = [
        eth(IP(src="1.2.3.4") / UDP(sport=9)),
        eth(ARP()),
        eth(IPv6(src="2001:db8::5") / TCP()),
    ]
    df = decode(FrameBatch.from_frames(frames)).to_pandas()
    assert list(df.columns) == list(COLUMNS)
    assert {c: str(t) for c, t in df.dtypes.items()} == {
        c: ("string" if t == "string" else t) for c, t in COLUMN_DTYPES.items()
    }
    assert df["ip_src"].tolist()[0] == "1.2.3.4"
    assert df["ip_src"].isna().tolist() == [False, True, False]
    assert df["sport"].isna().tolist() == [False, True, False]
    assert df["vlan"].isna().all()
    assert df.loc[2, "ip_src"] == "2001:db8::5"


def test_to_records_is_json_ready() -> None:
    recs = decode(FrameBatch.from_frames([eth(IP() / TCP()), eth(ARP())])).to_records()
    assert [list(r) for r in recs] == [list(COLUMNS)] * 2
    assert recs[1]["ip_src"] is None
    assert all(type(v) in (int, float, str, type(None)) for r in recs for v in r.values())
    assert json.loads(json.dumps(recs)) == recs


def test_address_validity_defaults_from_ip_version() -> None:
    fb = decode(FrameBatch.from_frames([eth(IP()), eth(ARP())]))
    rebuilt = FeatureBatch(
        **{n: getattr(fb, n) for n in FeatureBatch.__dataclass_fields__ if not n.endswith("_valid")}
    )
    assert rebuilt.ip_src_valid.tolist() == [True, False]
    with pytest.raises(ValueError, match="ttl"):
        FeatureBatch(
            **{**{n: getattr(fb, n) for n in FeatureBatch.__dataclass_fields__}, "ttl": fb.ttl[:1]}
        )
    assert len(FeatureBatch.concat([])) == 0


def test_mac_to_text() -> None:
    values = np.array([0, 0xFFFFFFFFFFFF, 0x0123456789AB, -1], dtype=np.int64)
    assert mac_to_text(values).tolist() == [
        "00:00:00:00:00:00",
        "ff:ff:ff:ff:ff:ff",
        "01:23:45:67:89:ab",
        None,
    ]


@pytest.mark.parametrize(
    "address",
    [
        "::",
        "::1",
        "2001:db8::1",
        "fe80::1:0:0:1",
        "2001:db8:0:1:1:1:1:1",
        "::ffff:192.0.2.1",
        "1::",
    ],
)
def test_ipv6_text_is_rfc_5952(address: str) -> None:
    raw = np.frombuffer(ipaddress.IPv6Address(address).packed, dtype=np.uint8).reshape(1, 16)
    text = ip_to_text([6], raw)[0]
    assert text == address
    assert ipaddress.IPv6Address(text) == ipaddress.IPv6Address(address)


def test_ip_to_text_repeats_and_validity() -> None:
    addr = np.zeros((4, 16), dtype=np.uint8)
    addr[:, :4] = [10, 0, 0, 1]
    out = ip_to_text([4, 4, 0, 4], addr, valid=[True, True, True, False])
    assert out.tolist() == ["10.0.0.1", "10.0.0.1", None, None]
    assert pd.isna(ip_to_text(np.zeros(0), np.zeros((0, 16), np.uint8))).all()


def test_ip_to_text_matches_row_by_row_formatting() -> None:
    rng = np.random.default_rng(3)
    pool = rng.integers(0, 256, size=(40, 16), dtype=np.uint8)
    pool[:10, :10] = 0  # some with long zero runs
    addr = pool[rng.integers(0, len(pool), size=2000)]
    version = rng.choice(np.array([4, 6, -1], dtype=np.int8), size=2000)
    expected = [
        str(ipaddress.IPv4Address(bytes(a[:4])))
        if v == 4
        else (ipaddress.IPv6Address(bytes(a)).compressed if v == 6 else None)
        for v, a in zip(version.tolist(), addr, strict=True)
    ]
    assert ip_to_text(version, addr).tolist() == expected
