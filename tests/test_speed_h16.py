"""The fast paths of the traffic counter, the evaluator's metrics, the forest and naive Bayes.

Each one is checked against a straightforward reference (the code it replaced,
or scikit-learn itself) on random and edge-case batches: the results must be
the same, bit for bit unless a tolerance is stated.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FIXTURES
from numpy.typing import NDArray
from sklearn.naive_bayes import GaussianNB

import wirelearn.features._traffic as traffic_mod
from wirelearn.capture import open_capture
from wirelearn.features import FeatureBatch
from wirelearn.features._decode import decode
from wirelearn.features._traffic import TrafficCounter
from wirelearn.models._base import LabelCodes
from wirelearn.models._bayes import NaiveBayes
from wirelearn.models._evaluate import Evaluator, LabelledBatch, _auc_bins
from wirelearn.models._forest import SlidingForest, _take_rows
from wirelearn.models._metrics import ConfusionMatrix, RollingConfusion

# --- traffic counter ---------------------------------------------------------------------------


class _RefTable:
    """The dict-based talker table the vectorized one replaced."""

    def __init__(self, limit: int, keep: int) -> None:
        self.limit, self.keep = limit, keep
        self.frames: dict[Any, int] = {}
        self.bytes: dict[Any, int] = {}
        self.pruned = 0

    def add(self, keys: list[Any], frames: list[int], nbytes: list[int]) -> None:
        for k, f, b in zip(keys, frames, nbytes, strict=True):
            self.frames[k] = self.frames.get(k, 0) + f
            self.bytes[k] = self.bytes.get(k, 0) + b
        if len(self.frames) > self.limit:
            top = sorted(self.frames, key=self.frames.__getitem__, reverse=True)[: self.keep]
            self.pruned += len(self.frames) - len(top)
            self.frames = {k: self.frames[k] for k in top}
            self.bytes = {k: self.bytes[k] for k in top}

    def top(self, n: int) -> list[tuple[Any, int, int]]:
        keys = sorted(self.frames, key=self.frames.__getitem__, reverse=True)[:n]
        return [(k, self.frames[k], self.bytes[k]) for k in keys]


class _RefTraffic:
    """Per-batch ``np.unique`` over the raw keys, then dict updates (the old ``TrafficCounter``)."""

    def __init__(self, limit: int, keep: int) -> None:
        self.macs = _RefTable(limit, keep)
        self.ips = _RefTable(limit, keep)
        self.ethertypes = np.zeros(0x10000, dtype=np.int64)
        self.ip_protos = np.zeros(256, dtype=np.int64)

    def update(self, fb: FeatureBatch) -> None:
        size = fb.frame_len.astype(np.int64)
        raw = np.empty((len(fb), 17), dtype=np.uint8)
        raw[:, 0] = fb.ip_version.astype(np.uint8)
        raw[:, 1:] = fb.ip_src
        for table, has, keys, to_key in (
            (self.macs, fb.src_mac >= 0, fb.src_mac, int),
            (self.ips, fb.ip_version > 0, raw.view("V17").reshape(-1), bytes),
        ):
            if not has.any():
                continue
            uniq, inv = np.unique(keys[has], return_inverse=True)
            names = [to_key(x) for x in uniq.tolist()]
            inv = inv.reshape(-1)
            frames = np.bincount(inv, minlength=len(uniq)).tolist()
            nbytes = np.bincount(inv, weights=size[has], minlength=len(uniq)).astype(np.int64)
            table.add(names, frames, nbytes.tolist())
        et = fb.ethertype[fb.ethertype >= 0]
        self.ethertypes += np.bincount(et, minlength=0x10000)[:0x10000]
        self.ip_protos += np.bincount(fb.ip_proto[fb.ip_proto >= 0], minlength=256)[:256]

    def top_macs(self, n: int) -> list[tuple[int, int, int]]:
        return self.macs.top(n)

    def top_ips(self, n: int) -> list[tuple[int, bytes, int, int]]:
        return [(k[0], k[1:], f, b) for k, f, b in self.ips.top(n)]


def _feature_batch(
    src_mac: NDArray[np.int64],
    ip_version: NDArray[np.int8],
    ip_src: NDArray[np.uint8],
    frame_len: NDArray[np.int64],
    ethertype: NDArray[np.int32],
    ip_proto: NDArray[np.int16],
) -> FeatureBatch:
    n = len(src_mac)
    neg = np.full(n, -1, dtype=np.int32)
    i64 = np.arange(n, dtype=np.int64)
    return FeatureBatch(
        frame=i64,
        ts_ns=i64,
        linktype=np.ones(n, dtype=np.int64),
        cap_len=frame_len,
        frame_len=frame_len,
        dst_mac=np.full(n, -1, dtype=np.int64),
        src_mac=src_mac,
        ethertype=ethertype,
        vlan=neg,
        payload_len=neg,
        ip_version=ip_version,
        ip_src=ip_src,
        ip_dst=np.zeros((n, 16), dtype=np.uint8),
        ip_proto=ip_proto,
        ttl=neg.astype(np.int16),
        sport=neg,
        dport=neg,
        tcp_flags=neg,
        status=np.zeros(n, dtype=np.uint8),
    )


def _random_batch(rng: np.random.Generator, n: int, n_keys: int) -> FeatureBatch:
    """IPv4 and IPv6 sources (some sharing their bytes), null MACs and IPs, few distinct keys."""
    pool = rng.integers(0, 256, size=(n_keys, 16), dtype=np.uint8)
    pool[: n_keys // 2, 4:] = 0  # IPv4: the first 4 bytes only
    pool[-1] = pool[0]  # the same bytes as an IPv4 and as an IPv6 address
    if n_keys > 2:
        pool[-2] = pool[-3]
        pool[-2, 15] ^= 1  # IPv6 addresses that differ in the last byte only
    pick = rng.integers(0, n_keys, n)
    version = np.where(pick < n_keys // 2, 4, 6).astype(np.int8)
    version[rng.random(n) < 0.1] = -1
    macs = rng.integers(0, 1 << 48, n_keys)[rng.integers(0, n_keys, n)]
    macs[rng.random(n) < 0.1] = -1
    return _feature_batch(
        src_mac=macs.astype(np.int64),
        ip_version=version,
        ip_src=pool[pick],
        frame_len=rng.integers(42, 1515, n).astype(np.int64),
        ethertype=rng.choice([-1, 0x0800, 0x86DD, 0x0806, 0x88CC], n).astype(np.int32),
        ip_proto=rng.choice([-1, 1, 6, 17, 58], n).astype(np.int16),
    )


def _edge_batches() -> list[FeatureBatch]:
    one = _feature_batch(
        np.array([7], dtype=np.int64),
        np.array([6], dtype=np.int8),
        np.arange(16, dtype=np.uint8)[None, :],
        np.array([60], dtype=np.int64),
        np.array([0x86DD], dtype=np.int32),
        np.array([17], dtype=np.int16),
    )
    n = 500
    same = _feature_batch(
        np.full(n, 0x0200_0000_0001, dtype=np.int64),
        np.full(n, 4, dtype=np.int8),
        np.tile(np.array([10, 0, 0, 1] + [0] * 12, dtype=np.uint8), (n, 1)),
        np.full(n, 1514, dtype=np.int64),
        np.full(n, 0x0800, dtype=np.int32),
        np.full(n, 6, dtype=np.int16),
    )
    none = _feature_batch(
        np.full(3, -1, dtype=np.int64),
        np.full(3, -1, dtype=np.int8),
        np.zeros((3, 16), dtype=np.uint8),
        np.full(3, 60, dtype=np.int64),
        np.full(3, -1, dtype=np.int32),
        np.full(3, -1, dtype=np.int16),
    )
    return [FeatureBatch.empty(), one, same, none, FeatureBatch.empty()]


def _assert_same_traffic(new: TrafficCounter, ref: _RefTraffic) -> None:
    assert new.top_macs(10**6) == ref.top_macs(10**6)
    assert new.top_ips(10**6) == ref.top_ips(10**6)
    assert (new.macs.pruned, new.ips.pruned) == (ref.macs.pruned, ref.ips.pruned)
    assert len(new.macs.frames) == len(ref.macs.frames)
    assert len(new.ips.frames) == len(ref.ips.frames)
    assert np.array_equal(new.ethertypes, ref.ethertypes)
    assert np.array_equal(new.ip_protos, ref.ip_protos)


@pytest.mark.parametrize(("limit", "keep"), [(20_000, 2_000), (40, 7), (5, 5), (1, 1)])
def test_traffic_counter_matches_the_unique_and_dict_reference(limit: int, keep: int) -> None:
    rng = np.random.default_rng(limit)
    new, ref = TrafficCounter(limit, keep), _RefTraffic(limit, keep)
    batches = _edge_batches() + [
        _random_batch(rng, int(rng.integers(1, 3000)), int(rng.integers(1, 120))) for _ in range(12)
    ]
    for fb in batches:
        new.update(fb)
        ref.update(fb)
        # Compared after every batch: pruning order and ties depend on insertion order.
        _assert_same_traffic(new, ref)
    assert new.macs.pruned or limit > 1000


def test_traffic_counter_hash_collisions_fall_back_to_exact_grouping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A constant hash makes every IP key collide: each batch takes the exact path.
    monkeypatch.setattr(traffic_mod, "mix64", lambda x: np.zeros(np.shape(x)[0], dtype=np.uint64))
    rng = np.random.default_rng(3)
    new, ref = TrafficCounter(60, 10), _RefTraffic(60, 10)
    for fb in [*_edge_batches(), *(_random_batch(rng, 2000, 90) for _ in range(5))]:
        new.update(fb)
        ref.update(fb)
        _assert_same_traffic(new, ref)


def test_first_seen_codes_numbers_groups_by_first_appearance() -> None:
    keys = np.array([[5, 1, 0], [2, 0, 0], [5, 1, 0], [5, 1, 1], [2, 0, 0]], dtype=np.uint64)
    codes, rep = traffic_mod._first_seen_codes(keys)
    assert codes.tolist() == [0, 1, 0, 2, 1]
    assert np.array_equal(keys[rep], keys[[0, 1, 3]])
    codes, rep = traffic_mod._first_seen_codes(np.zeros((0, 3), dtype=np.uint64))
    assert len(codes) == 0 and len(rep) == 0


_REAL = (
    "merged-linktypes.pcapng",
    "mixed-lo.pcap",
    "ipv6-frag-http.pcap",
    "dhcp-arp-icmp.pcap",
    "decode-ipv4-says-6.pcap",
    "service-ntp6.pcap",
    "lldp.pcap",
)


def _decoded(name: str) -> list[FeatureBatch]:
    with open_capture(str(FIXTURES / name)) as source:
        return [decode(batch) for batch in source]


def test_traffic_counter_matches_the_reference_on_real_captures() -> None:
    new, ref = TrafficCounter(3, 2), _RefTraffic(3, 2)
    versions = set()
    for name in _REAL:
        for fb in _decoded(name):
            new.update(fb)
            ref.update(fb)
            _assert_same_traffic(new, ref)
            versions |= {v for v, _, _, _ in new.top_ips(50)}
    assert new.ips.pruned and new.macs.pruned and versions == {4, 6}


def test_protocol_mixes_break_ties_by_number_and_skip_zeros() -> None:
    t = TrafficCounter()
    n = 9
    fb = _feature_batch(
        np.full(n, -1, dtype=np.int64),
        np.full(n, -1, dtype=np.int8),
        np.zeros((n, 16), dtype=np.uint8),
        np.full(n, 60, dtype=np.int64),
        np.array([0x86DD, 0x0800, 0x0806] * 3, dtype=np.int32),
        np.array([17, 6, 17, 6, 1, -1, -1, -1, -1], dtype=np.int16),
    )
    t.update(fb)
    assert t.ethertype_mix() == [("IPv4", 3), ("ARP", 3), ("IPv6", 3)]
    assert [c for _, c in t.ip_proto_mix()] == [2, 2, 1]
    assert t.ip_proto_mix(1) == [(t.ip_proto_mix()[0][0], 2)]
    assert TrafficCounter().ethertype_mix() == []


# --- metrics and the evaluator ----------------------------------------------------------------


def test_confusion_from_codes_and_rolling_add_match_update() -> None:
    rng = np.random.default_rng(0)
    ref_cum, new_cum = ConfusionMatrix(), ConfusionMatrix()
    ref_roll, new_roll = RollingConfusion(500), RollingConfusion(500)
    k = 2
    for _ in range(30):
        k = min(9, k + int(rng.integers(0, 2)))  # the class set grows
        n = int(rng.integers(0, 300))
        truth = rng.integers(0, k, n)
        pred = rng.integers(0, k, n)
        ref_cum.update(truth, pred, k)
        ref_roll.update(truth, pred, k)
        part = ConfusionMatrix.from_codes(truth * k + pred, k)
        new_cum.add(part)
        new_roll.add(part)
        assert np.array_equal(new_cum.m, ref_cum.m)
        assert np.array_equal(new_roll.current.m, ref_roll.current.m)
        assert len(new_roll._parts) == len(ref_roll._parts)


class _ModFeaturizer:
    def transform(self, fb: FeatureBatch) -> NDArray[np.float32]:
        return np.stack([fb.frame % 7, fb.frame % 5, fb.frame_len], axis=1).astype(np.float32)

    def mac_codes(self, fb: FeatureBatch) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        z = np.zeros(len(fb), dtype=np.int64)
        return z, z


class _Detector:
    threshold_: float | None = 0.5

    def learn_many(self, X: NDArray[Any]) -> None:
        pass

    def score_many(self, X: NDArray[Any]) -> NDArray[np.float64]:
        return np.asarray((X[:, 0] % 3) / 3.0 + X[:, 1] / 10.0, dtype=np.float64)


def _labelled_stream(rng: np.random.Generator, sizes: list[int]) -> list[LabelledBatch]:
    from wirelearn.capture import FrameBatch

    out, first = [], 1
    names = np.array(["benign", "scan", "dos", None], dtype=object)
    for i, n in enumerate(sizes):
        frame = np.arange(first, first + n, dtype=np.int64)
        fb = _random_batch(rng, n, 30)
        lt = np.full(n, 1 if i % 3 else 113, dtype=np.int64)
        if i == 6:  # a known link type first, then a new one
            lt[n // 2 :] = 101  # two link types in one batch
        fb = FeatureBatch(
            **{**fb.__dict__, "frame": frame, "ts_ns": frame * 1000 + 10**18, "linktype": lt}
        )
        y = names[np.minimum(frame % 5, 3)]
        frames = FrameBatch.from_frames([b"\0" * 60] * n, first_frame=first)
        first += n
        out.append(LabelledBatch(frames=frames, features=fb, labels=y))
    return out


def test_evaluator_metrics_equal_a_per_frame_recount() -> None:
    rng = np.random.default_rng(1)
    models = {
        "rf": SlidingForest(n_trees=3, max_depth=4, min_samples=16, seed=1),
        "nb": NaiveBayes(seed=1),
    }
    ev = Evaluator(models, _ModFeaturizer(), anomaly=_Detector(), window=700, first_step=16)
    stream = _labelled_stream(rng, [0, 300, 1, 2500, 1, 40, 4000, 0, 2000])
    seen: dict[str, list[NDArray[np.object_]]] = {name: [] for name in models}
    labels, scores = [], []
    for lb in stream:
        snap = ev.step(lb)
        assert snap.batch is not None
        for name in models:
            seen[name].append(snap.batch.predictions[name])
        labels.append(lb.labels)
        scores.append(snap.batch.scores if snap.batch.scores is not None else np.zeros(0))
    y = np.concatenate(labels)
    has = np.array([v is not None for v in y])
    classes = ev.classes.labels
    k = len(classes) + 1
    code = {c: i for i, c in enumerate(classes)}
    for st in ev.states:
        pred = np.concatenate(seen[st.name])[has]
        ref = np.zeros((k, k), dtype=np.int64)
        np.add.at(ref, ([code[t] for t in y[has]], [code.get(p, k - 1) for p in pred]), 1)
        assert np.array_equal(st.cum.m, ref)
        last = sum(len(lb.labels) for lb in stream[-1:])  # the window holds the last batch
        tail = np.concatenate(seen[st.name])[-last:][has[-last:]]
        ref_roll = np.zeros((k, k), dtype=np.int64)
        np.add.at(
            ref_roll,
            ([code[t] for t in y[-last:][has[-last:]]], [code.get(p, k - 1) for p in tail]),
            1,
        )
        assert np.array_equal(st.roll.current.m, ref_roll)
    s = np.concatenate(scores)[has]
    pos = y[has] != "benign"
    bins = _auc_bins(s)
    assert np.array_equal(ev._auc_pos, np.bincount(bins[pos], minlength=len(ev._auc_pos)))
    assert np.array_equal(ev._auc_neg, np.bincount(bins[~pos], minlength=len(ev._auc_neg)))
    assert ev.linktypes == {1, 101, 113}
    ref_traffic = _RefTraffic(20_000, 2_000)
    for lb in stream:
        ref_traffic.update(lb.features)
    _assert_same_traffic(ev.traffic, ref_traffic)


# --- forest ------------------------------------------------------------------------------------


def _reference_proba(forest: SlidingForest, X: NDArray[np.float32]) -> NDArray[np.float32]:
    """The float32 path as it was: a row-major copy, then ``value[tree.apply(X)]`` tree by tree."""
    Xc = np.ascontiguousarray(X)
    out = np.zeros((len(X), len(forest.classes_)), dtype=np.float32)
    for tree, value in forest._compiled_trees():
        out += value[tree.apply(Xc)]
    out /= out.sum(axis=1, keepdims=True)
    return out


def _forest_data(seed: int, n: int, d: int = 9) -> tuple[NDArray[np.float32], NDArray[np.object_]]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    names = np.array(["a", "b", "c", "d"], dtype=object)
    y = names[((X[:, 0] > 0) * 2 + (X[:, 1] + X[:, 2] > 0.5)).astype(int)]
    return X, y


@pytest.mark.parametrize(
    "layout",
    [
        np.ascontiguousarray,
        np.asfortranarray,
        lambda X: np.asfortranarray(np.repeat(X, 2, axis=0))[::2],  # strided, neither order
        lambda X: np.ascontiguousarray(np.repeat(X, 2, axis=1))[:, ::2],
    ],
)
def test_forest_float32_predictions_match_the_copying_reference(
    layout: Callable[[NDArray[np.float32]], NDArray[np.float32]],
) -> None:
    X, y = _forest_data(0, 12_000)
    forest = SlidingForest(n_trees=4, max_depth=7, max_samples=900, min_samples=100)
    for lo in range(0, 6000, 1500):
        forest.learn_many(X[lo : lo + 1500], y[lo : lo + 1500])
    for rows in (slice(6000, 12_000), slice(0, 1), slice(0, 0)):
        Xt = layout(X[rows])
        assert np.array_equal(Xt, X[rows])
        got = forest.predict_proba_many(Xt)
        if len(Xt):
            ref = _reference_proba(forest, Xt).astype(np.float64)
            assert np.array_equal(got, ref)
            codes, _ = forest.predict_codes_many(Xt)
            assert np.array_equal(codes, np.argmax(ref, axis=1))
        else:
            assert got.shape == (0, 4)


def test_forest_predict_does_not_copy_a_column_major_batch() -> None:
    X, y = _forest_data(1, 40_000, d=40)
    forest = SlidingForest(n_trees=3, max_depth=6, max_samples=500, min_samples=100)
    forest.learn_many(X[:2000], y[:2000])
    XF = np.asfortranarray(X)
    forest.predict_codes_many(XF[:10])  # the compiled trees are built outside the measurement
    tracemalloc.start()
    try:
        forest.predict_codes_many(XF)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Probabilities (n x 4 float32) and per-block leaves, far below a copy of X (n x 40).
    assert peak < XF.nbytes / 3, (peak, XF.nbytes)


class _ConcatForest(SlidingForest):
    """``learn_many`` as it was: the whole pool concatenated, then the kept rows taken."""

    def learn_many(self, X: Any, y: Any) -> None:
        batch = self._begin_learn(X, y)
        if batch is None:
            return
        X64, codes = batch
        pooled = sum(len(c) for c in self._pool_codes) + len(codes)
        if pooled < self.min_samples:
            self._pool_X.append(X64.copy())
            self._pool_codes.append(codes)
            return
        pool_X = np.concatenate([*self._pool_X, X64])
        pool_codes = np.concatenate([*self._pool_codes, codes])
        self._pool_X, self._pool_codes = [], []
        rng = np.random.default_rng([self.seed, self._trees_fitted])
        keep = self._fit_rows(pool_codes, self.max_samples)
        if keep is not None:
            pool_X, pool_codes = pool_X[keep], pool_codes[keep]
        self._trees.append(self._fit_tree(pool_X, pool_codes, int(rng.integers(2**31 - 1))))
        self._trees_fitted += 1
        del self._trees[: -self.n_trees]
        self._count_fit(len(pool_codes))


def test_forest_learning_takes_only_kept_rows_with_the_same_trees() -> None:
    X, y = _forest_data(2, 20_000)
    params: dict[str, Any] = {"n_trees": 5, "max_depth": 6, "max_samples": 700, "min_samples": 300}
    new, ref = SlidingForest(**params), _ConcatForest(**params)
    sizes = [1, 50, 120, 200, 3000, 10, 400, 5000, 299, 1, 2000]
    lo = 0
    for i, n in enumerate(sizes):
        Xb = X[lo : lo + n] if i % 2 else np.asfortranarray(X[lo : lo + n])
        new.learn_many(Xb, y[lo : lo + n])
        ref.learn_many(Xb, y[lo : lo + n])
        lo += n
    assert new._trees_fitted == ref._trees_fitted > 3
    for a, b in zip(new._trees, ref._trees, strict=True):
        for field in ("feature", "threshold", "left", "right", "value", "columns"):
            assert np.array_equal(getattr(a, field), getattr(b, field))
    assert new.cost.samples_fitted == ref.cost.samples_fitted
    assert np.array_equal(new.predict_proba_many(X[-3000:]), ref.predict_proba_many(X[-3000:]))


def test_take_rows_equals_concatenate_then_index() -> None:
    rng = np.random.default_rng(4)
    for _ in range(200):
        parts = [
            rng.random((int(rng.integers(0, 30)), 3)).astype(
                np.float32 if rng.random() < 0.5 else np.float64
            )
            for _ in range(int(rng.integers(1, 5)))
        ]
        full = np.concatenate(parts)
        rows = np.sort(rng.choice(len(full), int(rng.integers(0, len(full) + 1)), replace=False))
        got = _take_rows(parts, rows)
        assert got.dtype == full.dtype and np.array_equal(got, full[rows])


# --- naive Bayes -------------------------------------------------------------------------------


def _nb_batches(
    seed: int, d: int, k: int, sizes: list[int]
) -> list[tuple[NDArray[Any], NDArray[np.object_]]]:
    rng = np.random.default_rng(seed)
    names = np.array([f"c{i}" for i in range(k)], dtype=object)
    centre = rng.normal(0, 3, (k, d))
    scale = rng.uniform(0.2, 4, (k, d))
    out = []
    for i, n in enumerate(sizes):
        codes = rng.integers(0, k, n)
        codes[: min(n, k)] = np.arange(min(n, k))  # every class in the first batch
        X = centre[codes] + rng.standard_normal((n, d)) * scale[codes]
        dtype = np.float32 if i % 2 else np.float64
        Xb = X.astype(dtype)
        out.append((np.asfortranarray(Xb) if i % 3 == 1 else Xb, names[codes]))
    return out


@pytest.mark.parametrize(("d", "k"), [(1, 1), (5, 3), (23, 7)])
def test_naive_bayes_equals_gaussian_nb(d: int, k: int) -> None:
    batches = _nb_batches(d * 10 + k, d, k, [max(k, 40), 1, 700, 2, 3000, 64])
    ours = NaiveBayes(max_fit=None)
    ref = GaussianNB()
    for i, (X, y) in enumerate(batches):
        ours.learn_many(X, y)
        codes = np.array([int(s[1:]) for s in y.tolist()])
        Xr = np.asarray(X, dtype=np.float64)
        if i == 0:
            ref.partial_fit(Xr, codes, classes=np.arange(k))
        else:
            ref.partial_fit(Xr, codes)
        nb = ours._nb
        # The learned state is scikit-learn's, to the last bit.
        for att in ("theta_", "var_", "class_count_", "class_prior_", "epsilon_"):
            assert np.array_equal(getattr(nb, att), getattr(ref, att)), att
    T = _nb_batches(99, d, k, [5000])[0][0]
    got = ours.predict_proba_many(T)
    want = ref.predict_proba(T)
    order = [ours.classes_.index(f"c{c}") for c in ref.classes_.tolist()]
    assert np.array_equal(np.argmax(got[:, order], axis=1), np.argmax(want, axis=1))
    np.testing.assert_allclose(got[:, order], want, rtol=1e-9, atol=1e-300)


def test_naive_bayes_new_classes_midstream_match_gaussian_nb_statistics() -> None:
    """A class first seen later gets its batch statistics; the others merge as in scikit-learn."""
    batches = _nb_batches(5, 6, 4, [50, 300, 900])
    y0 = batches[0][1].copy()
    y0[y0 == "c3"] = "c2"  # c3 appears only from the second batch on
    ours = NaiveBayes(max_fit=None)
    ours.learn_many(batches[0][0], y0)
    assert "c3" not in ours.classes_
    for X, y in batches[1:]:
        ours.learn_many(X, y)
    full_X = np.concatenate([np.asarray(X, dtype=np.float64) for X, _ in batches])
    full_y = np.concatenate([y0, batches[1][1], batches[2][1]])
    nb = ours._nb
    for c in range(4):
        rows = full_y == ours.classes_[nb.classes_[c]]
        assert nb.class_count_[c] == rows.sum()
        np.testing.assert_allclose(nb.theta_[c], full_X[rows].mean(axis=0), rtol=1e-10)
        # Up to scikit-learn's epsilon bookkeeping (about 1e-9 of the largest variance).
        np.testing.assert_allclose(nb.var_[c] - nb.epsilon_, full_X[rows].var(axis=0), rtol=1e-6)


def test_naive_bayes_codes_and_sampled_batches_match_the_label_path() -> None:
    batches = _nb_batches(7, 11, 5, [9000, 300, 70_000, 1])
    by_label, by_code = NaiveBayes(max_fit=4096, seed=3), NaiveBayes(max_fit=4096, seed=3)
    table = ["c0", "c1", "c2", "c3", "c4"]
    for X, y in batches:
        by_label.learn_many(X, y)
        by_code.learn_codes_many(X, LabelCodes([table.index(s) for s in y.tolist()], table))
    for att in ("theta_", "var_", "class_count_", "epsilon_"):
        assert np.array_equal(getattr(by_label._nb, att), getattr(by_code._nb, att))
    assert by_label._nb.class_count_.sum() == 4096 + 300 + 4096 + 1


def test_naive_bayes_constant_and_one_row_batches_update_like_gaussian_nb() -> None:
    ours, ref = NaiveBayes(max_fit=None), GaussianNB()
    X0 = np.array([[1.0, 2.0], [3.0, 5.0], [2.0, 2.0]])
    y0 = np.array(["a", "b", "a"], dtype=object)
    ours.learn_many(X0, y0)
    ref.partial_fit(X0, [0, 1, 0], classes=[0, 1])
    for X, y in (
        (np.array([[4.0, 4.0]] * 5), ["b"] * 5),  # constant rows: no variance of their own
        (np.array([[0.5, -1.0]]), ["a"]),  # one row
    ):
        ours.learn_many(X, np.array(y, dtype=object))
        ref.partial_fit(X, [0 if s == "a" else 1 for s in y])
        for att in ("theta_", "var_", "class_count_", "epsilon_"):
            assert np.array_equal(getattr(ours._nb, att), getattr(ref, att)), att


def test_real_capture_fixture_paths_exist() -> None:
    # The traffic comparison above needs these fixtures (copied into the repo).
    missing = [name for name in _REAL if not Path(FIXTURES / name).is_file()]
    assert not missing


@pytest.mark.parametrize("pressure", [0.0, 0.8])
def test_lazy_predictions_read_like_label_arrays(pressure: float) -> None:
    rng = np.random.default_rng(6)
    models = {"nb": NaiveBayes(seed=0), "rf": SlidingForest(n_trees=2, min_samples=8)}
    ev = Evaluator(models, _ModFeaturizer(), pressure=lambda: pressure, first_step=8, recent=7)
    for lb in _labelled_stream(rng, [200, 1, 3000]):
        snap = ev.step(lb)
        assert snap.batch is not None
        preds = snap.batch.predictions
        n = len(lb.labels)
        assert sorted(preds) == ["nb", "rf"] and len(preds) == 2
        evaluated = np.zeros(n, dtype=bool)
        evaluated[ev._sample(n)] = True
        for name in ("nb", "rf"):
            rows = np.arange(n)[::-1][:50]
            # Read a few rows first (the recent-frames path), then the whole column.
            part = preds.at(name, rows)  # type: ignore[attr-defined]
            full = preds[name]
            assert full is preds[name] and full.dtype == object and len(full) == n
            assert np.array_equal(part, full[rows])
            assert all(v is None for v in full[~evaluated])
            assert all(v in ev.classes.labels for v in full[evaluated] if v is not None)
            assert preds.get("svm") is None
        best = snap.best
        if best is not None and n >= 7:
            shown = [r.prediction for r in snap.recent]
            assert shown == [None if v is None else str(v) for v in preds[best][-7:]]
    assert (ev.evaluated < ev.frames) == (pressure > 0.5)
