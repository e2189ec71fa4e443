"""Frames per second of ``wirelearn.features.decode`` on mixed Ethernet traffic.

The same run times dpkt decoding the same frames (Ethernet -> IP/IPv6 ->
TCP/UDP fields, one Python object per layer) as the anchor, and prints the ratio.

Usage::

    .venv/bin/python benchmarks/bench_decode.py [--frames 1000000] [--batch 65536]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import dpkt
import numpy as np
from numpy.typing import NDArray
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Raw

from wirelearn.capture import FrameBatch
from wirelearn.features import decode


def templates(rng: np.random.Generator) -> tuple[list[bytes], NDArray[np.float64]]:
    """Distinct frames of a plausible LAN mix, with their sampling weights."""
    out: list[tuple[bytes, float]] = []
    src, dst = "02:00:00:00:00:01", "02:00:00:00:00:02"
    for i in range(40):
        size = int(rng.choice([0, 0, 0, 64, 512, 1460]))
        flags = str(rng.choice(["S", "SA", "A", "PA", "FA", "R"]))
        out.append(
            (
                bytes(
                    Ether(src=src, dst=dst)
                    / IP(src=f"10.0.{i}.1", dst="10.0.0.2", ttl=64)
                    / TCP(sport=1024 + i, dport=443, flags=flags)
                    / Raw(bytes(size))
                ),
                0.45 / 40,
            )
        )
    for i in range(20):
        out.append(
            (
                bytes(
                    Ether(src=src, dst=dst)
                    / IP(src=f"10.1.{i}.1", dst="8.8.8.8")
                    / UDP(sport=5000 + i, dport=53)
                    / Raw(bytes(40 + i))
                ),
                0.15 / 20,
            )
        )
        out.append(
            (
                bytes(Ether(src=src, dst=dst) / IP(dst=f"10.2.{i}.9") / ICMP() / Raw(bytes(56))),
                0.05 / 20,
            )
        )
        out.append(
            (
                bytes(Ether(src=src, dst="ff:ff:ff:ff:ff:ff") / ARP(pdst=f"10.0.0.{i}")),
                0.05 / 20,
            )
        )
        out.append(
            (
                bytes(
                    Ether(src=src, dst=dst)
                    / IPv6(src=f"2001:db8::{i:x}", dst="2001:db8::ffff")
                    / TCP(sport=2000 + i, dport=80, flags="PA")
                    / Raw(bytes(100))
                ),
                0.12 / 20,
            )
        )
        out.append(
            (
                bytes(
                    Ether(src=src, dst=dst)
                    / IPv6(src=f"fe80::{i:x}", dst="ff02::16")
                    / IPv6ExtHdrHopByHop()
                    / UDP(sport=546, dport=547)
                    / Raw(bytes(30))
                ),
                0.03 / 20,
            )
        )
        out.append(
            (
                bytes(
                    Ether(src=src, dst=dst)
                    / Dot1Q(vlan=10 + i)
                    / IP(src="192.168.1.1", dst=f"192.168.2.{i}")
                    / UDP(sport=123, dport=123)
                    / Raw(bytes(48))
                ),
                0.15 / 20,
            )
        )
    frames = [f for f, _ in out]
    weights = np.array([w for _, w in out], dtype=np.float64)
    return frames, weights / weights.sum()


def build(n: int, seed: int = 1) -> list[bytes]:
    """``n`` frames sampled from the templates."""
    rng = np.random.default_rng(seed)
    frames, weights = templates(rng)
    pick = rng.choice(len(frames), size=n, p=weights)
    return [frames[i] for i in pick.tolist()]


def dpkt_decode(frames: list[bytes]) -> int:
    """The anchor: dpkt objects per frame, reading the same fields wirelearn does."""
    acc = 0
    for buf in frames:
        eth = dpkt.ethernet.Ethernet(buf)
        ip = eth.data
        if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
            l4 = ip.data
            acc += len(ip.src) + len(ip.dst) + (ip.p if isinstance(ip, dpkt.ip.IP) else ip.nxt)
            if isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
                acc += l4.sport + l4.dport
                if isinstance(l4, dpkt.tcp.TCP):
                    acc += l4.flags
    return acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000, help="frames for wirelearn")
    parser.add_argument("--batch", type=int, default=65536, help="frames per FrameBatch")
    parser.add_argument("--dpkt-frames", type=int, default=100_000, help="frames for dpkt")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()

    frames = build(args.frames)
    batches = [
        FrameBatch.from_frames(frames[i : i + args.batch], first_frame=i + 1)
        for i in range(0, len(frames), args.batch)
    ]
    mean_len = sum(b.nbytes for b in batches) / args.frames
    decode(batches[0])  # warm up
    ours_wall, ours_cpu = best_of(args.repeat, lambda: [decode(b) for b in batches])
    sample = frames[: args.dpkt_frames]
    dpkt_wall, dpkt_cpu = best_of(args.repeat, lambda: dpkt_decode(sample))

    n, m = args.frames, len(sample)
    print(f"frames: {n} in batches of {args.batch}, mean {mean_len:.0f} bytes/frame")
    print("                     frames/s (CPU time)   frames/s (wall clock)")
    print(f"wirelearn decode: {n / ours_cpu:16,.0f} {n / ours_wall:20,.0f}")
    print(f"dpkt (anchor):    {m / dpkt_cpu:16,.0f} {m / dpkt_wall:20,.0f}   ({m} frames)")
    print(f"ratio:            {(n / ours_cpu) / (m / dpkt_cpu):15.1f}x")


def best_of(repeat: int, run: Callable[[], object]) -> tuple[float, float]:
    """The best wall-clock and CPU times of ``repeat`` runs (CPU time is what one core did,
    and is less disturbed by other processes on a shared machine)."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        run()
        wall = min(wall, time.perf_counter() - w0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu


if __name__ == "__main__":  # pragma: no cover
    main()
