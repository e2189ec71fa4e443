"""Every capture of the shared corpus through the command line: ``read --json``, ``info --json``, ``replay``.

Skipped when ``../shared/captures`` is absent. For each of the ~860 files, as
real subprocesses under a time limit, in a thread pool:

- ``wirelearn read FILE --json``, ``wirelearn info --json FILE`` and
  ``wirelearn replay FILE --no-ui --models sgd`` (the whole learning pipeline,
  one model besides the baseline and the anomaly detector);
- no traceback (exit 70 never happens): each command ends 0, or 3 with exactly one
  ``wirelearn: error:`` line, and all three agree;
- ``info`` reports the frames and the truncated, malformed and undecoded counts,
  consistently with ``read`` (frames) and ``replay`` (its summary);
- no frame before a fault is lost: ``read --json`` prints as many frames as the
  MANIFEST counts (the two files where the manifest counts a record neither tshark
  nor we can read are in ``test_corpus_read.COUNT_EXCEPTIONS``), and for every
  file with a structural fault (exit 3, or a record cut short at the end) the
  frames printed equal those ``tshark`` reads before the fault, frame for frame
  (captured and wire length); where tshark guesses differently, ``tcpdump`` is the
  oracle (``TCPDUMP_ORACLE`` says why).

Speed: starting the interpreter and importing scikit-learn costs seconds per
process, which over 2,600 runs would be most of an hour on two cores. The runs
are therefore forked from a server process that has done the imports once
(``multiprocessing``'s forkserver): each run is still its own process, with its
own stdout and stderr files, exit status and time limit, entering the console
script's ``wirelearn.cli.main`` exactly as ``.venv/bin/wirelearn`` does. A sample
of files (every faulty one among them) also runs through ``.venv/bin/wirelearn``
itself and must give byte-identical output and exit codes.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from conftest import SHARED_CAPTURES, need_tool, shared_captures_available

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not shared_captures_available(), reason="../shared/captures is absent"),
]

_SCRIPT = Path(sys.executable).with_name("wirelearn")
WIRELEARN = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "wirelearn.cli"]
#: Seconds one command may take on one file (the largest takes well under one).
TIME_LIMIT_S = 60.0
#: What the forkserver imports once, so that each run starts at once.
PRELOAD = [
    "wirelearn.cli",
    "wirelearn._run",
    "wirelearn._info",
    "wirelearn._cli_live",
    "wirelearn._cli_sources",
    "wirelearn.capture._multi",
    "wirelearn.capture._bpf",
    "wirelearn.models",
    "wirelearn.ui",
    "wirelearn.outputs",
]
COMMANDS = ("read", "info", "replay")
#: Files where MANIFEST.tsv counts a frame that neither tshark nor we can read (see there).
COUNT_EXCEPTIONS = {
    "suricata-verify/tests/bug-1450-04/tls_DER-incomplete-header.pcap": 6,
    "suricata-verify/tests/bug-1450-05/tls_DER-incomplete-content.pcap": 6,
}


def manifest() -> list[dict[str, str]]:
    if not shared_captures_available():
        return []
    with open(SHARED_CAPTURES / "MANIFEST.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


ROWS = manifest()


def argv_for(command: str, path: str) -> list[str]:
    if command == "read":
        return ["read", path, "--json"]
    if command == "info":
        return ["info", "--json", path]
    return ["replay", path, "--no-ui", "--models", "sgd", "--seed", "1"]


# --- running the CLI, forked from a process that imported it ------------------------------------


def _cli_child(argv: list[str], out: str, err: str, status: str) -> None:
    """In the forked child: stdout/stderr to files, then the console script's entry point.

    The exit code is also written to ``status``: multiprocessing reports 255 when it
    loses track of a child's status, which must not read as wirelearn's own code.
    """
    for fd, path in ((1, out), (2, err)):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(f, fd)
        os.close(f)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - the process's own
    sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.argv = ["wirelearn", *argv]
    from wirelearn.cli import main

    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    Path(status).write_text(str(code))
    sys.exit(code)


@cache
def _context() -> multiprocessing.context.ForkServerContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    seconds: float

    def errors(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.startswith("wirelearn: error:")]


def run_forked(argv: list[str]) -> Run:
    with tempfile.TemporaryDirectory(prefix="wl-corpus-") as d:
        out, err = os.path.join(d, "out"), os.path.join(d, "err")
        status = os.path.join(d, "status")
        start = time.perf_counter()
        proc = _context().Process(target=_cli_child, args=(argv, out, err, status))
        proc.start()
        proc.join(TIME_LIMIT_S)
        if proc.exitcode is None:
            proc.kill()
            proc.join()
            rc = -9
        elif os.path.exists(status):
            rc = int(Path(status).read_text())
        else:
            rc = proc.exitcode  # it died before main() returned (a crash or a signal)
        seconds = time.perf_counter() - start
        proc.close()
        return Run(
            rc,
            Path(out).read_text(errors="replace"),
            Path(err).read_text(errors="replace"),
            seconds,
        )


def run_exec(argv: list[str]) -> Run:
    start = time.perf_counter()
    p = subprocess.run(
        [*WIRELEARN, *argv], capture_output=True, text=True, timeout=300, check=False
    )
    return Run(p.returncode, p.stdout, p.stderr, time.perf_counter() - start)


@cache
def sweep() -> dict[tuple[str, str], Run]:
    """Every command on every file, forked in a thread pool."""
    jobs = [(cmd, r["local_file"]) for r in ROWS for cmd in COMMANDS]

    def one(job: tuple[str, str]) -> Run:
        cmd, local = job
        return run_forked(argv_for(cmd, str(SHARED_CAPTURES / local)))

    with ThreadPoolExecutor(max_workers=max(2, (os.cpu_count() or 2))) as pool:
        return dict(zip(jobs, pool.map(one, jobs), strict=True))


# --- the oracle for faulty files ----------------------------------------------------------------

#: Faulty files where tshark is not the oracle, and why; tcpdump (libpcap) is used instead.
TCPDUMP_ORACLE = {
    # The second record header is impossible (caplen 1409179648). tshark's wiretap then
    # guesses that the file is a patched-libpcap variant with 24-byte record headers and
    # reads a bogus 1-byte second frame; libpcap, like wirelearn, reads the one record and
    # reports the impossible length ("invalid packet capture length 1409179648").
    "suricata-verify/tests/bug-6875-01/fuzz.pcap": "wiretap guesses a patched-pcap variant",
}


def tcpdump_count(path: Path) -> int:
    """Frames tcpdump (libpcap) prints from ``path`` before any fault."""
    proc = subprocess.run(
        [need_tool("tcpdump"), "-n", "-q", "-tt", "-r", str(path)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    return len(proc.stdout.splitlines())


def tshark_lengths(path: Path) -> list[tuple[int, int]]:
    """(captured, wire) length of every frame tshark reads, up to any fault."""
    proc = subprocess.run(
        [need_tool("tshark"), "-n", "-r", str(path), "-T", "fields", "-e", "frame.cap_len",
         "-e", "frame.len"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    return [(int(a), int(b)) for a, b in (ln.split("\t") for ln in proc.stdout.splitlines() if ln)]


# --- the checks -----------------------------------------------------------------------------------


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("row", ROWS, ids=[r["local_file"] for r in ROWS])
def test_capture_through_the_cli(row: dict[str, str]) -> None:
    local = row["local_file"]
    results = sweep()
    read, info, replay = (results[(cmd, local)] for cmd in COMMANDS)
    for cmd, res in zip(COMMANDS, (read, info, replay), strict=True):
        assert res.rc != -9, f"{cmd} ran past {TIME_LIMIT_S} s"
        assert "Traceback" not in res.stderr and res.rc != 70, f"{cmd}:\n{res.stderr}"
        assert res.rc in (0, 3), f"{cmd} exit {res.rc}:\n{res.stderr}"
        # Exit 3 comes with one clear line; exit 0 with none.
        assert len(res.errors()) == (res.rc == 3), f"{cmd}:\n{res.stderr}"
        assert all("\n" not in e for e in res.errors())
    assert read.rc == info.rc == replay.rc, (read.stderr, info.stderr, replay.stderr)

    frames = [json.loads(line) for line in read.stdout.splitlines()]
    expect = COUNT_EXCEPTIONS.get(local, int(row["packets"]))
    assert len(frames) == expect
    assert [f["frame"] for f in frames] == list(range(1, len(frames) + 1))

    summary = json.loads(info.stdout)
    assert summary["frames"] == len(frames)
    for key in ("truncated", "malformed", "undecoded", "truncated_records"):
        assert isinstance(summary[key], int) and summary[key] >= 0, key
    assert summary["truncated"] + summary["malformed"] + summary["undecoded"] <= len(frames)
    assert (summary["error"] is None) == (info.rc == 0)

    assert f"wirelearn summary: {len(frames):,} frames" in replay.stdout, replay.stdout

    faulty = read.rc == 3 or summary["truncated_records"] or summary["warnings"]
    if faulty and len(frames):
        if local in TCPDUMP_ORACLE:
            assert len(frames) == tcpdump_count(SHARED_CAPTURES / local)
        else:
            oracle = tshark_lengths(SHARED_CAPTURES / local)
            assert [(f["cap_len"], f["frame_len"]) for f in frames] == oracle


def faulty_files() -> list[str]:
    return [r["local_file"] for r in ROWS if "FILE-STRUCTURE" in r["notes"] or r["packets"] == "0"]


@pytest.mark.timeout(1800)
def test_forked_runs_equal_the_console_script() -> None:
    """A sample, every faulty file included, gives the same bytes and codes through .venv/bin/wirelearn."""
    sample = faulty_files() + [r["local_file"] for r in ROWS[:: max(1, len(ROWS) // 8)]]
    results = sweep()
    jobs = [(cmd, local) for local in dict.fromkeys(sample) for cmd in COMMANDS]

    def one(job: tuple[str, str]) -> tuple[tuple[str, str], Run]:
        return job, run_exec(argv_for(job[0], str(SHARED_CAPTURES / job[1])))

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        for job, real in pool.map(one, jobs):
            forked = results[job]
            assert real.rc == forked.rc, job
            if job[0] != "replay":  # replay prints timings (µs/frame), which differ run to run
                assert real.stdout == forked.stdout, job
            assert real.errors() == forked.errors(), job


def test_sweep_stays_fast() -> None:
    runs = list(sweep().values())
    assert len(runs) == 3 * len(ROWS)
    slowest = max(r.seconds for r in runs)
    assert slowest < TIME_LIMIT_S
