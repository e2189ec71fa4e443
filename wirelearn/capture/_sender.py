"""``wirelearn send``: stream captures (or a synthetic scenario) to receivers, paced.

The frames come from capture files or ``wirelearn.scenarios.generate`` as
batches (``frame_feed``); ``Pacer`` cuts them into slices and waits until each
slice is due; a ``StreamEncoder`` turns a slice into pcap, pcapng or SLIP bytes
with the vectorized encoders; a sink writes them to a TCP client, a TCP
listener or a serial line.

Pacing is at slice granularity on the monotonic clock: the frames of one
batch are grouped by ``slice_s`` (10 ms) of due time, and a slice is written
when its last frame is due, so no frame leaves before its time and
``--pps 1000`` goes out as 10 frames every 10 ms rather than 1000 at once.

The stream's capture timestamps never decrease (a frame stamped earlier than
the one before is sent with the previous time), and ``endless`` shifts each
loop by the capture's duration plus one mean inter-frame gap, so a receiver
can rely on time order (``TcpClientSource`` does, to skip frames a restarted
sender sends again).
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from wirelearn.capture._batch import FrameBatch, Interface
from wirelearn.capture._serial import FRAMINGS, open_serial
from wirelearn.capture._slip import slip_encode
from wirelearn.capture._tcp import bind_listener, connect_to, format_hostport
from wirelearn.capture._writer import (
    encode_pcap_header,
    encode_pcap_records,
    encode_pcapng_epbs,
    encode_pcapng_idb,
    encode_pcapng_shb,
)
from wirelearn.errors import ConfigError, OutputError, PeerError, SerialPortError, WirelearnError

__all__ = [
    "STREAM_FORMATS",
    "Pacer",
    "Pacing",
    "SendStats",
    "StreamEncoder",
    "frame_feed",
    "send_serial",
    "send_to",
    "serve",
]

#: Encodings a stream can carry: pcap and pcapng (TCP, serial), SLIP (serial).
STREAM_FORMATS = ("pcap", "pcapng", "slip")
#: Seconds a socket write waits before checking for a stop request.
POLL_S = 0.25


# --- statistics ---------------------------------------------------------------------------------


@dataclass
class SendStats:
    """Frames and bytes sent, and when (monotonic seconds), for the report.

    Attributes:
        frames: frames written.
        bytes: captured bytes of those frames (not counting pcap/SLIP framing).
        wire_bytes: bytes written, framing included.
        first: when the first slice was written, or None.
        last: when the last slice finished, or None.
        clamped: frames sent with the previous frame's time, their own being earlier.
    """

    frames: int = 0
    bytes: int = 0
    wire_bytes: int = 0
    first: float | None = None
    last: float | None = None
    clamped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def merge(self, other: SendStats) -> None:
        """Add another stream's counts (one client of a server) to these."""
        with self._lock:
            self.frames += other.frames
            self.bytes += other.bytes
            self.wire_bytes += other.wire_bytes
            self.clamped += other.clamped
            if other.first is not None:
                self.first = other.first if self.first is None else min(self.first, other.first)
            if other.last is not None:
                self.last = other.last if self.last is None else max(self.last, other.last)

    def count_clamped(self, frames: int) -> None:
        """Count frames sent with the previous frame's time."""
        with self._lock:
            self.clamped += frames

    def add(self, frames: int, nbytes: int, wire: int, started: float, ended: float) -> None:
        """Count one slice written from ``started`` to ``ended``."""
        with self._lock:
            self.frames += frames
            self.bytes += nbytes
            self.wire_bytes += wire
            if self.first is None:
                self.first = started
            self.last = ended

    @property
    def elapsed(self) -> float:
        """Seconds from the first write to the end of the last one."""
        if self.first is None or self.last is None:
            return 0.0
        return max(0.0, self.last - self.first)

    def line(self, prefix: str = "sent") -> str:
        """``sent 2,000 frames (1,234,567 bytes) in 2.00 s: 1,000 frames/s, 4.94 Mbit/s``."""
        text = f"{prefix} {self.frames:,} frames ({self.bytes:,} bytes)"
        el = self.elapsed
        if self.frames > 1 and el > 0:
            text += (
                f" in {el:.2f} s: {self.frames / el:,.0f} frames/s, "
                f"{self.bytes * 8 / el / 1e6:,.2f} Mbit/s"
            )
        return text


# --- frames to send -----------------------------------------------------------------------------


class _Monotone:
    """Makes a stream's timestamps non-decreasing, loop after loop, and shifts the loops."""

    def __init__(self, stats: SendStats | None) -> None:
        self.stats = stats
        self.prev: int | None = None
        self.shift = 0

    def apply(self, batch: FrameBatch) -> FrameBatch:
        ts = batch.ts_ns + self.shift if self.shift else batch.ts_ns
        floor = ts[0] if self.prev is None else max(int(ts[0]), self.prev)
        fixed = np.maximum.accumulate(np.maximum(ts, floor))
        late = int(np.count_nonzero(fixed != ts))
        if late and self.stats is not None:
            self.stats.count_clamped(late)
        self.prev = int(fixed[-1])
        return FrameBatch(
            frame=batch.frame,
            ts_ns=fixed,
            caplen=batch.caplen,
            wirelen=batch.wirelen,
            iface=batch.iface,
            data=batch.data,
            offsets=batch.offsets,
            interfaces=batch.interfaces,
        )

    def next_loop(self, loop_start: int | None, loop_count: int) -> None:
        """Shift the next loop by this loop's duration plus one mean gap."""
        if loop_start is None or self.prev is None or not loop_count:
            return
        span = self.prev - loop_start
        gap = span // (loop_count - 1) if loop_count > 1 else 1_000_000
        self.shift += span + max(gap, 1_000)


def frame_feed(
    files: Sequence[str] = (),
    *,
    synthetic: str | None = None,
    frames: int = 10_000,
    seed: int = 0,
    endless: bool = False,
    limit: int | None = None,
    batch_size: int = 1024,
    labels: TextIO | None = None,
    stats: SendStats | None = None,
) -> Iterator[FrameBatch]:
    """The frames to send, from the start: files in order or a scenario, maybe looped.

    Timestamps are made non-decreasing and shifted on each ``endless`` loop;
    frames are numbered from 1 across loops.

    Args:
        files: capture paths (``-`` for stdin, once and not ``endless``).
        synthetic: a scenario name for ``wirelearn.scenarios.generate`` instead of files.
        frames: frames per loop of the scenario.
        seed: the scenario's seed.
        endless: loop forever (stop with ``limit`` or a signal).
        limit: the most frames in total.
        batch_size: the most frames per batch.
        labels: with ``synthetic``, write ``frame,label`` CSV rows for each frame sent here.
        stats: where to count frames whose timestamp had to be raised.
    """
    from wirelearn.capture._multi import ConcatSource

    mono = _Monotone(stats)
    out = csv.writer(labels, lineterminator="\n") if labels is not None else None
    if out is not None:
        out.writerow(["frame", "label"])
    sent = 0
    while True:
        loop_start: int | None = None
        loop_count = 0
        items: Iterator[tuple[FrameBatch, Any]]
        if synthetic is not None:
            from wirelearn.scenarios import generate

            items = generate(synthetic, frames=frames, seed=seed, batch_size=batch_size)
            source = None
        else:
            source = ConcatSource(list(files), batch_size=batch_size)
            items = ((b, None) for b in source)
        try:
            for batch, names in items:
                if limit is not None and sent + len(batch) > limit:
                    batch = batch.slice(0, limit - sent)
                    names = names[: len(batch)] if names is not None else None
                if not len(batch):
                    break
                batch = mono.apply(batch).renumber(sent + 1)
                if loop_start is None:
                    loop_start = int(batch.ts_ns[0])
                loop_count += len(batch)
                if out is not None and names is not None:
                    out.writerows(zip(batch.frame.tolist(), names.tolist(), strict=True))
                sent += len(batch)
                yield batch
                if limit is not None and sent >= limit:
                    return
        finally:
            if source is not None:
                source.close()
        if not endless or loop_count == 0:
            return
        mono.next_loop(loop_start, loop_count)


# --- pacing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pacing:
    """How fast to send. Give at most one of ``pps``, ``mbps``, ``multiplier``, ``topspeed``
    and ``sleep``; with none, frames keep the capture's own timing (``multiplier=1``).

    Args:
        pps: frames per second.
        mbps: megabits of frame bytes per second.
        multiplier: times the capture's own pace (2 = twice as fast).
        topspeed: as fast as the receiver takes them.
        sleep: send ``batch_size`` frames at once, then sleep this many seconds.
        batch_size: frames per batch (the unit of ``sleep``).
        slice_s: the longest span of due time sent as one write.

    Raises:
        ConfigError: conflicting or out-of-range values.
    """

    pps: float | None = None
    mbps: float | None = None
    multiplier: float | None = None
    topspeed: bool = False
    sleep: float | None = None
    batch_size: int = 1024
    slice_s: float = 0.01

    def __post_init__(self) -> None:
        chosen = [
            n
            for n, v in (
                ("--pps", self.pps),
                ("--mbps", self.mbps),
                ("--multiplier", self.multiplier),
                ("--sleep", self.sleep),
            )
            if v is not None
        ] + (["--topspeed"] if self.topspeed else [])
        if len(chosen) > 1:
            raise ConfigError(
                f"choose one of --pps, --mbps, --multiplier, --topspeed, --sleep; "
                f"got {' and '.join(chosen)}"
            )
        for name, v in (
            ("--pps", self.pps),
            ("--mbps", self.mbps),
            ("--multiplier", self.multiplier),
        ):
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be a positive number, not {v}")
        if self.sleep is not None and not (math.isfinite(self.sleep) and self.sleep >= 0):
            raise ConfigError(
                f"--sleep must be a number of seconds of at least 0, not {self.sleep}"
            )
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int):
            raise ConfigError(f"--batch-size must be a whole number, not {self.batch_size!r}")
        if not 1 <= self.batch_size <= 1 << 20:
            raise ConfigError(f"--batch-size must be from 1 to {1 << 20}, not {self.batch_size}")
        if not 0 < self.slice_s <= 10:
            raise ConfigError(f"slice_s must be in (0, 10] seconds, not {self.slice_s}")

    @property
    def mode(self) -> str:
        """``pps``, ``mbps``, ``multiplier``, ``topspeed`` or ``sleep``."""
        for name in ("pps", "mbps", "sleep"):
            if getattr(self, name) is not None:
                return name
        return "topspeed" if self.topspeed else "multiplier"


class Pacer:
    """Cuts batches into slices and waits until each is due.

    Args:
        pacing: the rate.
        clock: monotonic seconds (injected in tests).
        wait: sleeps up to the given seconds; returns True to stop early
            (``threading.Event.wait`` of the stop event).
    """

    def __init__(
        self,
        pacing: Pacing,
        *,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self.pacing = pacing
        self.clock = clock
        self.wait = wait if wait is not None else threading.Event().wait
        self._t0: float | None = None
        self._sent = 0
        self._bits = 0
        self._ts0: int | None = None

    @property
    def started(self) -> float | None:
        """When the schedule started (the clock at the first batch), or None."""
        return self._t0

    def _due(self, batch: FrameBatch) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Seconds after the start at which each frame of ``batch`` is due."""
        p = self.pacing
        n = len(batch)
        if p.pps is not None:
            due = (self._sent + np.arange(n, dtype=np.float64)) / p.pps
        elif p.mbps is not None:
            bits = np.zeros(n, dtype=np.float64)
            np.cumsum(batch.caplen[:-1] * 8, out=bits[1:])
            due = (self._bits + bits) / (p.mbps * 1e6)
        else:
            if self._ts0 is None:
                self._ts0 = int(batch.ts_ns[0])
            mult = p.multiplier if p.multiplier is not None else 1.0
            due = (batch.ts_ns - self._ts0).astype(np.float64) / 1e9 / mult
        return due

    def slices(self, batches: Iterator[FrameBatch]) -> Iterator[FrameBatch]:
        """Yield slices of ``batches`` when they are due; stop when ``wait`` says so."""
        p = self.pacing
        for batch in batches:
            if not len(batch):
                continue
            if self._t0 is None:
                self._t0 = self.clock()
            if p.topspeed:
                yield batch
                continue
            if p.sleep is not None:
                if self._sent and p.sleep > 0 and self.wait(p.sleep):
                    return
                self._sent += len(batch)
                yield batch
                continue
            due = self._due(batch)
            # The epsilon keeps k/pps on the bucket it belongs to despite float rounding.
            bucket = np.floor(due / p.slice_s + 1e-9)
            cuts = np.flatnonzero(bucket[1:] != bucket[:-1]) + 1
            bounds = [0, *cuts.tolist(), len(batch)]
            for lo, hi in itertools.pairwise(bounds):
                wait = self._t0 + float(due[hi - 1]) - self.clock()
                if wait > 0 and self.wait(wait):
                    return
                yield batch.slice(lo, hi)
            self._sent += len(batch)
            self._bits += int(batch.caplen.sum()) * 8


# --- encoding -----------------------------------------------------------------------------------


class StreamEncoder:
    """Turns slices into the bytes of one stream: a header first, then records.

    Args:
        fmt: ``pcap`` (nanosecond, little-endian; one link type), ``pcapng``
            (an IDB per interface as they appear) or ``slip``.

    Raises:
        ConfigError: an unknown format, or (from ``encode``) a second link type in pcap.
    """

    def __init__(self, fmt: str = "pcap") -> None:
        if fmt not in STREAM_FORMATS:
            raise ConfigError(
                f"unknown stream format {fmt!r}; choose one of: {', '.join(STREAM_FORMATS)}"
            )
        self.fmt = fmt
        self._linktype: int | None = None
        self._started = False
        self._ids: dict[Interface, int] = {}

    def encode(self, batch: FrameBatch) -> bytes:
        """The bytes for ``batch`` (with the stream header before the first one)."""
        if self.fmt == "slip":
            return slip_encode(batch)
        if self.fmt == "pcap":
            lts = np.unique(batch.linktype)
            head = b""
            if self._linktype is None:
                self._linktype = int(lts[0])
                head = encode_pcap_header(self._linktype)
            if len(lts) > 1 or int(lts[0]) != self._linktype:
                raise ConfigError(
                    "the frames have several link types, which a pcap stream cannot carry: "
                    "use --format pcapng"
                )
            return head + encode_pcap_records(batch)
        head = b"" if self._started else encode_pcapng_shb()
        self._started = True
        ifaces = batch.interfaces or (Interface(linktype=1),)
        mapping = np.zeros(len(ifaces), dtype=np.int64)
        for i, itf in enumerate(ifaces):
            if itf not in self._ids:
                self._ids[itf] = len(self._ids)
                head += encode_pcapng_idb(itf)
            mapping[i] = self._ids[itf]
        return head + encode_pcapng_epbs(batch, mapping)


# --- sinks --------------------------------------------------------------------------------------


def _send_all(sock: socket.socket, data: bytes, stop: threading.Event) -> None:
    """``sendall`` that gives up when ``stop`` is set (the socket has a short timeout)."""
    view = memoryview(data)
    while view:
        if stop.is_set():
            raise _Stopped
        try:
            n = sock.send(view)
        except TimeoutError:
            continue
        view = view[n:]


class _Stopped(Exception):
    """A stop was requested while writing (internal to the sinks)."""


def _pump(
    feed: Iterator[FrameBatch],
    pacing: Pacing,
    encoder: StreamEncoder,
    write: Callable[[bytes], None],
    stats: SendStats,
    stop: threading.Event,
) -> None:
    """Pace ``feed``, encode and ``write`` each slice, counting it in ``stats``."""
    pacer = Pacer(pacing, wait=stop.wait)
    for piece in pacer.slices(feed):
        if stop.is_set():
            return
        data = encoder.encode(piece)
        # The rate is measured from the start of the schedule, so that a late first
        # write (and the catching up after it) does not inflate it.
        started = pacer.started if pacer.started is not None else time.monotonic()
        write(data)
        stats.add(len(piece), piece.nbytes, len(data), started, time.monotonic())


def send_to(
    host: str,
    port: int,
    make_feed: Callable[[], Iterator[FrameBatch]],
    pacing: Pacing,
    *,
    fmt: str = "pcap",
    stats: SendStats,
    stop: threading.Event,
    connect_timeout: float = 5.0,
) -> None:
    """Connect to a listener (``wirelearn listen``) and stream to it.

    Raises:
        PeerError: the connection is refused, or the receiver goes away.
    """
    where = format_hostport(host, port)
    try:
        sock = connect_to(host, port, connect_timeout)
    except OSError as exc:
        raise PeerError(f"cannot connect: {exc.strerror or exc}", path=where) from exc
    with sock:
        sock.settimeout(POLL_S)
        try:
            _pump(
                make_feed(),
                pacing,
                StreamEncoder(fmt),
                lambda d: _send_all(sock, d, stop),
                stats,
                stop,
            )
        except _Stopped:
            return
        except OSError as exc:
            raise PeerError(
                f"the receiver closed the connection ({exc.strerror or exc})", path=where
            ) from exc
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)


def send_serial(
    device: str,
    make_feed: Callable[[], Iterator[FrameBatch]],
    pacing: Pacing,
    *,
    baud: int = 115200,
    framing: str = "slip",
    stats: SendStats,
    stop: threading.Event,
) -> None:
    """Write the stream to a serial device or pyserial URL, SLIP- or pcap-framed.

    Raises:
        ConfigError: an unknown framing.
        SerialPortError: the device is missing, busy, or goes away.
    """
    import serial

    if framing not in FRAMINGS:
        raise ConfigError(f"unknown framing {framing!r}; choose one of: {', '.join(FRAMINGS)}")
    port = open_serial(device, baud=baud, timeout=POLL_S, write_timeout=None)

    def write(data: bytes) -> None:
        # Pieces keep a stop request from waiting behind a long write to a slow line.
        for lo in range(0, len(data), 4096):
            if stop.is_set():
                raise _Stopped
            port.write(data[lo : lo + 4096])

    try:
        _pump(make_feed(), pacing, StreamEncoder(framing), write, stats, stop)
        port.flush()
    except _Stopped:
        return
    except (serial.SerialException, OSError) as exc:
        raise SerialPortError("the device was unplugged or the port closed", path=device) from exc
    finally:
        with contextlib.suppress(Exception):
            port.close()


def serve(
    host: str,
    port: int,
    make_feed: Callable[[], Iterator[FrameBatch]],
    pacing: Pacing,
    *,
    fmt: str = "pcap",
    stats: SendStats,
    stop: threading.Event,
    once: bool = False,
    max_clients: int = 32,
    log: Callable[[str], None] = lambda _m: None,
    on_listening: Callable[[str], None] | None = None,
    clients: list[tuple[str, SendStats]] | None = None,
) -> None:
    """Listen on ``host:port`` and stream to every client from the start, each on a thread.

    A client that goes away is logged and forgotten; the server goes on until
    ``stop`` is set, or with ``once`` until its first client is done (others are
    refused meanwhile). ``stats`` gets each client's counts when it is done.

    Args:
        host: the address to bind.
        port: the port (0: the system picks one, passed to ``on_listening``).
        make_feed: a fresh feed of the frames, from the start, for each client.
        pacing: the rate, per client.
        fmt: the stream format (``pcap`` or ``pcapng``).
        stats: the totals.
        stop: set to stop; set on return.
        once: serve one client, then return.
        max_clients: clients served at once; more are refused.
        log: receives a line per client event.
        on_listening: called with the bound ``host:port``.
        clients: if given, ``(address, stats)`` of each client is appended (live counts).

    Raises:
        CaptureError: the address cannot be bound.
        WirelearnError: with ``once``, what stopped the stream of its client.
    """
    listener = bind_listener(host, port)
    bound = listener.getsockname()
    address = format_hostport(str(bound[0]), int(bound[1]))
    listener.settimeout(POLL_S)
    if on_listening is not None:
        on_listening(address)
    threads: list[threading.Thread] = []
    errors: list[WirelearnError] = []

    def run(sock: socket.socket, peer: str, own: SendStats) -> None:
        with sock:
            sock.settimeout(POLL_S)
            try:
                _pump(
                    make_feed(),
                    pacing,
                    StreamEncoder(fmt),
                    lambda d: _send_all(sock, d, stop),
                    own,
                    stop,
                )
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                log(f"client {peer}: {own.line()}")
            except _Stopped:
                pass
            except OSError as exc:
                log(f"client {peer} went away ({exc.strerror or exc}); {own.line()}")
            except WirelearnError as exc:
                errors.append(exc)
                log(f"client {peer}: {exc}; {own.line()}")
            finally:
                stats.merge(own)

    served = False
    try:
        while not stop.is_set():
            threads = [t for t in threads if t.is_alive()]
            if once and served and not threads:
                break
            try:
                sock, addr = listener.accept()
            except TimeoutError:
                continue
            peer = format_hostport(str(addr[0]), int(addr[1]))
            if len(threads) >= max_clients or (once and served):
                log(f"refused client {peer}: already serving {len(threads)}")
                sock.close()
                continue
            served = True
            log(f"client {peer} connected")
            own = SendStats()
            if clients is not None:
                clients.append((peer, own))
            t = threading.Thread(
                target=run, args=(sock, peer, own), name=f"send:{peer}", daemon=True
            )
            threads.append(t)
            t.start()
    finally:
        stop.set()
        for t in threads:
            t.join(5.0)
        listener.close()
    if once and errors:
        raise errors[0]


def open_labels(path: str | None) -> TextIO | None:
    """Open the ``--labels-out`` CSV (mode 0600, like the captures).

    Raises:
        OutputError: the file cannot be created.
    """
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        return os.fdopen(fd, "w", encoding="utf-8", newline="")
    except OSError as exc:
        raise OutputError(f"cannot write: {exc.strerror or exc}", path=path) from exc
