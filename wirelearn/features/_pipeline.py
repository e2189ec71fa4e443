"""From decoded columns to the model's input matrix: named features, state, scaling.

``FeaturePipeline.transform(fb)`` turns one ``FeatureBatch`` into a ``float32``
matrix ``(n, d)`` whose columns are ``feature_names``. Every feature is named
in ``AVAILABLE_FEATURES`` together with the ``FeatureBatch`` columns it is
derived from, so that a label provider can say "my target is defined by
``sport``/``dport``" and every feature derived from them (port classes, flow
statistics, ...) is left out of the model's input.

Order of the stateful steps, once per batch: the damped statistics are updated
with the batch (each frame's statistics include itself and earlier frames,
never later ones), then the scaler's moments are updated with the batch's
frames among the first ``scale_frames`` of the stream (``partial_fit``; after
those they stay fixed), then the batch is scaled with those moments. So the
first batch is already well scaled; scaling is the one place where a frame sees
the aggregate moments of its own batch, which carries no label information.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import numpy as np
from numpy.typing import NDArray

from wirelearn.errors import ConfigError
from wirelearn.features._mac import MacEncoder, mac_features
from wirelearn.features._scale import OnlineScaler
from wirelearn.features._schema import COLUMNS, STATUS_MALFORMED, STATUS_TRUNCATED, FeatureBatch
from wirelearn.features._stats import DEFAULT_LAMBDAS, TrafficStats

__all__ = ["AVAILABLE_FEATURES", "SOURCE_COLUMNS", "FeaturePipeline", "FeatureSpec"]

_F64 = NDArray[np.float64]
#: A computed feature: float64 values, or a 0/1 feature as bools (cast once, where it is stored).
_Col = NDArray[np.float64] | NDArray[np.bool_]

#: Rows whose statistics are computed at a time once the scaler is fixed: the temporaries
#: of a whole 65,536-frame batch would be tens of megabytes.
CHUNK_ROWS: Final = 16384

#: The ``FeatureBatch`` columns features can derive from (``ts`` is ``ts_ns``).
SOURCE_COLUMNS: Final[tuple[str, ...]] = (*COLUMNS, "status")


@dataclass(frozen=True)
class FeatureSpec:
    """One named model input.

    Attributes:
        name: the feature name (a column of the model's input).
        sources: the ``FeatureBatch`` columns it is derived from.
        family: which computation produces it (features of one family are computed together).
        description: one line for ``--list-features`` and docs.
    """

    name: str
    sources: frozenset[str]
    family: str
    description: str


def _specs() -> dict[str, FeatureSpec]:
    out: dict[str, FeatureSpec] = {}

    def add(name: str, sources: Iterable[str], family: str, description: str) -> None:
        out[name] = FeatureSpec(name, frozenset(sources), family, description)

    add("frame_len", ["frame_len"], "frame", "log(1 + length on the wire)")
    add("payload_len", ["payload_len"], "frame", "log(1 + bytes after the link header)")
    add("snapped", ["cap_len", "frame_len"], "frame", "1 if fewer bytes were captured than sent")
    add("has_vlan", ["vlan"], "frame", "1 if the frame carries a VLAN tag")
    for name, what in [
        ("eth_ip", "IPv4 or IPv6"),
        ("eth_arp", "ARP"),
        ("eth_llc", "an IEEE 802.3 length (LLC frame)"),
        ("eth_other", "any other ethertype"),
    ]:
        add(name, ["ethertype"], "frame", f"1 if the ethertype is {what}")
    add("ipv4", ["ip_version"], "frame", "1 if the frame carries IPv4")
    add("ipv6", ["ip_version"], "frame", "1 if the frame carries IPv6")
    for name, what in [
        ("proto_tcp", "TCP"),
        ("proto_udp", "UDP"),
        ("proto_icmp", "ICMP or ICMPv6"),
        ("proto_other", "another IP protocol"),
    ]:
        add(name, ["ip_proto"], "frame", f"1 if the IP protocol is {what}")
    add("ttl", ["ttl"], "frame", "TTL / hop limit, divided by 255")
    add("ttl_initial", ["ttl"], "frame", "likely initial TTL (32, 64, 128 or 255), divided by 255")
    add("ttl_hops", ["ttl"], "frame", "likely initial TTL minus TTL: hops travelled")
    for bit, flag in enumerate(["fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr"]):
        add(f"tcp_{flag}", ["tcp_flags"], "frame", f"TCP {flag.upper()} flag (bit {bit})")
    add("tcp_syn_only", ["tcp_flags"], "frame", "1 for a SYN without ACK (connection attempt)")
    for side in ("sport", "dport"):
        add(f"{side}_log", [side], "frame", f"log(1 + {side}) / log(65536)")
        add(f"{side}_wellknown", [side], "frame", f"1 if {side} < 1024")
        add(f"{side}_registered", [side], "frame", f"1 if 1024 <= {side} < 49152")
        add(f"{side}_ephemeral", [side], "frame", f"1 if {side} >= 49152")
    add("port_min_log", ["sport", "dport"], "frame", "log(1 + min(sport, dport)) / log(65536)")
    add("src_ip_private", ["ip_src"], "frame", "1 if the source IP is private/link-local/ULA")
    add("dst_ip_private", ["ip_dst"], "frame", "1 if the destination IP is private/link-local/ULA")
    add("dst_ip_multicast", ["ip_dst"], "frame", "1 if the destination IP is multicast")
    add("dst_ip_broadcast", ["ip_dst"], "frame", "1 if the destination IP is 255.255.255.255")
    add("status_truncated", ["status"], "frame", "1 if a header was cut short by the capture")
    add("status_malformed", ["status"], "frame", "1 if a header is impossible")
    for side, col in (("src", "src_mac"), ("dst", "dst_mac")):
        add(f"{side}_mac_oui", [col], "mac", f"{side} MAC vendor (OUI) hashed into [0, 1)")
        add(f"{side}_mac_multicast", [col], "mac", f"1 if the {side} MAC is a group address")
        add(f"{side}_mac_local", [col], "mac", f"1 if the {side} MAC is locally administered")
    add("dst_mac_broadcast", ["dst_mac"], "mac", "1 if the destination MAC is broadcast")

    src = {"ip_src", "src_mac", "ts"}
    dst = {"ip_dst", "dst_mac", "ts"}
    both = src | dst
    stat_sources: dict[str, set[str]] = {
        "src_iat": src,
        "src_first_dport": src | {"dport"},
        "src_rate": src,
        "src_byterate": src | {"frame_len"},
        "src_size_mean": src | {"frame_len"},
        "src_size_std": src | {"frame_len"},
        "src_new_dports": src | {"dport"},
        "src_new_dsts": both,
        "dst_rate": dst,
        "dst_syn_ratio": dst | {"tcp_flags"},
        "dst_new_srcs": both,
        "chan_iat": both,
        "chan_first": both,
        "chan_rate": both,
        "flow_iat": both | {"ip_proto", "sport", "dport", "ethertype"},
        "flow_first": both | {"ip_proto", "sport", "dport", "ethertype"},
        "flow_rate": both | {"ip_proto", "sport", "dport", "ethertype"},
    }
    descriptions = {
        "iat": "log10 of seconds since the previous frame of the same {k}",
        "first": "1 for the first frame of a new {k}",
        "first_dport": "1 when the source contacts this destination port for the first time",
        "rate": "log(1 + damped frames/s of the {k})",
        "byterate": "log(1 + damped bytes/s sent by the source)",
        "size_mean": "damped mean frame length sent by the source",
        "size_std": "damped standard deviation of the frame lengths sent by the source",
        "new_dports": "log(1 + damped rate of destination ports new to the source)",
        "new_dsts": "log(1 + damped rate of destination hosts new to the source)",
        "syn_ratio": "damped share of SYN-only frames received by the destination",
        "new_srcs": "log(1 + damped rate of source hosts new to the destination)",
    }
    kinds = {"src": "source host", "dst": "destination host", "chan": "host pair", "flow": "flow"}
    stats = TrafficStats(DEFAULT_LAMBDAS)
    for group, names in stats.names_by_group().items():
        for name in names:
            base = name.split("_l")[0] if "_l" in name else name
            prefix, _, what = base.partition("_")
            text = descriptions[what].format(k=kinds[prefix])
            if base != name:
                text += f" (decay {name.rsplit('_l', 1)[1]}/s)"
            add(name, stat_sources[base], f"stats:{group}", text)
    return out


#: Every feature the pipeline can compute, by name, in default order.
AVAILABLE_FEATURES: Final[Mapping[str, FeatureSpec]] = MappingProxyType(_specs())

_LOG_PORT = math.log(65536.0)


def _with_null(values: _F64, null: NDArray[np.bool_]) -> _F64:
    values[null] = np.nan
    return values


def _words(ip: NDArray[np.uint8], dtype: str) -> NDArray[np.unsignedinteger]:
    """The ``uint8[n, 16]`` addresses as ``(n, 16 / size)`` words of ``dtype`` (no copy)."""
    words: NDArray[np.unsignedinteger] = np.ascontiguousarray(ip, dtype=np.uint8).view(dtype)
    return words


def _private(version: NDArray[np.integer], ip: NDArray[np.uint8]) -> NDArray[np.bool_]:
    """RFC 1918 / loopback / link-local IPv4, and loopback / link-local / ULA IPv6."""
    a, b = ip[:, 0], ip[:, 1]
    v4 = (a == 10) | ((a == 172) & (b & 0xF0 == 16)) | ((a == 192) & (b == 168))
    v4 |= (a == 127) | ((a == 169) & (b == 254))
    v6 = ((a & 0xFE) == 0xFC) | ((a == 0xFE) & (b & 0xC0 == 0x80))
    # ::1, compared as two 64-bit words (byte 15 is the top byte of the second, little-endian).
    words = _words(ip, "<u8")
    v6 |= (words[:, 0] == 0) & (words[:, 1] == np.uint64(1 << 56))
    out: NDArray[np.bool_] = ((version == 4) & v4) | ((version == 6) & v6)
    return out


def _frame_family(fb: FeatureBatch, want: set[str]) -> Iterator[tuple[str, _Col]]:
    """The per-frame features (no state), each yielded as soon as it is computed."""

    def need(*names: str) -> bool:
        return any(x in want for x in names)

    if need("frame_len"):
        yield "frame_len", np.log1p(fb.frame_len.astype(np.float64))
    if need("payload_len"):
        pl = fb.payload_len.astype(np.float64)
        yield "payload_len", _with_null(np.log1p(np.maximum(pl, 0.0)), pl < 0)
    if need("snapped"):
        yield "snapped", fb.cap_len < fb.frame_len
    if need("has_vlan"):
        yield "has_vlan", fb.vlan >= 0
    if need("eth_ip", "eth_arp", "eth_llc", "eth_other"):
        et = fb.ethertype
        is_ip = (et == 0x0800) | (et == 0x86DD)
        arp = et == 0x0806
        llc = (et >= 0) & (et < 0x0600)
        yield "eth_ip", is_ip
        yield "eth_arp", arp
        yield "eth_llc", llc
        yield "eth_other", (et >= 0x0600) & ~is_ip & ~arp
    if need("ipv4", "ipv6"):
        yield "ipv4", fb.ip_version == 4
        yield "ipv6", fb.ip_version == 6
    if need("proto_tcp", "proto_udp", "proto_icmp", "proto_other"):
        p = fb.ip_proto
        icmp = (p == 1) | (p == 58)
        yield "proto_tcp", p == 6
        yield "proto_udp", p == 17
        yield "proto_icmp", icmp
        yield "proto_other", (p >= 0) & (p != 6) & (p != 17) & ~icmp
    if need("ttl", "ttl_initial", "ttl_hops"):
        ttl = fb.ttl.astype(np.float64)
        null = ttl < 0
        initial = np.select([ttl <= 32, ttl <= 64, ttl <= 128], [32.0, 64.0, 128.0], 255.0)
        yield "ttl", _with_null(ttl / 255.0, null)
        yield "ttl_initial", _with_null(initial / 255.0, null)
        yield "ttl_hops", _with_null(initial - ttl, null)
    flags = fb.tcp_flags
    has_flags = flags >= 0
    for bit, flag in enumerate(["fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr"]):
        if need(f"tcp_{flag}"):
            yield f"tcp_{flag}", has_flags & ((flags >> bit) & 1 == 1)
    if need("tcp_syn_only"):
        yield "tcp_syn_only", has_flags & ((flags & 0x12) == 0x02)
    for side in ("sport", "dport"):
        port = getattr(fb, side).astype(np.int64)
        null = port < 0
        if need(f"{side}_log"):
            yield f"{side}_log", _with_null(np.log1p(np.maximum(port, 0)) / _LOG_PORT, null)
        if need(f"{side}_wellknown", f"{side}_registered", f"{side}_ephemeral"):
            yield f"{side}_wellknown", ~null & (port < 1024)
            yield f"{side}_registered", (port >= 1024) & (port < 49152)
            yield f"{side}_ephemeral", port >= 49152
    if need("port_min_log"):
        sp, dp = fb.sport.astype(np.int64), fb.dport.astype(np.int64)
        low = np.where(sp < 0, dp, np.where(dp < 0, sp, np.minimum(sp, dp)))
        yield "port_min_log", _with_null(np.log1p(np.maximum(low, 0)) / _LOG_PORT, low < 0)
    if need("src_ip_private"):
        ok = fb.ip_src_valid
        yield "src_ip_private", ok & _private(fb.ip_version, fb.ip_src)
    if need("dst_ip_private", "dst_ip_multicast", "dst_ip_broadcast"):
        ok = fb.ip_dst_valid
        ip, v = fb.ip_dst, fb.ip_version
        yield "dst_ip_private", ok & _private(v, ip)
        multicast = ((v == 4) & (ip[:, 0] & 0xF0 == 0xE0)) | ((v == 6) & (ip[:, 0] == 0xFF))
        yield "dst_ip_multicast", ok & multicast
        yield "dst_ip_broadcast", ok & (v == 4) & (_words(ip, "<u4")[:, 0] == 0xFFFFFFFF)
    if need("status_truncated", "status_malformed"):
        yield "status_truncated", fb.status == STATUS_TRUNCATED
        yield "status_malformed", fb.status == STATUS_MALFORMED


def _mac_family(fb: FeatureBatch, want: set[str], seed: int) -> Iterator[tuple[str, _Col]]:
    for side in ("src", "dst"):
        names = [x for x in want if x.startswith(f"{side}_mac_")]
        if names:
            feats = mac_features(getattr(fb, f"{side}_mac"), seed=seed)
            for name in names:
                yield name, feats[name.removeprefix(f"{side}_mac_")]


_INV_LN10 = 1.0 / math.log(10.0)


def _stat_transform(name: str, values: _F64) -> _F64:
    """Heavy-tailed statistics on a log scale; shares and means as they are (in place).

    ``log(1 + x)`` and ``log(x) / ln 10`` are computed with ``numpy.log``, which is
    two to four times faster than ``log1p``/``log10``; they differ from those by
    about 1e-16 in absolute terms (``log(1 + x)`` is 0 below ``x`` of 1e-16), far
    below what the ``float32`` model input resolves.
    """
    base = name.split("_l")[0] if "_l" in name else name
    if base.endswith("_iat"):
        values += 1e-6
        np.log(values, out=values)
        values *= _INV_LN10
        return values
    if base.endswith(("_rate", "_byterate", "_new_dports", "_new_dsts", "_new_srcs")):
        values += 1.0
        return np.log(values, out=values)
    return values


class FeaturePipeline:
    """Turn ``FeatureBatch``\\ es into scaled ``float32`` model inputs, keeping state across batches.

    Args:
        features: the feature names to compute, in this order; None for every
            feature in ``AVAILABLE_FEATURES``.
        exclude: ``FeatureBatch`` columns (``SOURCE_COLUMNS``) that define the
            target: every feature derived from one is left out. Feature names
            are accepted too and leave out just that feature.
        seed: salt of the MAC vendor hash (``mac_features``).
        max_keys: the bound of every statistics table and of the MAC encoder.
        scale: standardise the columns online (``OnlineScaler``); False passes
            raw values through (nulls as 0.0).
        clip: clip scaled values to ``[-clip, clip]``; None for no clipping.
        scale_frames: learn the scaling moments from exactly the first this many
            frames, then keep them fixed; None keeps learning forever. Fixed
            moments keep the model's input space still: a flood that doubles a
            rate's running mean would otherwise move every frame's scaled value
            under an online model's feet. Kitsune likewise learns its
            normalisation during its grace period, and the command line sets
            this to the anomaly detector's grace, so both learn "normal" from
            the same frames.
        missing_indicators: add a 0/1 ``missing_<name>`` column per feature that
            can be null.

    Raises:
        ConfigError: an unknown feature or column name (the message lists the
            valid ones), a requested feature that ``exclude`` removes, or no
            feature left.
    """

    def __init__(
        self,
        features: Sequence[str] | None = None,
        exclude: Iterable[str] = (),
        *,
        seed: int = 0,
        max_keys: int = 65536,
        scale: bool = True,
        clip: float | None = 10.0,
        scale_frames: int | None = 10_000,
        missing_indicators: bool = False,
    ) -> None:
        if scale_frames is not None and int(scale_frames) < 1:
            raise ConfigError(f"scale_frames must be at least 1 or None, not {scale_frames}")
        if isinstance(features, str):
            raise ConfigError("features must be a sequence of names, not one string")
        self.scale_frames = None if scale_frames is None else int(scale_frames)
        self._scaled = 0
        self.features = None if features is None else tuple(features)
        self.exclude = tuple(exclude)
        self.seed = int(seed)
        self.max_keys = int(max_keys)
        self.scale = bool(scale)
        self.clip = clip
        self.missing_indicators = bool(missing_indicators)
        if self.features is not None and not self.features:
            raise ConfigError("features is empty; leave it out (None) for every feature")

        valid_columns = set(SOURCE_COLUMNS) | {"ts_ns"}
        for name in self.exclude:
            if name not in valid_columns and name not in AVAILABLE_FEATURES:
                raise ConfigError(
                    f"cannot exclude unknown column {name!r}; valid columns: "
                    + ", ".join(SOURCE_COLUMNS)
                )
        columns = {"ts" if c == "ts_ns" else c for c in self.exclude}
        if self.features is None:
            chosen = list(AVAILABLE_FEATURES)
        else:
            unknown = [x for x in self.features if x not in AVAILABLE_FEATURES]
            if unknown:
                raise ConfigError(
                    f"unknown feature {unknown[0]!r}; valid features: "
                    + ", ".join(AVAILABLE_FEATURES)
                )
            if len(set(self.features)) != len(self.features):
                raise ConfigError("features lists a name twice")
            chosen = list(self.features)
        removed = [x for x in chosen if x in columns or AVAILABLE_FEATURES[x].sources & columns]
        if self.features is not None and removed:
            spec = AVAILABLE_FEATURES[removed[0]]
            clash = sorted(spec.sources & columns) or [removed[0]]
            raise ConfigError(
                f"feature {removed[0]!r} derives from {', '.join(clash)}, which the target"
                " is defined by; leave it out of the feature list"
            )
        self.feature_names: tuple[str, ...] = tuple(x for x in chosen if x not in removed)
        if not self.feature_names:
            raise ConfigError("no features left after excluding " + ", ".join(self.exclude))

        families = {AVAILABLE_FEATURES[x].family for x in self.feature_names}
        groups = [f.split(":", 1)[1] for f in sorted(families) if f.startswith("stats:")]
        self._want = set(self.feature_names)
        self._families: list[Callable[[FeatureBatch], Iterator[tuple[str, _Col]]]] = []
        if "frame" in families:
            self._families.append(lambda fb: _frame_family(fb, self._want))
        if "mac" in families:
            self._families.append(lambda fb: _mac_family(fb, self._want, self.seed))
        self.stats: TrafficStats | None = None
        if groups:
            self.stats = TrafficStats(DEFAULT_LAMBDAS, max_keys=self.max_keys, groups=groups)
            self._families.append(self._stats_family)
        nullable = [i for i, x in enumerate(self.feature_names) if _can_be_null(x)]
        self.scaler = OnlineScaler(
            missing_indicators=nullable if self.missing_indicators else False, clip=clip
        )
        self.mac_encoder = MacEncoder(self.max_keys)
        self._work = np.empty((len(self.feature_names), 0), dtype=np.float64)

    def __repr__(self) -> str:
        feats = "None" if self.features is None else f"[{len(self.features)} names]"
        return (
            f"FeaturePipeline(features={feats}, exclude={list(self.exclude)!r},"
            f" seed={self.seed}, max_keys={self.max_keys}, scale={self.scale},"
            f" clip={self.clip!r}, scale_frames={self.scale_frames!r},"
            f" missing_indicators={self.missing_indicators})"
        )

    def clone(self) -> FeaturePipeline:
        """A fresh pipeline with the same configuration and no state."""
        return FeaturePipeline(
            self.features,
            self.exclude,
            seed=self.seed,
            max_keys=self.max_keys,
            scale=self.scale,
            clip=self.clip,
            scale_frames=self.scale_frames,
            missing_indicators=self.missing_indicators,
        )

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the columns ``transform`` returns (features, then any indicators)."""
        return tuple(self.scaler.feature_names_out(self.feature_names))

    def _stats_family(self, fb: FeatureBatch) -> Iterator[tuple[str, _Col]]:
        assert self.stats is not None
        raw = self.stats.update(fb)
        for k, v in raw.items():
            if k in self._want:
                yield k, _stat_transform(k, v)

    def raw(self, fb: FeatureBatch) -> _F64:
        """The unscaled features ``(n, d)`` ``float64``, NaN for nulls; updates the statistics."""
        return self._fill(fb, np.empty((len(self.feature_names), len(fb)), dtype=np.float64))

    def _columns(self, fb: FeatureBatch) -> Iterator[_Col]:
        """Every feature of the batch (updating the statistics), in ``feature_names`` order.

        Each is computed as late as its place in the order allows, so that a consumer
        that uses it at once finds it in the cache (with the default order, features
        come out exactly as the families compute them).
        """
        produced = itertools.chain.from_iterable(family(fb) for family in self._families)
        ready: dict[str, _Col] = {}
        for name in self.feature_names:
            while name not in ready:
                key, col = next(produced)
                ready[key] = col
            yield ready.pop(name)
        # Run every family to its end (the statistics must see every batch).
        for _ in produced:
            pass

    def _fill(self, fb: FeatureBatch, out: _F64) -> _F64:
        """Compute every feature into ``out`` ``(d, >= n)``; returns its ``(n, d)`` transpose."""
        # Filled feature by feature into (d, n) rows, returned as the (n, d) transpose.
        n = len(fb)
        for j, col in enumerate(self._columns(fb)):
            out[j, :n] = col
        raw: _F64 = out[:, :n].T
        return raw

    def transform(self, fb: FeatureBatch) -> NDArray[np.float32]:
        """The model input for a batch, ``float32 (n, len(output_names))``, always finite.

        Updates the statistics with the batch, then (during the first
        ``scale_frames`` frames) the scaler's moments, then scales (see the
        module docstring). The array is column-major (each feature's values are
        contiguous, which is how it is built); ``numpy.ascontiguousarray`` gives
        a row-major copy if a consumer needs one.
        """
        return self._transform(fb)

    def _transform(self, fb: FeatureBatch) -> NDArray[np.float32]:
        """``transform``; the batch that fixes the scaling moments calls it twice (head, tail).

        Not through ``transform``: a timer wrapped around that (the benchmarks
        wrap it) would count the head and the tail twice.
        """
        if self.scale:
            if (
                self.scale_frames is not None
                and self._scaled >= self.scale_frames
                and not self.missing_indicators
            ):
                # The moments are fixed: scale each feature as it comes, while it is in
                # the cache, with no (n, d) float64 matrix at all.
                if self._work.size:  # nor keep the one used until now
                    self._work = np.empty((len(self.feature_names), 0), dtype=np.float64)
                d = len(self.feature_names)
                if len(fb) <= CHUNK_ROWS:
                    return self.scaler.transform_columns(self._columns(fb), len(fb), d)
                # In row chunks: the statistics' temporaries are a chunk's, not a batch's.
                out = np.empty((len(fb), d), dtype=np.float32, order="F")
                for i in range(0, len(fb), CHUNK_ROWS):
                    part = fb.slice(i, i + CHUNK_ROWS)
                    out[i : i + len(part)] = self.scaler.transform_columns(
                        self._columns(part), len(part), d
                    )
                return out
            if self.scale_frames is not None and 0 < self.scale_frames - self._scaled < len(fb):
                # The frames that fix the moments, then the rest (in chunks) with them fixed.
                take = self.scale_frames - self._scaled
                head = self._transform(fb.slice(0, take))
                tail = self._transform(fb.slice(take, len(fb)))
                out = np.empty((len(fb), head.shape[1]), dtype=np.float32, order="F")
                out[:take], out[take:] = head, tail
                return out
            # One work buffer per pipeline, scaled in place: fresh multi-megabyte arrays
            # for every batch cost page faults.
            if self._work.shape[1] < len(fb):
                self._work = np.empty((len(self.feature_names), len(fb)), dtype=np.float64)
            raw = self._fill(fb, self._work)
            if self.scale_frames is None:
                return self.scaler.fit_transform(raw, copy=False)
            if self._scaled < self.scale_frames:  # the whole batch is within them (see above)
                self._scaled += len(raw)
                return self.scaler.fit_transform(raw, copy=False)
            return self.scaler.transform(raw, copy=False)
        raw = self.raw(fb)
        out = np.where(np.isfinite(raw), raw, 0.0)
        if self.clip is not None:
            np.clip(out, -self.clip, self.clip, out=out)
        if self.missing_indicators:
            out = np.concatenate([out, self._indicators(raw)], axis=1)
        return out.astype(np.float32)

    def _indicators(self, raw: _F64) -> _F64:
        cols = [i for i, x in enumerate(self.feature_names) if _can_be_null(x)]
        return (~np.isfinite(raw[:, cols])).astype(np.float64)

    def mac_codes(self, fb: FeatureBatch) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """First-seen display codes ``(dst_codes, src_codes)`` for the dashboard (-1 for null).

        Codes follow the order addresses first appear in the stream (source
        before destination within a frame); calling this again for the same
        batch gives the same codes. Models never see these codes.
        """
        pairs = np.stack([fb.src_mac, fb.dst_mac], axis=1).reshape(-1)
        codes = self.mac_encoder.encode(pairs).reshape(-1, 2)
        return codes[:, 1].copy(), codes[:, 0].copy()


def _can_be_null(name: str) -> bool:
    """Whether a feature can be NaN (those are the ones that get a missing indicator)."""
    spec = AVAILABLE_FEATURES[name]
    if spec.family != "frame":
        return True
    return name in {
        "payload_len",
        "ttl",
        "ttl_initial",
        "ttl_hops",
        "sport_log",
        "dport_log",
        "port_min_log",
    }
