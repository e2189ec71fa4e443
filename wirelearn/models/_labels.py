"""Label providers: where the per-frame target of the online learners comes from.

Every provider maps a batch to one label per frame: a string, or None for
"unlabelled" (the frame is predicted and shown, but neither learned from nor
scored). Labels are never random: they come from the traffic itself
(``ServiceTarget``), from BPF rules (``RuleLabels``), from a label file
(``FileLabels``), or not at all (``AnomalyTarget``).

A provider also says which ``FeatureBatch`` columns define its target
(``defining_columns``); the feature pipeline leaves every feature derived
from them out of the model's input, so that the models must predict the
target from other evidence instead of reading it back.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from wirelearn.capture._batch import FrameBatch
from wirelearn.errors import ConfigError
from wirelearn.features._schema import STATUS_UNDECODED, FeatureBatch

__all__ = [
    "SERVICE_CLASSES",
    "SERVICE_PORTS",
    "TARGETS",
    "AnomalyTarget",
    "FileLabels",
    "LabelProvider",
    "RuleLabels",
    "ServiceTarget",
    "bpf_defining_columns",
    "make_label_provider",
    "parse_label_rule",
]

_OBJ = NDArray[np.object_]

#: Values of ``--target`` (None infers one from the other options).
TARGETS: Final[tuple[str, ...]] = ("service", "anomaly", "labels", "rules")


class LabelProvider:
    """Base of every label provider.

    Attributes:
        name: the target's name, for displays.
        classes: every label the provider can give, when known up front; else None.
        defining_columns: ``FeatureBatch`` columns the target is defined by.
        learnable: whether models may learn from the labels (False: they are
            for reporting only, as with ``AnomalyTarget``).
    """

    name: str = "labels"
    classes: tuple[str, ...] | None = None
    defining_columns: frozenset[str] = frozenset()
    learnable: bool = True

    def labels(self, fb: FeatureBatch, batch: FrameBatch) -> _OBJ:
        """One label (str) or None per frame of the batch.

        Args:
            fb: the decoded columns of ``batch``.
            batch: the raw frames (the same frames, in the same order).
        """
        raise NotImplementedError  # every provider defines its own target

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _none(n: int) -> _OBJ:
    return np.full(n, None, dtype=object)


# --- service ------------------------------------------------------------------------------------

#: Classes of ``ServiceTarget``, in this order.
SERVICE_CLASSES: Final[tuple[str, ...]] = (
    "arp",
    "dhcp",
    "discovery",
    "dns",
    "http",
    "icmp",
    "ntp",
    "ssh",
    "tls",
    "other",
)

#: The ports that define each port-based service class, per transport.
SERVICE_PORTS: Final[dict[str, dict[str, tuple[int, ...]]]] = {
    "tcp": {
        "dns": (53,),
        "http": (80, 8000, 8080),
        "tls": (443, 465, 636, 853, 993, 995, 8443),
        "ssh": (22,),
        "discovery": (5355,),  # LLMNR over TCP
    },
    "udp": {
        "dns": (53,),
        "dhcp": (67, 68, 546, 547),  # DHCP and DHCPv6
        "ntp": (123,),
        "tls": (443, 853),  # QUIC, DNS over QUIC
        "discovery": (1900, 5353, 5355),  # SSDP, mDNS, LLMNR
    },
}


def _port_table(transport: str) -> NDArray[np.int8]:
    table = np.full(65536, -1, dtype=np.int8)
    for cls, ports in SERVICE_PORTS[transport].items():
        table[list(ports)] = SERVICE_CLASSES.index(cls)
    return table


class ServiceTarget(LabelProvider):
    """The service a frame belongs to, from its ethertype, IP protocol and ports.

    Definition, first rule that applies:

    1. ``arp``: ethertype 0x0806 (ARP) or 0x8035 (RARP, the same packet format).
    2. ``icmp``: IPv4 protocol 1 or IPv6 (upper-layer) protocol 58.
    3. TCP or UDP: each port is looked up in that transport's table
       (``SERVICE_PORTS``: dns 53; dhcp UDP 67/68/546/547; ntp UDP 123; http TCP
       80/8000/8080; tls TCP 443/465/636/853/993/995/8443 and UDP 443/853 (QUIC);
       ssh TCP 22; discovery = mDNS UDP 5353, LLMNR 5355, SSDP UDP 1900). Either
       direction counts: if one port is known, its class wins; if both are known
       and differ, the lower port's (the server's, as a rule) wins; if neither,
       ``other``. TCP or UDP without ports (a later IP fragment, a cut header) is
       unlabelled: the service cannot be known.
    4. ``other``: any other decoded frame (other IP protocols, LLDP, STP, ...).

    Frames of a link type wirelearn does not decode, frames whose link header
    or IP header could not be read, and IP frames whose protocol could not be
    read, are unlabelled (None).

    ``defining_columns`` is ``{"sport", "dport"}``: the models must recognise
    the service without reading its port. The ethertype and IP protocol are
    deliberately *not* excluded: they identify the protocol layer any analyzer
    reads before the ports (so ``arp`` and ``icmp`` are easy), while the TCP/UDP
    services stay a real inference problem from sizes, timing, TTLs, flags and
    addresses (and the transport, which is needed to tell QUIC from HTTP at all).
    """

    name = "service"
    classes = SERVICE_CLASSES
    defining_columns = frozenset({"sport", "dport"})

    def __init__(self) -> None:
        self._tcp = _port_table("tcp")
        self._udp = _port_table("udp")
        self._names = np.array(SERVICE_CLASSES, dtype=object)

    def codes(self, fb: FeatureBatch) -> NDArray[np.int8]:
        """The class index of each frame in ``SERVICE_CLASSES``, ``-1`` for unlabelled."""
        n = len(fb)
        out = np.full(n, SERVICE_CLASSES.index("other"), dtype=np.int8)
        proto = fb.ip_proto.astype(np.int64)
        version = fb.ip_version
        has_ip = (version == 4) | (version == 6)
        sport = fb.sport.astype(np.int64)
        dport = fb.dport.astype(np.int64)
        has_ports = (sport >= 0) & (dport >= 0)
        for number, table in ((6, self._tcp), (17, self._udp)):
            sel = has_ip & (proto == number) & has_ports
            cs = table[sport[sel]]
            cd = table[dport[sel]]
            low_is_src = sport[sel] <= dport[sel]
            both = (cs >= 0) & (cd >= 0)
            pick = np.where(cs >= 0, cs, cd)
            pick = np.where(both & ~low_is_src, cd, pick)
            out[sel] = np.where(pick >= 0, pick, SERVICE_CLASSES.index("other"))
        out[has_ip & ((proto == 6) | (proto == 17)) & ~has_ports] = -1
        out[has_ip & (proto < 0)] = -1
        # No IP and no ethertype read (a cut link header), or an IP ethertype whose
        # header could not be read: nothing says what the frame carries.
        ip_type = (fb.ethertype == 0x0800) | (fb.ethertype == 0x86DD)
        out[~has_ip & ((fb.ethertype < 0) | ip_type)] = -1
        icmp = ((version == 4) & (proto == 1)) | ((version == 6) & (proto == 58))
        out[icmp] = SERVICE_CLASSES.index("icmp")
        out[(fb.ethertype == 0x0806) | (fb.ethertype == 0x8035)] = SERVICE_CLASSES.index("arp")
        out[fb.status == STATUS_UNDECODED] = -1
        return out

    def labels(self, fb: FeatureBatch, batch: FrameBatch) -> _OBJ:
        """The service class of each frame (see the class), None where unknowable."""
        codes = self.codes(fb)
        out = _none(len(fb))
        known = codes >= 0
        out[known] = self._names[codes[known]]
        return out

    def __repr__(self) -> str:
        return "ServiceTarget()"


# --- BPF rules ----------------------------------------------------------------------------------

_NAME = re.compile(r"^[^\s=,\"']+$")


def _check_label_name(name: str, what: str) -> str:
    name = name.strip()
    if not name:
        raise ConfigError(f"{what}: the label name is empty")
    if not _NAME.match(name):
        raise ConfigError(
            f"{what}: bad label name {name!r} (no spaces, commas, quotes or '=' allowed)"
        )
    return name


def parse_label_rule(text: str) -> tuple[str, str]:
    """Split a ``--label-rule`` value ``NAME=BPF`` at its first ``=``.

    >>> parse_label_rule("dns=udp port 53")
    ('dns', 'udp port 53')
    >>> parse_label_rule("syn=tcp[13] = 2")
    ('syn', 'tcp[13] = 2')

    Raises:
        ConfigError: no ``=``, an empty or bad name, or an empty expression.
    """
    what = f"--label-rule {text!r}"
    name, sep, expr = text.partition("=")
    if not sep:
        raise ConfigError(f"{what}: expected NAME=BPF, e.g. dns='udp port 53'")
    name = _check_label_name(name, what)
    if not expr.strip():
        raise ConfigError(f"{what}: the BPF expression after '=' is empty")
    return name, expr.strip()


_TOKENS = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)\s*(\[)?")


def _columns_of(words: str, *columns: str) -> dict[str, frozenset[str]]:
    return dict.fromkeys(words.split(), frozenset(columns))


#: What each pcap-filter keyword reads, as ``FeatureBatch`` columns (a heuristic).
_KEYWORD_COLUMNS: Final[dict[str, frozenset[str]]] = {
    **_columns_of("port portrange", "sport", "dport"),
    **_columns_of(
        "tcp udp sctp icmp icmp6 igmp igrp pim ah esp vrrp carp proto protochain"
        " icmptype icmpcode icmp6type icmp6code",
        "ip_proto",
    ),
    **_columns_of(
        "ip ip6 arp rarp atalk aarp decnet iso stp ipx netbeui lat mopdl moprc sca llc snap"
        " clnp esis isis l1 l2",
        "ethertype",
        "ip_version",
    ),
    **_columns_of("host net mask", "ip_src", "ip_dst"),
    **_columns_of("src", "ip_src"),
    **_columns_of("dst", "ip_dst"),
    **_columns_of("gateway", "ip_src", "ip_dst", "src_mac", "dst_mac"),
    **_columns_of("ether", "src_mac", "dst_mac", "ethertype"),
    **_columns_of("broadcast multicast", "dst_mac", "ip_dst"),
    **_columns_of("vlan mpls pppoed pppoes geneve vxlan", "vlan", "ethertype"),
    **_columns_of("len greater less", "frame_len", "cap_len", "payload_len"),
    **_columns_of(
        "tcpflags tcp-fin tcp-syn tcp-rst tcp-push tcp-ack tcp-urg tcp-ece tcp-cwr", "tcp_flags"
    ),
}

#: What indexing a header (``tcp[13]``) can read: any field of that header.
_INDEX_COLUMNS: Final[dict[str, frozenset[str]]] = {
    **_columns_of("ether link", "dst_mac", "src_mac", "ethertype", "vlan"),
    **_columns_of("ip ip6", "ip_version", "ttl", "ip_proto", "ip_src", "ip_dst", "payload_len"),
    **_columns_of("tcp", "sport", "dport", "tcp_flags"),
    **_columns_of("udp", "sport", "dport", "payload_len"),
    **_columns_of("icmp icmp6", "ip_proto"),
}


def bpf_defining_columns(expression: str) -> frozenset[str]:
    """The ``FeatureBatch`` columns a BPF expression reads, by its keywords (a heuristic).

    ``port`` reads the ports, ``tcp``/``udp``/``icmp``/``proto`` the IP protocol,
    ``ip``/``ip6``/``arp`` the ethertype, ``host``/``net`` (and ``src``/``dst``
    unless they qualify a port or a MAC) the IP addresses, ``ether`` the MACs,
    ``vlan`` the VLAN, ``len``/``greater``/``less`` the lengths,
    ``tcpflags``/``tcp-syn`` the flags, and indexing a header (``tcp[13]``,
    ``ip[8]``) any column of that header. It errs towards excluding too much: a
    missed column would let the model read its target back.

    >>> sorted(bpf_defining_columns("tcp dst port 22"))
    ['dport', 'ip_proto', 'sport']
    >>> sorted(bpf_defining_columns("tcp[tcpflags] & tcp-syn != 0"))
    ['dport', 'ip_proto', 'sport', 'tcp_flags']
    >>> sorted(bpf_defining_columns("ether src 00:11:22:33:44:55 or src host 10.0.0.1"))
    ['dst_mac', 'ethertype', 'ip_src', 'src_mac']
    """
    out: set[str] = set()
    tokens = [(m.group(1).lower(), bool(m.group(2))) for m in _TOKENS.finditer(expression)]
    for i, (word, indexed) in enumerate(tokens):
        if indexed and word in _INDEX_COLUMNS:
            out |= _INDEX_COLUMNS[word]
        after = tokens[i + 1][0] if i + 1 < len(tokens) else ""
        before = tokens[i - 1][0] if i else ""
        if word in ("src", "dst") and (after in ("port", "portrange") or before == "ether"):
            continue  # "src port 80", "ether src ...": no IP address read
        if word in ("host", "net", "mask") and before in ("src", "dst", "ether"):
            continue  # "src host ...": only that side, already counted
        out |= _KEYWORD_COLUMNS.get(word, frozenset())
    return frozenset(out)


class RuleLabels(LabelProvider):
    """Labels from BPF rules: the first rule whose filter accepts a frame names it.

    Each expression is compiled by libpcap (``wirelearn.capture.BpfFilter``) when
    the provider is built, so a typo fails before any capture is read.

    Args:
        rules: ``(name, expression)`` pairs, or ``"NAME=BPF"`` strings, in priority order.
        default: the label of frames no rule accepts; None leaves them unlabelled.

    Raises:
        ConfigError: no rules, a bad name, or an expression libpcap refuses (``FilterError``).
    """

    name = "rules"

    def __init__(self, rules: Sequence[tuple[str, str] | str], default: str | None = None) -> None:
        from wirelearn.capture._bpf import BpfFilter  # libpcap is only needed with rules

        parsed: list[tuple[str, str]] = []
        for rule in rules:
            if isinstance(rule, str):
                parsed.append(parse_label_rule(rule))
            else:
                name, expr = rule
                parsed.append((_check_label_name(name, f"rule {name!r}"), expr))
        if not parsed:
            raise ConfigError("RuleLabels needs at least one NAME=BPF rule")
        self.rules = tuple(parsed)
        self.default = None if default is None else _check_label_name(default, "--default-label")
        self._filters = [BpfFilter(expr) for _, expr in self.rules]
        names = [n for n, _ in self.rules] + ([self.default] if self.default else [])
        self.classes = tuple(dict.fromkeys(names))
        columns: set[str] = set()
        for _, expr in self.rules:
            columns |= bpf_defining_columns(expr)
        self.defining_columns = frozenset(columns)

    def labels(self, fb: FeatureBatch, batch: FrameBatch) -> _OBJ:
        """The first matching rule's name per frame, else the default (or None)."""
        n = len(batch)
        out = _none(n)
        todo = np.ones(n, dtype=np.bool_)
        for (name, _), filt in zip(self.rules, self._filters, strict=True):
            if not todo.any():
                break
            hit = filt.mask(batch) & todo
            out[hit] = name
            todo &= ~hit
        if self.default is not None:
            out[todo] = self.default
        return out

    def __repr__(self) -> str:
        return f"RuleLabels({list(self.rules)!r}, default={self.default!r})"


# --- label files --------------------------------------------------------------------------------

_FRAME_HEADER: Final = ("frame", "label")
_RANGE_HEADER: Final = ("ts_start", "ts_end", "label")


def _seconds_to_ns(text: str) -> int | None:
    """Exact ns of a decimal seconds string (no float rounding), None if it is not a number."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    return int((value * 1_000_000_000).to_integral_value())


def _fast_frame_table(
    path: Path,
) -> tuple[NDArray[np.int64], NDArray[np.int64], tuple[str, ...]] | None:
    """``(frames, codes, classes)`` of a plain ``frame,label`` file, or None.

    The same result as the row-by-row reader, for files it can vouch for:
    no quotes, every row two fields, ASCII digit frame numbers >= 1, no empty
    label, no blank-field rows. Anything else (or any error) returns None, and
    the row-by-row reader decides, with its line-numbered messages.
    """
    import io

    import pandas as pd

    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    head, _, body = text.lstrip("\n").partition("\n")
    if '"' in text or tuple(c.strip().lower() for c in head.split(",")) != _FRAME_HEADER:
        return None
    if not body.strip():
        return None
    try:
        # Frame numbers parsed as int64 by pandas only where Python's int() would
        # accept them too (it rejects signs' odd cousins, decimals, underscores...).
        table = pd.read_csv(
            io.StringIO(body),
            header=None,
            names=["frame", "label"],
            dtype={"frame": np.int64, "label": object},
            na_filter=False,
            skip_blank_lines=True,
            engine="c",
            quoting=3,  # csv.QUOTE_NONE: there are no quotes
        )
    except (ValueError, OverflowError, pd.errors.ParserError):
        return None
    frames = table["frame"].to_numpy()
    if frames.dtype != np.int64 or not len(frames) or (frames < 1).any():
        return None
    # Labels hashed as they are, then stripped once per distinct label: labels that
    # differ only by spaces merge, in order of first appearance.
    raw_codes, raw_uniq = pd.factorize(table["label"].to_numpy(), sort=False)
    if (raw_codes < 0).any():
        return None
    names: dict[str, int] = {}
    remap = np.array(
        [names.setdefault(str(u).strip(), len(names)) for u in raw_uniq], dtype=np.int64
    )
    if "" in names:
        return None
    return frames, remap[raw_codes], tuple(names)


class FileLabels(LabelProvider):
    """Per-frame labels read from a CSV file, as published IDS data sets provide them.

    Two layouts, told apart by the header line:

    * ``frame,label``: 1-based frame numbers (as tshark and Wireshark number
      frames). A frame listed twice keeps its first label.
    * ``ts_start,ts_end,label``: time ranges in float epoch seconds (parsed
      exactly, to the nanosecond); a frame is in a range when
      ``ts_start <= ts < ts_end`` (inclusive start, exclusive end, so adjacent
      ranges never share a frame). Where ranges overlap, the first in the file wins.

    Frames the file does not cover are unlabelled (None). Blank lines are
    skipped; labels are stripped of surrounding spaces. ``classes`` lists the
    file's labels in order of first appearance. Lookups are ``numpy.searchsorted``
    over the whole batch.

    Args:
        path: the CSV file.

    Raises:
        ConfigError: the file cannot be read, has an unknown header, a bad number,
            an empty label, a wrong number of fields, or a range that ends before it
            starts; the message names the file and line.
    """

    name = "labels"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.kind: str = "frame"
        self._frames = np.zeros(0, dtype=np.int64)
        self._bounds = np.zeros(0, dtype=np.int64)
        self._codes = np.zeros(0, dtype=np.int64)
        names: dict[str, int] = {}
        where = str(self.path)
        fast = _fast_frame_table(self.path)
        if fast is not None:
            # A plain, well-formed frame,label file (the common, large case): read in
            # one vectorized pass; anything else takes the row-by-row path below.
            frames, codes_first, self.classes = fast
            self._names = np.empty(len(self.classes), dtype=object)
            self._names[:] = self.classes
            self._frames, first = np.unique(frames, return_index=True)
            self._codes = codes_first[first]
            return
        try:
            with self.path.open(newline="", encoding="utf-8-sig") as fh:
                rows = [(i + 1, row) for i, row in enumerate(csv.reader(fh)) if any(row)]
        except FileNotFoundError as exc:
            raise ConfigError("label file not found", path=where) from exc
        except IsADirectoryError as exc:
            raise ConfigError("is a directory, not a label file", path=where) from exc
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ConfigError(f"cannot read label file: {exc}", path=where) from exc
        if not rows:
            raise ConfigError(
                "empty label file; expected a header 'frame,label' or 'ts_start,ts_end,label'",
                path=where,
            )
        line, header = rows[0]
        fields = tuple(c.strip().lower() for c in header)
        if fields == _FRAME_HEADER:
            self.kind = "frame"
        elif fields == _RANGE_HEADER:
            self.kind = "ranges"
        else:
            raise ConfigError(
                f"line {line}: unknown header {','.join(header)!r};"
                " expected 'frame,label' or 'ts_start,ts_end,label'",
                path=where,
            )
        width = len(fields)
        numbers: list[list[int]] = []
        codes: list[int] = []
        for line, row in rows[1:]:
            if len(row) != width:
                raise ConfigError(
                    f"line {line}: expected {width} fields ({','.join(fields)}), got {len(row)}",
                    path=where,
                )
            label = row[-1].strip()
            if not label:
                raise ConfigError(f"line {line}: empty label", path=where)
            if self.kind == "frame":
                text = row[0].strip()
                try:
                    frame = int(text)
                except ValueError:
                    frame = 0
                if frame < 1:
                    raise ConfigError(
                        f"line {line}: bad frame number {text!r} (frames are numbered from 1)",
                        path=where,
                    )
                numbers.append([frame])
            else:
                start, end = _seconds_to_ns(row[0]), _seconds_to_ns(row[1])
                for value, text in ((start, row[0]), (end, row[1])):
                    if value is None:
                        raise ConfigError(
                            f"line {line}: bad number {text.strip()!r} (epoch seconds expected)",
                            path=where,
                        )
                assert start is not None and end is not None
                if end < start:
                    raise ConfigError(
                        f"line {line}: ts_end {row[1].strip()} is before ts_start {row[0].strip()}",
                        path=where,
                    )
                numbers.append([start, end])
            codes.append(names.setdefault(label, len(names)))
        self.classes = tuple(names)
        self._names = np.empty(len(self.classes), dtype=object)
        self._names[:] = self.classes
        table = np.array(numbers, dtype=np.int64).reshape(len(numbers), width - 1)
        code = np.array(codes, dtype=np.int64)
        if self.kind == "frame":
            # np.unique returns each frame's first occurrence: the first label in the file wins.
            self._frames, first = np.unique(table[:, 0], return_index=True)
            self._codes = code[first]
        else:
            self._paint(table[:, 0], table[:, 1], code)

    def _paint(
        self, start: NDArray[np.int64], end: NDArray[np.int64], code: NDArray[np.int64]
    ) -> None:
        """Cut time at every range boundary and give each piece the first range covering it."""
        self._bounds = np.unique(np.concatenate([start, end]))
        self._codes = np.full(max(len(self._bounds) - 1, 0), -1, dtype=np.int64)
        lo = np.searchsorted(self._bounds, start)
        hi = np.searchsorted(self._bounds, end)
        # Painted last to first, so that the first range in the file is on top. A loop
        # over the file's ranges (once, at load), never over frames.
        for i in range(len(code) - 1, -1, -1):
            self._codes[lo[i] : hi[i]] = code[i]

    def labels(self, fb: FeatureBatch, batch: FrameBatch) -> _OBJ:
        """The file's label for each frame (by frame number or time), None where it has none."""
        n = len(fb)
        out = _none(n)
        if not len(self._codes) or n == 0:
            return out
        if self.kind == "frame":
            pos = np.searchsorted(self._frames, fb.frame)
            pos = np.minimum(pos, len(self._frames) - 1)
            hit = self._frames[pos] == fb.frame
            out[hit] = self._names[self._codes[pos[hit]]]
            return out
        piece = np.searchsorted(self._bounds, fb.ts_ns, side="right") - 1
        inside = (piece >= 0) & (piece < len(self._codes))
        code = np.full(n, -1, dtype=np.int64)
        code[inside] = self._codes[piece[inside]]
        hit = code >= 0
        out[hit] = self._names[code[hit]]
        return out

    def __repr__(self) -> str:
        return f"FileLabels({str(self.path)!r})"


# --- anomaly ------------------------------------------------------------------------------------


class AnomalyTarget(LabelProvider):
    """No target to learn: the anomaly detector scores every frame unsupervised.

    Without a reference every frame is unlabelled. With one (a label file or
    rules), its labels are passed through for reporting only (ROC AUC,
    precision and recall of the anomaly alerts against "not the normal label");
    ``learnable`` is False, so no classifier learns from them.

    Args:
        reference: the provider of the reporting labels, or None.
    """

    name = "anomaly"
    learnable = False

    def __init__(self, reference: LabelProvider | None = None) -> None:
        self.reference = reference
        self.classes = None if reference is None else reference.classes

    def labels(self, fb: FeatureBatch, batch: FrameBatch) -> _OBJ:
        """The reference labels (for reporting only), or None for every frame."""
        if self.reference is None:
            return _none(len(fb))
        return self.reference.labels(fb, batch)

    def __repr__(self) -> str:
        return f"AnomalyTarget({self.reference!r})"


def make_label_provider(
    target: str | None = None,
    rules: Iterable[str | tuple[str, str]] = (),
    default_label: str | None = None,
    labels_path: str | Path | None = None,
) -> LabelProvider:
    """The label provider for the command-line options, refusing combinations that conflict.

    Args:
        target: ``--target``: ``service``, ``anomaly``, ``labels`` (needs
            ``labels_path``), ``rules`` (needs ``rules``), or None to infer: a label
            file, else rules, else ``service``.
        rules: ``--label-rule`` values (``"NAME=BPF"``) or ``(name, expression)`` pairs.
        default_label: ``--default-label``, only with rules.
        labels_path: ``--labels FILE.csv``.

    Raises:
        ConfigError: an unknown target or a combination that makes no sense
            (the message says why and what to do).
    """
    rules = list(rules)
    if target is not None and target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}; valid targets: {', '.join(TARGETS)}")
    if default_label is not None and not rules:
        raise ConfigError("--default-label only applies with --label-rule")
    if rules and labels_path is not None:
        raise ConfigError(
            "use either --labels or --label-rule, not both: each defines the labels on its own"
        )
    if target == "service":
        if rules or labels_path is not None:
            raise ConfigError(
                "--target service derives its labels from ethertype, IP protocol and ports;"
                " it cannot take --labels or --label-rule (drop --target to learn those"
                " labels, or use --target anomaly to score the anomaly detector against them)"
            )
        return ServiceTarget()
    if target == "labels" and labels_path is None:
        raise ConfigError("--target labels needs --labels FILE.csv")
    if target == "rules" and not rules:
        raise ConfigError("--target rules needs at least one --label-rule NAME=BPF")
    given: LabelProvider | None = None
    if labels_path is not None:
        given = FileLabels(labels_path)
    elif rules:
        given = RuleLabels(rules, default=default_label)
    if target == "anomaly":
        return AnomalyTarget(given)
    return given if given is not None else ServiceTarget()
