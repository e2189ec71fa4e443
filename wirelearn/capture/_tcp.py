"""TCP sources: ``wirelearn connect HOST:PORT`` and ``wirelearn listen [HOST:]PORT``.

Both read pcap or pcapng streams (``wirelearn send``, ``tcpdump -U -w - | nc``)
with one ``CaptureDecoder`` per connection.

``TcpClientSource`` connects to a sender. With ``reconnect`` it survives the
sender going away: it reconnects with capped exponential backoff and, because
a restarted sender re-sends its capture from the start, skips the frames it
already has. The rule relies on the sender's guarantee that capture timestamps
never decrease along the stream (``wirelearn send`` enforces it, also across
``--endless`` loops): after a reconnect, frames are skipped up to the first one
that is new, that is the first with ``ts > last_ts``, or the ``k+1``-th with
``ts == last_ts`` when ``k`` frames with ``last_ts`` were received before. A
sender that restarts with a different, older capture is therefore skipped until
its timestamps pass the last one received.

``TcpListenSource`` accepts several senders at once (one selector loop, each
sender with its own decoder) and merges their batches in arrival order; every
sender's interfaces become separate ``Interface`` entries named by its address.
A sender that sends garbage is disconnected with a warning; the listener goes on.

Listeners bind 127.0.0.1 unless another host is given: the streams are
neither authenticated nor encrypted.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import selectors
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from wirelearn.capture._batch import FrameBatch, Interface
from wirelearn.capture._decoder import CaptureDecoder
from wirelearn.capture._serial import EchoStats
from wirelearn.capture._source import Source
from wirelearn.errors import CaptureError, ConfigError, PeerError, WirelearnError

__all__ = [
    "DEFAULT_PORT",
    "TcpClientSource",
    "TcpListenSource",
    "bind_listener",
    "exposure_warning",
    "format_hostport",
    "is_loopback",
    "parse_hostport",
]

#: The port ``wirelearn send`` listens on by default.
DEFAULT_PORT = 6100
#: Seconds a blocking socket call waits before checking whether the source was closed.
POLL_S = 0.2


# --- addresses ----------------------------------------------------------------------------------


def parse_hostport(
    text: str, *, what: str = "address", need_host: bool = False, allow_zero: bool = False
) -> tuple[str | None, int]:
    """Split ``HOST:PORT``, ``PORT`` or ``[IPv6]:PORT`` into ``(host or None, port)``.

    Args:
        text: the address as the user wrote it.
        what: what to call it in errors (an option name).
        need_host: refuse a bare port.
        allow_zero: accept port 0 (let the system choose, for listeners).

    Raises:
        ConfigError: a malformed address or a port out of range.

    >>> parse_hostport("localhost:6100"), parse_hostport("6100"), parse_hostport("[::1]:80")
    (('localhost', 6100), (None, 6100), ('::1', 80))
    """
    s = text.strip()
    host: str | None
    if s.startswith("["):
        close = s.find("]")
        if close < 0 or not s[close + 1 :].startswith(":"):
            raise ConfigError(f"{what} {text!r}: write IPv6 addresses as [ADDRESS]:PORT")
        host, port_s = s[1:close], s[close + 2 :]
    elif s.count(":") > 1:
        raise ConfigError(f"{what} {text!r}: write IPv6 addresses in brackets, as [::1]:6100")
    elif ":" in s:
        host, port_s = s.split(":")
    else:
        host, port_s = None, s
    if host is not None and not host:
        raise ConfigError(f"{what} {text!r}: the host before ':' is empty")
    if host is None and need_host:
        raise ConfigError(f"{what} {text!r}: expected HOST:PORT")
    if not port_s.isdigit():
        raise ConfigError(f"{what} {text!r}: the port must be a number from 1 to 65535")
    port = int(port_s)
    if not (0 if allow_zero else 1) <= port <= 65535:
        low = 0 if allow_zero else 1
        raise ConfigError(f"{what} {text!r}: the port must be from {low} to 65535, not {port}")
    return host, port


def format_hostport(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 address.

    >>> format_hostport("::1", 6100), format_hostport("127.0.0.1", 6100)
    ('[::1]:6100', '127.0.0.1:6100')
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def exposure_warning(host: str, port: int) -> str | None:
    """The one-line warning for listening on a non-loopback address, or None."""
    if is_loopback(host):
        return None
    return (
        f"listening on {format_hostport(host, port)}, reachable from other machines: "
        "the stream is unauthenticated and unencrypted"
    )


def _reason(exc: BaseException) -> str:
    """A short lower-case reason for a socket error."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror or exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def bind_listener(host: str, port: int, *, backlog: int = 16) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: the system picks one).

    Raises:
        CaptureError: the address is in use, not local, or cannot be resolved.
    """
    where = format_hostport(host, port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise CaptureError(f"cannot listen: {_reason(exc)}", path=where) from exc
    family, stype, proto, _, addr = infos[0]
    sock = socket.socket(family, stype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise CaptureError(f"cannot listen: {_reason(exc)}", path=where) from exc
    return sock


def connect_to(host: str, port: int, timeout: float) -> socket.socket:
    """A connected TCP socket; raises ``OSError`` (the caller maps it)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _check(value: object, what: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ConfigError(f"{what} must be a number from {lo:g} to {hi:g}, got {value!r}")
    return float(value)


# --- interface tables ---------------------------------------------------------------------------


@dataclass
class _Remap:
    """Maps one connection's interface table onto the source's global table.

    With ``name`` set, each interface becomes a new entry named after the peer
    (``name``, ``name#1``, ...); without it, equal interfaces share one entry, so
    that a reconnecting sender keeps its interface.
    """

    table: list[Interface]
    name: str | None = None
    ids: list[int] = field(default_factory=list)

    def apply(self, batch: FrameBatch) -> FrameBatch:
        for k in range(len(self.ids), len(batch.interfaces)):
            itf = batch.interfaces[k]
            if self.name is not None:
                itf = replace(itf, name=self.name if k == 0 else f"{self.name}#{k}")
                self.table.append(itf)
                self.ids.append(len(self.table) - 1)
            elif itf in self.table:
                self.ids.append(self.table.index(itf))
            else:
                self.table.append(itf)
                self.ids.append(len(self.table) - 1)
        ids = np.asarray(self.ids, dtype=np.int32)
        return FrameBatch(
            frame=batch.frame,
            ts_ns=batch.ts_ns,
            caplen=batch.caplen,
            wirelen=batch.wirelen,
            iface=ids[batch.iface] if len(batch) else batch.iface,
            data=batch.data,
            offsets=batch.offsets,
            interfaces=tuple(self.table),
        )


# --- connect --------------------------------------------------------------------------------------


class TcpClientSource(Source):
    """Frames from a TCP sender's pcap/pcapng stream (``wirelearn connect HOST:PORT``).

    Without ``reconnect`` the first connection is made by the constructor; a
    refused connection raises ``PeerError`` there. The stream ends normally when
    the sender closes at a record boundary; a sender dropping mid-record (or a
    reset) raises ``PeerError`` after every complete frame, the partial record
    discarded with a warning.

    With ``reconnect`` every loss is followed by new attempts after ``initial``,
    ``2 * initial``, ... up to ``max`` seconds between attempts (a warning each),
    until the source is closed; frames a restarted sender sends again are
    skipped (see the module docstring) and counted in ``duplicates_skipped``.

    Args:
        host: the sender's host name or address.
        port: its port.
        reconnect: reconnect after losing the sender instead of ending.
        backoff: ``(initial, max)`` seconds between reconnection attempts.
        connect_timeout: seconds to wait for a connection.
        read_size: the most bytes read at once.
        batch_size: the most frames per batch.
        max_caplen: the largest captured length accepted.
        on_warning: called with each warning as it happens (besides ``stats.warn``).

    Raises:
        ConfigError: an invalid option.
        PeerError: the first connection failed (without ``reconnect``).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        reconnect: bool = False,
        backoff: tuple[float, float] = (0.5, 30.0),
        connect_timeout: float = 5.0,
        read_size: int = 1 << 20,
        batch_size: int = 8192,
        max_caplen: int = 262144,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(host, str) or not host:
            raise ConfigError("the host to connect to is empty")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ConfigError(f"port must be an integer from 1 to 65535, got {port!r}")
        if not isinstance(reconnect, bool):
            raise ConfigError(f"reconnect must be True or False, got {reconnect!r}")
        if not isinstance(backoff, tuple) or len(backoff) != 2:
            raise ConfigError(f"backoff must be (initial, max) seconds, got {backoff!r}")
        initial = _check(backoff[0], "the initial backoff", 0.001, 3600)
        top = _check(backoff[1], "the maximum backoff", initial, 86400)
        self.backoff = (initial, top)
        self.connect_timeout = _check(connect_timeout, "connect_timeout", 0.001, 3600)
        self.read_size = int(_check(read_size, "read_size", 1, 1 << 26))
        # Check the decoder options now rather than on the first connection.
        CaptureDecoder(name="check", batch_size=batch_size, max_caplen=max_caplen)
        self.batch_size = batch_size
        self.max_caplen = max_caplen
        self.host, self.port, self.reconnect = host, port, reconnect
        self.address = format_hostport(host, port)
        self.name = f"tcp://{self.address}"
        self.stats = EchoStats(on_warning)
        self.connections = 0
        self.duplicates_skipped = 0
        self._table: list[Interface] = []
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._last_ts: int | None = None
        self._n_last = 0
        self._catching_up = False
        self._eq_seen = 0
        self._skipped_now = 0
        self._received = 0
        self._iterating = False
        try:
            self._sock = self._connect()
        except OSError as exc:
            if not reconnect:
                raise PeerError(f"cannot connect: {_reason(exc)}", path=self.address) from exc
            self.stats.warn(
                f"{self.address}: cannot connect ({_reason(exc)}); retrying in {initial:g} s"
            )

    @property
    def interfaces(self) -> tuple[Interface, ...]:
        return tuple(self._table)

    def _connect(self) -> socket.socket:
        sock = connect_to(self.host, self.port, self.connect_timeout)
        sock.settimeout(POLL_S)
        self.connections += 1
        return sock

    # --- duplicates after a reconnect ---------------------------------------------------------

    def _skip_seen(self, batch: FrameBatch) -> FrameBatch:
        """Drop the frames of a restarted sender that were received before."""
        if self._catching_up and self._last_ts is not None:
            ts = batch.ts_ns
            eq = ts == self._last_ts
            eq_rank = np.cumsum(eq) + self._eq_seen
            new = (ts > self._last_ts) | (eq & (eq_rank > self._n_last))
            first = int(np.argmax(new)) if bool(new.any()) else len(batch)
            self._eq_seen += int(eq[:first].sum())
            self._skipped_now += first
            self.duplicates_skipped += first
            if first < len(batch):
                self._catching_up = False
                if self._skipped_now:
                    self.stats.warn(
                        f"{self.address}: skipped {self._skipped_now:,} frames sent again "
                        "after the reconnection"
                    )
            batch = batch.slice(first, len(batch)) if first else batch
        if len(batch):
            ts = batch.ts_ns
            t = int(ts[-1])
            other = np.flatnonzero(ts != t)
            run = len(ts) - (int(other[-1]) + 1 if len(other) else 0)
            if run == len(ts) and t == self._last_ts:
                self._n_last += run
            else:
                self._n_last = run
            self._last_ts = t
        return batch

    # --- reading ------------------------------------------------------------------------------

    def _session(self, sock: socket.socket) -> Iterator[FrameBatch]:
        """Frames of one connection; returns the reason it ended, or raises ``PeerError``."""
        decoder = CaptureDecoder(
            name=self.name, batch_size=self.batch_size, max_caplen=self.max_caplen, stats=self.stats
        )
        remap = _Remap(self._table)
        received = 0

        def out(batches: Iterator[FrameBatch]) -> Iterator[FrameBatch]:
            for b in batches:
                kept = self._skip_seen(remap.apply(b))
                if len(kept):
                    self._received += len(kept)
                    yield kept

        lost: str | None = None
        while not self._closed:
            try:
                data = sock.recv(self.read_size)
            except TimeoutError:
                continue
            except OSError as exc:
                if self._closed:
                    return
                lost = _reason(exc)
                break
            if not data:
                break
            received += len(data)
            self.stats.bytes_read += len(data)
            try:
                decoder.feed(data)
                yield from out(decoder.batches())
            except WirelearnError as exc:
                raise PeerError(f"sent garbage: {exc}", path=self.address) from exc
        if self._closed:
            return
        if received == 0:
            raise PeerError(
                lost or "closed the connection before sending a capture", path=self.address
            )
        cut = decoder.pending
        try:
            yield from out(decoder.finish())
        except WirelearnError as exc:
            raise PeerError(f"the stream ended early: {exc.message}", path=self.address) from exc
        if lost is not None:
            raise PeerError(f"connection lost: {lost}", path=self.address)
        if cut:
            raise PeerError(
                f"the sender closed the connection mid-record ({cut} bytes of a record dropped)",
                path=self.address,
            )

    def _batches(self) -> Iterator[FrameBatch]:
        delay = self.backoff[0]
        with self._lock:
            if self._closed:
                return
            self._iterating = True
        try:
            while not self._closed:
                sock = self._sock
                if sock is None:
                    if self._wake.wait(delay) or self._closed:
                        return
                    try:
                        sock = self._connect()
                    except OSError as exc:
                        delay = min(delay * 2, self.backoff[1])
                        self.stats.warn(
                            f"{self.address}: cannot reconnect ({_reason(exc)}); "
                            f"retrying in {delay:g} s"
                        )
                        continue
                    with self._lock:
                        self._sock = sock
                    self._catching_up = self._last_ts is not None
                    self._eq_seen = self._skipped_now = 0
                    again = "reconnected" if self.connections > 1 else "connected"
                    self.stats.warn(f"{self.address}: {again}")
                before = self._received
                try:
                    yield from self._session(sock)
                    ended = "the sender closed the connection"
                except PeerError as exc:
                    if not self.reconnect:
                        raise
                    ended = exc.message
                finally:
                    with self._lock:
                        self._sock = None
                    sock.close()
                if not self.reconnect or self._closed:
                    return
                # A sender that accepts and sends nothing new gets the backoff too.
                delay = (
                    self.backoff[0] if self._received > before else min(delay * 2, self.backoff[1])
                )
                self.stats.warn(f"{self.address}: {ended}; reconnecting in {delay:g} s")
        finally:
            with self._lock:
                sock, self._sock = self._sock, None
                self._iterating = False
            if sock is not None:
                sock.close()

    def close(self) -> None:
        """Stop reading and close the connection; safe from another thread, and twice."""
        super().close()
        self._wake.set()
        with self._lock:
            sock = self._sock
            if not self._iterating:
                self._sock = None
        if sock is None:
            return
        if self._iterating:
            # The reading thread closes it; waking its recv is enough.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        else:
            sock.close()


# --- listen ---------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Sender:
    """One accepted connection of a ``TcpListenSource``."""

    sock: socket.socket
    address: str
    decoder: CaptureDecoder
    remap: _Remap
    frames: int = 0
    received: int = 0


class TcpListenSource(Source):
    """Frames from every sender that connects (``wirelearn listen [HOST:]PORT``).

    The socket is bound by the constructor (127.0.0.1 unless ``host`` says
    otherwise). Iteration runs a selector loop until ``close()``: the stream
    never ends on its own, senders come and go.

    Args:
        port: the port to listen on (0: the system picks one; see ``address``).
        host: the address to bind; 127.0.0.1 by default.
        max_senders: connections beyond this many are refused with a warning.
        read_size: the most bytes read from one sender at once.
        batch_size: the most frames per batch.
        max_caplen: the largest captured length accepted.
        on_warning: called with each warning as it happens (besides ``stats.warn``).
        on_info: called with connection notices (a sender connected or left).

    Attributes:
        address: the bound ``host:port``.

    Raises:
        ConfigError: an invalid option.
        CaptureError: the address cannot be bound (in use, not local).
    """

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        *,
        max_senders: int = 16,
        read_size: int = 1 << 18,
        batch_size: int = 8192,
        max_caplen: int = 262144,
        on_warning: Callable[[str], None] | None = None,
        on_info: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"port must be an integer from 0 to 65535, got {port!r}")
        if not isinstance(host, str) or not host:
            raise ConfigError("the host to listen on is empty")
        self.max_senders = int(_check(max_senders, "max_senders", 1, 4096))
        self.read_size = int(_check(read_size, "read_size", 1, 1 << 26))
        CaptureDecoder(name="check", batch_size=batch_size, max_caplen=max_caplen)
        self.batch_size = batch_size
        self.max_caplen = max_caplen
        self.stats = EchoStats(on_warning)
        self._info = on_info
        self._table: list[Interface] = []
        self._senders: dict[socket.socket, _Sender] = {}
        self._listener: socket.socket | None = bind_listener(host, port)
        bound = self._listener.getsockname()
        self.host, self.port = str(bound[0]), int(bound[1])
        self.address = format_hostport(self.host, self.port)
        self.name = f"tcp-listen://{self.address}"
        self.senders_seen = 0
        self._lock = threading.Lock()
        self._iterating = False

    @property
    def interfaces(self) -> tuple[Interface, ...]:
        return tuple(self._table)

    def _say(self, message: str) -> None:
        if self._info is not None:
            self._info(message)

    def _accept(self, sel: selectors.BaseSelector) -> None:
        assert self._listener is not None
        try:
            sock, addr = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                self.stats.warn(f"{self.address}: cannot accept a sender: {_reason(exc)}")
                return
            raise
        peer = format_hostport(str(addr[0]), int(addr[1]))
        if len(self._senders) >= self.max_senders:
            self.stats.warn(
                f"{self.address}: refused sender {peer}: already {self.max_senders} senders"
            )
            sock.close()
            return
        sock.setblocking(False)
        self.senders_seen += 1
        sender = _Sender(
            sock=sock,
            address=peer,
            decoder=CaptureDecoder(
                name=peer, batch_size=self.batch_size, max_caplen=self.max_caplen, stats=self.stats
            ),
            remap=_Remap(self._table, name=peer),
        )
        self._senders[sock] = sender
        sel.register(sock, selectors.EVENT_READ, sender)
        self._say(f"{self.address}: sender {peer} connected")

    def _drop(self, sel: selectors.BaseSelector, sender: _Sender) -> None:
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(sender.sock)
        self._senders.pop(sender.sock, None)
        sender.sock.close()

    def _out(self, sender: _Sender, batches: Iterator[FrameBatch]) -> Iterator[FrameBatch]:
        for b in batches:
            sender.frames += len(b)
            yield sender.remap.apply(b)

    def _serve(self, sel: selectors.BaseSelector, sender: _Sender) -> Iterator[FrameBatch]:
        """Read what one sender has sent; drop it when it leaves or sends garbage."""
        lost: str | None = None
        try:
            data = sender.sock.recv(self.read_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            data, lost = b"", _reason(exc)
        try:
            if data:
                self.stats.bytes_read += len(data)
                sender.received += len(data)
                sender.decoder.feed(data)
                yield from self._out(sender, sender.decoder.batches())
                return
            if sender.received:
                yield from self._out(sender, sender.decoder.finish())
        except WirelearnError as exc:
            self._drop(sel, sender)
            what = "sent garbage" if data else "left mid-stream"
            self.stats.warn(
                f"{self.address}: sender {sender.address} {what} ({exc}); connection closed"
            )
            return
        self._drop(sel, sender)
        how = f"lost ({lost})" if lost else "disconnected"
        self._say(f"{self.address}: sender {sender.address} {how} after {sender.frames:,} frames")

    def _batches(self) -> Iterator[FrameBatch]:
        with self._lock:
            listener = self._listener
            if listener is None or self._closed:
                return
            self._iterating = True
        listener.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ, None)
        try:
            while not self._closed:
                for key, _ in sel.select(POLL_S):
                    if self._closed:
                        return
                    if key.data is None:
                        self._accept(sel)
                    else:
                        yield from self._serve(sel, key.data)
        finally:
            for sender in list(self._senders.values()):
                self._drop(sel, sender)
            sel.close()
            with self._lock:
                listener, self._listener = self._listener, None
                self._iterating = False
            if listener is not None:
                listener.close()

    def close(self) -> None:
        """Stop accepting and reading; safe from another thread, and twice.

        While another thread iterates, it notices within ``POLL_S`` seconds and
        closes every socket itself.
        """
        super().close()
        with self._lock:
            if self._iterating:
                return
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
