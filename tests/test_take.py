"""``FrameBatch.take`` on real captures: the same frames whichever way the bytes are copied.

``take`` copies the selected frames with one mask over their span when they are
in buffer order and fill at least an eighth of it (``_dense_run``), else with
an index per selected byte. Both must give each selected frame's bytes exactly,
for packed batches and for views into a read buffer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from conftest import FIXTURES
from numpy.typing import NDArray

from wirelearn.capture import FrameBatch, _batch, open_capture
from wirelearn.capture._batch import _dense_run

CAPTURES = ["mixed-lo.pcap", "snaplen-chdlc.pcap", "qinq-arp.pcap", "big-endian.pcap"]


def _batches(name: str) -> list[FrameBatch]:
    with open_capture(str(FIXTURES / name)) as source:
        return list(source)


def _packed(batch: FrameBatch) -> FrameBatch:
    """The same frames, packed back to back in a buffer of their own."""
    return FrameBatch.from_frames(
        [batch.frame_bytes(i) for i in range(len(batch))],
        ts_ns=batch.ts_ns,
        wirelen=batch.wirelen,
        first_frame=int(batch.frame[0]) if len(batch) else 1,
        interfaces=batch.interfaces,
        iface=batch.iface,
    )


def _selections(n: int, rng: np.random.Generator) -> list[NDArray[Any]]:
    dense = rng.random(n) < 0.7
    sparse = np.zeros(n, dtype=np.bool_)
    sparse[:: max(n // 2, 1)] = True  # at most 2 or 3 frames, far apart
    picks: list[NDArray[Any]] = [dense, sparse, np.ones(n, np.bool_), np.zeros(n, np.bool_)]
    if n > 2:
        picks += [np.flatnonzero(dense), np.arange(n)[::-1], np.array([1, 1, 0])]
    return picks


def _check(batch: FrameBatch, sel: NDArray[Any]) -> None:
    idx = np.flatnonzero(sel) if sel.dtype == np.bool_ else sel
    got = batch.take(sel)
    assert got.frame.tolist() == batch.frame[idx].tolist()
    assert got.caplen.tolist() == batch.caplen[idx].tolist()
    assert got.ts_ns.tolist() == batch.ts_ns[idx].tolist()
    assert [got.frame_bytes(i) for i in range(len(got))] == [batch.frame_bytes(int(i)) for i in idx]
    assert int(got.offsets[-1]) == int(batch.caplen[idx].sum())


@pytest.mark.parametrize("name", CAPTURES)
def test_take_gives_each_frames_bytes_on_views_and_packed_batches(name: str) -> None:
    rng = np.random.default_rng(len(name))
    batches = _batches(name)
    assert batches and sum(len(b) for b in batches)
    for batch in batches:
        packed = _packed(batch)
        assert not packed.is_view
        for b in (batch, packed):
            for sel in _selections(len(b), rng):
                _check(b, sel)


def test_a_plain_pcap_is_read_as_views() -> None:
    # Otherwise the test above would not cover views.
    assert any(b.is_view for b in _batches("mixed-lo.pcap"))


def test_dense_selections_take_the_span_mask_and_sparse_ones_the_index() -> None:
    batch = _batches("mixed-lo.pcap")[0]
    n = len(batch)
    assert n >= 8
    dense = np.arange(n) % 2 == 0
    sparse = np.zeros(n, dtype=np.bool_)
    sparse[[0, n - 1]] = True
    with mock.patch.object(_batch, "gather_frames", wraps=_batch.gather_frames) as gather:
        _check(batch, dense)
        assert gather.call_count == 1
        # Two small frames at the ends of the batch fill far less than an eighth of it.
        if 8 * int(batch.caplen[[0, n - 1]].sum()) < int(
            batch.spans()[2][-1] - batch.spans()[1][0]
        ):
            _check(batch, sparse)
            assert gather.call_count == 1


def test_dense_run_rules() -> None:
    starts = np.array([0, 10, 20], dtype=np.int64)
    lens = np.array([10, 10, 10], dtype=np.int64)
    assert _dense_run(starts, lens, 30)
    # Out of buffer order, or overlapping (a frame taken twice): not for a mask.
    assert not _dense_run(starts[::-1].copy(), lens, 30)
    assert not _dense_run(np.array([0, 5, 20]), lens, 30)
    assert not _dense_run(np.array([0, 0]), np.array([4, 4]), 8)
    # Zero-length frames at one place do not overlap.
    assert _dense_run(np.array([0, 0, 3]), np.array([0, 3, 3]), 6)
    # Less than an eighth of the span.
    assert not _dense_run(np.array([0, 1000]), np.array([10, 10]), 20)
    assert _dense_run(np.array([0, 150]), np.array([10, 10]), 20)
    assert _dense_run(np.array([7]), np.array([3]), 3)


def test_fixtures_exist() -> None:
    for name in CAPTURES:
        assert Path(FIXTURES / name).is_file(), name
