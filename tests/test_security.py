"""Security and resource bounds: exposure, tampered models, no shell, private outputs, bounded memory.

- ``-Z nobody`` (dropping root after the capture sockets are open) is proven in
  ``tests/test_cli_live.py::test_live_drops_privileges_and_still_captures``; it is
  not repeated here, only checked to still exist.
- ``listen`` and ``send --listen`` bind 127.0.0.1 unless a host is given; another
  address needs it spelled out and warns (checked with ``ss`` in a namespace of
  our own, so the default port 6100 is free).
- A model file that names ``os.system``, or a manifest with a path-traversal
  name, is refused with exit 6 and never runs code: the payload is shown to be
  live when trusted, and its side effect never happens through ``--load-models``.
- No shell is ever run: the package's source has no ``shell=True``,
  ``os.system``, ``os.popen`` or string command lines.
- Outputs are private: ``-w`` is created 0600 (and an existing file made so),
  ``--metrics`` and ``--save-models`` are not group/world-writable even under
  umask 000, and ``-w`` refuses to write through a symlink to a file (a symlink
  to a pipe such as ``/dev/stdout`` still works).
- Bounds: a TCP peer announcing a 2 GiB record, a pcapng block of 4 GiB, an
  endless SLIP frame, a flood of serial garbage and a scan of a million
  addresses each cost time, never memory (tracemalloc, the child's peak RSS, and
  the table sizes).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import socket
import stat
import struct
import subprocess
import sys
import threading
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, ROOT, need_tool
from test_faults import MIXED, WIRELEARN, Proc, frames_in, tshark_frames

from wirelearn.capture import CaptureDecoder, FrameBatch, Interface, open_capture
from wirelearn.capture._slip import SlipDecoder
from wirelearn.capture._writer import encode_pcap_header, open_writer
from wirelearn.errors import FormatError, OutputError, RecordTooLargeError
from wirelearn.features._decode import decode
from wirelearn.features._pipeline import FeaturePipeline
from wirelearn.features._traffic import TrafficCounter

SMALL = FIXTURES / "arp.pcap"


def test_privilege_drop_is_proven_in_the_live_tests() -> None:
    text = (ROOT / "tests" / "test_cli_live.py").read_text()
    assert "def test_live_drops_privileges_and_still_captures(" in text
    assert '"-Z"' in text or "'-Z'" in text


# --- listeners ----------------------------------------------------------------------------------


def _listening(ns: str) -> set[str]:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "ss", "-Hltn"], capture_output=True, text=True, check=True
    ).stdout
    return {line.split()[3] for line in out.splitlines() if line.strip()}


EXPOSED = "reachable from other machines: the stream is unauthenticated and unencrypted"


@pytest.mark.live
@pytest.mark.slow
def test_listeners_bind_loopback_unless_told(tmp_path: Path) -> None:
    from netns import netns_cmd, veth_topology

    need_tool("ss")
    with veth_topology() as topo:
        ns = topo.ns_b
        runs = {
            "127.0.0.1:6101": Proc(
                ["listen", "6101", "--no-ui"], tmp_path, prefix=netns_cmd(ns, [])
            ),
            "127.0.0.1:6100": Proc(
                ["send", MIXED, "--pps", "1"], tmp_path, prefix=netns_cmd(ns, [])
            ),
            f"{topo.link.addr_b}:6102": Proc(
                ["listen", f"{topo.link.addr_b}:6102", "--no-ui"],
                tmp_path,
                prefix=netns_cmd(ns, []),
            ),
            "0.0.0.0:6103": Proc(
                ["send", MIXED, "--listen", "0.0.0.0:6103"], tmp_path, prefix=netns_cmd(ns, [])
            ),
        }
        try:
            for where, p in runs.items():
                p.wait_for(re.escape(f"listening on {where}"))
            bound = _listening(ns)
            assert set(runs) <= bound, bound
            for where, p in runs.items():
                exposed = not where.startswith("127.")
                assert (EXPOSED in p.stderr) == exposed, (where, p.stderr)
        finally:
            for p in runs.values():
                p.proc.terminate()
            results = {w: p.finish() for w, p in runs.items()}
    for where, res in results.items():
        assert res.rc == 0, (where, res.stderr)
        assert "Traceback" not in res.stderr


# --- tampered models ------------------------------------------------------------------------------


def _plant(skops: Path, command: str) -> None:
    """Add to a saved model a node that runs ``os.system(command)`` when it is built."""
    with zipfile.ZipFile(skops) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    schema = json.loads(members["schema.json"])
    schema["content"]["content"]["evil"] = {
        "__class__": "system",
        "__module__": "os",
        "__loader__": "ConstructorFromReduceNode",
        "content": {
            "__class__": "tuple",
            "__module__": "builtins",
            "__loader__": "TupleNode",
            "content": [
                {
                    "__class__": "str",
                    "__module__": "builtins",
                    "__loader__": "JsonNode",
                    "content": json.dumps(command),
                    "is_json": True,
                    "__id__": 1,
                }
            ],
            "__id__": 2,
        },
        "__id__": 3,
    }
    # A dict's keys are rebuilt from a parallel list of key types: add one for "evil".
    key_types = schema["content"]["key_types"]["content"]
    key_types.append(dict(key_types[0]))
    members["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(skops, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


@pytest.mark.slow
def test_tampered_models_are_refused_and_never_run(tmp_path: Path) -> None:
    import skops.io as sio

    good = tmp_path / "good"
    p = Proc(["replay", SMALL, "--models", "sgd", "--no-ui", "--save-models", good], tmp_path)
    res = p.finish()
    assert res.rc == 0, res.stderr
    # A model file whose loading runs a command.
    evil = tmp_path / "evil"
    shutil.copytree(good, evil)
    mark = tmp_path / "pwned"
    _plant(evil / "sgd.skops", f"touch {mark}")
    # A manifest whose model name climbs out of the directory.
    climb = tmp_path / "climb"
    shutil.copytree(good, climb)
    (tmp_path / "outside.skops").write_bytes((good / "sgd.skops").read_bytes())
    manifest = json.loads((climb / "manifest.json").read_text())
    manifest["models"][0]["name"] = "../outside"
    (climb / "manifest.json").write_text(json.dumps(manifest))

    runs = {
        name: Proc(["replay", SMALL, "--no-ui", "--no-learn", "--load-models", d], tmp_path)
        for name, d in (("good", good), ("evil", evil), ("climb", climb))
    }
    out = {name: p.finish() for name, p in runs.items()}
    assert out["good"].rc == 0, out["good"].stderr
    assert out["evil"].rc == 6, out["evil"].stderr
    assert out["evil"].error_lines() == [
        f"wirelearn: error: {evil / 'sgd.skops'}: refusing to load: the file needs types "
        "outside the allow-list: os.system"
    ]
    assert out["climb"].rc == 6, out["climb"].stderr
    assert len(out["climb"].error_lines()) == 1
    assert "model name '../outside' must be" in out["climb"].stderr
    for res in out.values():
        assert "Traceback" not in res.stderr
    assert not mark.exists(), "the planted command ran"
    # The payload is live: trusting the file would have run it.
    data = (evil / "sgd.skops").read_bytes()
    assert "os.system" in sio.get_untrusted_types(data=data)
    sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    assert mark.exists()


# --- no shell -------------------------------------------------------------------------------------

_SHELL_CALLS = {"os.system", "os.popen", "os.execl", "os.execlp", "os.spawnl", "pty.spawn"}


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def test_no_shell_is_ever_run() -> None:
    found = []
    for path in sorted((ROOT / "wirelearn").rglob("*.py")):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if name in _SHELL_CALLS or name.startswith("commands."):
                found.append(f"{where}: {name}")
            for kw in node.keywords:
                if kw.arg == "shell" and not (
                    isinstance(kw.value, ast.Constant) and kw.value.value is False
                ):
                    found.append(f"{where}: shell={ast.unparse(kw.value)}")
            if (
                name.startswith("subprocess.")
                and node.args
                and isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp))
            ):
                found.append(f"{where}: {name} with a command string")
    assert found == []


# --- private outputs ------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.mark.slow
def test_outputs_are_private_even_under_umask_000(tmp_path: Path) -> None:
    out, metrics, models = tmp_path / "out.pcapng", tmp_path / "m.jsonl", tmp_path / "models"
    existing = tmp_path / "old.pcap"
    existing.write_bytes(b"")
    existing.chmod(0o666)
    p = Proc(
        ["replay", SMALL, "--models", "sgd", "--no-ui", "-w", out, "--metrics", metrics,
         "--save-models", models],
        tmp_path,
        umask=0,
    )  # fmt: skip
    q = Proc(["read", SMALL, "-q", "-w", existing], tmp_path, umask=0)
    res, res2 = p.finish(), q.finish()
    assert res.rc == 0 and res2.rc == 0, res.stderr + res2.stderr
    assert _mode(out) == 0o600
    assert _mode(existing) == 0o600
    assert frames_in(existing) == frames_in(SMALL)
    for path in (metrics, models, *models.iterdir()):
        assert not _mode(path) & 0o022, f"{path} is {oct(_mode(path))}"


def test_w_refuses_a_symlink_to_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:secret\n")
    secret.chmod(0o600)
    link = tmp_path / "out.pcap"
    link.symlink_to(secret)
    with pytest.raises(OutputError, match=r"out\.pcap: is a symbolic link: refusing"):
        open_writer(link)
    assert secret.read_text() == "root:secret\n"
    dangling = tmp_path / "dangling.pcap"
    dangling.symlink_to(tmp_path / "created-through-the-link")
    with pytest.raises(OutputError, match="is a symbolic link"):
        open_writer(dangling)
    assert not (tmp_path / "created-through-the-link").exists()


def test_w_through_a_symlink_to_a_pipe_still_works(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link.pcap"
    link.symlink_to(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    with open_writer(link) as w, open_capture(SMALL) as src:
        for b in src:
            w.write(b)
    reader.join(timeout=30)
    (tmp_path / "copy.pcap").write_bytes(got[0])
    assert frames_in(tmp_path / "copy.pcap") == frames_in(SMALL)


@pytest.mark.slow
def test_cli_w_symlink_error_and_dev_stdout(tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:secret\n")
    link = tmp_path / "out.pcap"
    link.symlink_to(secret)
    p = Proc(["read", SMALL, "-q", "-w", link], tmp_path)
    piped = subprocess.Popen(
        [*WIRELEARN, "read", str(SMALL), "-q", "-w", "/dev/stdout"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    data, err = piped.communicate(timeout=180)
    res = p.finish()
    assert res.rc == 5, res.stderr
    assert res.error_lines() == [
        f"wirelearn: error: {link}: is a symbolic link: refusing to write a capture through it "
        "(name the file itself, or remove the link)"
    ]
    assert secret.read_text() == "root:secret\n"
    assert piped.returncode == 0, err
    (tmp_path / "piped.pcap").write_bytes(data)
    assert tshark_frames(tmp_path / "piped.pcap") == len(frames_in(SMALL))


# --- resource bounds ------------------------------------------------------------------------------


def _peak(fn: object) -> int:
    tracemalloc.start()
    try:
        fn()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def peak_rss_prefix(path: Path) -> list[str]:
    """A command prefix that runs the rest as a child of a small interpreter and writes the
    child's peak RSS (KiB) to ``path``.

    A process forked from pytest starts with pytest's resident size as its ``ru_maxrss``
    (Linux keeps the high-water mark across ``exec``), so late in a long session the
    figure would be pytest's, not wirelearn's.
    """
    shim = (
        "import os, subprocess, sys; p = subprocess.Popen(sys.argv[2:]); "
        "_, st, ru = os.wait4(p.pid, 0); "
        "open(sys.argv[1], 'w').write(str(ru.ru_maxrss)); "
        "sys.exit(os.waitstatus_to_exitcode(st))"
    )
    return [sys.executable, "-c", shim, str(path)]


def test_tcp_peer_announcing_a_2gib_record(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(encode_pcap_header(1) + struct.pack("<IIII", 1, 0, 2 << 30, 2 << 30))
            conn.sendall(b"\0" * 65536)
            conn.recv(1)  # until the receiver hangs up

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    rss = tmp_path / "maxrss"
    p = Proc(
        ["connect", f"127.0.0.1:{port}", "--no-ui", "--models", "sgd"],
        tmp_path,
        prefix=peak_rss_prefix(rss),
    )
    res = p.finish()
    listener.close()
    assert res.rc == 4, res.stderr
    assert res.error_lines() == [
        f"wirelearn: error: 127.0.0.1:{port}: sent garbage: tcp://127.0.0.1:{port}: offset 32: "
        "record captured length 2147483648 exceeds the limit of 262144 bytes"
    ]
    # The whole process, scikit-learn included, stays far below the announced 2 GiB.
    assert int(rss.read_text()) < 600 * 1024, rss.read_text()


def test_oversize_lengths_never_allocate() -> None:
    pcap = encode_pcap_header(1) + struct.pack("<IIII", 1, 0, 2 << 30, 2 << 30)
    shb = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
    pcapng = shb + struct.pack("<II", 0x0BAD, 0xFFFFFFF0) + bytes(64)
    epb = shb + struct.pack("<IIHHI", 1, 20, 1, 0, 0) + struct.pack("<I", 20)
    epb += struct.pack("<IIIIIII", 6, 64, 0, 0, 0, 0xFFFFFF00, 0xFFFFFF00) + bytes(64)

    def run(data: bytes) -> Exception:
        dec = CaptureDecoder(name="x")
        try:
            dec.feed(data)
            list(dec.batches())
            list(dec.finish())
        except FormatError as exc:
            return exc
        raise AssertionError("accepted")

    for data, kind, text in (
        (pcap, RecordTooLargeError, "2147483648 exceeds the limit"),
        (pcapng, FormatError, "bad block length 4294967280"),
        (epb, RecordTooLargeError, "4294967040 exceeds the limit"),
    ):
        caught: list[Exception] = []
        assert _peak(lambda d=data, c=caught: c.append(run(d))) < 1 << 20
        assert isinstance(caught[0], kind) and text in str(caught[0]), caught[0]


def test_endless_slip_frame_is_dropped_as_it_streams() -> None:
    dec = SlipDecoder(max_frame=65535)
    chunk = b"\xc0" + b"\x55" * (1 << 16)
    held = []

    def stream() -> None:
        dec.feed(b"\xc0")
        for _ in range(512):  # 32 MiB with no END
            dec.feed(chunk[1:])
            held.append(dec.pending)
            list(dec.batches())
        dec.feed(b"\xc0" + bytes(20) + b"\xc0")

    assert _peak(stream) < 2 << 20
    assert max(held) <= 2 * 65535
    assert [len(b) for b in dec.batches()] == [1]
    assert dec.stats.oversize_dropped == 1


def test_serial_garbage_flood_holds_at_most_one_record() -> None:
    rng = np.random.default_rng(0)
    dec = CaptureDecoder(name="serial", resync=True, max_caplen=65535)
    head = encode_pcap_header(1, 65535)
    held = []

    def flood() -> None:
        dec.feed(head)
        for _ in range(256):  # 16 MiB of noise
            dec.feed(rng.integers(0, 256, 1 << 16, dtype=np.uint8).tobytes())
            list(dec.batches())
            held.append(dec.pending)

    assert _peak(flood) < 8 << 20
    assert max(held) <= 65535 + 16 + (1 << 16)
    assert dec.stats.discarded_bytes > 15 << 20


def _scan_batch(start: int, n: int) -> FrameBatch:
    """``n`` Ethernet/IPv4/UDP frames, every one from a new MAC and IP to a new MAC and IP."""
    i = np.arange(start, start + n, dtype=np.uint64)
    raw = np.zeros((n, 42), dtype=np.uint8)
    be = i.astype(">u4").view(np.uint8).reshape(n, 4)
    raw[:, 0], raw[:, 2:6] = 0x02, be  # dst MAC 02:00:<i>
    raw[:, 6], raw[:, 7], raw[:, 8:12] = 0x02, 0x01, be  # src MAC 02:01:<i>
    raw[:, 12:14] = (0x08, 0x00)
    raw[:, 14], raw[:, 16:18], raw[:, 22], raw[:, 23] = 0x45, (0, 28), 64, 17
    raw[:, 26:30] = be
    raw[:, 26] ^= 10  # source 10.0.0.0/8-ish, one per frame
    raw[:, 30:34] = be[:, ::-1]
    raw[:, 34:36], raw[:, 36:38], raw[:, 38:40] = (0x30, 0x39), (0, 53), (0, 8)
    offsets = np.arange(n + 1, dtype=np.int64) * 42
    return FrameBatch(
        frame=np.arange(start + 1, start + n + 1, dtype=np.int64),
        ts_ns=(1_700_000_000 * 10**9 + i.astype(np.int64) * 1000),
        caplen=np.full(n, 42, dtype=np.int64),
        wirelen=np.full(n, 42, dtype=np.int64),
        iface=np.zeros(n, dtype=np.int32),
        data=raw.reshape(-1),
        offsets=offsets,
        interfaces=(Interface(linktype=1),),
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_million_address_scan_keeps_every_table_bounded() -> None:
    pipeline = FeaturePipeline(max_keys=65536)
    traffic = TrafficCounter()
    n, step = 1_000_000, 50_000
    for start in range(0, n, step):
        fb = decode(_scan_batch(start, step))
        pipeline.transform(fb)
        pipeline.mac_codes(fb)  # what the evaluator shows on the dashboard
        traffic.update(fb)
    assert fb.ip_version[-1] == 4 and fb.sport[-1] == 12345
    assert pipeline.stats is not None
    sizes = pipeline.stats.sizes
    assert sizes and max(sizes.values()) <= 65536, sizes
    assert min(pipeline.stats.evictions.values()) > 0
    assert len(pipeline.mac_encoder) <= 65536 and pipeline.mac_encoder.evictions > 0
    assert pipeline.stats.nbytes < 256 << 20
    assert len(traffic.macs.frames) <= traffic.macs.limit
    assert len(traffic.ips.frames) <= traffic.ips.limit
