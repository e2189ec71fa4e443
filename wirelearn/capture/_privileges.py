"""Giving up root once the capture sockets are open, like ``tcpdump -Z user``.

Capture needs root (or CAP_NET_RAW) only to open its sockets; parsing
untrusted traffic and learning from it should run as an unprivileged user.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pwd
import struct

from wirelearn.errors import ConfigError, PrivilegeError

__all__ = ["capabilities", "drop_privileges"]

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4


def capabilities() -> dict[str, int]:
    """The calling thread's capability sets (``CapInh``, ``CapPrm``, ``CapEff``, ``CapBnd``,
    ``CapAmb``) as bit masks, from ``/proc/thread-self/status``."""
    caps: dict[str, int] = {}
    # Bytes, not text: after a drop, importing a codec may no longer be possible.
    with open("/proc/thread-self/status", "rb") as f:
        for line in f:
            key, _, value = line.partition(b":")
            if key.startswith(b"Cap"):
                caps[key.decode()] = int(value.strip(), 16)
    return caps


def _clear_capabilities() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    # Ambient capabilities survive setuid for non-root users; clear them first.
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = ctypes.create_string_buffer(struct.pack("=Ii", _LINUX_CAPABILITY_VERSION_3, 0))
    data = ctypes.create_string_buffer(bytes(24))  # two empty {effective, permitted, inheritable}
    if libc.capset(header, data) != 0:
        err = ctypes.get_errno()
        raise PrivilegeError(f"cannot clear capabilities: {os.strerror(err)}")


def drop_privileges(user: str) -> None:
    """Switch the process to ``user`` for good, after the capture sockets are open.

    Sets the supplementary groups to the user's groups, then the group id,
    then the user id (real, effective and saved, in that order, so nothing can
    be regained), clears any capabilities left, and checks that root cannot be
    regained. Call it before starting threads: capabilities are per thread.

    Args:
        user: a user name from the password database (``"nobody"``).

    Raises:
        ConfigError: no such user.
        PrivilegeError: not allowed to switch (not root), or the switch did not stick.
    """
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"unknown user {user!r} for dropping privileges") from None
    uid, gid = entry.pw_uid, entry.pw_gid
    if os.getresuid() == (uid, uid, uid) and os.getresgid() == (gid, gid, gid):
        _clear_capabilities()
        return
    try:
        groups = os.getgrouplist(user, gid)
    except OSError:
        groups = [gid]
    try:
        os.setgroups(groups)
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except PermissionError as exc:
        raise PrivilegeError(f"cannot switch to user {user!r}: needs root") from exc
    if any(capabilities().get(k, 0) for k in ("CapPrm", "CapEff", "CapAmb")):
        _clear_capabilities()
    if uid != 0:
        for regain in (os.setuid, os.seteuid):
            try:
                regain(0)
            except PermissionError:
                continue
            raise PrivilegeError(f"dropped to user {user!r} but could still regain root")
    if os.getresuid() != (uid, uid, uid) or set(os.getgroups()) - set(groups) - {gid}:
        raise PrivilegeError(f"switching to user {user!r} did not take effect")
