"""The one exception tree of wirelearn, and the exit codes it maps to.

Every error a user can cause is one of these; anything else escaping to the
CLI is a bug. Third-party errors (``OSError``, ``serial.SerialException``,
scapy's exceptions, ``socket.error``) are mapped at the boundary with
``raise ... from exc`` so that the cause is kept.

::

    WirelearnError                      exit 1
    ├── ConfigError                     exit 2   bad argument or option
    │   └── FilterError                          BPF expression libpcap refused
    ├── InputError                      exit 3   a capture that cannot be read
    │   ├── FormatError                          not a capture / corrupt structure
    │   └── RecordTooLargeError                  captured length over the limit
    ├── CaptureError                    exit 4   a device, interface or peer failed
    │   ├── PrivilegeError                       needs root or CAP_NET_RAW
    │   ├── InterfaceError                       unknown interface, or it went down
    │   ├── SerialPortError                      serial device missing or closed
    │   └── PeerError                            TCP peer refused, dropped or sent garbage
    ├── OutputError                     exit 5   an output file cannot be written
    ├── ModelError                      exit 6   a model file is refused or unusable
    └── DependencyError                 exit 7   an optional extra is not installed

Exit codes not tied to an exception: ``0`` for a normal end (including
Ctrl-C and SIGTERM, which stop cleanly), ``70`` for an internal error (a bug;
a traceback is printed), ``130`` for a second Ctrl-C that aborts without the
summary.
"""

from __future__ import annotations

__all__ = [
    "EXIT_ABORTED",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "CaptureError",
    "ConfigError",
    "DependencyError",
    "FilterError",
    "FormatError",
    "InputError",
    "InterfaceError",
    "ModelError",
    "OutputError",
    "PeerError",
    "PrivilegeError",
    "RecordTooLargeError",
    "SerialPortError",
    "WirelearnError",
]

EXIT_OK = 0
EXIT_INTERNAL = 70
EXIT_ABORTED = 130


class WirelearnError(Exception):
    """Base of every error wirelearn raises on purpose.

    Args:
        message: what went wrong, as one line a user can act on.
        path: the file, device or address it concerns, if any.
        offset: the byte offset in ``path`` where it was found, if known.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, path: str | None = None, offset: int | None = None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.offset = offset

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}: "
            if self.offset is not None:
                where = f"{self.path}: offset {self.offset}: "
        elif self.offset is not None:
            where = f"offset {self.offset}: "
        return f"{where}{self.message}"


class ConfigError(WirelearnError):
    """A bad command-line argument or constructor parameter."""

    exit_code = 2


class FilterError(ConfigError):
    """libpcap refused a BPF filter expression; the message is libpcap's."""


class InputError(WirelearnError):
    """A capture file or stream that cannot be read."""

    exit_code = 3


class FormatError(InputError):
    """Not a capture, or a capture whose structure is corrupt."""


class RecordTooLargeError(FormatError):
    """A record whose captured length exceeds the snaplen or the hard limit."""


class CaptureError(WirelearnError):
    """A live device, serial port or network peer failed."""

    exit_code = 4


class PrivilegeError(CaptureError):
    """Capture needs root or CAP_NET_RAW."""


class InterfaceError(CaptureError):
    """An unknown interface, or one that went down while capturing."""


class SerialPortError(CaptureError):
    """A serial device that is missing, busy, unplugged or closed."""


class PeerError(CaptureError):
    """A TCP peer that refused, dropped mid-record or sent garbage."""


class OutputError(WirelearnError):
    """An output file that cannot be created or written (disk full, permissions)."""

    exit_code = 5


class ModelError(WirelearnError):
    """A saved model that is refused (untrusted types) or cannot be used."""

    exit_code = 6


class DependencyError(WirelearnError):
    """An optional extra is not installed; the message says how to install it."""

    exit_code = 7
