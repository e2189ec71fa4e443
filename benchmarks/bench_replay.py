"""End-to-end ``wirelearn replay`` on the 1M-frame benchmark capture, against the naive design.

Three measurements, in one run:

1. **End to end**: ``wirelearn replay CAPTURE --no-ui`` as a subprocess, with
   every default model (seven learners, the baseline and the anomaly
   detector), once with the default target (``service``, derived from the
   frames) and once with the scenario's per-frame label file (``--labels``).
   Wall time and the child's CPU time (``getrusage``) are both reported: the
   machine may be shared, and CPU time is what one core spends. A run with
   ``-c 1`` measures start-up (imports, model set-up) and exit, reported apart.
2. **Breakdown**: the same pipeline in this process (``build_evaluator``, the
   mini-batcher, decoding, labels, ``Evaluator.step``), with CPU time per stage:
   reading, decoding, labels, features, every model's predict and learn, the
   anomaly detector, and the evaluator's own bookkeeping (metrics, snapshots).
3. **Naive design** on a slice of the capture: scapy dissects each frame
   (``Ether(bytes)``), a handful of fields become a feature vector, and an
   ``SGDClassifier`` learns it with ``partial_fit`` frame by frame.
4. **Floor**: what any implementation built on the libraries the models are
   specified with must spend on this machine, whatever its own code does:
   importing them (a subprocess that only imports numpy and the scikit-learn
   modules), and the time spent inside scikit-learn's own SGD kernel and tree
   fitting during the breakdown. Set against the CPU budget of 300k frames/s.

Usage::

    .venv/bin/python benchmarks/bench_replay.py [--capture PATH] [--frames 1000000]
        [--naive-frames 10000] [--skip-cli] [--skip-breakdown] [--skip-naive]

The capture is written by ``make_capture.py`` (cached next to ``--capture``).
BLAS is limited to one thread, as the CLI does.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_capture import make_capture  # noqa: E402

DEFAULT_CAPTURE = Path(tempfile.gettempdir()) / "wirelearn-bench" / "mixed-1m.pcap"


def _cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_cli(args: list[str]) -> tuple[float, float, str]:
    """Run ``wirelearn`` with ``args``; return (wall s, CPU s, stdout)."""
    cmd = [sys.executable, "-m", "wirelearn.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    cpu0 = _cpu_children()
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    cpu = _cpu_children() - cpu0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return wall, cpu, done.stdout


def bench_cli(capture: Path, labels: Path, frames: int, extra_args: list[str]) -> float:
    """Headline numbers: the CLI end to end, with and without a label file.

    Returns:
        Frames per CPU-second of the default run (start-up included).
    """
    base = ["replay", str(capture), "--no-ui", *extra_args]
    s_wall, s_cpu, _ = run_cli([*base, "-c", "1"])
    print(f"start-up and exit (-c 1): wall {s_wall:.2f} s, CPU {s_cpu:.2f} s")
    rates = []
    for name, extra in (
        ("target service (default)", []),
        ("--labels FILE", ["--labels", str(labels)]),
    ):
        wall, cpu, out = run_cli([*base, *extra])
        best = next((ln for ln in out.splitlines() if "best model" in ln), "").strip()
        print(
            f"replay, {name}: {frames:,} frames, wall {wall:.2f} s, CPU {cpu:.2f} s -> "
            f"{frames / cpu:,.0f} frames/s per CPU-second ({frames / wall:,.0f} wall); "
            f"without start-up {frames / max(cpu - s_cpu, 1e-9):,.0f} frames/s CPU. {best}"
        )
        rates.append(frames / cpu)
    return rates[0]


#: What the default models import: numpy, scikit-learn's SGD, naive Bayes, trees, kernel maps.
_LIBRARY_IMPORTS = (
    "import numpy, sklearn.linear_model, sklearn.naive_bayes, sklearn.tree,"
    " sklearn.kernel_approximation"
)
#: The end-to-end target of issue 3, frames per CPU-second.
_TARGET_RATE = 300_000


def import_floor(runs: int = 3) -> tuple[float, float]:
    """CPU seconds (best of ``runs``) of a bare interpreter and of one importing the libraries."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    best = []
    for code in ("pass", _LIBRARY_IMPORTS):
        cpus = []
        for _ in range(runs):
            cpu0 = _cpu_children()
            subprocess.run([sys.executable, "-c", code], env=env, check=True)
            cpus.append(_cpu_children() - cpu0)
        best.append(min(cpus))
    return best[0], best[1]


class _Timer:
    """Accumulates CPU seconds per stage."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*a: Any, **k: Any) -> Any:
            t0 = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                self.add(name, time.process_time() - t0)

        return timed

    def add(self, name: str, seconds: float) -> None:
        self.spent[name] = self.spent.get(name, 0.0) + seconds


class _LibraryKernels:
    """CPU seconds spent inside scikit-learn's SGD kernel and tree fitting, while active.

    Wraps the module-level names scikit-learn itself looks up (``_plain_sgd64``/``32``
    in ``linear_model._stochastic_gradient``, ``BaseDecisionTree._fit``); a name missing
    in another scikit-learn release is simply not counted.
    """

    def __init__(self) -> None:
        self._timer = _Timer()
        self.spent = self._timer.spent
        self._undo: list[Callable[[], None]] = []

    def _wrap(self, owner: Any, name: str, label: str) -> None:
        fn = getattr(owner, name, None)
        if fn is None:
            return
        setattr(owner, name, self._timer.wrap(label, fn))
        self._undo.append(lambda: setattr(owner, name, fn))

    def __enter__(self) -> _LibraryKernels:
        from sklearn.linear_model import _stochastic_gradient as sgd
        from sklearn.tree import _classes as tree

        self._wrap(sgd, "_plain_sgd64", "scikit-learn SGD kernel")
        self._wrap(sgd, "_plain_sgd32", "scikit-learn SGD kernel")
        self._wrap(tree.BaseDecisionTree, "_fit", "scikit-learn tree fitting")
        return self

    def __exit__(self, *exc: object) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


def report_floor(frames: int, kernels: dict[str, float]) -> None:
    """Print the CPU budget of the target against what the libraries alone cost."""
    bare, imports = import_floor()
    budget = frames / _TARGET_RATE
    inside = sum(kernels.values())
    left = budget - imports - inside
    print(
        f"\nfloor, {frames:,} frames at {_TARGET_RATE:,} frames/s: a budget of {budget:.2f} CPU s"
    )
    print(f"  {'python alone':44s}{bare:6.2f} s")
    print(f"  {'importing numpy and scikit-learn':44s}{imports:6.2f} s (python included)")
    for name, secs in kernels.items():
        print(f"  {name + ' (breakdown run)':44s}{secs:6.2f} s")
    print(
        f"  left for reading, decoding, features, every prediction, naive Bayes, the anomaly"
        f" detector and metrics: {left:.2f} s ({left / frames * 1e6:.3f} us/frame)"
    )


def bench_breakdown(capture: Path, labels: Path | None, extra_args: list[str]) -> dict[str, float]:
    """Where one core's time goes, stage by stage, in the CLI's own pipeline.

    Returns:
        CPU seconds spent inside scikit-learn's own kernels (see ``_LibraryKernels``).
    """
    from wirelearn._run import build_evaluator
    from wirelearn.capture._multi import ConcatSource
    from wirelearn.cli import build_parser
    from wirelearn.features._decode import decode
    from wirelearn.models._evaluate import LabelledBatch
    from wirelearn.pipeline import MiniBatcher

    argv = ["replay", str(capture), "--no-ui", *extra_args]
    if labels is not None:
        argv += ["--labels", str(labels)]
    args = build_parser().parse_args(argv)
    timer = _Timer()
    t0 = time.process_time()
    source = ConcatSource(args.files)
    setup = build_evaluator(args, source)
    # The learners import scikit-learn when they first fit; imported here, the one-off
    # import counts as set-up, not as the first model's learning time.
    import sklearn.kernel_approximation
    import sklearn.linear_model
    import sklearn.naive_bayes
    import sklearn.tree  # noqa: F401

    timer.add("set-up (incl. label file)", time.process_time() - t0)
    ev = setup.evaluator
    ev.clock = time.process_time  # the models' own timers, in CPU time like the rest
    ev.vendor_names = None  # as run_learning does without the dashboard (--no-ui)
    pipe = setup.pipeline
    pipe.transform = timer.wrap("features", pipe.transform)  # type: ignore[method-assign]
    det = setup.anomaly
    if det is not None:
        det.score_many = timer.wrap("anomaly", det.score_many)  # type: ignore[method-assign]
        det.learn_many = timer.wrap("anomaly", det.learn_many)  # type: ignore[method-assign]
    batches: Iterator[Any] = iter(MiniBatcher(iter(source), args.batch_size, args.batch_interval))
    frames = 0
    with _LibraryKernels() as kernels:
        total0 = time.process_time()
        first: tuple[int, float] | None = None  # frames and CPU s of the first mini-batch
        while True:
            t = time.process_time()
            fbatch = next(batches, None)
            timer.add("read", time.process_time() - t)
            if fbatch is None:
                break
            t = time.process_time()
            fb = decode(fbatch)
            timer.add("decode", time.process_time() - t)
            t = time.process_time()
            y = setup.labels.labels(fb, fbatch)
            timer.add("labels", time.process_time() - t)
            t = time.process_time()
            ev.step(LabelledBatch(frames=fbatch, features=fb, labels=y))
            timer.add("step", time.process_time() - t)
            frames += len(fbatch)
            if first is None:
                first = (frames, time.process_time() - total0)
        total = time.process_time() - total0
    ev.snapshot(final=True)
    models = 0.0
    rows = []
    for st in ev.states:
        rows.append((f"{st.name} predict", st.predict_s))
        rows.append((f"{st.name} learn", st.learn_s))
        models += st.predict_s + st.learn_s
    step = timer.spent.pop("step")
    inner = models + timer.spent.get("features", 0.0) + timer.spent.get("anomaly", 0.0)
    timer.add("evaluator bookkeeping", step - inner)
    rows += [(k, v) for k, v in timer.spent.items() if not k.startswith("set-up")]
    target = "labels" if labels is not None else "service"
    print(
        f"\nbreakdown, target {target}: {frames:,} frames in {total:.2f} CPU s "
        f"({frames / total:,.0f} frames/s, set-up {timer.spent['set-up (incl. label file)']:.2f} s"
        " not included)"
    )
    if first is not None and frames > first[0]:
        # The first mini-batch pays the learners' warm-up (dozens of small learning
        # steps, first fits): the rest is what a long capture runs at.
        rest = (frames - first[0]) / (total - first[1])
        print(
            f"  first mini-batch ({first[0]:,} frames): {first[1]:.2f} CPU s; "
            f"after it: {rest:,.0f} frames/s"
        )
    for name, secs in sorted(rows, key=lambda r: -r[1]):
        print(f"  {name:26s} {secs:7.2f} s {secs / frames * 1e6:7.3f} us/frame {secs / total:6.1%}")
    for name, secs in kernels.spent.items():
        print(f"  of which inside {name}: {secs:.2f} s ({secs / frames * 1e6:.3f} us/frame)")
    return kernels.spent


def bench_naive(capture: Path, labels: Path, n: int) -> float:
    """Frames/s of scapy dissection plus a per-frame ``partial_fit``."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from sklearn.linear_model import SGDClassifier

    from wirelearn.capture import open_capture

    raw: list[bytes] = []
    with open_capture(str(capture)) as source:
        for batch in source:
            for i in range(len(batch)):
                raw.append(batch.frame_bytes(i))
                if len(raw) >= n:
                    break
            if len(raw) >= n:
                break
    from wirelearn.scenarios import LABELS

    names = np.loadtxt(labels, delimiter=",", skiprows=1, dtype=str, max_rows=n)[:, 1]
    classes = np.asarray(LABELS)
    model = SGDClassifier(random_state=0)
    t0 = time.process_time()
    for data, label in zip(raw, names, strict=True):
        pkt = Ether(data)
        x = np.zeros((1, 8))
        x[0, 0] = len(data)
        ip = pkt.getlayer(IP)
        if ip is not None:
            x[0, 1], x[0, 2] = ip.proto, ip.ttl
        l4 = pkt.getlayer(TCP) or pkt.getlayer(UDP)
        if l4 is not None:
            x[0, 3], x[0, 4] = l4.sport, l4.dport
            if isinstance(l4, TCP):
                x[0, 5] = int(l4.flags)
        x[0, 6] = pkt.type if hasattr(pkt, "type") else 0
        model.partial_fit(x, [label], classes=classes)
    took = time.process_time() - t0
    rate = len(raw) / took
    print(
        f"\nnaive (scapy Ether() + partial_fit per frame): {len(raw):,} frames in {took:.2f} CPU s"
        f" -> {rate:,.0f} frames/s"
    )
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE)
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--naive-frames", type=int, default=10_000)
    parser.add_argument("--skip-cli", action="store_true", help="no end-to-end subprocess runs")
    parser.add_argument("--skip-breakdown", action="store_true", help="no per-stage breakdown")
    parser.add_argument("--skip-naive", action="store_true", help="no naive-design run")
    parser.add_argument(
        "--replay-args",
        default="",
        metavar="ARGS",
        help="more wirelearn replay options for every run, e.g. '--batch-size 16384'",
    )
    args = parser.parse_args(argv)
    threadpool_limits(1)
    args.capture.parent.mkdir(parents=True, exist_ok=True)
    make_capture(str(args.capture), frames=args.frames)
    labels = args.capture.with_suffix(".labels.csv")
    print(
        f"capture: {args.capture} ({args.frames:,} frames), {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.1f}"
    )
    extra = args.replay_args.split()
    if extra:
        print(f"replay options: {' '.join(extra)}")
    cli_rate = None if args.skip_cli else bench_cli(args.capture, labels, args.frames, extra)
    if not args.skip_breakdown:
        kernels = bench_breakdown(args.capture, None, extra)
        bench_breakdown(args.capture, labels, extra)
        report_floor(args.frames, kernels)
    if args.skip_naive:
        return 0
    naive = bench_naive(args.capture, labels, args.naive_frames)
    if cli_rate is not None:
        print(
            f"end to end (CPU time, start-up included) over naive: {cli_rate / naive:,.0f}x"
            f" ({cli_rate:,.0f} vs {naive:,.0f} frames/s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
