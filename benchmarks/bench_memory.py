"""Peak memory of ``wirelearn replay`` over 10M frames: the whole pipeline must stay bounded.

The 1M-frame ``mixed`` benchmark capture (``make_capture.py``, cached) is replayed
``--times`` times in one run (``wirelearn replay CAP CAP ...``: one stream of
10M frames, numbered on, through decoding, labels, every model and the anomaly
detector), as a subprocess. Its resident set is sampled from ``/proc/PID/status``
while it runs, and its peak taken from ``wait4``'s ``ru_maxrss`` at the end, so the
report shows both the peak and whether memory grows with the frames seen: the
RSS after the first million frames against the RSS at the end.

Usage::

    .venv/bin/python benchmarks/bench_memory.py [--times 10] [--models sgd,nb] [--limit-mb 300]

Exits 1 if the peak is over ``--limit-mb``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_capture import make_capture

BENCH_DIR = Path(tempfile.gettempdir()) / "wirelearn-bench"
_SCRIPT = Path(sys.executable).with_name("wirelearn")
WIRELEARN = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "wirelearn.cli"]
PROGRESS = re.compile(r"\] ([\d,]+) frames")


def rss_kib(pid: int) -> int | None:
    """The resident set of ``pid`` in KiB, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--capture", type=Path, help="the capture (default: cached by frame count)")
    p.add_argument("--frames", type=int, default=1_000_000, help="frames in the capture")
    p.add_argument("--times", type=int, default=10, help="how many times to replay it in one run")
    p.add_argument("--models", default=None, help="--models for replay (default: all)")
    p.add_argument("--limit-mb", type=float, default=300.0, help="fail above this peak (MiB)")
    args = p.parse_args(argv)

    if args.capture is None:
        args.capture = BENCH_DIR / f"mixed-{args.frames}.pcap"
    args.capture.parent.mkdir(parents=True, exist_ok=True)
    make_capture(str(args.capture), frames=args.frames)
    cmd = [*WIRELEARN, "replay", *[str(args.capture)] * args.times, "--no-ui"]
    cmd += ["--progress-every", "5"]
    if args.models:
        cmd += ["--models", args.models]
    total = args.frames * args.times
    print(
        f"replaying {total:,} frames: {' '.join(cmd[:3])} ... ({args.times} x {args.capture.name})"
    )

    err_path = Path(tempfile.mkstemp(prefix="bench-memory-", suffix=".err")[1])
    samples: list[tuple[float, int, int]] = []  # (seconds, frames so far, RSS KiB)
    start = time.perf_counter()
    with open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            rss = rss_kib(proc.pid)
            counts = PROGRESS.findall(err_path.read_text(errors="replace"))
            frames = int(counts[-1].replace(",", "")) if counts else 0
            if rss is not None:
                samples.append((time.perf_counter() - start, frames, rss))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    stderr = err_path.read_text(errors="replace")
    err_path.unlink()
    if proc.returncode != 0:
        print(stderr[-3000:], file=sys.stderr)
        print(f"wirelearn exited {proc.returncode}", file=sys.stderr)
        return 1
    peak_mib = usage.ru_maxrss / 1024
    print(f"done in {elapsed:.0f} s ({total / elapsed:,.0f} frames/s)")
    print(f"{'frames':>12} {'RSS MiB':>9}")
    step = max(1, len(samples) // 20)
    for _, frames, rss in samples[::step]:
        print(f"{frames:>12,} {rss / 1024:>9.1f}")
    after_first = [rss for _, f, rss in samples if f >= args.frames]
    if after_first and samples:
        first, last = after_first[0] / 1024, samples[-1][2] / 1024
        print(
            f"RSS after the first {args.frames:,} frames: {first:.1f} MiB; at the end: {last:.1f} MiB"
        )
    print(f"peak RSS (ru_maxrss): {peak_mib:.1f} MiB (limit {args.limit_mb:g} MiB)")
    anchor(args.capture, args.frames, total / elapsed, peak_mib)
    return 0 if peak_mib <= args.limit_mb else 1


def anchor(capture: Path, frames: int, rate: float, peak_mib: float) -> None:
    """The same figures for ``tcpdump -nn -q -r`` over one pass of the capture, same run."""
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        print("anchor: tcpdump not found (install it to compare)")
        return
    # Run from a small interpreter: a process forked from this one would report this
    # one's resident size as its own peak (Linux keeps the high-water mark over exec).
    shim = (
        "import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], "
        "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "_, st, ru = os.wait4(p.pid, 0); print(ru.ru_maxrss)"
    )
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", shim, tcpdump, "-nn", "-q", "-r", str(capture)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    took = time.perf_counter() - start
    t_rate, t_mib = frames / took, int(out.stdout) / 1024
    print(
        f"anchor tcpdump -nn -q -r (no learning): {t_rate:,.0f} frames/s, peak RSS {t_mib:.1f} MiB;"
        f" wirelearn/tcpdump: {rate / t_rate:.2f}x the rate, {peak_mib / t_mib:.1f}x the memory"
    )


if __name__ == "__main__":
    sys.exit(main())
