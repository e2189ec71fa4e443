"""Frames per second of reading a capture and decoding every frame, against tcpdump, dpkt and scapy.

All four read the same 1M-frame mixed capture (``benchmarks/make_capture.py``) in
one run:

- wirelearn: ``open_capture`` batches, ``decode`` into the feature columns, to a null sink;
- ``tcpdump -nn -q -r FILE`` to /dev/null (the anchor the target is set against);
- dpkt: ``dpkt.pcap.Reader`` plus Ethernet/IP/TCP/UDP dissection of every frame;
- scapy: ``RawPcapReader`` (raw records only, no dissection) and, on a slice,
  ``Ether(bytes)`` dissection per frame (the design wirelearn avoids).

It prints frames/s (wall clock, and CPU time for the in-process readers) and the
ratios to wirelearn. Target: wirelearn >= 0.9 x tcpdump.

Usage::

    .venv/bin/python benchmarks/bench_read.py [--capture PATH] [--frames 1000000]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_capture import make_capture

from wirelearn.capture import open_capture
from wirelearn.features import decode


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(fn: Callable[[], int]) -> tuple[int, float, float]:
    """Run ``fn``; return (frames, wall seconds, CPU seconds of this process)."""
    c0, t0 = time.process_time(), time.perf_counter()
    n = fn()
    return n, time.perf_counter() - t0, time.process_time() - c0


def wirelearn_read(path: str) -> int:
    n = 0
    with open_capture(path, batch_size=65536) as src:
        for batch in src:
            fb = decode(batch)
            n += len(fb)
    return n


def dpkt_read(path: str) -> int:
    import dpkt

    n = 0
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
                l4 = ip.data
                if isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
                    _ = (l4.sport, l4.dport)
            n += 1
    return n


def scapy_raw(path: str) -> int:
    from scapy.utils import RawPcapReader

    n = 0
    for _pkt, _meta in RawPcapReader(path):
        n += 1
    return n


def scapy_dissect(path: str, limit: int) -> int:
    from scapy.layers.l2 import Ether
    from scapy.utils import RawPcapReader

    n = 0
    for pkt, _meta in RawPcapReader(path):
        Ether(pkt)
        n += 1
        if n >= limit:
            break
    return n


def tcpdump_read(path: str) -> tuple[int, float, float]:
    tool = shutil.which("tcpdump")
    if tool is None:
        raise SystemExit("tcpdump is not installed (make test installs it)")
    c0, t0 = _children_cpu(), time.perf_counter()
    with open(os.devnull, "wb") as null:
        subprocess.run(
            [tool, "-nn", "-q", "-r", path], stdout=null, stderr=subprocess.DEVNULL, check=True
        )
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
    count = subprocess.run(
        ["capinfos", "-c", "-M", path] if shutil.which("capinfos") else ["true"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    frames = 0
    for line in count.splitlines():
        if "Number of packets" in line:
            frames = int(line.split(":")[1].strip())
    return frames, wall, cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--capture", default="bench-out/mixed-1m.pcap")
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--scapy-slice", type=int, default=20_000)
    args = ap.parse_args(argv)
    Path(args.capture).parent.mkdir(parents=True, exist_ok=True)
    make_capture(args.capture, frames=args.frames)
    path = args.capture
    wirelearn_read(path)  # warm the page cache and imports

    rows: list[tuple[str, int, float, float]] = []
    n, wall, cpu = timed(lambda: wirelearn_read(path))
    rows.append(("wirelearn read + decode", n, wall, cpu))
    tn, twall, tcpu = tcpdump_read(path)
    rows.append(("tcpdump -nn -q -r > /dev/null", tn or n, twall, tcpu))
    n2, wall2, cpu2 = timed(lambda: dpkt_read(path))
    rows.append(("dpkt reader + dissection", n2, wall2, cpu2))
    n3, wall3, cpu3 = timed(lambda: scapy_raw(path))
    rows.append(("scapy RawPcapReader (no dissection)", n3, wall3, cpu3))
    n4, wall4, cpu4 = timed(lambda: scapy_dissect(path, args.scapy_slice))
    rows.append((f"scapy Ether() per frame ({args.scapy_slice:,} slice)", n4, wall4, cpu4))

    base_wall = rows[0][1] / rows[0][2]
    print(f"capture: {path} ({rows[0][1]:,} frames)")
    print(f"{'reader':44} {'frames/s wall':>14} {'frames/s CPU':>14} {'wirelearn / it':>15}")
    for name, frames, w, c in rows:
        fps_w = frames / w if w else float("inf")
        fps_c = frames / c if c else float("inf")
        ratio = base_wall / fps_w if fps_w else float("nan")
        print(f"{name:44} {fps_w:14,.0f} {fps_c:14,.0f} {ratio:15.2f}")
    tcpdump_fps = rows[1][1] / rows[1][2]
    print(f"\nwirelearn / tcpdump = {base_wall / tcpdump_fps:.2f} (target >= 0.9)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
