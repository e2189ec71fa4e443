"""What the live dashboard costs: frames/s of ``wirelearn replay`` with the UI against ``--no-ui``.

A labelled ``mixed`` scenario capture is written once; then ``wirelearn replay
--topspeed`` runs over it alternately with the dashboard drawing to a real
pseudo-terminal (``pty.openpty``, sized with ``TIOCSWINSZ``, drained by a
thread like a terminal emulator would) and with ``--no-ui`` (output to
/dev/null), in the same session so both see the same machine load. Process
start-up (imports, model set-up) is measured with ``-c 1`` runs and subtracted,
so the frames/s are those of the pipeline itself. Medians over the repeats.

It also prints the CPU time of one ``render()`` of a real snapshot per terminal
size, which is what the refresh thread spends per frame drawn.

The target: the UI costs at most 5 % of the frames/s.

Run: ``.venv/bin/python benchmarks/bench_dashboard.py [--frames 200000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from io import StringIO
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from rich.console import Console  # noqa: E402

from wirelearn.scenarios import write_scenario  # noqa: E402
from wirelearn.ui import Dashboard, render  # noqa: E402

WIRELEARN = Path(sys.executable).with_name("wirelearn")


def _drain(fd: int, counter: list[int]) -> None:
    """Read a pty master until the child side closes, as a terminal would."""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: every slave descriptor is closed
            return
        if not data:
            return
        counter[0] += len(data)


def run_replay(
    pcap: Path, labels: Path, models: str, *, ui: bool, size: tuple[int, int], count: int | None
) -> tuple[float, float, int]:
    """One ``wirelearn replay``: (wall seconds, CPU seconds, bytes written to the terminal)."""
    cmd = [str(WIRELEARN), "replay", str(pcap), "--labels", str(labels), "--models", models]
    cmd += ["--topspeed"]
    if not ui:
        cmd.append("--no-ui")
    if count is not None:
        cmd += ["-c", str(count)]
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    drained = [0]
    master = reader = None
    if ui:
        master, slave = pty.openpty()
        cols, rows = size
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        reader = threading.Thread(target=_drain, args=(master, drained), daemon=True)
        reader.start()
        io: dict[str, int] = {"stdin": slave, "stdout": slave, "stderr": slave}
    else:
        devnull = subprocess.DEVNULL
        io = {"stdin": devnull, "stdout": devnull, "stderr": devnull}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, **io)  # type: ignore[call-overload]
    if ui:
        os.close(io["stdout"])
    # wait4 gives the child's own CPU time (user + system), which load on the machine
    # disturbs much less than the wall clock.
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if reader is not None and master is not None:
        reader.join(timeout=10)
        os.close(master)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {code}")
    return wall, usage.ru_utime + usage.ru_stime, drained[0]


def run_inprocess(
    pcap: Path, labels: Path, models: str, *, ui: bool, size: tuple[int, int], tty: int
) -> tuple[float, float]:
    """``wirelearn.cli.main(["replay", ...])`` in this process: (wall s, CPU s) of the run alone.

    The UI run gets a pty as stdout (so the CLI sees a terminal and starts the
    dashboard); COLUMNS/LINES give rich the pty's size, since it measures fds 0-2.
    """
    from wirelearn.cli import main as cli_main

    argv = ["replay", str(pcap), "--labels", str(labels), "--models", models, "--topspeed"]
    if not ui:
        argv.append("--no-ui")
    saved = sys.stdout, sys.stderr, dict(os.environ)
    sink = os.fdopen(os.dup(tty), "w", buffering=1) if ui else open(os.devnull, "w")  # noqa: SIM115
    os.environ.pop("CI", None)
    os.environ.update(COLUMNS=str(size[0]), LINES=str(size[1]), TERM="xterm-256color")
    sys.stdout = sys.stderr = sink
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        code = cli_main(argv)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        sys.stdout, sys.stderr = saved[0], saved[1]
        os.environ.clear()
        os.environ.update(saved[2])
        sink.close()
    if code != 0:
        raise SystemExit(f"wirelearn {' '.join(argv)} exited {code}")
    return wall, cpu


class _MeteredDashboard(Dashboard):
    """The CLI's dashboard, keeping each run's refresh counts and CPU time for the report."""

    runs: ClassVar[list[tuple[int, int, float]]] = []

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        self.runs.append((self.refreshes, self.skipped, self.cpu_spent))


def inprocess(pcap: Path, labels: Path, args: argparse.Namespace, size: tuple[int, int]) -> None:
    import wirelearn.ui

    # The CLI imports Dashboard from wirelearn.ui when a run starts: meter it.
    wirelearn.ui.Dashboard = _MeteredDashboard  # type: ignore[misc]
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
    drained = [0]
    threading.Thread(target=_drain, args=(master, drained), daemon=True).start()
    try:
        for ui in (False, True):  # warm up: imports, caches
            run_inprocess(pcap, labels, args.models, ui=ui, size=size, tty=slave)
        walls: dict[bool, list[float]] = {False: [], True: []}
        cpus: dict[bool, list[float]] = {False: [], True: []}
        before = drained[0]
        for _ in range(args.repeats):
            for ui in (False, True):  # interleaved: both modes see the same load
                wall, cpu = run_inprocess(pcap, labels, args.models, ui=ui, size=size, tty=slave)
                walls[ui].append(wall)
                cpus[ui].append(cpu)
        term = (drained[0] - before) / args.repeats
    finally:
        os.close(slave)
    fps, fps_cpu = {}, {}
    for ui in (False, True):
        fps[ui] = args.frames / statistics.median(walls[ui])
        fps_cpu[ui] = args.frames / statistics.median(cpus[ui])
        name = f"UI on a {size[0]}x{size[1]} pty" if ui else "--no-ui"
        runs = ", ".join(f"{w:.2f}/{c:.2f}" for w, c in zip(walls[ui], cpus[ui], strict=True))
        print(
            f"{name:<20} wall/CPU s: {runs} -> {fps[ui]:,.0f} frames/s, "
            f"{fps_cpu[ui]:,.0f} frames per CPU-s"
        )
    print(f"terminal output per UI run: {term / 1e3:.0f} kB")
    measured = _MeteredDashboard.runs[1:]  # without the warm-up run
    for (refreshes, skipped, cpu), run_cpu in zip(measured, cpus[True], strict=False):
        print(
            f"  dashboard thread: {refreshes} refreshes, {skipped} skipped for the CPU budget, "
            f"{cpu * 1e3:.0f} ms CPU = {100 * cpu / run_cpu:.1f} % of the run's CPU"
        )
    _verdict(fps, fps_cpu)


def _verdict(fps: dict[bool, float], fps_cpu: dict[bool, float]) -> None:
    for what, table in (("wall-clock frames/s", fps), ("frames per CPU second", fps_cpu)):
        ratio = table[True] / table[False]
        verdict = "OK" if ratio >= 0.95 else "over the 5 % target"
        print(f"UI / no-UI {what}: {ratio:.3f} ({100 * (1 - ratio):+.1f} % cost): {verdict}")


def render_costs(sizes: list[tuple[int, int]]) -> None:
    """CPU ms of one render() (and its conversion to terminal segments) of a real snapshot."""
    from test_dashboard import run_scenario

    snap = run_scenario(frames=6000, batch=300)[-2]
    print("render() CPU per frame drawn (real snapshot, 4 models, anomaly):")
    for w, h in sizes:
        console = Console(
            file=StringIO(), width=w, height=h, force_terminal=True, color_system="truecolor"
        )
        n = 30
        t0 = time.process_time()
        for _ in range(n):
            console.print(render(snap, width=w, height=h, elapsed=10.0))
        ms = (time.process_time() - t0) / n * 1e3
        print(f"  {w:>3}x{h:<3} {ms:6.1f} ms  ({ms * 4 / 10:4.1f} % of a CPU at 4 frames/s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200_000, help="frames in the capture")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each mode")
    parser.add_argument("--models", default="sgd,nb", help="--models for the replay")
    parser.add_argument("--size", default="160x50", help="terminal size for the UI runs")
    parser.add_argument("--skip-render", action="store_true", help="skip the render() costs")
    parser.add_argument(
        "--subprocess",
        action="store_true",
        help="run the wirelearn command as a child process (start-up measured and subtracted)",
    )
    args = parser.parse_args()
    cols, rows = (int(x) for x in args.size.lower().split("x"))

    if not args.skip_render:
        render_costs([(80, 24), (120, 40), (160, 50), (200, 60)])
    if not WIRELEARN.exists():
        print(f"{WIRELEARN} is missing: install wirelearn into the venv first")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    try:
        pcap, labels = tmp / "mixed.pcap", tmp / "mixed.labels.csv"
        write_scenario("mixed", pcap, labels, frames=args.frames, seed=0)
        print(
            f"\ncapture: {args.frames:,} frames ({pcap.stat().st_size / 1e6:.1f} MB), "
            f"models {args.models}"
        )
        if not args.subprocess:
            inprocess(pcap, labels, args, (cols, rows))
            return 0

        def startup(ui: bool) -> tuple[float, float]:
            runs = [
                run_replay(pcap, labels, args.models, ui=ui, size=(cols, rows), count=1)
                for _ in range(2)
            ]
            return min(r[0] for r in runs), min(r[1] for r in runs)

        start = {False: startup(False), True: startup(True)}
        walls: dict[bool, list[float]] = {False: [], True: []}
        cpus: dict[bool, list[float]] = {False: [], True: []}
        term_bytes = 0
        for _ in range(args.repeats):
            for ui in (False, True):  # interleaved: both modes see the same load
                wall, cpu, nbytes = run_replay(
                    pcap, labels, args.models, ui=ui, size=(cols, rows), count=None
                )
                walls[ui].append(wall)
                cpus[ui].append(cpu)
                term_bytes = max(term_bytes, nbytes)
        fps: dict[bool, float] = {}
        fps_cpu: dict[bool, float] = {}
        for ui in (False, True):
            wall, cpu = statistics.median(walls[ui]), statistics.median(cpus[ui])
            fps[ui] = args.frames / max(1e-9, wall - start[ui][0])
            fps_cpu[ui] = args.frames / max(1e-9, cpu - start[ui][1])
            name = f"UI on a {cols}x{rows} pty" if ui else "--no-ui"
            runs = ", ".join(f"{w:.1f}/{c:.1f}" for w, c in zip(walls[ui], cpus[ui], strict=True))
            print(
                f"{name:<20} wall/CPU s: {runs}; start-up {start[ui][0]:.1f}/{start[ui][1]:.1f} s"
                f" -> {fps[ui]:,.0f} frames/s (wall), {fps_cpu[ui]:,.0f} frames per CPU-s"
            )
        per_s = term_bytes / max(1e-9, statistics.median(walls[True]))
        print(f"terminal output with the UI: {term_bytes / 1e3:.0f} kB ({per_s / 1e3:.1f} kB/s)")
        _verdict(fps, fps_cpu)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
