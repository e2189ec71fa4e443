"""``SerialSource``: frames from a serial line, SLIP- or pcap-framed, through pyserial.

The device is opened with ``serial.serial_for_url``, so besides device paths
(``/dev/ttyUSB0``, a pseudo-terminal) pyserial's URLs work too:
``socket://host:port`` and ``rfc2217://host:port``. pyserial puts a tty in raw
mode (no echo, no CR/LF translation) when it opens it.

With ``framing="slip"`` frames are split by ``SlipDecoder`` and stamped with
their arrival time; with ``framing="pcap"`` the line carries a pcap stream
(``wirelearn send --serial DEV --framing pcap``) decoded by ``CaptureDecoder``
in resync mode, which skips line noise up to the next plausible record.
"""

from __future__ import annotations

import contextlib
import errno
import threading
from collections.abc import Callable, Iterator
from typing import Any

from wirelearn.capture._batch import FrameBatch, Interface
from wirelearn.capture._decoder import CaptureDecoder
from wirelearn.capture._slip import MAX_FRAME_CEILING, SlipDecoder
from wirelearn.capture._source import Source, SourceStats
from wirelearn.errors import ConfigError, SerialPortError

__all__ = ["FRAMINGS", "EchoStats", "SerialSource", "open_serial"]

#: The framings a serial line can carry.
FRAMINGS = ("slip", "pcap")


class EchoStats(SourceStats):
    """``SourceStats`` that also hands each warning to a callback as it happens.

    Device and peer sources warn about things a user should see at once (a
    reconnect, a sender closed for garbage), not only in the final summary.

    Args:
        echo: called with each warning; None to only record it.
    """

    def __init__(self, echo: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.echo = echo

    def warn(self, message: str) -> None:
        super().warn(message)
        if self.echo is not None:
            self.echo(message)


def _serial_error(exc: BaseException, device: str) -> SerialPortError:
    """The one-line ``SerialPortError`` for a pyserial/OS error opening ``device``."""
    code = getattr(exc, "errno", None)
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return SerialPortError("no such serial device", path=device)
    if code in (errno.EACCES, errno.EPERM):
        return SerialPortError(
            "permission denied (add yourself to the dialout group, or run as root)", path=device
        )
    if code in (errno.EBUSY, errno.EAGAIN) or "exclusively lock" in str(exc):
        return SerialPortError("device busy: another program has it open", path=device)
    if code == errno.ECONNREFUSED:
        return SerialPortError("connection refused", path=device)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return SerialPortError(f"cannot open: {text}", path=device)


def open_serial(
    device: str,
    *,
    baud: int = 115200,
    timeout: float | None = 0.1,
    write_timeout: float | None = None,
) -> Any:
    """Open ``device`` (a path or a pyserial URL) in raw mode, exclusively for local devices.

    Raises:
        SerialPortError: missing, busy or forbidden device, or a refused URL.
    """
    import serial

    local = "://" not in device
    try:
        return serial.serial_for_url(
            device,
            baudrate=baud,
            timeout=timeout,
            write_timeout=write_timeout,
            # A second reader on the same tty would steal bytes: lock it like minicom does.
            exclusive=True if local else None,
        )
    except (serial.SerialException, OSError, ValueError) as exc:
        raise _serial_error(exc, device) from exc


def _check_number(value: object, what: str, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ConfigError(f"{what} must be a number from {lo:g} to {hi:g}, got {value!r}")


class SerialSource(Source):
    """A serial device or pyserial URL carrying SLIP frames or a pcap stream.

    The device is opened (and so checked) by the constructor. Reading stops
    when the source is closed; an unplugged device or a port closed by the
    other side yields every frame decoded so far and then raises
    ``SerialPortError`` ("... closed").

    Args:
        device: a device path (``/dev/ttyUSB0``) or a pyserial URL (``socket://h:p``).
        baud: the line speed (ignored by pseudo-terminals and sockets).
        framing: ``"slip"`` or ``"pcap"``.
        linktype: the link type of SLIP frames (a pcap stream says its own).
        read_size: the most bytes read at once.
        timeout: seconds a read waits for data before checking for ``close()``.
        max_frame: the largest frame accepted; longer ones are dropped and counted.
        batch_size: the most frames per batch.
        on_warning: called with each warning as it happens (besides ``stats.warn``).

    Raises:
        ConfigError: an invalid option (the message lists the allowed values).
        SerialPortError: the device is missing, busy or not permitted.
    """

    def __init__(
        self,
        device: str,
        *,
        baud: int = 115200,
        framing: str = "slip",
        linktype: int = 1,
        read_size: int = 65536,
        timeout: float = 0.1,
        max_frame: int = 65535,
        batch_size: int = 8192,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(device, str) or not device:
            raise ConfigError("the serial device must be a path or a pyserial URL")
        if framing not in FRAMINGS:
            raise ConfigError(f"unknown framing {framing!r}; choose one of: {', '.join(FRAMINGS)}")
        if isinstance(baud, bool) or not isinstance(baud, int) or baud < 1:
            raise ConfigError(f"baud must be a positive integer, got {baud!r}")
        _check_number(read_size, "read_size", 1, 1 << 24)
        _check_number(timeout, "timeout", 0.001, 60)
        _check_number(max_frame, "max_frame", 1, MAX_FRAME_CEILING)
        self.device = device
        self.name = f"serial:{device}"
        self.framing = framing
        self.read_size = int(read_size)
        self.stats = EchoStats(on_warning)
        self._decoder: SlipDecoder | CaptureDecoder
        if framing == "slip":
            self._decoder = SlipDecoder(
                max_frame=max_frame,
                linktype=linktype,
                stats=self.stats,
                batch_size=batch_size,
                name=self.name,
            )
        else:
            self._decoder = CaptureDecoder(
                name=self.name,
                batch_size=batch_size,
                max_caplen=max_frame,
                resync=True,
                stats=self.stats,
            )
        self._io_lock = threading.Lock()
        self._port: Any = open_serial(device, baud=baud, timeout=timeout)

    @property
    def interfaces(self) -> tuple[Interface, ...]:
        return self._decoder.interfaces

    def _read(self) -> bytes:
        """Bytes that arrived (b"" after a timeout); raises ``SerialPortError`` when gone."""
        import serial

        with self._io_lock:
            if self._closed or self._port is None:
                return b""
            port = self._port
            try:
                data = bytes(port.read(1))
                if data:
                    waiting = port.in_waiting
                    if waiting:
                        data += bytes(port.read(min(waiting, self.read_size)))
            except (serial.SerialException, OSError) as exc:
                if self._closed:
                    return b""
                raise SerialPortError(
                    "the device was unplugged or the port closed", path=self.device
                ) from exc
            except TypeError:
                # pyserial raises TypeError from a read racing a close of the port.
                if self._closed:
                    return b""
                raise
        self.stats.bytes_read += len(data)
        return data

    def _batches(self) -> Iterator[FrameBatch]:
        decoder = self._decoder
        try:
            while not self._closed:
                try:
                    data = self._read()
                except SerialPortError:
                    yield from decoder.finish()
                    raise
                if data:
                    decoder.feed(data)
                    yield from decoder.batches()
        finally:
            self._close_port()

    def _close_port(self) -> None:
        with self._io_lock:
            port, self._port = self._port, None
        if port is not None:
            # Closing a vanished device may fail in any way; it is gone either way.
            with contextlib.suppress(Exception):
                port.close()

    def close(self) -> None:
        """Stop reading and close the port; safe to call from another thread, and twice."""
        super().close()
        port = self._port
        cancel = getattr(port, "cancel_read", None)
        if cancel is not None:
            # Best effort to wake a blocked read at once rather than after the timeout.
            with contextlib.suppress(Exception):
                cancel()
        self._close_port()
