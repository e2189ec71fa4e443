"""Live capture against tcpdump on a veth pair: frames captured and kernel drops.

Two throw-away namespaces joined by a veth pair; tcpreplay sends a capture of
small mixed frames (1,000 distinct frames looped) from namespace A at a fixed
rate; in namespace B, ``LiveSource`` drains to a null sink, ``wirelearn live``
runs the full learning pipeline (a CLI subprocess, ``--no-ui``), and tcpdump
(``tcpdump -i vb0 -w /dev/null``, same ring size) is the anchor. By default
the two run back to back on identical sends, so they never compete for a
CPU; ``--simultaneous`` runs them on the same interface at the same time.

For each rate it prints frames sent, frames captured and kernel drops for
both, the rate tcpreplay really reached, and the capture's CPU time; then the
highest rate each kept with zero drops.

Run as root: ``.venv/bin/python benchmarks/bench_live.py [--frames N] [--rates 100000,300000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from netns import Topology, enter_netns, mixed_frames, netns_cmd, veth_topology, write_pcap  # noqa: E402

from wirelearn.capture import LiveSource  # noqa: E402

DISTINCT = 1000


@dataclass
class Result:
    """One capture run."""

    tool: str
    sent: int
    captured: int
    drops: int
    achieved_pps: float
    cpu_s: float | None = None

    def line(self, rate: int) -> str:
        lost = self.sent - self.captured - self.drops
        cpu = f"  cpu {self.cpu_s:5.2f} s" if self.cpu_s is not None else ""
        other = f"  unaccounted {lost}" if lost else ""
        return (
            f"{rate:>8} pps  {self.tool:<10} sent {self.sent:>8}  at {self.achieved_pps:>9.0f} pps"
            f"  captured {self.captured:>8}  kernel drops {self.drops:>8}{cpu}{other}"
        )


def _tcpreplay(topo: Topology, pcap: Path, rate: int, loops: int) -> subprocess.Popen[str]:
    pace = f"--pps={rate}" if rate else "--topspeed"
    argv = ["tcpreplay", "-i", topo.link.if_a, pace, f"--loop={loops}"]
    argv += ["--preload-pcap", str(pcap)]
    return subprocess.Popen(
        netns_cmd(topo.ns_a, argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


def _replay_stats(out: str) -> tuple[int, float]:
    sent = re.search(r"Actual: (\d+) packets", out)
    rated = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", out)
    if not sent or not rated:
        raise RuntimeError(f"cannot read tcpreplay's summary:\n{out}")
    return int(sent.group(1)), float(rated.group(1))


class _Tcpdump:
    def __init__(self, topo: Topology, buffer_mb: int) -> None:
        argv = [
            "tcpdump",
            "-i",
            topo.link.if_b,
            "-n",
            "-B",
            str(buffer_mb << 10),
            "-w",
            "/dev/null",
        ]
        self.proc = subprocess.Popen(netns_cmd(topo.ns_b, argv), stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        if "listening on" not in line:
            raise RuntimeError(f"tcpdump did not start: {line}")

    def stop(self) -> tuple[int, int]:
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=30)
        captured = re.search(r"(\d+) packets captured", err)
        dropped = re.search(r"(\d+) packets dropped by kernel", err)
        if not captured or not dropped:
            raise RuntimeError(f"cannot read tcpdump's summary:\n{err}")
        return int(captured.group(1)), int(dropped.group(1))


class _Live:
    """LiveSource draining to a null sink on a thread of this process."""

    def __init__(self, topo: Topology, buffer_mb: int) -> None:
        with enter_netns(topo.ns_b):
            self.src = LiveSource([topo.link.if_b], buffer_mb=buffer_mb)
        self.frames = 0
        self.cpu = 0.0
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        t0 = time.thread_time()
        for batch in self.src:
            self.frames += len(batch)
        self.cpu = time.thread_time() - t0

    def stop(self) -> tuple[int, int, float]:
        self.src.close()
        self.thread.join()
        return self.frames, self.src.stats.kernel_drops, self.cpu


class _Pipeline:
    """``wirelearn live --no-ui`` with the full pipeline (decode, features, every model)."""

    def __init__(self, topo: Topology, buffer_mb: int, metrics: Path) -> None:
        exe = str(Path(sys.executable).with_name("wirelearn"))
        argv = [exe, "live", "-i", topo.link.if_b, "--no-ui", "--buffer-size", str(buffer_mb)]
        self.metrics = metrics
        self.proc = subprocess.Popen(
            netns_cmd(topo.ns_b, [*argv, "--metrics", str(metrics)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if "capturing on" in line:
                break
        else:
            raise RuntimeError("wirelearn live did not start")
        self.t0 = resource.getrusage(resource.RUSAGE_CHILDREN)

    def stop(self, sent: int) -> tuple[int, int, float]:
        # Wait (bounded) until the learner has caught up with the capture, then stop it.
        deadline = time.monotonic() + 120
        frames = drops = 0
        while time.monotonic() < deadline:
            frames, drops = self._read()
            if frames + drops >= sent:
                break
            time.sleep(0.5)
        self.proc.send_signal(signal.SIGINT)
        self.proc.communicate(timeout=120)
        frames, drops = self._read()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - self.t0.ru_utime - self.t0.ru_stime
        return frames, drops, cpu

    def _read(self) -> tuple[int, int]:
        try:
            lines = self.metrics.read_text().splitlines()
        except OSError:
            return 0, 0
        for line in reversed(lines):
            try:
                snap = json.loads(line)
            except ValueError:
                continue
            return int(snap["frames"]), int(snap["source"]["kernel_drops"])
        return 0, 0


def run(
    topo: Topology,
    pcap: Path,
    rate: int,
    loops: int,
    buffer_mb: int,
    tools: list[str],
    senders: int = 1,
) -> list[Result]:
    """One send at ``rate`` (split over ``senders`` tcpreplays) captured by ``tools`` at once."""
    live = _Live(topo, buffer_mb) if "wirelearn" in tools else None
    dump = _Tcpdump(topo, buffer_mb) if "tcpdump" in tools else None
    pipe = (
        _Pipeline(topo, buffer_mb, Path(tempfile.mkdtemp()) / "m.jsonl")
        if "pipeline" in tools
        else None
    )
    t0 = time.monotonic()
    replays = [_tcpreplay(topo, pcap, rate // senders, loops // senders) for _ in range(senders)]
    sent = 0
    for proc in replays:
        out, _ = proc.communicate()
        sent += _replay_stats(out)[0]
    achieved = sent / (time.monotonic() - t0)
    time.sleep(1.5)  # let part-filled ring blocks retire (tcpdump's block timeout is 1 s)
    results = []
    if live is not None:
        frames, drops, cpu = live.stop()
        results.append(Result("wirelearn", sent, frames, drops, achieved, cpu))
    if dump is not None:
        captured, dropped = dump.stop()
        results.append(Result("tcpdump", sent, captured, dropped, achieved))
    if pipe is not None:
        frames, drops, cpu = pipe.stop(sent)
        results.append(Result("wirelearn live (full pipeline)", sent, frames, drops, achieved, cpu))
    return results


def drain_rate(topo: Topology, pcap: Path, loops: int, buffer_mb: int) -> list[str]:
    """Capacity without a sender competing for the CPU: frames/s each tool drains from a
    ring already holding every frame (tcpdump is SIGSTOPped during the send and exits
    after ``-c N`` frames; LiveSource is simply not iterated during the send)."""
    lines = []
    n = loops * DISTINCT
    with enter_netns(topo.ns_b):
        src = LiveSource([topo.link.if_b], buffer_mb=buffer_mb)
    out, _ = _tcpreplay(topo, pcap, 0, loops).communicate()
    sent = _replay_stats(out)[0]
    got = 0
    t0 = time.perf_counter()
    c0 = time.process_time()  # this process only runs the capture during the drain
    for batch in src:
        got += len(batch)
        if got >= sent:
            break
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    src.close()
    lines.append(
        f"drain      wirelearn  {got:>8} of {sent} frames in {wall:.3f} s"
        f" = {got / wall:>9.0f} frames/s (cpu {cpu:.3f} s), kernel drops {src.stats.kernel_drops}"
    )
    argv = ["tcpdump", "-i", topo.link.if_b, "-n", "-B", str(buffer_mb << 10), "-c", str(n)]
    proc = subprocess.Popen(
        netns_cmd(topo.ns_b, [*argv, "-w", "/dev/null"]), stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    proc.stderr.readline()
    # ip netns exec execs tcpdump in place, so this pid is tcpdump's.
    os.kill(proc.pid, signal.SIGSTOP)
    out, _ = _tcpreplay(topo, pcap, 0, loops).communicate()
    sent = _replay_stats(out)[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    os.kill(proc.pid, signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    captured = re.search(r"(\d+) packets captured", err)
    dropped = re.search(r"(\d+) packets dropped by kernel", err)
    lines.append(
        f"drain      tcpdump    {captured.group(1) if captured else '?':>8} of {sent} frames in"
        f" {wall:.3f} s = {n / wall:>9.0f} frames/s (cpu {cpu:.3f} s), kernel drops"
        f" {dropped.group(1) if dropped else '?'}"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one line per run, then the best zero-drop rates."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1_000_000, help="frames per send")
    parser.add_argument(
        "--rates",
        default="100000,200000,300000,400000,500000,600000",
        help="comma-separated frames/s to try, ascending",
    )
    parser.add_argument("--buffer-mb", type=int, default=64, help="ring size for both tools")
    parser.add_argument("--simultaneous", action="store_true", help="both tools on one send")
    parser.add_argument(
        "--senders", type=int, default=1, help="parallel tcpreplays sharing the rate"
    )
    parser.add_argument(
        "--drain-mb", type=int, default=512, help="ring for the drain test (0 skips it)"
    )
    parser.add_argument(
        "--no-pipeline",
        dest="pipeline",
        action="store_false",
        help="skip the run of `wirelearn live` with the full learning pipeline",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_live: needs root (network namespaces)", file=sys.stderr)
        return 2
    rates = [int(r) for r in args.rates.split(",") if r]
    loops = max(1, args.frames // DISTINCT)
    best: dict[str, int] = {}
    mode = "simultaneously on one send" if args.simultaneous else "back to back on identical sends"
    print(f"# {loops * DISTINCT} small mixed frames per send; wirelearn and tcpdump {mode}")
    with tempfile.TemporaryDirectory() as tmp, veth_topology() as topo:
        pcap = write_pcap(Path(tmp) / "small.pcap", mixed_frames(DISTINCT, seed=7, max_payload=100))
        for rate in rates:
            groups = (
                [["wirelearn", "tcpdump"]] if args.simultaneous else [["wirelearn"], ["tcpdump"]]
            )
            if args.pipeline:
                groups.append(["pipeline"])
            for tools in groups:
                for r in run(topo, pcap, rate, loops, args.buffer_mb, tools, args.senders):
                    print(r.line(rate), flush=True)
                    if r.drops == 0 and r.captured == r.sent:
                        best[r.tool] = max(best.get(r.tool, 0), int(r.achieved_pps))
        if args.drain_mb:
            for line in drain_rate(topo, pcap, loops, args.drain_mb):
                print(line, flush=True)
    for tool in ("wirelearn", "tcpdump", "wirelearn live (full pipeline)"):
        found = f"{best[tool]} pps reached" if tool in best else "none"
        print(f"# {tool}: highest rate with 0 drops: {found}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
