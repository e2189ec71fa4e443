"""tshark is the oracle for ``wirelearn.features.decode``.

Every frame of a set of real captures is decoded by wirelearn and by tshark
(one run per shard of files, with defragmentation and TCP reassembly off),
and every column tshark also has is compared. A mismatch must fall in one of
the explained categories in ``EXPLAINED`` (each with a predicate and a
comment saying why the two differ); the unexplained count must be zero.

Frames are written once into pcapng shards with wirelearn's own writer, so
tshark and wirelearn see exactly the same bytes and one tshark start-up covers
many files. ``-E occurrence=a`` is used so the IPv6 extension-header chain can
be followed; every other column takes the first occurrence (``occurrence=f``).

Run ``pytest tests/test_decode_oracle.py -s`` to see the counts.
"""

from __future__ import annotations

import concurrent.futures
import csv
import subprocess
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, SHARED_CAPTURES, need_tool, shared_captures_available

from wirelearn.capture import FrameBatch, PcapngWriter, open_capture
from wirelearn.errors import WirelearnError
from wirelearn.features import (
    DECODED_LINKTYPES,
    STATUS_UNDECODED,
    FeatureBatch,
    decode,
    ip_to_text,
    mac_to_text,
)

#: The columns compared with tshark (``payload_len`` has no tshark field).
COMPARED = (
    "cap_len",
    "frame_len",
    "dst_mac",
    "src_mac",
    "ethertype",
    "vlan",
    "ip_version",
    "ip_src",
    "ip_dst",
    "ip_proto",
    "ttl",
    "sport",
    "dport",
    "tcp_flags",
)

TSHARK_FIELDS = (
    "frame.number",
    "frame.len",
    "frame.cap_len",
    "frame.protocols",
    "eth.dst",
    "eth.src",
    "eth.type",
    "eth.len",
    "vlan.id",
    "vlan.etype",
    "vlan.len",
    "ieee8021ad.id",
    "sll.src.eth",
    "sll.etype",
    "sll.gretype",
    "null.type",
    "null.family",
    "ip.version",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ip.ttl",
    "ipv6.version",
    "ipv6.plen",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.nxt",
    "ipv6.hlim",
    "ipv6.hopopts.nxt",
    "ipv6.routing.nxt",
    "ipv6.fraghdr.nxt",
    "ipv6.dstopts.nxt",
    "ah.next_header",
    "mip6.proto",
    "shim6.nxt",
    "hip.proto",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
    "udp.srcport",
    "udp.dstport",
    "sctp.srcport",
    "sctp.dstport",
    "dccp.srcport",
    "dccp.dstport",
)

TSHARK_PREFS = (
    "ip.defragment:FALSE",
    "ipv6.defragment:FALSE",
    "tcp.desegment_tcp_streams:FALSE",
    "tcp.analyze_sequence_numbers:FALSE",
)

#: IPv6 extension headers and the tshark field holding each one's next header.
EXT_NXT_FIELD = {
    0: "ipv6.hopopts.nxt",
    43: "ipv6.routing.nxt",
    44: "ipv6.fraghdr.nxt",
    60: "ipv6.dstopts.nxt",
    51: "ah.next_header",
    135: "mip6.proto",
    139: "hip.proto",
    140: "shim6.nxt",
}

#: tshark protocol names of the transports whose ports wirelearn reports.
PORT_PROTOCOLS = {"tcp": "tcp", "udp": "udp", "udplite": "udp", "sctp": "sctp", "dccp": "dccp"}
#: tshark protocol names of VLAN tags.
TAG_PROTOCOLS = ("vlan", "ieee8021ad")
#: tshark protocol names wirelearn walks before the network layer.
LINK_PROTOCOLS = {"eth", "sll", "null", "raw", "ethertype", *TAG_PROTOCOLS}

Value = int | str | None


# --- reading tshark -------------------------------------------------------------------------------


def run_tshark(path: Path) -> dict[int, dict[str, list[str]]]:
    """Every frame of ``path`` as tshark decodes it: field -> all occurrences."""
    cmd = [need_tool("tshark"), "-r", str(path), "-n", "-T", "fields", "-E", "occurrence=a"]
    cmd += ["-E", "separator=/t", "-E", "aggregator=|"]
    for pref in TSHARK_PREFS:
        cmd += ["-o", pref]
    for name in TSHARK_FIELDS:
        cmd += ["-e", name]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    rows: dict[int, dict[str, list[str]]] = {}
    for line in done.stdout.splitlines():
        cells = line.split("\t")
        if len(cells) != len(TSHARK_FIELDS) or not cells[0].isdigit():
            continue
        rows[int(cells[0])] = {
            name: cell.split("|") if cell else []
            for name, cell in zip(TSHARK_FIELDS, cells, strict=True)
        }
    return rows


def _first(row: dict[str, list[str]], name: str) -> str | None:
    values = row.get(name, [])
    return values[0] if values else None


def _int(text: str | None) -> int | None:
    return None if text is None else int(text, 0)


def _tags(protocols: list[str]) -> list[str]:
    """The VLAN tags (tshark protocol names) right after the link-layer header."""
    tags, i = [], 1
    while (
        i + 1 < len(protocols) and protocols[i] == "ethertype" and protocols[i + 1] in TAG_PROTOCOLS
    ):
        tags.append(protocols[i + 1])
        i += 2
    return tags


def _outer_ip(protocols: list[str]) -> str | None:
    """``ip`` or ``ipv6`` when tshark's first IP layer is the outer one."""
    for proto in protocols:
        if proto in ("ip", "ipv6"):
            return proto
    return None


def _ipv6_upper(row: dict[str, list[str]]) -> int | None:
    """The first IPv6 header's upper-layer protocol, following tshark's extension fields."""
    nh = _int(_first(row, "ipv6.nxt"))
    used: Counter[str] = Counter()
    for _ in range(16):
        name = EXT_NXT_FIELD.get(nh) if nh is not None else None
        if name is None:
            break
        values = row.get(name, [])
        if used[name] >= len(values):
            return nh  # tshark stopped in this header (cut short, or not walked)
        nh = int(values[used[name]], 0)
        used[name] += 1
    return nh


def tshark_columns(row: dict[str, list[str]], linktype: int) -> dict[str, Value]:
    """The wirelearn columns as tshark's fields give them."""
    protocols = (_first(row, "frame.protocols") or "").split(":")
    out: dict[str, Value] = {
        "cap_len": _int(_first(row, "frame.cap_len")),
        "frame_len": _int(_first(row, "frame.len")),
    }
    tags = _tags(protocols)
    ethertype: int | None = None
    if linktype == 1:
        out["dst_mac"] = _first(row, "eth.dst")
        out["src_mac"] = _first(row, "eth.src")
        ethertype = _int(_first(row, "eth.type") or _first(row, "eth.len"))
    elif linktype in (113, 276):
        out["dst_mac"] = None
        out["src_mac"] = _first(row, "sll.src.eth")
        ethertype = _int(_first(row, "sll.etype") or _first(row, "sll.gretype"))
    else:
        out["dst_mac"] = out["src_mac"] = None
        if linktype == 0:
            ethertype = _int(_first(row, "null.type"))
    if tags:
        # tshark has a type field for 802.1Q tags only (vlan.etype, or vlan.len
        # before an 802.3 payload); after an 802.1ad tag it shows no field.
        ethertype = None
        if tags[-1] == "vlan":
            n = tags.count("vlan")
            etypes, lens = row.get("vlan.etype", []), row.get("vlan.len", [])
            ethertype = _int(etypes[n - 1] if len(etypes) >= n else (lens[0] if lens else None))
        out["vlan"] = _int(_first(row, "vlan.id" if tags[0] == "vlan" else "ieee8021ad.id"))
    else:
        out["vlan"] = None
    out["ethertype"] = ethertype

    version = _outer_ip(protocols)
    if version == "ip":
        out["ip_version"] = _int(_first(row, "ip.version"))
        out["ip_src"] = _first(row, "ip.src")
        out["ip_dst"] = _first(row, "ip.dst")
        out["ip_proto"] = _int(_first(row, "ip.proto"))
        out["ttl"] = _int(_first(row, "ip.ttl"))
    elif version == "ipv6":
        out["ip_version"] = _int(_first(row, "ipv6.version"))
        out["ip_src"] = _first(row, "ipv6.src")
        out["ip_dst"] = _first(row, "ipv6.dst")
        out["ip_proto"] = _ipv6_upper(row)
        out["ttl"] = _int(_first(row, "ipv6.hlim"))
    else:
        for name in ("ip_version", "ip_src", "ip_dst", "ip_proto", "ttl"):
            out[name] = None

    out["sport"] = out["dport"] = out["tcp_flags"] = None
    for proto in protocols:
        prefix = PORT_PROTOCOLS.get(proto)
        if prefix is not None:
            out["sport"] = _int(_first(row, f"{prefix}.srcport"))
            out["dport"] = _int(_first(row, f"{prefix}.dstport"))
            if prefix == "tcp":
                out["tcp_flags"] = _int(_first(row, "tcp.flags"))
            break
    return out


# --- wirelearn's side ----------------------------------------------------------------------------


def wirelearn_columns(fb: FeatureBatch) -> list[dict[str, Value]]:
    """The compared columns of every frame, as plain values (text for addresses)."""
    text = {
        "dst_mac": mac_to_text(fb.dst_mac),
        "src_mac": mac_to_text(fb.src_mac),
        "ip_src": ip_to_text(fb.ip_version, fb.ip_src, fb.ip_src_valid),
        "ip_dst": ip_to_text(fb.ip_version, fb.ip_dst, fb.ip_dst_valid),
    }
    cols: dict[str, list[Value]] = {}
    for name in COMPARED:
        if name in text:
            cols[name] = list(text[name].tolist())
        else:
            values = getattr(fb, name).astype(np.int64)
            cols[name] = [None if v < 0 else v for v in values.tolist()]
    cols["status"] = fb.status.astype(np.int64).tolist()
    return [dict(zip(cols, row, strict=True)) for row in zip(*cols.values(), strict=True)]


# --- explained mismatches ------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One mismatching column of one frame, with what a predicate needs to judge it."""

    file: str
    frame: int
    linktype: int
    column: str
    ours: Value
    theirs: Value
    mine: dict[str, Value]
    row: dict[str, list[str]]

    @property
    def protocols(self) -> list[str]:
        return (_first(self.row, "frame.protocols") or "").split(":")


def _after_outer_ip(protocols: list[str]) -> list[str]:
    for i, proto in enumerate(protocols):
        if proto in ("ip", "ipv6"):
            return protocols[i + 1 :]
    return []


def _first_l4_is_inner(case: Case) -> bool:
    """tshark's first port-bearing layer sits behind another layer after the outer IP
    (an ICMP error's quoted datagram, a tunnel), where wirelearn reports the outer one."""
    ext = {"ipv6.hopopts", "ipv6.routing", "ipv6.fraghdr", "ipv6.dstopts", "ah"}
    for proto in _after_outer_ip(case.protocols):
        if proto in PORT_PROTOCOLS:
            return False
        if proto not in ext:
            return True
    return False


def _ip_behind_encapsulation(case: Case) -> bool:
    """tshark's first IP header sits inside something wirelearn does not decode."""
    for proto in case.protocols:
        if proto in ("ip", "ipv6"):
            return False
        if proto not in LINK_PROTOCOLS:
            return True
    return False


IP_COLUMNS = ("ip_version", "ip_src", "ip_dst", "ip_proto", "ttl")
L4_COLUMNS = ("sport", "dport", "tcp_flags")
ISL_DST = ("01:00:0c:00:00", "0c:00:0c:00:00")  # tshark's eth dissector hands these to ISL
#: Link types whose records start with a pseudo-header that tshark's file reader
#: strips from frame.len and frame.cap_len, and its length.
PSEUDO_HEADER = {123: 4}  # SUNATM

EXPLAINED: list[tuple[str, str, Callable[[Case], bool]]] = [
    # (name, why, predicate). The first matching category counts the mismatch.
    (
        "wiretap-pseudo-header",
        "a link type wirelearn does not decode whose pseudo-header tshark's reader strips "
        "from the frame lengths; wirelearn keeps the record's lengths",
        lambda c: (
            c.column in ("cap_len", "frame_len")
            and c.linktype in PSEUDO_HEADER
            and isinstance(c.ours, int)
            and isinstance(c.theirs, int)
            and c.ours - c.theirs == PSEUDO_HEADER[c.linktype]
        ),
    ),
    (
        "inner-transport",
        "tshark's first TCP/UDP ports come from a header inside an ICMP error or a tunnel; "
        "wirelearn reports only the outer transport (none here)",
        lambda c: c.column in L4_COLUMNS and c.ours is None and _first_l4_is_inner(c),
    ),
    (
        "ip-behind-encapsulation",
        "tshark finds IP inside MPLS, MACsec, NSH, PPPoE, LLC/SNAP...; wirelearn decodes IP "
        "only right after the link layer and its VLAN tags",
        lambda c: (
            c.column in IP_COLUMNS + L4_COLUMNS
            and c.mine["ip_version"] is None
            and _ip_behind_encapsulation(c)
        ),
    ),
    (
        "ipv4-header-says-6",
        "an IPv4 ethertype or link type whose header has version 6: tshark's IP dissector "
        "hands it to IPv6, wirelearn reports it malformed (decode rules)",
        lambda c: (
            c.column == "ip_version"
            and c.ours is None
            and c.theirs == 6
            and c.mine["status"] == 2
            and _outer_ip(c.protocols) == "ip"
        ),
    ),
    (
        "bogus-ip-version",
        "tshark shows the version nibble of an impossible IP header (0, 5, 15...); "
        "wirelearn nulls ip_version and reports the frame malformed",
        lambda c: (
            c.column == "ip_version"
            and c.ours is None
            and c.theirs not in (4, 6)
            and c.mine["status"] == 2
        ),
    ),
    (
        "ipv6-zero-payload-length",
        "a zero IPv6 payload length (Linux BIG TCP, or a jumbogram without its option): "
        "tshark (ipv6.tso_support off) takes it literally, wirelearn uses the frame length",
        lambda c: (
            c.column in ("ip_proto", *L4_COLUMNS)
            and _outer_ip(c.protocols) == "ipv6"
            and _first(c.row, "ipv6.plen") == "0"
        ),
    ),
    (
        "ipv6-extension-chain-cut",
        "the capture ends inside the IPv6 extension headers: tshark and wirelearn stop "
        "the walk at different points (wirelearn keeps the last next header it read, "
        "or nothing when it cannot reach it)",
        lambda c: (
            c.column == "ip_proto" and c.mine["status"] == 1 and _outer_ip(c.protocols) == "ipv6"
        ),
    ),
    (
        "short-ethernet",
        "a frame shorter than the 14-byte Ethernet header: tshark adds no field, "
        "wirelearn fills the addresses that fit (decode rules)",
        lambda c: (
            c.column in ("dst_mac", "src_mac")
            and c.theirs is None
            and c.linktype == 1
            and c.mine["cap_len"] is not None
            and int(c.mine["cap_len"]) < 14
        ),
    ),
    (
        "ipv4-options-cut",
        "IPv4 options run past the capture: tshark stops before the destination address, "
        "wirelearn fills it because its 20-byte base header is captured",
        lambda c: (
            c.column == "ip_dst"
            and c.theirs is None
            and c.mine["status"] == 1
            and _outer_ip(c.protocols) == "ip"
        ),
    ),
    (
        "cisco-isl",
        "frames to Cisco's ISL addresses: tshark decodes ISL and shows the inner Ethernet "
        "header; wirelearn reports the outer one",
        lambda c: (
            c.column in ("dst_mac", "src_mac", "ethertype")
            and isinstance(c.mine["dst_mac"], str)
            and c.mine["dst_mac"].startswith(ISL_DST)
            and c.protocols[:2] == ["eth", "eth"]
        ),
    ),
    (
        "ieee8021ad-type",
        "tshark has no field for the type after an 802.1ad tag (only after 802.1Q tags)",
        lambda c: (
            c.column == "ethertype"
            and c.theirs is None
            and _tags(c.protocols)[-1:] == ["ieee8021ad"]
        ),
    ),
]


@dataclass
class Report:
    files: int = 0
    #: Files with at least one frame of a link type wirelearn decodes.
    decoded_files: int = 0
    frames: int = 0
    fields: int = 0
    #: Fields where both sides agree on a non-null value, per column.
    agreed: Counter[str] = field(default_factory=Counter)
    #: Frames compared per link type.
    linktypes: Counter[int] = field(default_factory=Counter)
    explained: Counter[str] = field(default_factory=Counter)
    #: A few files where each explained category occurs.
    examples: dict[str, set[str]] = field(default_factory=dict)
    unexplained: list[Case] = field(default_factory=list)
    #: Frames wirelearn read that tshark did not print (must stay 0).
    missing: int = 0
    #: Reader errors: the frames before them are still compared.
    load_errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"compared {self.files} files ({self.decoded_files} with decoded link types), "
            f"{self.frames} frames, {self.fields} fields",
            f"  frames per link type: {dict(sorted(self.linktypes.items()))}",
            f"  non-null agreements: {dict(self.agreed)}",
            *(
                f"  explained {name}: {n} (e.g. {', '.join(sorted(self.examples[name]))})"
                for name, n in self.explained.most_common()
            ),
            f"  unexplained: {len(self.unexplained)}, frames tshark did not print: {self.missing}",
            *(f"  reader stopped early: {e}" for e in self.load_errors),
        ]
        for c in self.unexplained[:40]:
            lines.append(
                f"    {c.file}#{c.frame} lt={c.linktype} {c.column}: ours={c.ours!r} "
                f"tshark={c.theirs!r} status={c.mine['status']} protos={':'.join(c.protocols)}"
            )
        return "\n".join(lines)


# --- the comparison --------------------------------------------------------------------------------


def load(path: Path) -> tuple[FrameBatch | None, str | None]:
    """All frames wirelearn's reader gets from a capture (up to an error, if any)."""
    batches: list[FrameBatch] = []
    error = None
    try:
        with open_capture(path) as source:
            batches.extend(source)
    except WirelearnError as exc:
        error = f"{path.name}: {exc}"
    if not batches:
        return None, error
    return FrameBatch.concat(batches), error


def compare(paths: Iterable[Path], workdir: Path, shards: int = 4) -> Report:
    """Decode ``paths`` with wirelearn and tshark and compare every frame."""
    report = Report()
    loaded: list[tuple[Path, FrameBatch]] = []
    for path in paths:
        batch, error = load(path)
        if error:
            report.load_errors.append(error)
        if batch is not None and len(batch):
            loaded.append((path, batch))
    groups = [loaded[i::shards] for i in range(shards)]
    groups = [g for g in groups if g]

    def shard(i: int) -> tuple[list[tuple[Path, FrameBatch, int]], dict[int, dict[str, list[str]]]]:
        target = workdir / f"shard{i}.pcapng"
        placed = []
        first = 1
        with PcapngWriter(target) as writer:
            for path, batch in groups[i]:
                writer.write(batch)
                placed.append((path, batch, first))
                first += len(batch)
        return placed, run_tshark(target)

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(4, len(groups) or 1)) as pool:
        results = list(pool.map(shard, range(len(groups))))

    for placed, rows in results:
        for path, batch, first in placed:
            report.files += 1
            linktypes = batch.linktype.tolist()
            if any(lt in DECODED_LINKTYPES for lt in linktypes):
                report.decoded_files += 1
            mine = wirelearn_columns(decode(batch))
            for i, ours in enumerate(mine):
                row = rows.get(first + i)
                if row is None:
                    report.missing += 1  # tshark did not print this frame: a test failure
                    continue
                report.frames += 1
                report.linktypes[linktypes[i]] += 1
                theirs = tshark_columns(row, linktypes[i])
                columns: tuple[str, ...] = COMPARED
                if linktypes[i] not in DECODED_LINKTYPES:
                    # Only the link-independent columns exist; the rest must be null.
                    columns = (*COMPARED, "status")
                    theirs = {
                        **dict.fromkeys(COMPARED),
                        "cap_len": theirs["cap_len"],
                        "frame_len": theirs["frame_len"],
                        "status": STATUS_UNDECODED,
                    }
                for column in columns:
                    report.fields += 1
                    if ours[column] == theirs[column]:
                        if ours[column] is not None:
                            report.agreed[column] += 1
                        continue
                    case = Case(
                        file=_shown(path),
                        frame=int(batch.frame[i]),
                        linktype=linktypes[i],
                        column=column,
                        ours=ours[column],
                        theirs=theirs[column],
                        mine=ours,
                        row=row,
                    )
                    for name, _why, predicate in EXPLAINED:
                        if predicate(case):
                            report.explained[name] += 1
                            seen = report.examples.setdefault(name, set())
                            if len(seen) < 3:
                                seen.add(case.file)
                            break
                    else:
                        report.unexplained.append(case)
    return report


def _shown(path: Path) -> str:
    """A capture's path as the report shows it: relative to the corpus or fixtures."""
    for root in (SHARED_CAPTURES, FIXTURES):
        if path.is_relative_to(root):
            return str(path.relative_to(root))
    return path.name


def corpus_files() -> list[Path]:
    """Every capture in the shared corpus (undecoded link types included: their frames
    must come out ``STATUS_UNDECODED`` with every link-dependent column null)."""
    with (SHARED_CAPTURES / "MANIFEST.tsv").open(newline="") as fh:
        return sorted(
            SHARED_CAPTURES / rec["local_file"] for rec in csv.DictReader(fh, delimiter="\t")
        )


# --- tests ---------------------------------------------------------------------------------------

#: Fixture captures the always-on oracle test compares: every decoded link type,
#: VLAN/QinQ, IPv6 extension headers, fragments, truncation and malformed headers.
FIXTURE_FILES = (
    "vlan-ipv4-tcp-udp.pcap",
    "qinq-arp.pcap",
    "ipv6-frag-http.pcap",
    "ipv6-routing-header.pcap",
    "stp.pcap",
    "dhcp-arp-icmp.pcap",
    "mixed-lo.pcap",
    "sll-nanosecond.pcap",
    "sll-ipv6-udp.pcap",
    "sll2.pcap",
    "raw-ipv4.pcap",
    "raw-ipv6.pcap",
    "linktype-ipv4.pcap",
    "linktype-ipv6.pcap",
    "null.pcap",
    "loop.pcap",
    "decode-ip6-ext-trunc.pcap",
    "decode-short-ethernet.pcap",
    "decode-ipv6-bad-version.pcap",
    "decode-sll-icmp-error.pcap",
    "decode-mpls-ipv4.pcap",
    "decode-ipv4-fragments.pcap",
    "decode-ipv4-says-6.pcap",
    "decode-cisco-isl.pcap",
)


def test_oracle_on_fixtures(tmp_path: Path) -> None:
    paths = [FIXTURES / name for name in FIXTURE_FILES]
    missing = [p.name for p in paths if not p.is_file()]
    assert not missing, f"fixtures missing: {missing}"
    report = compare(paths, tmp_path, shards=2)
    print(report.summary())
    assert report.files == len(paths)
    assert report.missing == 0, report.summary()
    assert report.unexplained == [], report.summary()
    # Every decoded link type but the DLT_RAW aliases 12/14 (no capture uses them).
    assert set(report.linktypes) >= {0, 1, 101, 108, 113, 228, 229, 276}
    # The comparison is not vacuous: real values agreed in every compared column.
    assert all(report.agreed[c] > 0 for c in COMPARED), report.agreed


@pytest.mark.slow
@pytest.mark.corpus
def test_oracle_on_shared_corpus(tmp_path: Path) -> None:
    if not shared_captures_available():
        pytest.skip(f"shared captures not found at {SHARED_CAPTURES}")
    paths = corpus_files()
    report = compare(paths, tmp_path)
    print(report.summary())
    assert report.decoded_files >= 200, report.summary()
    decoded = sum(n for lt, n in report.linktypes.items() if lt in DECODED_LINKTYPES)
    assert decoded >= 10_000, report.summary()
    assert report.missing == 0, report.summary()
    assert report.unexplained == [], report.summary()
