"""Faults through the installed ``wirelearn``: clean stops on signals, and failing peers, ports and disks.

Every test runs the real console script as a subprocess (``.venv/bin/wirelearn``).

Clean stops: SIGINT and SIGTERM during ``replay`` (paced with ``--speed``),
``serial`` (a pty), ``connect`` (a sender on 127.0.0.1) and ``live`` (a veth pair
between network namespaces). Each run must print the final summary, exit 0,
leave a ``-w`` capture that ``tshark -r`` reads without complaint and whose
frames are the first frames sent, write ``--metrics``, and save models that load.

Failures: a TCP peer dropping mid-record, a serial port closing and a full disk
under ``-w`` each end with one clear ``wirelearn: error:`` line and the exit code
of the README's table, and keep everything written so far: the ``-w`` file is
valid up to its last whole record and holds the first N frames of the input.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from conftest import FIXTURES, need_tool

from wirelearn.capture import FrameBatch, open_capture
from wirelearn.capture._slip import slip_encode
from wirelearn.capture._writer import encode_pcap_header, encode_pcap_records

_SCRIPT = Path(sys.executable).with_name("wirelearn")
WIRELEARN = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "wirelearn.cli"]
MIXED = FIXTURES / "scenarios" / "mixed.pcap"  # 22,000 frames over 25.5 s of capture time
#: Seconds a run may take from start-up to exit (start-up alone imports scikit-learn).
RUN_TIMEOUT = 180.0

PROGRESS = re.compile(r"\] ([\d,]+) frames")
#: Runs a command with SIGINT at its default: a shell's background job (``pytest &``)
#: starts with SIGINT ignored, and its children would inherit that.
SIGINT_DEFAULT = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]


# --- running wirelearn ------------------------------------------------------------------------------


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    maxrss_kib: int

    def error_lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.startswith("wirelearn: error:")]


class Proc:
    """A ``wirelearn`` subprocess with its output in files, reaped with its own rusage.

    Args:
        args: the command line after ``wirelearn``.
        workdir: where the output files go.
        prefix: a command to run it under (``ip netns exec NS``).
        stdin: its standard input.
        umask: the umask it starts with (-1: inherit).
    """

    def __init__(
        self,
        args: Sequence[str],
        workdir: Path,
        *,
        prefix: Sequence[str] = (),
        stdin: int | IO[Any] = subprocess.DEVNULL,
        umask: int = -1,
    ) -> None:
        fd, out = tempfile.mkstemp(dir=workdir, prefix="stdout-")
        os.close(fd)
        fd, err = tempfile.mkstemp(dir=workdir, prefix="stderr-")
        os.close(fd)
        self.out_path, self.err_path = Path(out), Path(err)
        with open(out, "wb") as o, open(err, "wb") as e:
            self.proc = subprocess.Popen(
                [*prefix, *SIGINT_DEFAULT, *WIRELEARN, *map(str, args)],
                stdout=o,
                stderr=e,
                stdin=stdin,
                umask=umask,
            )
        self.result: Result | None = None

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_for(
        self, pattern: str | re.Pattern[str], timeout: float = RUN_TIMEOUT
    ) -> re.Match[str]:
        """Wait until stderr matches ``pattern``; fail with the stderr if the process ends first."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.stderr)
            if m:
                return m
            if self.proc.poll() is not None:
                pytest.fail(f"wirelearn ended ({self.proc.returncode}) first:\n{self.stderr}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"no {rx.pattern!r} on stderr in {timeout} s:\n{self.stderr}")
            time.sleep(0.05)

    def wait_for_frames(self, n: int, timeout: float = RUN_TIMEOUT) -> int:
        """Wait until a progress line reports at least ``n`` frames; return the count."""
        deadline = time.monotonic() + timeout
        while True:
            counts = [int(c.replace(",", "")) for c in PROGRESS.findall(self.stderr)]
            if counts and counts[-1] >= n:
                return counts[-1]
            if self.proc.poll() is not None:
                pytest.fail(f"wirelearn ended ({self.proc.returncode}) first:\n{self.stderr}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"fewer than {n} frames in {timeout} s:\n{self.stderr}")
            time.sleep(0.05)

    def finish(self, timeout: float = RUN_TIMEOUT) -> Result:
        """Wait for the exit (killing it after ``timeout``); return its output and peak RSS."""
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"wirelearn did not exit in {timeout} s:\n{self.stderr}")
            time.sleep(0.05)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.result = Result(
            self.proc.returncode,
            self.out_path.read_text(errors="replace"),
            self.stderr,
            int(usage.ru_maxrss),
        )
        return self.result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test started; killed (by their own pid) if still running at the end."""
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()


# --- reading back what was written ------------------------------------------------------------------


def frames_in(path: Path) -> list[bytes]:
    with open_capture(path) as src:
        return [b.frame_bytes(i) for b in src for i in range(len(b))]


def tshark_frames(path: Path) -> int:
    """Frames ``tshark -r`` reads from ``path``; fails on any read error or warning."""
    proc = subprocess.run(
        [need_tool("tshark"), "-n", "-r", str(path), "-T", "fields", "-e", "frame.number"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    complaints = [
        ln for ln in proc.stderr.splitlines() if ln.strip() and "Running as user" not in ln
    ]
    assert proc.returncode == 0 and not complaints, proc.stderr
    return len(proc.stdout.split())


def wait_for_file_frames(path: Path, n: int, proc: Proc, timeout: float = RUN_TIMEOUT) -> None:
    """Wait until the ``-w`` file holds ``n`` frames."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if len(frames_in(path)) >= n:
                return
        if proc.proc.poll() is not None:
            pytest.fail(f"wirelearn ended ({proc.proc.returncode}) first:\n{proc.stderr}")
        assert time.monotonic() < deadline, "the frames did not reach the -w file"
        time.sleep(0.1)


def check_written(path: Path, sent: Sequence[bytes], *, at_least: int = 1) -> int:
    """The ``-w`` file is a valid capture holding the first N frames sent; return N."""
    n = tshark_frames(path)
    got = frames_in(path)
    assert len(got) == n >= at_least
    assert got == list(sent[:n]), "the -w file is not the first frames sent"
    return n


def check_clean_stop(res: Result, work: Path, sent: Sequence[bytes]) -> None:
    """What every clean stop leaves: summary, exit 0, -w, --metrics, --save-models."""
    assert res.rc == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert "wirelearn summary:" in res.stdout
    assert "wirelearn: stopped" in res.stderr
    assert not res.error_lines(), res.stderr
    check_written(work / "out.pcapng", sent)
    lines = (work / "metrics.jsonl").read_text().splitlines()
    assert lines and all(isinstance(json.loads(ln), dict) for ln in lines)
    from wirelearn.models import load_models

    models = load_models(work / "models")
    assert {"sgd", "anomaly"} <= set(models)


def outputs(work: Path) -> list[str]:
    return [
        "-w",
        str(work / "out.pcapng"),
        "--metrics",
        str(work / "metrics.jsonl"),
        "--save-models",
        str(work / "models"),
        "--no-ui",
        "--models",
        "sgd",
        "--progress-every",
        "0.2",
    ]


def mixed_frames(n: int | None = None) -> list[bytes]:
    with open_capture(MIXED) as src:
        batch = FrameBatch.concat(list(src)).compact()
    n = len(batch) if n is None else n
    return [batch.frame_bytes(i) for i in range(n)]


def mixed_batch(n: int) -> FrameBatch:
    with open_capture(MIXED) as src:
        return FrameBatch.concat(list(src)).compact().slice(0, n)


SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]


# --- a sender on 127.0.0.1 ------------------------------------------------------------------------


class PcapSender:
    """Serves one client a pcap stream of ``batch``, paced, optionally dropping mid-record.

    Args:
        batch: the frames to send.
        per_second: frames per second (None: all at once).
        cut_after: send this many whole frames and half the next, then close.
    """

    def __init__(
        self, batch: FrameBatch, *, per_second: float | None = None, cut_after: int | None = None
    ) -> None:
        self.batch = batch
        self.per_second = per_second
        self.cut_after = cut_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(RUN_TIMEOUT)
        with contextlib.suppress(OSError):
            conn, _ = self.listener.accept()
            with conn:
                conn.sendall(encode_pcap_header(1))
                if self.cut_after is not None:
                    whole = encode_pcap_records(self.batch.slice(0, self.cut_after))
                    nxt = encode_pcap_records(self.batch.slice(self.cut_after, self.cut_after + 1))
                    conn.sendall(whole + nxt[: len(nxt) // 2])
                    # Let the receiver read it all before the connection goes.
                    time.sleep(0.5)
                    return
                step = 10
                for i in range(0, len(self.batch), step):
                    if self.stop.is_set():
                        return
                    conn.sendall(encode_pcap_records(self.batch.slice(i, i + step)))
                    if self.per_second:
                        time.sleep(step / self.per_second)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(timeout=10)


# --- clean stops ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_during_paced_replay(sig: int, tmp_path: Path, procs: list[Proc]) -> None:
    p = Proc(["replay", MIXED, "--speed", "1", *outputs(tmp_path)], tmp_path)
    procs.append(p)
    p.wait_for_frames(500)
    p.proc.send_signal(sig)
    check_clean_stop(p.finish(), tmp_path, mixed_frames())


@pytest.mark.slow
@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_during_serial(sig: int, tmp_path: Path, procs: list[Proc]) -> None:
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    batch = mixed_batch(3000)
    stop = threading.Event()

    def feed() -> None:
        for i in range(0, len(batch), 20):
            if stop.is_set():
                return
            with contextlib.suppress(OSError):
                os.write(master, slip_encode(batch.slice(i, i + 20)))
            time.sleep(0.05)

    feeder = threading.Thread(target=feed, daemon=True)
    try:
        p = Proc(["serial", os.ttyname(slave), *outputs(tmp_path)], tmp_path)
        procs.append(p)
        p.wait_for("reading ")
        feeder.start()
        p.wait_for_frames(200)
        p.proc.send_signal(sig)
        res = p.finish()
    finally:
        stop.set()
        if feeder.is_alive():
            feeder.join(timeout=10)
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)
    check_clean_stop(res, tmp_path, [batch.frame_bytes(i) for i in range(len(batch))])


@pytest.mark.slow
@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_during_connect(sig: int, tmp_path: Path, procs: list[Proc]) -> None:
    batch = mixed_batch(5000)
    sender = PcapSender(batch, per_second=400)
    try:
        p = Proc(["connect", f"127.0.0.1:{sender.port}", *outputs(tmp_path)], tmp_path)
        procs.append(p)
        p.wait_for_frames(200)
        p.proc.send_signal(sig)
        res = p.finish()
    finally:
        sender.close()
    check_clean_stop(res, tmp_path, [batch.frame_bytes(i) for i in range(len(batch))])


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_during_live(sig: int, tmp_path: Path, procs: list[Proc]) -> None:
    from netns import mixed_frames as veth_frames
    from netns import netns_cmd, veth_topology, write_pcap

    tcpreplay = need_tool("tcpreplay")
    sent = veth_frames(3000, seed=7)
    pcap = write_pcap(tmp_path / "send.pcap", sent)
    # The -w file lives outside the namespace; nothing else changes (no -Z).
    with veth_topology() as topo:
        p = Proc(
            ["live", "-i", topo.link.if_b, *outputs(tmp_path)],
            tmp_path,
            prefix=netns_cmd(topo.ns_b, []),
        )
        procs.append(p)
        p.wait_for("capturing on")
        replay = subprocess.Popen(
            netns_cmd(topo.ns_a, [tcpreplay, "-q", "-i", topo.link.if_a, "--pps=150", str(pcap)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            p.wait_for_frames(150)
            p.proc.send_signal(sig)
            res = p.finish()
        finally:
            replay.kill()
            replay.wait()
    check_clean_stop(res, tmp_path, sent)


# --- failures that keep what was written ------------------------------------------------------------


@pytest.mark.slow
def test_tcp_peer_dropping_mid_record(tmp_path: Path, procs: list[Proc]) -> None:
    batch = mixed_batch(300)
    sender = PcapSender(batch, cut_after=250)
    try:
        out = tmp_path / "out.pcap"
        p = Proc(
            ["connect", f"127.0.0.1:{sender.port}", "-w", out, "--no-ui", "--models", "sgd"],
            tmp_path,
        )
        procs.append(p)
        res = p.finish()
    finally:
        sender.close()
    assert res.rc == 4, res.stderr
    assert res.error_lines() == [
        f"wirelearn: error: 127.0.0.1:{sender.port}: the sender closed the connection "
        f"mid-record ({(16 + int(batch.caplen[250])) // 2} bytes of a record dropped)"
    ]
    assert "Traceback" not in res.stderr and "wirelearn summary: 250 frames" in res.stdout
    assert check_written(out, [batch.frame_bytes(i) for i in range(300)]) == 250


@pytest.mark.slow
def test_serial_port_closing(tmp_path: Path, procs: list[Proc]) -> None:
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    batch = mixed_batch(120)
    out = tmp_path / "out.pcap"
    try:
        p = Proc(
            ["serial", path, "-w", out, "--no-ui", "--models", "sgd", "--progress-every", "0.2"],
            tmp_path,
        )
        procs.append(p)
        p.wait_for("reading ")
        os.write(master, slip_encode(batch.slice(0, 100)))
        # A quiet line closes no mini-batch (capture time stands still), so the progress
        # line waits for more traffic; the -w file shows what was read.
        wait_for_file_frames(out, 100, p)
        os.write(master, slip_encode(batch.slice(100, 101))[:30])  # half a frame, then gone
    finally:
        os.close(master)
        os.close(slave)
    res = p.finish()
    assert res.rc == 4, res.stderr
    assert res.error_lines() == [
        f"wirelearn: error: {path}: the device was unplugged or the port closed"
    ]
    assert "Traceback" not in res.stderr
    assert check_written(out, [batch.frame_bytes(i) for i in range(120)]) == 100


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "256k") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (root only), unmounted on exit."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["out.pcap", "out.pcapng"])
def test_disk_full_under_w_keeps_a_valid_capture(
    name: str, tmp_path: Path, procs: list[Proc]
) -> None:
    with small_tmpfs(tmp_path / "full") as disk:
        out = disk / name
        p = Proc(["read", MIXED, "-q", "-w", out], tmp_path)
        procs.append(p)
        res = p.finish()
        assert res.rc == 5, res.stderr
        assert res.error_lines() == [
            f"wirelearn: error: {out}: no space left on device; frames written so far are kept"
        ]
        assert "Traceback" not in res.stderr
        n = check_written(out, mixed_frames(), at_least=1000)
        assert out.stat().st_size <= 256 * 1024
        # The learning pipeline stops the same way, with its summary.
        out.unlink()
        p = Proc(["replay", MIXED, "-w", out, "--no-ui", "--models", "sgd"], tmp_path)
        procs.append(p)
        res = p.finish()
        assert res.rc == 5, res.stderr
        assert "wirelearn summary:" in res.stdout
        assert len(res.error_lines()) == 1 and "no space left on device" in res.stderr
        assert check_written(out, mixed_frames(), at_least=1000) == n


# --- the README's exit codes ---------------------------------------------------------------------


def readme_exit_codes() -> dict[int, str]:
    """Code -> meaning, from the table under "## Exit codes" in the README."""
    text = (FIXTURES.parent / "README.md").read_text()
    table = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", table, flags=re.M)
    return {int(code): meaning.strip() for code, meaning in rows}


def test_the_readme_lists_every_exit_code() -> None:
    """The table and the codes tested here (and in test_security.py) are the same set."""
    from wirelearn import errors

    codes = readme_exit_codes()
    assert set(codes) == {0, 2, 3, 4, 5, 6, 7, 70, 130}
    classes = [getattr(errors, n) for n in errors.__all__ if n[0].isupper() and "_" not in n]
    assert {c.exit_code for c in classes if c is not errors.WirelearnError} <= set(codes)
    assert errors.EXIT_INTERNAL == 70 and errors.EXIT_ABORTED == 130


def _shim(tmp_path: Path, name: str, source: str) -> dict[str, str]:
    """An environment whose Python imports ``source`` as module ``name`` first."""
    d = tmp_path / f"shim-{name}"
    d.mkdir()
    (d / f"{name}.py").write_text(source)
    return {**os.environ, "PYTHONPATH": str(d)}


@pytest.mark.slow
def test_exit_codes_2_3_4_7_70(tmp_path: Path) -> None:
    """One run per code of the README's table that no other test triggers through the CLI."""
    mpl = tmp_path / "nompl"
    (mpl / "matplotlib").mkdir(parents=True)
    (mpl / "matplotlib" / "__init__.py").write_text(
        "raise ImportError('No module named matplotlib')\n"
    )
    bug = _shim(
        tmp_path,
        "sitecustomize",
        "import wirelearn.cli\n"
        "def _boom(args):\n    raise RuntimeError('planted bug')\n"
        "wirelearn.cli.cmd_info = _boom\n",
    )
    cases = {
        2: (["read", MIXED, "-f", "tcp prt 80"], None,
            "wirelearn: error: bad filter 'tcp prt 80': can't parse filter expression: syntax error"),
        3: (["read", "/bin/ls"], None,
            "wirelearn: error: /bin/ls: offset 0: not a pcap or pcapng file (magic 0x7f454c46"),
        4: (["connect", "127.0.0.1:1", "--no-ui"], None,
            "wirelearn: error: 127.0.0.1:1: cannot connect: connection refused"),
        7: (["replay", FIXTURES / "arp.pcap", "--no-ui", "--models", "sgd", "--plot",
             tmp_path / "p.png"], {**os.environ, "PYTHONPATH": str(mpl)},
            "wirelearn: error: plotting needs matplotlib: pip install 'wirelearn[plot]'"),
        70: (["info", MIXED], bug,
             "wirelearn: internal error (a bug): please report it with the traceback above"),
    }  # fmt: skip
    runs = {}
    for code, (args, env, _) in cases.items():
        with open(tmp_path / f"{code}.err", "wb") as err:
            runs[code] = subprocess.Popen(
                [*WIRELEARN, *map(str, args)], stdout=subprocess.DEVNULL, stderr=err, env=env
            )
    for code, (_, _, message) in cases.items():
        assert runs[code].wait(timeout=RUN_TIMEOUT) == code, (tmp_path / f"{code}.err").read_text()
        stderr = (tmp_path / f"{code}.err").read_text()
        assert message in stderr, stderr
        assert ("Traceback" in stderr) == (code == 70), stderr
        if code == 2:
            # argparse's own usage errors are exit 2 too.
            res = subprocess.run([*WIRELEARN, "read"], capture_output=True, text=True, check=False)
            assert res.returncode == 2 and "the following arguments are required" in res.stderr


@pytest.mark.slow
def test_exit_130_when_a_second_signal_aborts_the_shutdown(
    tmp_path: Path, procs: list[Proc]
) -> None:
    # Saving every model and drawing the plot keep the shutdown busy for a while.
    p = Proc(
        ["replay", MIXED, "--speed", "1", "--no-ui", "--progress-every", "0.2",
         "--save-models", tmp_path / "models", "--plot", tmp_path / "run.png"],
        tmp_path,
    )  # fmt: skip
    procs.append(p)
    p.wait_for_frames(2000)
    p.proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + RUN_TIMEOUT
    while "wirelearn summary:" not in p.out_path.read_text() and p.proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    p.proc.send_signal(signal.SIGINT)
    res = p.finish()
    assert res.rc == 130, res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "run.png").exists()
