"""``wirelearn live`` end to end: capture in a namespace into the learning pipeline and -w."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from netns import mixed_frames, netns_cmd, replay, veth_topology, write_pcap

from wirelearn.capture import read_batches

pytestmark = [pytest.mark.live, pytest.mark.slow]

WIRELEARN = str(Path(sys.executable).with_name("wirelearn"))


def _hashes(path: Path) -> list[str]:
    return [
        hashlib.sha256(b.frame_bytes(i)).hexdigest()
        for b in read_batches(path)
        for i in range(len(b))
    ]


def _wait_for(proc: subprocess.Popen[str], text: str, timeout: float = 60.0) -> str:
    """Read stderr lines until one contains ``text``."""
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return line
    raise AssertionError(f"never saw {text!r} on stderr: {''.join(seen)}")


def test_live_pipeline_captures_every_frame_and_writes_them(tmp_path: Path) -> None:
    frames = mixed_frames(400, seed=11)
    pcap = write_pcap(tmp_path / "send.pcap", frames)
    out = tmp_path / "out.pcapng"
    metrics = tmp_path / "m.jsonl"
    with veth_topology() as topo:
        argv = netns_cmd(
            topo.ns_b,
            [
                WIRELEARN,
                "live",
                "-i",
                topo.link.if_b,
                "-c",
                str(len(frames)),
                "-w",
                str(out),
                "--no-ui",
                "--metrics",
                str(metrics),
                "--duration",
                "60",
            ],
        )
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(proc, "capturing on")
            replay(topo.ns_a, topo.link.if_a, pcap, pps=2000)
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, stderr
    assert "wirelearn summary: 400 frames" in stdout
    assert _hashes(out) == [hashlib.sha256(f).hexdigest() for f in frames]
    # tshark reads the pcapng with the interface recorded per frame.
    tshark = subprocess.run(
        ["tshark", "-r", str(out), "-T", "fields", "-e", "frame.interface_name"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert set(tshark.stdout.split()) == {topo.link.if_b}
    assert metrics.read_text().count("\n") >= 1


def test_live_filter_and_sigterm_summary(tmp_path: Path) -> None:
    # No VLAN tags: live, the kernel strips them and "udp" then matches tagged frames
    # too (tests/test_live.py compares that with tcpdump live); here a file is the oracle.
    frames = mixed_frames(300, seed=5, vlan=False)
    pcap = write_pcap(tmp_path / "send.pcap", frames)
    out = tmp_path / "udp.pcap"
    with veth_topology() as topo:
        argv = netns_cmd(
            topo.ns_b,
            [WIRELEARN, "live", "-i", topo.link.if_b, "-f", "udp", "-w", str(out), "--no-ui"],
        )
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(proc, "capturing on")
            replay(topo.ns_a, topo.link.if_a, pcap, pps=3000)
            time.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        expected = subprocess.run(
            ["tcpdump", "-r", str(pcap), "-w", "-", "udp"], capture_output=True, check=True
        ).stdout
    exp_path = tmp_path / "expected.pcap"
    exp_path.write_bytes(expected)
    assert proc.returncode == 0, stderr
    assert "wirelearn summary" in stdout
    got = _hashes(out)
    assert got == _hashes(exp_path)
    assert len(got) > 50
    # The -w file was closed properly: tshark reads it without error.
    subprocess.run(["tshark", "-r", str(out)], capture_output=True, check=True)


def test_live_drops_privileges_and_still_captures(tmp_path: Path) -> None:
    frames = mixed_frames(100, seed=3)
    pcap = write_pcap(tmp_path / "send.pcap", frames)
    os.chmod(tmp_path, 0o777)
    out = tmp_path / "out.pcap"
    with veth_topology() as topo:
        argv = netns_cmd(
            topo.ns_b,
            [
                WIRELEARN,
                "live",
                "-i",
                topo.link.if_b,
                "-Z",
                "nobody",
                "-c",
                "100",
                "--no-ui",
                "--models",
                "sgd",
                "--duration",
                "60",
            ],
        )
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(proc, "dropped privileges to nobody")
            status = Path(f"/proc/{_child_pid(proc.pid)}/status").read_text()
            uid = next(line for line in status.splitlines() if line.startswith("Uid:"))
            cap = next(line for line in status.splitlines() if line.startswith("CapEff:"))
            _wait_for(proc, "capturing on")
            replay(topo.ns_a, topo.link.if_a, pcap, pps=1000)
            stdout, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert uid.split()[1:] == ["65534"] * 4
    assert int(cap.split()[1], 16) == 0
    assert proc.returncode == 0, stderr
    assert "wirelearn summary: 100 frames" in stdout
    assert not out.exists()


def _child_pid(pid: int) -> int:
    """``ip netns exec`` execs the command, so the pid is wirelearn's own (or its only child)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = children.read_text().split() if children.exists() else []
    return int(kids[0]) if kids else pid


def test_live_errors_are_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [WIRELEARN, "live", "-i", "nosuchif0", "--no-ui"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 4
    assert "Traceback" not in proc.stderr
    assert "nosuchif0" in proc.stderr and "lo" in proc.stderr
    proc = subprocess.run(
        [WIRELEARN, "live", "-i", "lo", "-f", "tcp prt 80", "--no-ui"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "syntax error" in proc.stderr and "Traceback" not in proc.stderr
    nobody = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            WIRELEARN,
            "live",
            "-i",
            "lo",
            "--no-ui",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert nobody.returncode == 4, nobody.stderr
    assert "needs root or CAP_NET_RAW: run with sudo" in nobody.stderr
    assert "Traceback" not in nobody.stderr
