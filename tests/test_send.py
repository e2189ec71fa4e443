"""``wirelearn send``: pacing, looping, synthetic scenarios and the report.

The pieces (``Pacing``, ``Pacer``, ``frame_feed``, ``StreamEncoder``) are
checked on their own with an injected clock; then the installed CLI streams to
a receiver played by the test, which stamps every frame with its arrival time
(``time.monotonic()`` when the bytes completing it arrive) so that rates are
measured where they matter, with loose bounds against a loaded machine.
"""

from __future__ import annotations

import csv
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES

from wirelearn.capture import CaptureDecoder, FrameBatch, Interface, PcapWriter, open_capture
from wirelearn.capture._sender import Pacer, Pacing, SendStats, StreamEncoder, frame_feed
from wirelearn.capture._slip import SlipDecoder
from wirelearn.capture._tcp import DEFAULT_PORT
from wirelearn.errors import ConfigError
from wirelearn.scenarios import generate

CAPTURE = FIXTURES / "vlan-ipv4-tcp-udp.pcap"  # 22 frames
_SCRIPT = Path(sys.executable).with_name("wirelearn")
WIRELEARN = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "wirelearn.cli"]
T0 = 1_700_000_000_000_000_000


def frames_of(batches: Iterator[FrameBatch] | list[FrameBatch]) -> list[bytes]:
    return [b.frame_bytes(i) for b in batches for i in range(len(b))]


def write_capture(path: Path, n: int, *, gap_ns: int = 1_000_000, size: int = 100) -> Path:
    frames = [i.to_bytes(4, "big") * (size // 4) for i in range(n)]
    batch = FrameBatch.from_frames(frames, ts_ns=[T0 + i * gap_ns for i in range(n)])
    with PcapWriter(path) as w:
        w.write(batch)
    return path


# --- Pacing and Pacer ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (
            {"pps": 10, "mbps": 1},
            "choose one of --pps, --mbps, --multiplier, --topspeed, --sleep; got --pps and --mbps",
        ),
        ({"multiplier": 2, "topspeed": True}, "got --multiplier and --topspeed"),
        ({"pps": 0}, "--pps must be a positive number, not 0"),
        ({"mbps": float("nan")}, "--mbps must be a positive number"),
        ({"sleep": -1}, "--sleep must be a number of seconds of at least 0"),
        ({"batch_size": 0}, "--batch-size must be from 1"),
    ],
)
def test_pacing_is_validated(kw: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        Pacing(**kw)  # type: ignore[arg-type]


@dataclass
class FakeClock:
    now: float = 100.0
    waits: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


def paced(pacing: Pacing, batches: list[FrameBatch]) -> list[tuple[float, FrameBatch]]:
    clock = FakeClock()
    return [
        (clock.now - 100.0, s)
        for s in Pacer(pacing, clock=clock, wait=clock.wait).slices(iter(batches))
    ]


def test_pps_sends_small_slices_never_early() -> None:
    batch = FrameBatch.from_frames([b"x" * 60] * 2000)
    out = paced(Pacing(pps=1000), [batch.slice(0, 1024), batch.slice(1024, 2000)])
    assert sum(len(s) for _, s in out) == 2000
    assert max(len(s) for _, s in out) <= 10  # 10 ms of a 1000/s stream
    k = 0
    for t, s in out:
        # Written when its last frame is due: never before, and not later either.
        assert t == pytest.approx((k + len(s) - 1) / 1000)
        k += len(s)


def test_mbps_paces_by_bytes() -> None:
    sizes = [100, 1400] * 50
    batch = FrameBatch.from_frames([b"y" * n for n in sizes])
    out = paced(Pacing(mbps=1.2), [batch])
    bits_before_last = sum(sizes[:-1]) * 8
    assert out[-1][0] == pytest.approx(bits_before_last / 1.2e6)


def test_multiplier_follows_the_capture_timing() -> None:
    ts = [T0 + int(1e9 * x) for x in (0, 0.5, 0.5, 2.0, 4.0)]
    batch = FrameBatch.from_frames([b"z" * 60] * 5, ts_ns=ts)
    out = paced(Pacing(multiplier=2), [batch])
    assert [(t, len(s)) for t, s in out] == [(0.0, 1), (0.25, 2), (1.0, 1), (2.0, 1)]
    out = paced(Pacing(), [batch])  # the default is the capture's own pace
    assert out[-1][0] == pytest.approx(4.0)


def test_sleep_sends_whole_batches_with_pauses_and_topspeed_never_waits() -> None:
    batches = [FrameBatch.from_frames([b"w" * 60] * 100) for _ in range(3)]
    out = paced(Pacing(sleep=0.5, batch_size=100), batches)
    assert [(t, len(s)) for t, s in out] == [(0.0, 100), (0.5, 100), (1.0, 100)]
    assert [(t, len(s)) for t, s in paced(Pacing(topspeed=True), batches)] == [(0.0, 100)] * 3


def test_a_stop_request_ends_the_pacing() -> None:
    batch = FrameBatch.from_frames([b"v" * 60] * 100)
    pacer = Pacer(Pacing(pps=10), wait=lambda s: True)
    assert len(list(pacer.slices(iter([batch])))) == 1  # the first slice is due at once


# --- frame_feed --------------------------------------------------------------------------------------


def test_endless_loops_shift_time_forward_and_limit_stops(tmp_path: Path) -> None:
    path = write_capture(tmp_path / "c.pcap", 10, gap_ns=2_000_000)
    got = list(frame_feed([str(path)], endless=True, limit=35, batch_size=4))
    ts = np.concatenate([b.ts_ns for b in got])
    assert len(ts) == 35
    assert np.concatenate([b.frame for b in got]).tolist() == list(range(1, 36))
    # Each loop starts one mean gap after the previous one ended.
    span, gap = 9 * 2_000_000, 2_000_000
    expected = [T0 + (i % 10) * gap + (i // 10) * (span + gap) for i in range(35)]
    assert ts.tolist() == expected
    assert frames_of(got)[:10] == frames_of(got)[10:20]


def test_timestamps_that_go_back_are_raised_and_counted(tmp_path: Path) -> None:
    batch = FrameBatch.from_frames([b"a" * 60] * 4, ts_ns=[T0, T0 + 50, T0 + 10, T0 + 60])
    path = tmp_path / "c.pcap"
    with PcapWriter(path) as w:
        w.write(batch)
    stats = SendStats()
    got = list(frame_feed([str(path)], stats=stats))
    assert got[0].ts_ns.tolist() == [T0, T0 + 50, T0 + 50, T0 + 60]
    assert stats.clamped == 1


def test_synthetic_feed_writes_labels(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as f:
        got = list(frame_feed(synthetic="mixed", frames=3000, seed=5, batch_size=1000, labels=f))
    expected = list(generate("mixed", frames=3000, seed=5, batch_size=1000))
    assert frames_of(got) == frames_of([b for b, _ in expected])
    rows = list(csv.reader(labels.read_text().splitlines()))
    assert rows[0] == ["frame", "label"]
    assert [r[1] for r in rows[1:]] == np.concatenate([lab for _, lab in expected]).tolist()
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 3001))


# --- StreamEncoder ------------------------------------------------------------------------------------


def test_pcapng_stream_carries_several_interfaces() -> None:
    ifaces = (Interface(linktype=1, name="eth0"), Interface(linktype=101, name="tun0"))
    batch = FrameBatch.from_frames(
        [b"\x45" + bytes(59), b"e" * 60, b"\x45" + bytes(39)], interfaces=ifaces, iface=[1, 0, 1]
    )
    enc = StreamEncoder("pcapng")
    data = enc.encode(batch.slice(0, 2)) + enc.encode(batch.slice(2, 3))
    dec = CaptureDecoder(name="t")
    dec.feed(data)
    got = [*dec.batches(), *dec.finish()]
    assert frames_of(got) == frames_of([batch])
    assert [(i.linktype, i.name) for i in dec.interfaces] == [(1, "eth0"), (101, "tun0")]
    assert np.concatenate([b.linktype for b in got]).tolist() == [101, 1, 101]
    with pytest.raises(ConfigError, match="use --format pcapng"):
        StreamEncoder("pcap").encode(batch)


def test_slip_and_pcap_streams_decode_back() -> None:
    batch = FrameBatch.from_frames([bytes([0xC0, 0xDB]) * 30, b"q" * 70], ts_ns=[T0, T0 + 5])
    enc = StreamEncoder("pcap")
    dec = CaptureDecoder(name="t")
    dec.feed(enc.encode(batch) + enc.encode(batch))
    got = [*dec.batches(), *dec.finish()]
    assert frames_of(got) == frames_of([batch]) * 2
    assert np.concatenate([b.ts_ns for b in got]).tolist() == [T0, T0 + 5] * 2
    sdec = SlipDecoder()
    sdec.feed(StreamEncoder("slip").encode(batch))
    assert frames_of(list(sdec.batches())) == frames_of([batch])
    with pytest.raises(ConfigError, match="choose one of: pcap, pcapng, slip"):
        StreamEncoder("erf")


# --- the CLI, measured by a receiver played by the test -------------------------------------------------


@dataclass
class Received:
    frames: list[bytes]
    ts_ns: list[int]
    arrival: list[float]  # monotonic seconds when each frame was complete
    connected: float = 0.0  # monotonic seconds when the connection was made

    def rate(self) -> float:
        """Frames per second achieved: the frames after the first over the time from the
        connection to the last arrival (frame 0 is due at once). A stall in the middle is
        caught up by the sender, so it costs nothing here."""
        return (len(self.arrival) - 1) / (self.arrival[-1] - self.connected)


def receive(port: int, timeout: float = 60.0) -> Received:
    """Connect to a sender, read its stream to the end, and stamp each frame's arrival."""
    dec = CaptureDecoder(name="test")
    got = Received([], [], [])
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        got.connected = time.monotonic()
        while True:
            data = s.recv(1 << 20)
            now = time.monotonic()
            if data:
                dec.feed(data)
                batches = list(dec.batches())
            else:
                batches = list(dec.finish())
            for b in batches:
                got.frames.extend(frames_of([b]))
                got.ts_ns.extend(b.ts_ns.tolist())
                got.arrival.extend([now] * len(b))
            if not data:
                return got


class Sender:
    """``wirelearn send ... --listen 127.0.0.1:0``: its port, then its exit and stderr."""

    def __init__(self, args: list[str], *, listen: str = "127.0.0.1:0") -> None:
        argv = [*WIRELEARN, "send", *args]
        if listen:
            argv += ["--listen", listen]
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        self.first = self.proc.stderr.readline()

    @property
    def port(self) -> int:
        m = re.search(r"send: listening on 127\.0\.0\.1:(\d+)$", self.first.strip())
        assert m, self.first + self.finish()[1]
        return int(m.group(1))

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, self.first + err


@pytest.fixture
def senders() -> Iterator[list[Sender]]:
    started: list[Sender] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.communicate()


def run_once(senders: list[Sender], args: list[str]) -> tuple[Received, str]:
    tx = Sender([*args, "--once"])
    senders.append(tx)
    got = receive(tx.port)
    code, err = tx.finish()
    assert code == 0, err
    return got, err


REPORT = re.compile(
    r"send: sent ([\d,]+) frames \(([\d,]+) bytes\) in ([\d.]+) s: ([\d,]+) frames/s, ([\d.,]+) Mbit/s"
)


@pytest.mark.slow
def test_pps_rate_measured_at_the_receiver(tmp_path: Path, senders: list[Sender]) -> None:
    path = write_capture(tmp_path / "c.pcap", 1000)
    got, err = run_once(senders, [str(path), "--pps", "500"])
    assert len(got.frames) == 1000
    assert got.rate() == pytest.approx(500, rel=0.1)
    # Smooth: slices of about 10 ms (5 frames) arrive one by one, not one 1000-frame batch.
    # (A stall of a loaded machine merges a few of them; the median is unmoved.)
    _, per_read = np.unique(got.arrival, return_counts=True)
    assert len(per_read) >= 50
    assert np.median(per_read) <= 10
    m = REPORT.search(err)
    assert m and m.group(1) == "1,000" and m.group(2) == "100,000"
    assert int(m.group(4).replace(",", "")) == pytest.approx(500, rel=0.15)


@pytest.mark.slow
def test_mbps_rate_measured_at_the_receiver(tmp_path: Path, senders: list[Sender]) -> None:
    path = write_capture(tmp_path / "c.pcap", 1000, size=500)
    got, err = run_once(senders, [str(path), "--mbps", "4"])
    assert len(got.frames) == 1000
    assert got.rate() * 500 * 8 / 1e6 == pytest.approx(4.0, rel=0.1)
    m = REPORT.search(err)
    assert m and float(m.group(5)) == pytest.approx(4.0, rel=0.15)


@pytest.mark.slow
def test_multiplier_is_relative_to_the_capture(tmp_path: Path, senders: list[Sender]) -> None:
    path = write_capture(tmp_path / "c.pcap", 3001, gap_ns=1_000_000)  # 3 s of capture
    got, _ = run_once(senders, [str(path), "--multiplier", "3"])
    assert got.rate() == pytest.approx(3000, rel=0.15)  # 1000 frames/s of capture, x3
    assert got.ts_ns[-1] - got.ts_ns[0] == 3_000_000_000  # capture time is kept


@pytest.mark.slow
def test_batch_size_and_sleep_send_bursts(tmp_path: Path, senders: list[Sender]) -> None:
    path = write_capture(tmp_path / "c.pcap", 500)
    got, _ = run_once(senders, [str(path), "--batch-size", "100", "--sleep", "0.3"])
    t = np.array(got.arrival)
    gaps = np.diff(t)
    big = np.flatnonzero(gaps > 0.15)
    # Four pauses, after every 100 frames, each about 0.3 s; inside a burst, none.
    assert (big + 1).tolist() == [100, 200, 300, 400]
    assert gaps[big] == pytest.approx([0.3] * 4, abs=0.12)


def test_endless_with_limit_increases_time_across_loops(senders: list[Sender]) -> None:
    got, err = run_once(senders, [str(CAPTURE), "--endless", "--limit", "100", "--topspeed"])
    assert len(got.frames) == 100
    with open_capture(CAPTURE) as src:
        one = frames_of(src)
    assert got.frames == (one * 5)[:100]
    ts = np.array(got.ts_ns)
    assert (np.diff(ts) >= 0).all()
    assert (ts[22:44] > ts[21]).all() and (ts[88:] > ts[87]).all()
    assert "send: sent 100 frames" in err


def test_synthetic_scenario_with_labels(tmp_path: Path, senders: list[Sender]) -> None:
    labels = tmp_path / "labels.csv"
    args = ["--synthetic", "mixed", "--frames", "2000", "--seed", "9", "--topspeed"]
    got, _ = run_once(senders, [*args, "--labels-out", str(labels)])
    expected = list(generate("mixed", frames=2000, seed=9))
    assert got.frames == frames_of([b for b, _ in expected])
    assert got.ts_ns == np.concatenate([b.ts_ns for b, _ in expected]).tolist()
    rows = list(csv.DictReader(labels.read_text().splitlines()))
    names = [r["label"] for r in rows]
    assert names == np.concatenate([lab for _, lab in expected]).tolist()
    assert {"benign", "portscan", "synflood", "arpspoof"} <= set(names)


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_default_listen_address_is_loopback_6100_and_sigterm_reports(senders: list[Sender]) -> None:
    if not port_is_free(DEFAULT_PORT):
        pytest.skip(f"port {DEFAULT_PORT} is in use on this machine")
    tx = Sender([str(CAPTURE), "--pps", "10"], listen="")
    senders.append(tx)
    assert tx.first.strip() == f"wirelearn: send: listening on 127.0.0.1:{DEFAULT_PORT}"
    if shutil.which("ss"):
        ss = subprocess.run(
            ["ss", "-ltnH", f"sport = :{DEFAULT_PORT}"], capture_output=True, text=True
        )
        assert [line.split()[3] for line in ss.stdout.splitlines()] == [f"127.0.0.1:{DEFAULT_PORT}"]
    with socket.create_connection(("127.0.0.1", DEFAULT_PORT)) as s:
        s.settimeout(10)
        head = s.recv(24)
        assert head[:4] == b"\x4d\x3c\xb2\xa1"  # a nanosecond pcap stream starts
        time.sleep(0.3)
        tx.proc.send_signal(signal.SIGTERM)
        code, err = tx.finish()
    assert code == 0, err
    assert "send: stopped" in err
    assert re.search(r"client 127\.0\.0\.1:\d+ connected", err)
    assert REPORT.search(err) or re.search(r"send: sent [1-9] frames", err)


def test_sigint_stops_a_sender_cleanly(senders: list[Sender]) -> None:
    tx = Sender([str(CAPTURE), "--pps", "5", "--once"])
    senders.append(tx)
    with socket.create_connection(("127.0.0.1", tx.port)) as s:
        s.settimeout(10)
        assert s.recv(24)
        tx.proc.send_signal(signal.SIGINT)
        code, err = tx.finish()
        s.settimeout(5)
        rest = b""
        while chunk := s.recv(4096):
            rest += chunk
    assert code == 0, err
    assert "send: stopped" in err and "send: sent " in err
    assert "Traceback" not in err


def test_a_client_going_away_does_not_stop_the_sender(senders: list[Sender]) -> None:
    tx = Sender([str(CAPTURE), "--pps", "50"])
    senders.append(tx)
    with socket.create_connection(("127.0.0.1", tx.port)) as s:
        s.recv(100)
    got = receive(tx.port)  # a second client gets the whole stream from the start
    with open_capture(CAPTURE) as src:
        assert got.frames == frames_of(src)
    tx.proc.send_signal(signal.SIGTERM)
    code, err = tx.finish()
    assert code == 0, err
    assert re.search(r"client 127\.0\.0\.1:\d+ went away", err)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "send needs capture FILEs or --synthetic SCENARIO"),
        (["--synthetic", "nope"], "unknown scenario 'nope'; choose one of: benign, portscan"),
        ([str(CAPTURE), "--framing", "slip"], "--framing goes with --serial"),
        ([str(CAPTURE), "--seed", "3"], "--seed goes with --synthetic"),
        (["-", "--endless", "--to", "127.0.0.1:9"], "stdin (-) cannot be sent --endless"),
        ([str(CAPTURE), "--to", "localhost"], "--to 'localhost': expected HOST:PORT"),
        ([str(CAPTURE), "--to", "h:99999"], "--to 'h:99999': the port must be from 1 to 65535"),
    ],
)
def test_bad_options_are_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from wirelearn.cli import main

    assert main(["send", *args]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_capture_fails_before_listening() -> None:
    res = subprocess.run(
        [*WIRELEARN, "send", str(CAPTURE), "/nonexistent/x.pcap", "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 3
    assert "wirelearn: error: /nonexistent/x.pcap: no such file" in res.stderr
    assert "listening" not in res.stderr


def test_refused_to_is_exit_4() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = subprocess.run(
        [*WIRELEARN, "send", str(CAPTURE), "--to", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 4
    assert f"wirelearn: error: 127.0.0.1:{port}: cannot connect" in res.stderr
    assert "send: sent 0 frames" in res.stderr


def test_a_non_loopback_listener_warns() -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) is not installed")
    # In a fresh, empty network namespace: nothing outside can reach the socket.
    proc = subprocess.Popen(
        [unshare, "--net", *WIRELEARN, "send", str(CAPTURE), "--listen", "0.0.0.0:0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline() + proc.stderr.readline()
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=30)
    assert re.search(r"send: listening on 0\.0\.0\.0:\d+", first), first + rest
    assert "the stream is unauthenticated and unencrypted" in first
    assert proc.returncode == 0


def test_verbose_reports_progress(senders: list[Sender]) -> None:
    got, err = run_once(senders, [str(CAPTURE), "--pps", "10", "--limit", "15", "-v"])
    assert len(got.frames) == 15
    assert re.search(r"sending: [\d,]+ frames", err)


def test_stdin_to_a_single_client() -> None:
    tx = subprocess.Popen(
        [*WIRELEARN, "send", "-", "--once", "--topspeed", "--listen", "127.0.0.1:0"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=False,
    )
    assert tx.stdin is not None and tx.stderr is not None
    first = tx.stderr.readline().decode()
    port = int(re.search(r":(\d+)$", first.strip()).group(1))  # type: ignore[union-attr]
    tx.stdin.write(CAPTURE.read_bytes())
    tx.stdin.close()
    got = receive(port)
    err = tx.stderr.read().decode()
    tx.stderr.close()
    assert tx.wait(30) == 0, err
    with open_capture(CAPTURE) as src:
        assert got.frames == frames_of(src)
