"""The progress bar follows the frames handed on, not the reader's read-ahead."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import FIXTURES

from wirelearn._run import ReadProgress, frame_stream
from wirelearn.capture import FrameBatch
from wirelearn.capture._multi import ConcatSource

MIXED = FIXTURES / "scenarios" / "mixed.pcap"  # 22,000 frames


def _quarters(stream: Iterator[FrameBatch]) -> Iterator[FrameBatch]:
    """Hand each batch on in four slices, as pacing does."""
    for batch in stream:
        n = len(batch)
        for k in range(4):
            yield batch.slice(k * n // 4, (k + 1) * n // 4)


def test_position_moves_with_the_frames_handed_on() -> None:
    size = MIXED.stat().st_size
    with ConcatSource([str(MIXED)]) as source:
        progress = ReadProgress(source)
        seen = []
        for batch in progress.passed(_quarters(progress.mark(iter(source)))):
            seen.append((int(batch.frame[-1]), progress.bytes, source.stats.bytes_read))
        final = progress.bytes
    # The whole file is one read-ahead batch: the reader is at its end from the first slice.
    assert all(read == size for _, _, read in seen)
    positions = [b for _, b, _ in seen]
    assert positions == sorted(positions)
    assert positions[0] < size * 0.3 and positions[1] < size * 0.55
    # Each quarter of the frames is about a quarter of the file (records differ in size).
    for frame, pos, _ in seen:
        assert abs(pos / size - frame / 22_000) < 0.1
    assert final == size


def test_filtered_and_limited_streams_end_at_the_input_read() -> None:
    with ConcatSource([str(MIXED)]) as source:
        progress = ReadProgress(source)
        frames = [len(b) for b in frame_stream(source, bpf="tcp", count=500, progress=progress)]
        assert sum(frames) == 500
        # Stopped by -c: the position is the last frame handed on, not the end of the file.
        assert 0 < progress.bytes < MIXED.stat().st_size


@pytest.mark.slow
def test_paced_replay_progress_line_starts_low() -> None:
    # 22,000 frames over 25.5 s of capture at 5x: the first progress lines come well
    # before the end, although the reader has the whole file after its first batch.
    res = subprocess.run(
        [sys.executable, "-m", "wirelearn.cli", "replay", str(MIXED), "--speed", "5", "--no-ui",
         "--models", "sgd", "--progress-every", "0.5"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    shares = [int(m) for m in re.findall(r"(\d+)% read", res.stderr)]
    assert shares, res.stderr
    assert shares[0] <= 50, res.stderr
    assert shares == sorted(shares) and shares[-1] == 100, res.stderr
