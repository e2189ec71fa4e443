"""Bounded traffic-mix counters: top talkers and the protocol mix.

Updated once per batch with ``np.unique``/``bincount``; tables are pruned to
their heaviest entries when they grow past a bound, so a scan of random
addresses cannot grow them without limit (the counts of the heavy hitters stay
exact unless an address was pruned and came back).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from wirelearn.features._names import ethertype_name, ip_proto_name
from wirelearn.features._schema import FeatureBatch

__all__ = ["TrafficCounter"]


class _TopTable:
    """Frame and byte counts per key, pruned to ``keep`` entries past ``limit``."""

    def __init__(self, limit: int, keep: int) -> None:
        self.limit = limit
        self.keep = keep
        self.frames: dict[bytes | int, int] = {}
        self.bytes: dict[bytes | int, int] = {}
        self.pruned = 0

    def add(
        self, keys: list[bytes | int], frames: NDArray[np.int64], nbytes: NDArray[np.int64]
    ) -> None:
        for k, f, b in zip(keys, frames.tolist(), nbytes.tolist(), strict=True):
            self.frames[k] = self.frames.get(k, 0) + f
            self.bytes[k] = self.bytes.get(k, 0) + b
        if len(self.frames) > self.limit:
            top = sorted(self.frames, key=self.frames.__getitem__, reverse=True)[: self.keep]
            self.pruned += len(self.frames) - len(top)
            self.frames = {k: self.frames[k] for k in top}
            self.bytes = {k: self.bytes[k] for k in top}

    def top(self, n: int) -> list[tuple[bytes | int, int, int]]:
        keys = sorted(self.frames, key=self.frames.__getitem__, reverse=True)[:n]
        return [(k, self.frames[k], self.bytes[k]) for k in keys]


def _grouped(
    keys: NDArray[np.generic], sizes: NDArray[np.int64]
) -> tuple[NDArray[np.generic], NDArray[np.int64], NDArray[np.int64]]:
    uniq, inv = np.unique(keys, return_inverse=True)
    inv = inv.reshape(-1)
    return (
        uniq,
        np.bincount(inv, minlength=len(uniq)),
        np.bincount(inv, weights=sizes, minlength=len(uniq)).astype(np.int64),
    )


class TrafficCounter:
    """Counts frames and bytes per MAC, per IP, per ethertype and per IP protocol.

    Args:
        limit: entries a talker table may hold before it is pruned.
        keep: entries kept after pruning.
    """

    def __init__(self, limit: int = 20_000, keep: int = 2_000) -> None:
        self.macs = _TopTable(limit, keep)
        self.ips = _TopTable(limit, keep)
        self.ethertypes = np.zeros(0x10000, dtype=np.int64)
        self.ip_protos = np.zeros(256, dtype=np.int64)

    def update(self, fb: FeatureBatch) -> None:
        """Add a decoded batch."""
        if not len(fb):
            return
        size = fb.frame_len.astype(np.int64)
        # A talker is counted once per frame as a source (what "talks" means).
        has_mac = fb.src_mac >= 0
        if has_mac.any():
            u, f, b = _grouped(fb.src_mac[has_mac], size[has_mac])
            self.macs.add([int(x) for x in u.tolist()], f, b)
        has_ip = fb.ip_version > 0
        if has_ip.any():
            key = np.empty((int(has_ip.sum()), 17), dtype=np.uint8)
            key[:, 0] = fb.ip_version[has_ip].astype(np.uint8)
            key[:, 1:] = fb.ip_src[has_ip]
            u, f, b = _grouped(key.view("V17").reshape(-1), size[has_ip])
            self.ips.add([bytes(x) for x in u.tolist()], f, b)
        et = fb.ethertype[fb.ethertype >= 0]
        if len(et):
            self.ethertypes += np.bincount(et, minlength=0x10000)[:0x10000]
        pr = fb.ip_proto[fb.ip_proto >= 0].astype(np.int64)
        if len(pr):
            self.ip_protos += np.bincount(pr, minlength=256)[:256]

    def top_macs(self, n: int = 10) -> list[tuple[int, int, int]]:
        """``(mac, frames, bytes)`` of the heaviest source MACs."""
        return [(int(k), f, b) for k, f, b in self.macs.top(n)]

    def top_ips(self, n: int = 10) -> list[tuple[int, bytes, int, int]]:
        """``(ip_version, 16 address bytes, frames, bytes)`` of the heaviest source IPs."""
        out = []
        for k, f, b in self.ips.top(n):
            assert isinstance(k, bytes)
            out.append((k[0], k[1:], f, b))
        return out

    def ethertype_mix(self, n: int = 8) -> list[tuple[str, int]]:
        """``(name, frames)`` of the most frequent ethertypes."""
        idx = np.argsort(self.ethertypes)[::-1][:n]
        return [
            (ethertype_name(int(i)) or "?", int(self.ethertypes[i]))
            for i in idx
            if self.ethertypes[i]
        ]

    def ip_proto_mix(self, n: int = 8) -> list[tuple[str, int]]:
        """``(name, frames)`` of the most frequent IP protocols."""
        idx = np.argsort(self.ip_protos)[::-1][:n]
        return [
            (ip_proto_name(int(i)) or "?", int(self.ip_protos[i])) for i in idx if self.ip_protos[i]
        ]
