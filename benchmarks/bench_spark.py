"""Frames per second of ``wirelearn batch`` feature extraction: the local engine against Spark.

The 1M-frame ``mixed`` benchmark capture (``make_capture.py``, cached) is split
into ``--files`` captures of equal size; both engines then read, decode and
write the whole directory as the Parquet features dataset (no training), one
after the other in the same run, twice each: the first ("cold") Spark run
also starts the Python workers and warms the JVM. The Spark session is started
(and timed) before its jobs, so Spark's rates are the jobs' own; the ratio is
Spark's best rate over the local engine's best.

Usage::

    .venv/bin/python benchmarks/bench_spark.py [--frames 1000000] [--files 8] \\
        [--master local[2]] [--conf spark.executor.memory=2g] [--cache DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence

from make_capture import make_capture

from wirelearn.capture import FrameBatch, PcapWriter, open_capture
from wirelearn.engines import BatchConfig, BatchOutcome, run_local, spark_session
from wirelearn.engines.spark import parse_conf


def split_capture(path: str, folder: str, files: int) -> int:
    """Cut ``path`` into ``files`` captures of consecutive frames in ``folder`` (cached).

    Returns:
        The number of frames written in total.
    """
    marker = os.path.join(folder, ".complete")
    if os.path.isfile(marker):
        with open(marker) as fh:
            return int(fh.read())
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    with open_capture(path) as src:
        batches = list(src)
    whole = FrameBatch.concat(batches)
    n = len(whole)
    step = -(-n // files)
    for i in range(files):
        part = whole.slice(i * step, min(n, (i + 1) * step))
        with PcapWriter(os.path.join(folder, f"part-{i:02d}.pcap")) as w:
            w.write(part)
    with open(marker, "w") as fh:
        fh.write(str(n))
    return n


def report(name: str, outcome: BatchOutcome, seconds: float) -> float:
    rate = outcome.frames / seconds
    print(f"{name:>28}: {outcome.frames:,} frames in {seconds:6.1f} s = {rate:10,.0f} frames/s")
    return rate


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1_000_000, help="default 1000000")
    parser.add_argument("--files", type=int, default=8, help="captures to split into (default 8)")
    parser.add_argument("--master", default="local[2]", help="Spark master (default local[2])")
    parser.add_argument("--conf", action="append", metavar="K=V", help="a Spark property")
    parser.add_argument(
        "--cache",
        default=os.path.join(tempfile.gettempdir(), "wirelearn-bench"),
        help="where the capture and its split are kept between runs",
    )
    args = parser.parse_args(argv)

    os.makedirs(args.cache, exist_ok=True)
    capture = os.path.join(args.cache, f"mixed-{args.frames}.pcap")
    t = time.perf_counter()
    if make_capture(capture, frames=args.frames):
        print(f"wrote {capture} in {time.perf_counter() - t:.1f} s")
    folder = os.path.join(args.cache, f"split-{args.frames}-{args.files}")
    total = split_capture(capture, folder, args.files)
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    print(f"input: {folder}: {args.files} captures, {total:,} frames, {size / 1e6:,.0f} MB")

    with tempfile.TemporaryDirectory(prefix="bench-spark-") as out:
        local_rate = 0.0
        for run in ("cold", "warm"):
            t = time.perf_counter()
            local = run_local(
                BatchConfig(paths=(folder,), out=os.path.join(out, "local"), overwrite=True)
            )
            local_rate = max(
                local_rate, report(f"local engine, {run}", local, time.perf_counter() - t)
            )

        t = time.perf_counter()
        conf = {"spark.ui.enabled": "false", **parse_conf(args.conf)}
        handle = spark_session(args.master, conf, app_name="wirelearn-bench")
        print(f"{'spark session start':>28}: {time.perf_counter() - t:6.1f} s (not counted)")
        from wirelearn.engines._spark_batch import run_spark

        spark_rate = 0.0
        try:
            for run in ("cold", "warm"):
                # The cold run also starts the Python workers and warms the JIT.
                config = BatchConfig(
                    paths=(folder,),
                    engine="spark",
                    out=os.path.join(out, "spark"),
                    overwrite=True,
                    master=args.master,
                )
                t = time.perf_counter()
                spark = run_spark(config, handle=handle)
                name = f"spark {args.master}, {run}"
                spark_rate = max(spark_rate, report(name, spark, time.perf_counter() - t))
        finally:
            handle.close()
    if spark.frames != local.frames:
        print(f"error: the engines read {local.frames} and {spark.frames} frames", file=sys.stderr)
        return 1
    print(f"{'ratio spark / local (best)':>28}: {spark_rate / local_rate:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
