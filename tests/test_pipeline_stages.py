"""The batch plumbing: mini-batching, limits, pacing, tee."""

from __future__ import annotations

import io

import numpy as np
import pytest

from wirelearn.capture import FrameBatch, PcapWriter
from wirelearn.errors import ConfigError
from wirelearn.pipeline import limit, minibatches, pace, tee, where


def _batches(n: int, per: int, gap_ns: int = 1_000_000) -> list[FrameBatch]:
    frames = [bytes([i % 256]) * (14 + i % 7) for i in range(n)]
    ts = np.arange(n, dtype=np.int64) * gap_ns
    whole = FrameBatch.from_frames(frames, ts_ns=ts)
    return [whole.slice(i, i + per) for i in range(0, n, per)]


def _flat(batches: list[FrameBatch]) -> list[bytes]:
    return [b.frame_bytes(i) for b in batches for i in range(len(b))]


def test_minibatches_close_on_size() -> None:
    src = _batches(1000, 333)
    out = list(minibatches(src, 100))
    assert [len(b) for b in out] == [100] * 10
    assert _flat(out) == _flat(src)
    assert np.concatenate([b.frame for b in out]).tolist() == list(range(1, 1001))


def test_minibatches_of_the_source_batch_size_share_its_buffer() -> None:
    # Readers yield batches of the mini-batch size: those pass through with no copy.
    src = _batches(1000, 250)
    out = list(minibatches(src, 250))
    assert [len(b) for b in out] == [250] * 4
    assert all(o.data is s.data for o, s in zip(out, src, strict=True))
    assert _flat(out) == _flat(src)


def test_minibatches_close_on_capture_time_interval() -> None:
    # 1 ms apart: a 0.05 s interval holds 50 frames, before the size of 1000 is reached.
    src = _batches(500, 64)
    out = list(minibatches(src, 1000, interval=0.05))
    assert [len(b) for b in out] == [50] * 10
    for b in out:
        assert int(b.ts_ns[-1] - b.ts_ns[0]) < 50_000_000
    assert _flat(out) == _flat(src)


def test_minibatches_whichever_first_and_gaps() -> None:
    frames = [b"x" * 20] * 6
    ts = np.array([0, 1, 2, 10_000_000_000, 10_000_000_001, 20_000_000_000], dtype=np.int64)
    src = [FrameBatch.from_frames(frames, ts_ns=ts)]
    out = list(minibatches(src, 2, interval=1.0))
    assert [len(b) for b in out] == [2, 1, 2, 1]


@pytest.mark.parametrize(("size", "interval"), [(0, None), (10, 0.0), (10, -1.0)])
def test_minibatches_reject_bad_settings(size: int, interval: float | None) -> None:
    with pytest.raises(ConfigError):
        list(minibatches([], size, interval))


def test_limit_count_and_duration() -> None:
    src = _batches(1000, 128)
    assert sum(len(b) for b in limit(src, count=300)) == 300
    assert sum(len(b) for b in limit(src, count=0)) == 0
    # 1 ms apart: 0.25 s of capture time holds frames at 0..249 ms.
    got = list(limit(src, duration=0.25))
    assert sum(len(b) for b in got) == 250
    assert sum(len(b) for b in limit(src, count=100, duration=0.25)) == 100
    with pytest.raises(ConfigError):
        list(limit(src, duration=0))


def test_where_and_tee_write_the_kept_frames() -> None:
    src = _batches(100, 30)
    buf = io.BytesIO()
    w = PcapWriter(buf)
    kept = list(tee(where(src, lambda b: b.caplen > 17), w))
    assert sum(len(b) for b in kept) == sum(1 for i in range(100) if 14 + i % 7 > 17)
    assert w.frames == sum(len(b) for b in kept)
    assert len(buf.getvalue()) == 24 + sum(16 * len(b) + int(b.caplen.sum()) for b in kept)


def test_pace_waits_for_capture_time() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        now[0] += s

    src = _batches(200, 50, gap_ns=10_000_000)  # 2 s of capture
    out = list(pace(src, 2.0, clock=lambda: now[0], sleep=sleep))
    assert _flat(out) == _flat(src)
    assert now[0] == pytest.approx(1.99 / 2.0, abs=0.06)
    with pytest.raises(ConfigError):
        list(pace(src, 0.0))
