"""Frames per second of wirelearn's BPF filtering, with tcpdump as the anchor.

Generates a 200k-frame Ethernet capture (a mix of IPv4/IPv6 TCP, UDP, ICMP,
ARP and VLAN frames built with scapy), filters it in 8192-frame batches with
``BpfFilter.mask`` and, in the same run, times ``tcpdump -r FILE -w /dev/null
EXPR`` on the same file. Run: ``.venv/bin/python benchmarks/bench_bpf.py``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from wirelearn.capture import BpfFilter, FrameBatch, encode_pcap_header, encode_pcap_records

EXPRESSIONS = [
    "tcp port 80",
    "host 10.0.0.1 and (udp or icmp)",
    "vlan and tcp",
    "ip6 and tcp",
    "tcp[tcpflags] & tcp-syn != 0",
]


def templates(count: int, seed: int) -> list[bytes]:
    """``count`` distinct frames built with scapy."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import ARP, Dot1Q, Ether
    from scapy.packet import Raw

    rng = np.random.default_rng(seed)
    hosts = ["10.0.0.1", "10.0.0.2", "192.168.1.7", "172.16.5.4", "8.8.8.8"]
    ports = [80, 443, 53, 22, 8080, 123, 40000]
    out = []
    for _ in range(count):
        payload = Raw(b"x" * int(rng.integers(0, 600)))
        src, dst = (hosts[int(i)] for i in rng.integers(len(hosts), size=2))
        sport, dport = (ports[int(i)] for i in rng.integers(len(ports), size=2))
        kind = int(rng.integers(10))
        if kind < 5:
            l3 = (
                IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="SA"[kind % 2]) / payload
            )
        elif kind < 7:
            l3 = IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload
        elif kind == 7:
            l3 = IP(src=src, dst=dst) / ICMP() / payload
        elif kind == 8:
            l3 = IPv6() / TCP(sport=sport, dport=dport) / payload
        else:
            l3 = ARP(psrc=src, pdst=dst)
        eth = Ether() / Dot1Q(vlan=10) if rng.random() < 0.1 else Ether()
        out.append(bytes(eth / l3))
    return out


def generate(n: int, seed: int = 1) -> FrameBatch:
    """A batch of ``n`` frames drawn from a few thousand templates."""
    rng = np.random.default_rng(seed)
    base = templates(2000, seed)
    pick = rng.integers(len(base), size=n)
    return FrameBatch.from_frames([base[int(i)] for i in pick])


def bench_wirelearn(batch: FrameBatch, expression: str, size: int) -> tuple[float, int]:
    """Best-of-3 frames/s of ``BpfFilter.mask`` over ``size``-frame slices, and the count kept."""
    flt = BpfFilter(expression)
    slices = [batch.slice(i, i + size) for i in range(0, len(batch), size)]
    flt.mask(slices[0])  # compile outside the timing
    best = float("inf")
    kept = 0
    for _ in range(3):
        t0 = time.perf_counter()
        kept = sum(int(flt.mask(s).sum()) for s in slices)
        best = min(best, time.perf_counter() - t0)
    return len(batch) / best, kept


def bench_tcpdump(path: Path, expression: str, n: int) -> tuple[float, int] | None:
    """Best-of-3 frames/s of ``tcpdump -r path -w /dev/null expression``, and the count kept."""
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        return None
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run(
            [tcpdump, "-r", str(path), "-w", "/dev/null", expression],
            check=True,
            capture_output=True,
        )
        best = min(best, time.perf_counter() - t0)
    out = subprocess.run(
        [tcpdump, "-r", str(path), "-w", "-", expression], check=True, capture_output=True
    ).stdout
    kept = 0
    pos = 24
    while pos + 16 <= len(out):
        kept += 1
        pos += 16 + int.from_bytes(out[pos + 8 : pos + 12], "little")
    return n / best, kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=8192)
    args = parser.parse_args(argv)
    batch = generate(args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.pcap"
        path.write_bytes(encode_pcap_header(1) + encode_pcap_records(batch))
        print(f"{args.frames} frames, {batch.nbytes / 1e6:.1f} MB, batches of {args.batch}")
        print(f"{'expression':36s} {'wirelearn f/s':>14s} {'tcpdump f/s':>12s} {'ratio':>6s}  kept")
        for expression in EXPRESSIONS:
            ours, kept = bench_wirelearn(batch, expression, args.batch)
            anchor = bench_tcpdump(path, expression, args.frames)
            if anchor is None:
                print(f"{expression:36s} {ours:14,.0f} {'-':>12s} {'-':>6s}  {kept}")
                continue
            theirs, kept_tcpdump = anchor
            same = "" if kept == kept_tcpdump else f" (tcpdump kept {kept_tcpdump}!)"
            print(
                f"{expression:36s} {ours:14,.0f} {theirs:12,.0f} {ours / theirs:6.2f}  {kept}{same}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
