"""Write the 1M-frame ``mixed`` benchmark capture that every benchmark reads (cached).

The capture comes from ``wirelearn.scenarios`` (seed 0), so it is the same bytes on
every machine. It is written next to its labels (``<stem>.labels.csv`` and
``<stem>.ranges.csv``); if the capture is already there with the expected size,
nothing is done. Files are written under a temporary name and renamed, so an
interrupted run never leaves a capture that looks complete.

Usage::

    .venv/bin/python benchmarks/make_capture.py PATH [--frames 1000000] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from wirelearn.errors import WirelearnError
from wirelearn.scenarios import expected_pcap_size, write_scenario

SCENARIO = "mixed"


def make_capture(path: str, *, frames: int = 1_000_000, seed: int = 0) -> bool:
    """Write the benchmark capture at ``path`` unless it is already there.

    Args:
        path: the pcap file to write; labels go to ``<stem>.labels.csv`` and
            ``<stem>.ranges.csv`` beside it.
        frames: how many frames.
        seed: the scenario seed.

    Returns:
        True if the capture was written, False if the cached one was kept.
    """
    stem = os.path.splitext(path)[0]
    labels, ranges = stem + ".labels.csv", stem + ".ranges.csv"
    size = expected_pcap_size(SCENARIO, frames=frames, seed=seed)
    cached = all(os.path.isfile(p) for p in (path, labels, ranges))
    if cached and os.path.getsize(path) == size:
        return False
    tmp = {p: p + ".tmp" for p in (path, labels, ranges)}
    write_scenario(
        SCENARIO, tmp[path], tmp[labels], frames=frames, seed=seed, ranges_path=tmp[ranges]
    )
    for final, partial in tmp.items():
        os.replace(partial, final)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="the capture to write (pcap)")
    parser.add_argument("--frames", type=int, default=1_000_000, help="default 1000000")
    parser.add_argument("--seed", type=int, default=0, help="default 0")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        wrote = make_capture(args.path, frames=args.frames, seed=args.seed)
    except WirelearnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if wrote:
        took = time.perf_counter() - start
        print(f"{args.path}: wrote {args.frames} frames in {took:.1f}s")
    else:
        print(f"{args.path}: cached ({args.frames} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
