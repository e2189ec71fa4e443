"""Damped statistics: the vectorized engine against a plain per-frame loop, and bounded tables."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from wirelearn.errors import ConfigError
from wirelearn.features import FeatureBatch
from wirelearn.features._stats import (
    DEFAULT_LAMBDAS,
    DampedResult,
    DampedStats,
    KeyTable,
    TrafficStats,
    host_keys,
)

# --- the reference: one frame at a time, by the definition --------------------------------------


@dataclass
class _History:
    t: list[int] = field(default_factory=list)
    x: list[float] = field(default_factory=list)
    e: list[list[float]] = field(default_factory=list)


class ReferenceStats:
    """Per-frame damped statistics straight from the definition (weights over the whole history)."""

    def __init__(self, lambdas: tuple[float, ...], extras: int) -> None:
        self.lambdas = lambdas
        self.extras = extras
        self.hist: dict[int, _History] = defaultdict(_History)
        self.t_max = -(2**63)

    def update(
        self,
        keys: NDArray[np.uint64],
        valid: NDArray[np.bool_],
        t_ns: NDArray[np.int64],
        value: NDArray[np.float64],
        extras: NDArray[np.float64],
    ) -> dict[str, NDArray[np.float64]]:
        n, n_l = len(keys), len(self.lambdas)
        out = {
            "count": np.full((n, n_l), np.nan),
            "mean": np.full((n, n_l), np.nan),
            "std": np.full((n, n_l), np.nan),
            "extras": np.full((n, n_l, self.extras), np.nan),
            "iat": np.full(n, np.nan),
            "first": np.zeros(n, dtype=bool),
        }
        for i in range(n):
            self.t_max = max(self.t_max, int(t_ns[i]))
            if not valid[i]:
                continue
            h = self.hist[int(keys[i])]
            if h.t:
                out["iat"][i] = (self.t_max - h.t[-1]) / 1e9
            else:
                out["first"][i] = True
            h.t.append(self.t_max)
            h.x.append(float(value[i]))
            h.e.append([float(v) for v in extras[i]])
            dt = (self.t_max - np.array(h.t, dtype=np.int64)) / 1e9
            x = np.array(h.x)
            e = np.array(h.e).reshape(len(h.t), self.extras)
            for j, lam in enumerate(self.lambdas):
                w = 2.0 ** (-lam * dt)
                sw = w.sum()
                mean = (w * x).sum() / sw
                out["count"][i, j] = sw
                out["mean"][i, j] = mean
                out["std"][i, j] = math.sqrt((w * (x - mean) ** 2).sum() / sw)
                out["extras"][i, j] = (w[:, None] * e).sum(axis=0)
        return out


def _stream(
    rng: np.random.Generator, n: int, n_keys: int, t0: int, max_gap_s: float
) -> tuple[
    NDArray[np.uint64],
    NDArray[np.bool_],
    NDArray[np.int64],
    NDArray[np.float64],
    NDArray[np.float64],
]:
    # A few busy keys and a long tail, bursts and long silences, and some time going backwards.
    keys = (rng.zipf(1.6, n) % n_keys).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    valid = rng.random(n) > 0.05
    gaps = np.where(rng.random(n) < 0.02, rng.random(n) * max_gap_s, rng.exponential(0.002, n))
    t = t0 + np.cumsum((gaps * 1e9).astype(np.int64))
    back = rng.random(n) < 0.02
    t[back] -= rng.integers(0, 5_000_000, back.sum())
    # Frame sizes: many keys send near-constant sizes, some vary a lot.
    value = np.where(rng.random(n) < 0.7, 60.0, rng.integers(40, 1514, n).astype(float))
    extras = (rng.random((n, 2)) < 0.3).astype(float)
    return keys, valid, t, value, extras


@pytest.mark.parametrize(
    ("seed", "max_gap_s", "sizes"),
    [
        (0, 0.5, [500, 1200, 1, 300]),  # short batches: one segment per key
        (1, 40.0, [800, 700, 900]),  # long silences: lam * span far beyond one segment
        (2, 2000.0, [400, 400, 400, 400]),  # silences that underflow every factor
        (3, 3.0, [2000]),  # one big batch
    ],
)
def test_damped_stats_match_the_per_frame_reference(
    seed: int, max_gap_s: float, sizes: list[int]
) -> None:
    rng = np.random.default_rng(seed)
    n = sum(sizes)
    keys, valid, t, value, extras = _stream(rng, n, 40, 1_700_000_000 * 10**9, max_gap_s)
    stats = _compare_batches(keys, valid, t, value, extras, sizes)
    assert stats.evictions == 0


def _compare_batches(
    keys: NDArray[Any],
    valid: NDArray[Any],
    t: NDArray[Any],
    value: NDArray[Any],
    extras: NDArray[Any],
    sizes: list[int],
) -> DampedStats:
    """Feed the stream in batches of ``sizes`` to ``DampedStats`` and the per-frame reference."""
    stats = DampedStats(DEFAULT_LAMBDAS, track_value=True, extras=2, max_keys=10_000)
    ref = ReferenceStats(DEFAULT_LAMBDAS, 2)
    at = 0
    for size in sizes:
        s = slice(at, at + size)
        at += size
        got = stats.update(keys[s], valid[s], t[s], value=value[s], extras=extras[s])
        _assert_matches(got, ref.update(keys[s], valid[s], t[s], value[s], extras[s]), valid[s])
    return stats


def _assert_matches(got: DampedResult, want: dict[str, NDArray[Any]], valid: NDArray[Any]) -> None:
    assert got.mean is not None and got.std is not None and got.extras is not None
    np.testing.assert_allclose(got.count, want["count"], rtol=1e-6, atol=1e-300)
    np.testing.assert_allclose(got.mean, want["mean"], rtol=1e-6)
    # The variance is a damped sum of non-negative terms (no E[x^2] - E[x]^2 cancellation):
    # a standard deviation that is exactly 0 must come out as 0, not as rounding noise.
    np.testing.assert_allclose(got.std, want["std"], rtol=1e-6, atol=1e-6)
    constant = want["std"] == 0.0
    assert (got.std[constant] < 1e-9).all()
    np.testing.assert_allclose(got.extras, want["extras"].transpose(0, 2, 1), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got.iat, want["iat"], rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(got.first_seen, want["first"])
    np.testing.assert_array_equal(np.isnan(got.count[:, 0]), ~valid)


@pytest.mark.parametrize("all_valid", [False, True])
def test_damped_stats_of_a_scan_match_the_per_frame_reference(
    all_valid: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Most frames from keys never seen before (a scan) take a direct path; busy keys, and
    # scan keys that come back in a later batch, take the general one. Same statistics.
    rng = np.random.default_rng(9)
    sizes = [600, 900, 500]
    n = sum(sizes)
    keys, valid, t, value, extras = _stream(rng, n, 40, 1_700_000_000 * 10**9, 5.0)
    scan = rng.random(n) < 0.7
    keys[scan] = rng.integers(1, 2**62, int(scan.sum())).astype(np.uint64)
    keys[1600:1650] = keys[100:150]  # back after a batch or two
    if all_valid:
        valid[:] = True
    lone_calls: list[int] = []
    lone = DampedStats._lone

    def spy(self: DampedStats, r1: NDArray[np.int64], *args: Any) -> NDArray[np.float64]:
        lone_calls.append(len(r1))
        return lone(self, r1, *args)

    monkeypatch.setattr(DampedStats, "_lone", spy)
    _compare_batches(keys, valid, t, value, extras, sizes)
    assert len(lone_calls) == len(sizes) and min(lone_calls) > 200


def test_rate_of_a_steady_stream_is_its_frame_rate() -> None:
    # 200 frames/s for 60 s: every decay rate's steady-state estimate converges to 200.
    t = np.arange(12_000, dtype=np.int64) * 5_000_000
    stats = DampedStats((5.0, 1.0, 0.1))
    r = stats.update(np.zeros(len(t), np.uint64), np.ones(len(t), bool), t)
    np.testing.assert_allclose(r.rate[-1], 200.0, rtol=0.02)
    np.testing.assert_allclose(r.iat[1:], 0.005)


def test_causal_within_a_batch() -> None:
    # Changing a later frame never changes an earlier frame's statistics.
    rng = np.random.default_rng(5)
    keys, valid, t, value, extras = _stream(rng, 600, 5, 0, 1.0)
    a = DampedStats(track_value=True, extras=2).update(keys, valid, t, value, extras)
    value2 = value.copy()
    value2[400:] += 1000.0
    b = DampedStats(track_value=True, extras=2).update(keys, valid, t, value2, extras)
    assert a.mean is not None and b.mean is not None
    # Equal up to rounding (a segment's normalisation sees its later values).
    np.testing.assert_allclose(a.mean[:400], b.mean[:400], rtol=1e-9)
    assert not np.allclose(a.mean[400:][valid[400:]], b.mean[400:][valid[400:]])


def test_batch_boundaries_do_not_change_results() -> None:
    rng = np.random.default_rng(7)
    keys, valid, t, value, extras = _stream(rng, 3000, 60, 10**18, 5.0)
    whole = DampedStats(track_value=True, extras=2).update(keys, valid, t, value, extras)
    split = DampedStats(track_value=True, extras=2)
    parts = [split.update(keys[i : i + 97], valid[i : i + 97], t[i : i + 97], value[i : i + 97],
                          extras[i : i + 97]) for i in range(0, 3000, 97)]  # fmt: skip
    np.testing.assert_allclose(np.concatenate([p.count for p in parts]), whole.count, rtol=1e-9)
    np.testing.assert_allclose(
        np.concatenate([p.std for p in parts if p.std is not None]), whole.std, rtol=1e-6, atol=1e-6
    )


# --- TrafficStats wiring, against the same reference fed by plain Python keys ---------------------


def _lan(rng: np.random.Generator, n: int, t0: int) -> FeatureBatch:
    """A small LAN: IPv4 and IPv6 hosts, ARP and LLDP (MAC-keyed), frames with no address."""
    host = rng.integers(0, 6, (n, 2))
    version = rng.choice(np.array([4, 6, -1], np.int8), n, p=[0.6, 0.25, 0.15])
    ip = np.zeros((n, 2, 16), np.uint8)
    ip[:, :, 0] = np.where(version == 6, 0xFE, 10)[:, None]
    ip[:, :, 15] = host
    mac = (0x001122334400 + host).astype(np.int64)
    mac[rng.random(n) < 0.05, 0] = -1  # e.g. an undecoded link type
    proto = np.where(version > 0, rng.choice(np.array([6, 17, 1], np.int16), n), -1)
    ports = np.where((proto == 6) | (proto == 17), 1, 0)[:, None] * rng.integers(1, 8, (n, 2))
    ports[ports == 0] = -1
    flags = np.where(proto == 6, rng.choice([0x02, 0x12, 0x10, 0x18], n), -1)
    size = rng.choice([60, 60, 60, 590, 1514], n)
    i32 = np.full(n, -1, np.int32)
    return FeatureBatch(
        frame=np.arange(n, dtype=np.int64),
        ts_ns=t0 + np.cumsum(rng.exponential(3e7, n)).astype(np.int64),
        linktype=np.ones(n, np.int64),
        cap_len=size.astype(np.int64),
        frame_len=size.astype(np.int64),
        dst_mac=mac[:, 1].copy(),
        src_mac=mac[:, 0].copy(),
        ethertype=np.where(version == 4, 0x0800, np.where(version == 6, 0x86DD, 0x0806)).astype(
            np.int32
        ),
        vlan=i32,
        payload_len=(size - 14).astype(np.int32),
        ip_version=version,
        ip_src=ip[:, 0].copy(),
        ip_dst=ip[:, 1].copy(),
        ip_proto=proto.astype(np.int16),
        ttl=np.full(n, 64, np.int16),
        sport=ports[:, 0].astype(np.int32),
        dport=ports[:, 1].astype(np.int32),
        tcp_flags=flags.astype(np.int32),
        status=np.zeros(n, np.uint8),
    )


def test_traffic_stats_match_a_per_frame_reference() -> None:
    rng = np.random.default_rng(3)
    lams = DEFAULT_LAMBDAS
    stats = TrafficStats(lams)
    ref = {
        "src": ReferenceStats(lams, 2),
        "dst": ReferenceStats(lams, 2),
        "chan": ReferenceStats(lams, 0),
        "flow": ReferenceStats(lams, 0),
    }
    ids: dict[object, int] = {}
    seen_ports: set[object] = set()
    seen_chan: set[object] = set()
    t_max = -(2**63)
    for b in range(4):
        fb = _lan(rng, 400, b * 10**10)
        got = stats.update(fb)
        n = len(fb)
        keys = {k: np.zeros(n, np.uint64) for k in ref}
        valid = {k: np.zeros(n, bool) for k in ref}
        extras = {"src": np.zeros((n, 2)), "dst": np.zeros((n, 2))}
        for i in range(n):
            t_max = max(t_max, int(fb.ts_ns[i]))
            hosts = []
            for ip, mac in ((fb.ip_src[i], fb.src_mac[i]), (fb.ip_dst[i], fb.dst_mac[i])):
                if fb.ip_version[i] in (4, 6):
                    hosts.append(("ip", int(fb.ip_version[i]), ip.tobytes()))
                else:
                    hosts.append(("mac", int(mac)) if mac >= 0 else None)
            src, dst = hosts
            has_ip = fb.ip_version[i] in (4, 6)
            detail = (
                (int(fb.ip_proto[i]), int(fb.sport[i]), int(fb.dport[i]))
                if has_ip
                else ("ether", int(fb.ethertype[i]))
            )
            for name, key in (
                ("src", src),
                ("dst", dst),
                ("chan", (src, dst) if src and dst else None),
                ("flow", (src, dst, detail) if src and dst else None),
            ):
                if key is not None:
                    keys[name][i] = ids.setdefault(key, len(ids) + 1)
                    valid[name][i] = True
            new_chan = bool(src and dst) and (src, dst) not in seen_chan
            if src and dst:
                seen_chan.add((src, dst))
            new_port = bool(src) and fb.dport[i] >= 0 and (src, int(fb.dport[i])) not in seen_ports
            if src and fb.dport[i] >= 0:
                seen_ports.add((src, int(fb.dport[i])))
            extras["src"][i] = [new_port, new_chan]
            syn = fb.tcp_flags[i] >= 0 and fb.tcp_flags[i] & 0x12 == 0x02
            extras["dst"][i] = [syn, new_chan]
        size = fb.frame_len.astype(float)
        want = {
            k: r.update(keys[k], valid[k], fb.ts_ns, size, extras.get(k, np.zeros((n, 0))))
            for k, r in ref.items()
        }
        rate = np.asarray(lams) * math.log(2)
        expect = {
            "src_iat": want["src"]["iat"],
            "chan_iat": want["chan"]["iat"],
            "flow_iat": want["flow"]["iat"],
            "chan_first": np.where(valid["chan"], want["chan"]["first"], np.nan),
            "flow_first": np.where(valid["flow"], want["flow"]["first"], np.nan),
            "src_first_dport": np.where(valid["src"], extras["src"][:, 0], np.nan),
        }
        for j, lam in enumerate(lams):
            s = f"_l{lam:g}"
            src_w = want["src"]["count"][:, j]
            expect |= {
                "src_rate" + s: src_w * rate[j],
                "src_byterate" + s: want["src"]["mean"][:, j] * src_w * rate[j],
                "src_size_mean" + s: want["src"]["mean"][:, j],
                "src_size_std" + s: want["src"]["std"][:, j],
                "src_new_dports" + s: want["src"]["extras"][:, j, 0] * rate[j],
                "src_new_dsts" + s: want["src"]["extras"][:, j, 1] * rate[j],
                "dst_rate" + s: want["dst"]["count"][:, j] * rate[j],
                "dst_syn_ratio" + s: want["dst"]["extras"][:, j, 0] / want["dst"]["count"][:, j],
                "dst_new_srcs" + s: want["dst"]["extras"][:, j, 1] * rate[j],
                "chan_rate" + s: want["chan"]["count"][:, j] * rate[j],
                "flow_rate" + s: want["flow"]["count"][:, j] * rate[j],
            }
        assert set(got) == set(expect) == set(stats.names)
        for name, values in expect.items():
            np.testing.assert_allclose(got[name], values, rtol=1e-6, atol=1e-6, err_msg=name)
    assert stats.evictions == dict.fromkeys(stats.sizes, 0)


def test_traffic_stats_groups_compute_only_what_is_asked() -> None:
    rng = np.random.default_rng(4)
    fb = _lan(rng, 300, 0)
    full = TrafficStats().update(fb)
    part_stats = TrafficStats(groups=("dst",))
    part = part_stats.update(fb)
    assert set(part) == {n for n in full if n.startswith("dst_")}
    for name, values in part.items():
        np.testing.assert_allclose(values, full[name], rtol=1e-12, err_msg=name)
    # Without the channel table, a bounded set of host pairs tells "new source" apart.
    assert set(part_stats.sizes) == {"dst", "channel_seen"}


# --- bounded tables -------------------------------------------------------------------------------


def test_key_table_evicts_least_recently_updated() -> None:
    table = KeyTable(1, max_keys=3)
    keys = np.array([10, 20, 30], dtype=np.uint64)
    table.store(keys, table.lookup(keys), np.array([1, 2, 3]), np.array([[1.0], [2.0], [3.0]]))
    # Touch 10 so that 20 is the least recent, then insert 40.
    k = np.array([10], dtype=np.uint64)
    table.store(k, table.lookup(k), np.array([4]), np.array([[1.5]]))
    k = np.array([40], dtype=np.uint64)
    table.store(k, table.lookup(k), np.array([5]), np.array([[4.0]]))
    assert len(table) == 3 and table.evictions == 1
    np.testing.assert_array_equal(table.keys(), [10, 30, 40])
    slots = table.lookup(np.array([10, 20, 40], dtype=np.uint64))
    assert slots[1] == -1
    np.testing.assert_array_equal(table.values[slots[[0, 2]], 0], [1.5, 4.0])


def test_key_table_more_new_keys_than_room() -> None:
    table = KeyTable(0, max_keys=4)
    keys = np.arange(10, dtype=np.uint64)
    slots = table.store(keys, table.lookup(keys), np.arange(10, dtype=np.int64))
    assert len(table) == 4 and table.evictions == 6
    # The most recent four survive.
    np.testing.assert_array_equal(table.keys(), [6, 7, 8, 9])
    assert (slots[:6] == -1).all() and (slots[6:] >= 0).all()
    with pytest.raises(ConfigError, match="max_keys"):
        KeyTable(0, max_keys=0)


def test_key_table_agrees_with_a_dict_through_churn_and_rebuilds() -> None:
    # Inserts, updates and evictions, through many hash index rebuilds and tombstones:
    # lookups, values, sizes and eviction counts always match a plain dict model.
    rng = np.random.default_rng(5)
    max_keys = 300
    table = KeyTable(2, max_keys=max_keys)
    model: dict[int, tuple[int, float]] = {}  # key -> (recency, value)
    clock = 0
    evicted = 0
    for step in range(80):
        universe = 400 if step % 4 else 5000
        # Unmixed keys (multiples of a small stride) must spread in the index too.
        keys = np.unique(rng.integers(0, universe, rng.integers(1, 250))).astype(np.uint64)
        keys *= np.uint64(0x1000)
        slots = table.lookup(keys)
        for k, slot in zip(keys.tolist(), slots.tolist(), strict=True):
            assert (slot >= 0) == (k in model)
            if slot >= 0:
                assert table.values[slot, 0] == model[k][1]
        last = clock + rng.permutation(len(keys)).astype(np.int64)
        clock += len(keys)
        values = rng.random((len(keys), 2))
        out = table.store(keys, slots, last, values)
        for k, t, v in zip(keys.tolist(), last.tolist(), values[:, 0].tolist(), strict=True):
            model[k] = (t, v)
        if len(model) > max_keys:
            # Distinct recencies: the least recent ones go, whichever batch they came from.
            order = sorted(model, key=lambda k: model[k][0])
            for k in order[: len(model) - max_keys]:
                del model[k]
                evicted += 1
        assert len(table) == len(model) and table.evictions == evicted
        np.testing.assert_array_equal(table.keys(), sorted(model))
        assert ((out >= 0) == np.isin(keys, list(model))).all()
    assert table._tombs >= 0 and len(table._hslot) <= 8 * max_keys


def _scan_batch(rng: np.random.Generator, n: int, t0: int) -> FeatureBatch:
    """A scan from random spoofed IPv4 sources to random destinations and ports."""
    ip_src = np.zeros((n, 16), np.uint8)
    ip_src[:, :4] = rng.integers(0, 256, (n, 4))
    ip_dst = np.zeros((n, 16), np.uint8)
    ip_dst[:, :4] = rng.integers(0, 256, (n, 4))
    i64 = np.full(n, -1, np.int64)
    return FeatureBatch(
        frame=np.arange(n, dtype=np.int64),
        ts_ns=t0 + np.arange(n, dtype=np.int64) * 10_000,
        linktype=np.ones(n, np.int64),
        cap_len=np.full(n, 60, np.int64),
        frame_len=np.full(n, 60, np.int64),
        dst_mac=i64,
        src_mac=i64,
        ethertype=np.full(n, 0x0800, np.int32),
        vlan=np.full(n, -1, np.int32),
        payload_len=np.full(n, 46, np.int32),
        ip_version=np.full(n, 4, np.int8),
        ip_src=ip_src,
        ip_dst=ip_dst,
        ip_proto=np.full(n, 6, np.int16),
        ttl=np.full(n, 64, np.int16),
        sport=rng.integers(1024, 65536, n).astype(np.int32),
        dport=rng.integers(1, 65536, n).astype(np.int32),
        tcp_flags=np.full(n, 0x02, np.int32),
        status=np.zeros(n, np.uint8),
    )


def test_tables_stay_bounded_under_a_random_address_scan() -> None:
    rng = np.random.default_rng(11)
    stats = TrafficStats(max_keys=2000)
    sizes = []
    for b in range(12):
        out = stats.update(_scan_batch(rng, 1500, b * 10**9))
        assert all(np.isfinite(v[~np.isnan(v)]).all() for v in out.values())
        sizes.append(stats.nbytes)
    assert max(stats.sizes.values()) <= 2000
    assert all(v > 10_000 for k, v in stats.evictions.items())
    # Memory stops growing once the tables are full.
    assert sizes[-1] == sizes[5]
    # Every frame of a random scan is from a source never seen before.
    assert np.isnan(out["src_iat"]).all()


def test_evicted_key_starts_afresh() -> None:
    stats = DampedStats((1.0,), max_keys=2)
    ones = np.ones(1, bool)
    for k, t in [(1, 0), (2, 1), (1, 2), (3, 3)]:  # 3 evicts 2 (the least recently updated)
        stats.update(np.array([k], np.uint64), ones, np.array([t * 10**9]))
    r = stats.update(np.array([2, 1], np.uint64), np.ones(2, bool), np.array([4, 4]) * 10**9)
    assert r.first_seen.tolist() == [True, False]
    assert np.isnan(r.iat[0]) and r.iat[1] == 2.0
    assert stats.evictions == 2  # 2 evicted by 3, then 3 evicted by 2 coming back


def test_host_keys_prefer_ip_and_fall_back_to_mac() -> None:
    ip = np.zeros((4, 16), np.uint8)
    ip[:, :4] = [10, 0, 0, 1]
    version = np.array([4, 4, -1, -1], np.int8)
    mac = np.array([5, 6, 5, -1], np.int64)
    keys, ok = host_keys(version, ip, version == 4, mac)
    assert ok.tolist() == [True, True, True, False]
    assert keys[0] == keys[1] != keys[2]  # same IP behind different MACs is one host
    v6 = np.array([6, 6, 6, 6], np.int8)
    k6, _ = host_keys(v6, ip, v6 == 6, mac)
    assert k6[0] != keys[0]  # an IPv4 address never collides with the same bytes in IPv6


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="lambdas"):
        DampedStats((1.0, 0.0))
    with pytest.raises(ConfigError, match="valid groups: src, src_ports, dst, channel, flow"):
        TrafficStats(groups=("src", "hosts"))
