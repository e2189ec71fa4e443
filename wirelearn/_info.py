"""``wirelearn info``: a capinfos-like summary of a capture, computed batch by batch."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TextIO

import numpy as np

from wirelearn.capture._batch import linktype_name
from wirelearn.capture._reader import open_capture
from wirelearn.errors import WirelearnError
from wirelearn.features._decode import decode
from wirelearn.features._mac import vendor_names
from wirelearn.features._schema import STATUS_MALFORMED, STATUS_TRUNCATED, STATUS_UNDECODED
from wirelearn.features._text import ip_to_text, mac_to_text
from wirelearn.features._traffic import TrafficCounter

__all__ = ["CaptureInfo", "print_info", "summarize"]


@dataclass
class CaptureInfo:
    """What ``wirelearn info`` reports about one capture."""

    path: str
    format: str | None = None
    compressed: bool = False
    file_size: int | None = None
    linktypes: dict[str, int] = field(default_factory=dict)
    interfaces: int = 0
    frames: int = 0
    bytes: int = 0
    wire_bytes: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    ethertypes: list[tuple[str, int]] = field(default_factory=list)
    ip_protos: list[tuple[str, int]] = field(default_factory=list)
    top_macs: list[tuple[str, str | None, int, int]] = field(default_factory=list)
    top_ips: list[tuple[str, int, int]] = field(default_factory=list)
    truncated: int = 0
    malformed: int = 0
    undecoded: int = 0
    undecoded_linktypes: dict[str, int] = field(default_factory=dict)
    truncated_records: int = 0
    warnings: list[str] = field(default_factory=list)
    error: WirelearnError | None = None

    @property
    def duration(self) -> float:
        """Seconds between the first and the last frame."""
        if self.first_ts is None or self.last_ts is None:
            return 0.0
        return max(0.0, self.last_ts - self.first_ts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = {k: v for k, v in self.__dict__.items() if k != "error"}
        d["duration"] = self.duration
        d["error"] = None if self.error is None else str(self.error)
        return d


def summarize(path: str) -> CaptureInfo:
    """Read a whole capture and summarise it.

    Errors opening the file raise; an error inside the data is kept in
    ``CaptureInfo.error`` with everything counted before it.
    """
    src = open_capture(path)
    info = CaptureInfo(path=path, file_size=src.stats.bytes_total)
    traffic = TrafficCounter()
    lts: dict[int, int] = {}
    status = np.zeros(4, dtype=np.int64)
    undecoded_lts: dict[int, int] = {}
    try:
        for batch in src:
            fb = decode(batch)
            info.frames += len(batch)
            info.bytes += int(batch.caplen.sum())
            info.wire_bytes += int(batch.wirelen.sum())
            ts = batch.ts_ns
            lo, hi = float(ts.min()) / 1e9, float(ts.max()) / 1e9
            info.first_ts = lo if info.first_ts is None else min(info.first_ts, lo)
            info.last_ts = hi if info.last_ts is None else max(info.last_ts, hi)
            u, c = np.unique(fb.linktype, return_counts=True)
            for lt, n in zip(u.tolist(), c.tolist(), strict=True):
                lts[lt] = lts.get(lt, 0) + n
            status += np.bincount(fb.status, minlength=4)[:4]
            und = fb.linktype[fb.status == STATUS_UNDECODED]
            if len(und):
                u, c = np.unique(und, return_counts=True)
                for lt, n in zip(u.tolist(), c.tolist(), strict=True):
                    undecoded_lts[lt] = undecoded_lts.get(lt, 0) + n
            traffic.update(fb)
    except WirelearnError as exc:
        info.error = exc
    finally:
        src.close()
    info.format = src.format
    info.compressed = src.compressed
    info.interfaces = len(src.interfaces)
    info.linktypes = {f"{linktype_name(k)} ({k})": v for k, v in sorted(lts.items())}
    info.truncated = int(status[STATUS_TRUNCATED])
    info.malformed = int(status[STATUS_MALFORMED])
    info.undecoded = int(status[STATUS_UNDECODED])
    info.undecoded_linktypes = {
        f"{linktype_name(k)} ({k})": v for k, v in sorted(undecoded_lts.items())
    }
    info.truncated_records = src.stats.truncated_records
    info.warnings = list(src.stats.warnings)
    info.ethertypes = traffic.ethertype_mix(12)
    info.ip_protos = traffic.ip_proto_mix(12)
    macs = traffic.top_macs(5)
    if macs:
        arr = np.array([m for m, _, _ in macs], dtype=np.int64)
        text = mac_to_text(arr).tolist()
        vend = vendor_names(arr, short=True).tolist()
        info.top_macs = [(text[i], vend[i], f, b) for i, (_, f, b) in enumerate(macs)]
    ips = traffic.top_ips(5)
    if ips:
        ver = np.array([v for v, _, _, _ in ips], dtype=np.int8)
        addr = np.frombuffer(b"".join(a for _, a, _, _ in ips), dtype=np.uint8).reshape(-1, 16)
        text = ip_to_text(ver, addr).tolist()
        info.top_ips = [(text[i], f, b) for i, (_, _, f, b) in enumerate(ips)]
    return info


def _time(ts: float | None) -> str:
    if ts is None:
        return "n/a"
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def _human(n: float, unit: str) -> str:
    for prefix in ("", "k", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.1f} {prefix}{unit}" if prefix else f"{n:.0f} {unit}"
        n /= 1000
    return f"{n:.1f} P{unit}"


def print_info(
    info: CaptureInfo, out: TextIO, *, as_json: bool = False, first: bool = True
) -> None:
    """Print one capture's summary as ``Key: value`` lines (or one JSON object)."""
    if as_json:
        out.write(json.dumps(info.to_dict()) + "\n")
        return
    if not first:
        out.write("\n")
    fmt = info.format or "unknown"
    if info.compressed:
        fmt += " (gzip)"
    dur = info.duration
    lines = [
        ("File name", info.path),
        ("File format", fmt),
        ("File size", "n/a" if info.file_size is None else f"{info.file_size:,} bytes"),
        ("Link types", ", ".join(f"{k}: {v:,}" for k, v in info.linktypes.items()) or "none"),
        ("Interfaces", str(info.interfaces)),
        ("Frames", f"{info.frames:,}"),
        ("Captured bytes", f"{info.bytes:,}"),
        ("Wire bytes", f"{info.wire_bytes:,}"),
        ("First frame", _time(info.first_ts)),
        ("Last frame", _time(info.last_ts)),
        ("Duration", f"{dur:.6f} s"),
        (
            "Average rate",
            f"{_human(info.frames / dur, 'frames/s')}, {_human(info.wire_bytes * 8 / dur, 'bit/s')}"
            if dur > 0
            else "n/a",
        ),
        (
            "Average frame size",
            f"{info.wire_bytes / info.frames:.1f} bytes" if info.frames else "n/a",
        ),
        ("Ethertypes", ", ".join(f"{k} {v:,}" for k, v in info.ethertypes) or "none"),
        ("IP protocols", ", ".join(f"{k} {v:,}" for k, v in info.ip_protos) or "none"),
        (
            "Top MAC talkers",
            ", ".join(f"{m}{f' ({v})' if v else ''} {f:,}" for m, v, f, _ in info.top_macs)
            or "none",
        ),
        ("Top IP talkers", ", ".join(f"{ip} {f:,}" for ip, f, _ in info.top_ips) or "none"),
        ("Truncated frames", f"{info.truncated:,}"),
        ("Malformed frames", f"{info.malformed:,}"),
        (
            "Undecoded frames",
            f"{info.undecoded:,}"
            + (
                " ("
                + ", ".join(f"link type {k}: {v:,}" for k, v in info.undecoded_linktypes.items())
                + ")"
                if info.undecoded_linktypes
                else ""
            ),
        ),
        ("Truncated records", f"{info.truncated_records:,}"),
    ]
    width = max(len(k) for k, _ in lines) + 1
    for k, v in lines:
        out.write(f"{k + ':':<{width}} {v}\n")
    for w in info.warnings:
        out.write(f"{'Warning:':<{width}} {w}\n")
