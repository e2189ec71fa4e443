"""Fuzz wirelearn's parsers with hypothesis: ``python fuzz/run.py --cases 100000``.

Runs the targets of ``fuzz_targets.py`` (pcap, pcapng, gzip, resync, slip,
decode) for a share of ``--cases`` each, in parallel processes (``--jobs``),
and prints per target the cases run, the time taken and every failure found
(hypothesis shrinks each to a minimal case, printed so that it can become a
regression fixture in ``fixtures/regress/``). Exit status 1 if anything failed.

Examples::

    .venv/bin/python fuzz/run.py --cases 100000 --jobs 2
    .venv/bin/python fuzz/run.py --cases 2000 --targets slip,decode --seed 7
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fuzz_targets
from hypothesis import HealthCheck, Phase, given, seed, settings


@dataclass
class Outcome:
    target: str
    cases: int
    seconds: float
    failures: list[str] = field(default_factory=list)


def run_target(name: str, cases: int, rng_seed: int) -> Outcome:
    """Run ``cases`` cases of one target; failures are shrunk and reported, not raised."""
    target = fuzz_targets.TARGETS[name]
    fuzz_targets.warm_up(target)
    count = [0]

    @seed(rng_seed)
    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        derandomize=False,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=True,
    )
    @given(case=target.strategy)
    def fuzz(case: object) -> None:
        count[0] += 1
        target.check(case)

    start = time.perf_counter()
    outcome = Outcome(name, 0, 0.0)
    try:
        fuzz()
    except BaseException as exc:  # every failure is reported, whatever it is
        if isinstance(exc, KeyboardInterrupt):
            raise
        outcome.failures.append("".join(traceback.format_exception(exc)))
    outcome.cases = count[0]
    outcome.seconds = time.perf_counter() - start
    return outcome


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=100_000, help="cases in total (default 100000)")
    p.add_argument(
        "--targets",
        default=",".join(fuzz_targets.TARGETS),
        help=f"comma-separated targets (default all: {','.join(fuzz_targets.TARGETS)})",
    )
    p.add_argument("--seed", type=int, default=int(time.time()), help="random seed")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel processes")
    p.add_argument("--rounds", type=int, default=4, help="runs per target (each its own seed)")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = [n for n in names if n not in fuzz_targets.TARGETS]
    if unknown:
        p.error(f"unknown targets {unknown}; choose from {list(fuzz_targets.TARGETS)}")
    # Several rounds per target with their own seeds: one long hypothesis run slows down
    # as it tracks its examples, and rounds spread the work across processes evenly.
    share = max(1, -(-args.cases // (len(names) * args.rounds)))  # at least --cases in all
    jobs = [
        (n, share, args.seed + 1000 * r + i)
        for r in range(args.rounds)
        for i, n in enumerate(names)
    ]
    print(
        f"fuzzing {', '.join(names)}: {share * len(jobs):,} cases, seed {args.seed}, {args.jobs} jobs"
    )
    start = time.perf_counter()
    totals: dict[str, Outcome] = {n: Outcome(n, 0, 0.0) for n in names}
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for out in pool.map(run_target, *zip(*jobs, strict=True)):
            t = totals[out.target]
            t.cases += out.cases
            t.seconds += out.seconds
            t.failures += out.failures
            print(
                f"  {out.target:<7} {out.cases:>7,} cases in {out.seconds:7.1f} s"
                f"  {'FAILED' if out.failures else 'ok'}",
                flush=True,
            )
    wall = time.perf_counter() - start
    print()
    print(f"{'target':<8} {'cases':>9} {'cpu s':>8} {'ms/case':>8}  failures")
    for t in totals.values():
        per = 1000 * t.seconds / t.cases if t.cases else 0.0
        print(f"{t.target:<8} {t.cases:>9,} {t.seconds:>8.1f} {per:>8.2f}  {len(t.failures)}")
    total = sum(t.cases for t in totals.values())
    failures = [f for t in totals.values() for f in t.failures]
    print(f"total: {total:,} cases in {wall:.1f} s wall, {len(failures)} failures")
    for t in totals.values():
        for f in t.failures:
            print(f"\n=== {t.target} ===\n{f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
