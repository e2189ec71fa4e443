"""Live capture from network interfaces, in batches, through a ``TPACKET_V3`` ring.

One ``AF_PACKET`` socket per interface, each with a memory-mapped block ring
(``PACKET_RX_RING``, ``TPACKET_V3``): the kernel fills blocks of frames and
hands each block over whole, so a retired block holding thousands of frames
costs one pass of Python. The only per-frame Python is a walk of the
``tp_next_offset`` chain; header fields are then gathered with numpy fancy
indexing and the frame bytes with one boolean mask per block, and the block
goes straight back to the kernel.

The BPF filter is compiled by libpcap and runs in the kernel
(``SO_ATTACH_FILTER``); it also enforces the snapshot length. It is compiled
on a live libpcap handle for the interface when possible, as tcpdump does, so
that ``vlan`` matches tags the kernel moved out of the frame. Those tags are
put back into the frame, as libpcap does, so frames are byte-for-byte what
tcpdump records, with the same nanosecond timestamps.

If ``TPACKET_V3`` is unavailable the source falls back to a large socket
receive buffer drained with ``recvmsg_into`` (slower: Python per frame).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import mmap
import os
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np
from numpy.typing import NDArray

from wirelearn.capture._batch import FrameBatch, Interface
from wirelearn.capture._bpf import compile_bpf
from wirelearn.capture._interfaces import IFF_UP, interface_flags, lookup_interface
from wirelearn.capture._source import Source
from wirelearn.errors import (
    CaptureError,
    ConfigError,
    FilterError,
    InterfaceError,
    PrivilegeError,
)

__all__ = ["LiveSource"]

# <linux/if_packet.h>, <linux/if_ether.h>, <asm-generic/socket.h>
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
PACKET_VERSION = 10
PACKET_IGNORE_OUTGOING = 23
TPACKET_V3 = 2
ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = 35

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40

BPF_RET_K = 0x06
ARPHRD_LOOPBACK = 772
KERNEL_MAX_INSNS = 4096  # BPF_MAXINSNS
MAX_SNAPLEN = 262144
#: Largest ring block; big blocks mean fewer Python passes per frame.
MAX_BLOCK = 1 << 20
#: Room a frame needs in a block besides its bytes (block header, tpacket3_hdr, sockaddr_ll).
BLOCK_OVERHEAD = 256
#: How often kernel drop counters and interface flags are read.
STATS_INTERVAL_S = 0.5

_AUX = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata
_TIMESPEC = struct.Struct("=qq")
_ANC_SIZE = socket.CMSG_SPACE(_AUX.size) + socket.CMSG_SPACE(_TIMESPEC.size)


# --- BPF ----------------------------------------------------------------------------------------


def _ret_snaplen(snaplen: int) -> bytes:
    """A one-instruction program that accepts everything, cut at ``snaplen``."""
    return struct.pack("=HBBI", BPF_RET_K, 0, 0, snaplen)


def compile_filter(expression: str, linktype: int, snaplen: int) -> bytes:
    """Compile a BPF expression with libpcap into ``struct sock_filter`` bytes for the kernel.

    Accepting returns are ``snaplen``, so the kernel also truncates frames.

    Args:
        expression: a pcap-filter(7) expression.
        linktype: the LINKTYPE_* of the frames it will see.
        snaplen: the snapshot length.

    Raises:
        FilterError: libpcap refused the expression (its message is kept), or the
            kernel cannot run the program (backward jumps, over 4096 instructions).
        DependencyError: libpcap is not installed.
    """
    program = compile_bpf(expression, linktype, snaplen)
    if program.has_backward_jumps:
        raise FilterError(
            f"bad filter {expression!r}: the kernel cannot run its backward jumps"
            " (ip6 protochain); use a filter without protochain"
        )
    if len(program) > KERNEL_MAX_INSNS:
        raise FilterError(
            f"bad filter {expression!r}: {len(program)} BPF instructions,"
            f" the kernel takes at most {KERNEL_MAX_INSNS}"
        )
    return b"".join(struct.pack("=HBBI", *row) for row in program.instructions.tolist())


@functools.lru_cache(maxsize=1)
def _libpcap() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("pcap")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.pcap_create.restype = ctypes.c_void_p
    lib.pcap_create.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    for fn in ("pcap_set_snaplen", "pcap_set_buffer_size"):
        getattr(lib, fn).argtypes = (ctypes.c_void_p, ctypes.c_int)
    lib.pcap_activate.argtypes = (ctypes.c_void_p,)
    lib.pcap_compile.argtypes = (
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_uint32,
    )
    lib.pcap_freecode.argtypes = (ctypes.c_void_p,)
    lib.pcap_close.argtypes = (ctypes.c_void_p,)
    return lib


class _BpfProgramStruct(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


def _compile_for_interface(name: str, expression: str, snaplen: int) -> bytes | None:
    """Compile ``expression`` the way tcpdump does for a live Linux interface, or None.

    libpcap only generates its Linux-specific code on an activated live handle:
    VLAN tags the kernel moved out of the frame are then matched through BPF
    extensions (``vlan`` works as in tcpdump), which a dead handle cannot do.
    Activation needs the same privileges as capture; any failure returns None
    and the caller keeps the dead-handle program.
    """
    lib = _libpcap()
    if lib is None:
        return None
    errbuf = ctypes.create_string_buffer(256)
    handle = lib.pcap_create(name.encode(), errbuf)
    if not handle:
        return None
    try:
        lib.pcap_set_snaplen(handle, snaplen)
        lib.pcap_set_buffer_size(handle, 1 << 16)  # the handle never captures: keep its ring small
        if lib.pcap_activate(handle) < 0:
            return None
        prog = _BpfProgramStruct()
        if lib.pcap_compile(handle, ctypes.byref(prog), expression.encode(), 1, 0xFFFFFFFF) != 0:
            return None
        try:
            return ctypes.string_at(prog.bf_insns, 8 * prog.bf_len)
        finally:
            lib.pcap_freecode(ctypes.byref(prog))
    finally:
        lib.pcap_close(handle)


def _attach_filter(sock: socket.socket, program: bytes) -> None:
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


# --- per-block chunks ---------------------------------------------------------------------------


class _Chunk:
    """Frames of one interface read in one go; ``offsets`` start at 0."""

    __slots__ = ("caplen", "data", "iface", "offsets", "ts", "wirelen")

    def __init__(
        self,
        iface: int,
        ts: NDArray[np.int64],
        caplen: NDArray[np.int64],
        wirelen: NDArray[np.int64],
        data: NDArray[np.uint8],
        offsets: NDArray[np.int64],
    ) -> None:
        self.iface = iface
        self.ts = ts
        self.caplen = caplen
        self.wirelen = wirelen
        self.data = data
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.ts)

    def split(self, k: int) -> tuple[_Chunk, _Chunk]:
        """The first ``k`` frames and the rest (sharing memory)."""
        cut = int(self.offsets[k])
        head = _Chunk(
            self.iface,
            self.ts[:k],
            self.caplen[:k],
            self.wirelen[:k],
            self.data[:cut],
            self.offsets[: k + 1],
        )
        tail = _Chunk(
            self.iface,
            self.ts[k:],
            self.caplen[k:],
            self.wirelen[k:],
            self.data[cut:],
            self.offsets[k:] - cut,
        )
        return head, tail


def _offsets(caplen: NDArray[np.int64]) -> NDArray[np.int64]:
    off = np.zeros(len(caplen) + 1, dtype=np.int64)
    np.cumsum(caplen, out=off[1:])
    return off


def _fix_frames(
    data: NDArray[np.uint8],
    caplen: NDArray[np.int64],
    wirelen: NDArray[np.int64],
    vlan: NDArray[np.bool_] | None,
    tags: NDArray[np.uint32] | None,
    snaplen: int,
) -> tuple[NDArray[np.uint8], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Reinsert stripped VLAN tags and cut frames back to ``snaplen``, vectorized.

    Args:
        data: the frames back to back.
        caplen: captured lengths.
        wirelen: lengths on the wire.
        vlan: frames whose 802.1Q tag the kernel moved into metadata (Ethernet only).
        tags: the 4-byte tag (TPID << 16 | TCI) of each frame.
        snaplen: the snapshot length.

    Returns:
        ``data, caplen, wirelen, offsets`` after the fix.
    """
    offsets = _offsets(caplen)
    if vlan is not None and tags is not None:
        # libpcap puts the tag back after the two MAC addresses when 12 bytes were captured.
        vlan = vlan & (caplen >= 12)
        if vlan.any():
            where = np.flatnonzero(vlan)
            tag_bytes = tags[where].astype(">u4").view(np.uint8)
            data = np.insert(data, np.repeat(offsets[where] + 12, 4), tag_bytes)
            caplen = caplen + 4 * vlan
            wirelen = wirelen + 4 * vlan
            offsets = _offsets(caplen)
    if len(caplen) and int(caplen.max()) > snaplen:
        within = np.arange(len(data), dtype=np.int64) - np.repeat(offsets[:-1], caplen)
        data = data[within < snaplen]
        caplen = np.minimum(caplen, snaplen)
        offsets = _offsets(caplen)
    return data, caplen, wirelen, offsets


# --- readers ------------------------------------------------------------------------------------


class _Reader:
    """One interface's capture socket."""

    def __init__(self, sock: socket.socket, iface: int, name: str, linktype: int, snaplen: int):
        self.sock = sock
        self.iface = iface
        self.name = name
        self.linktype = linktype
        self.snaplen = snaplen
        self.fd = sock.fileno()

    def read(self, limit: int) -> list[_Chunk]:
        """Frames ready now (about ``limit`` at most), without blocking."""
        raise NotImplementedError  # each reader says how it drains its socket

    def kernel_counts(self) -> tuple[int, int]:
        """``(packets, drops)`` since the last call (the kernel resets them on read)."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        packets, drops = struct.unpack_from("=II", raw)
        return int(packets), int(drops)

    def pending_in_kernel(self) -> bool:
        """Whether frames may still sit in a part-filled ring block."""
        return False

    def error(self) -> int:
        """The socket's pending error (``SO_ERROR``, cleared by reading), 0 if none."""
        return int(self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))

    def close(self) -> None:
        self.sock.close()


class _RingReader(_Reader):
    """Drains a ``TPACKET_V3`` block ring (see ``linux/if_packet.h``)."""

    def __init__(
        self,
        sock: socket.socket,
        iface: int,
        name: str,
        linktype: int,
        snaplen: int,
        block_size: int,
        block_nr: int,
    ):
        super().__init__(sock, iface, name, linktype, snaplen)
        self.block_size = block_size
        self.block_nr = block_nr
        self._mm: mmap.mmap | None = mmap.mmap(
            sock.fileno(), block_size * block_nr, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
        )
        self._u8: NDArray[np.uint8] = np.frombuffer(self._mm, dtype=np.uint8)
        self._u16: NDArray[np.uint16] = self._u8.view(np.uint16)
        self._u32: NDArray[np.uint32] = self._u8.view(np.uint32)
        self._mv: memoryview = memoryview(self._mm).cast("I")
        # Each frame slot is at least 80 bytes, so this covers a full block.
        self._pattern = np.tile(np.array([True, False]), block_size // 64 + 1)
        self._hdr_words = np.arange(10, dtype=np.int64)
        self._cur = 0
        self._words_per_block = block_size // 4

    def read(self, limit: int) -> list[_Chunk]:
        out: list[_Chunk] = []
        got = 0
        mv = self._mv
        for _ in range(self.block_nr):
            word = self._cur * self._words_per_block
            # block_status; the kernel sets it after a write barrier, and loads are not
            # reordered with loads on x86 (other CPUs would want a read barrier here).
            if not mv[word + 2] & TP_STATUS_USER:
                break
            chunk = self._block(word)
            mv[word + 2] = TP_STATUS_KERNEL  # hand the block back at once: the bytes are copied
            self._cur = (self._cur + 1) % self.block_nr
            if chunk is not None:
                out.append(chunk)
                got += len(chunk)
                if got >= limit:
                    break
        return out

    def pending_in_kernel(self) -> bool:
        word = self._cur * self._words_per_block
        return bool(self._mv[word + 3])  # num_pkts of the block the kernel is filling

    def _block(self, word: int) -> _Chunk | None:
        mv = self._mv
        n = mv[word + 3]  # num_pkts
        if n == 0:
            return None
        # The one per-frame Python loop: follow tp_next_offset (bytes) in 32-bit words.
        o = word + (mv[word + 4] >> 2)  # offset_to_first_pkt
        heads = [o] + [(o := o + (mv[o] >> 2)) for _ in range(n - 1)]
        h = np.array(heads, dtype=np.int64)
        # One gather of each tpacket3_hdr's first 40 bytes, then columns of it.
        hdr = self._u32[h[:, None] + self._hdr_words]
        sec = hdr[:, 1].astype(np.int64)
        nsec = hdr[:, 2].astype(np.int64)
        snap = hdr[:, 3].astype(np.int64)
        wirelen = hdr[:, 4].astype(np.int64)
        status = hdr[:, 5]
        half = hdr.view(np.uint16)  # the same bytes as 16-bit words, in native order
        mac = half[:, 12].astype(np.int64)
        starts = 4 * h + mac
        ends = starts + snap
        lo, hi = int(starts[0]), int(ends[-1])
        if n == 1:
            data = self._u8[lo:hi].copy()
        else:
            # Frames alternate with headers: keep runs of frame bytes, drop the gaps.
            runs = np.empty(2 * n - 1, dtype=np.int64)
            runs[0::2] = snap
            runs[1::2] = starts[1:] - ends[:-1]
            data = self._u8[lo:hi][np.repeat(self._pattern[: 2 * n - 1], runs)]
        vlan: NDArray[np.bool_] | None = None
        tags: NDArray[np.uint32] | None = None
        if self.linktype == 1:
            tci = hdr[:, 8]
            vlan = ((status & TP_STATUS_VLAN_VALID) != 0) | (tci != 0)
            if vlan.any():
                tpid = np.where(
                    (status & TP_STATUS_VLAN_TPID_VALID) != 0, half[:, 18], 0x8100
                ).astype(np.uint32)
                tags = (tpid << np.uint32(16)) | (tci & np.uint32(0xFFFF))
            else:
                vlan = None
        data, caplen, wirelen, offsets = _fix_frames(data, snap, wirelen, vlan, tags, self.snaplen)
        return _Chunk(self.iface, sec * 1_000_000_000 + nsec, caplen, wirelen, data, offsets)

    def close(self) -> None:
        # Views must go before the map can be unmapped.
        del self._u8, self._u16, self._u32
        self._mv.release()
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        super().close()


class _RecvReader(_Reader):
    """Fallback without a ring: drains a large receive buffer with ``recvmsg_into``."""

    def __init__(
        self,
        sock: socket.socket,
        iface: int,
        name: str,
        linktype: int,
        snaplen: int,
        buffer_bytes: int,
    ):
        super().__init__(sock, iface, name, linktype, snaplen)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, buffer_bytes)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setblocking(False)
        self._buf = bytearray(max(4 << 20, 4 * snaplen))
        self._view = memoryview(self._buf)
        self.down = False

    def read(self, limit: int) -> list[_Chunk]:
        ts: list[int] = []
        caplen: list[int] = []
        wirelen: list[int] = []
        status: list[int] = []
        tags: list[int] = []
        pos = 0
        view, snaplen, sock = self._view, self.snaplen, self.sock
        room = len(self._buf) - snaplen
        while len(ts) < limit and pos <= room:
            try:
                nbytes, anc, _flags, _addr = sock.recvmsg_into(
                    [view[pos : pos + snaplen]], _ANC_SIZE
                )
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
                    self.down = True
                    break
                raise
            t = st = tag = 0
            wl = nbytes
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(payload)
                    t = sec * 1_000_000_000 + nsec
                elif level == SOL_PACKET and kind == PACKET_AUXDATA:
                    st, wl, _snap, _mac, _net, tci, tpid = _AUX.unpack_from(payload)
                    if st & TP_STATUS_VLAN_VALID or tci:
                        tpid = tpid if st & TP_STATUS_VLAN_TPID_VALID else 0x8100
                        tag = tpid << 16 | tci
                        st |= TP_STATUS_VLAN_VALID
            ts.append(t)
            caplen.append(nbytes)
            wirelen.append(wl)
            status.append(st)
            tags.append(tag)
            pos += nbytes
        if not ts:
            return []
        cl = np.array(caplen, dtype=np.int64)
        vlan = None
        tag_arr = None
        if self.linktype == 1:
            vlan = (np.array(status, dtype=np.uint32) & TP_STATUS_VLAN_VALID) != 0
            tag_arr = np.array(tags, dtype=np.uint32)
        data, cl, wl_arr, offsets = _fix_frames(
            np.frombuffer(self._buf, dtype=np.uint8, count=pos).copy(),
            cl,
            np.array(wirelen, dtype=np.int64),
            vlan,
            tag_arr,
            snaplen,
        )
        return [_Chunk(self.iface, np.array(ts, dtype=np.int64), cl, wl_arr, data, offsets)]

    def close(self) -> None:
        self._view.release()
        super().close()


# --- the source ---------------------------------------------------------------------------------


def _ring_geometry(buffer_bytes: int, snaplen: int) -> tuple[int, int]:
    """``(block_size, block_nr)``: power-of-two blocks that hold a full frame, at least two."""
    need = 1 << (snaplen + BLOCK_OVERHEAD - 1).bit_length()
    want = max(4096, min(MAX_BLOCK, 1 << max(12, (buffer_bytes // 8).bit_length() - 1)))
    block = max(need, want)
    return block, max(2, buffer_bytes // block)


def _check_int(name: str, value: int, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer from {lo} to {hi}, not {value!r}")


class LiveSource(Source):
    """Frames captured live from one or more network interfaces, in batches.

    The sockets are opened, filtered and bound in the constructor (so errors
    surface at once, and privileges can be dropped right after); iterating
    yields ``FrameBatch`` objects until ``close()``, which is safe from any
    thread and stops capture within about ``timeout_ms``.

    Args:
        interfaces: interface names (``["eth0"]``); frames carry their index in ``iface``.
        bpf: a pcap-filter(7) expression, compiled by libpcap and run in the kernel.
        snaplen: bytes kept per frame, 1 to 262144.
        buffer_mb: kernel ring size per interface in MiB, 1 to 4096.
        promisc: put the interfaces in promiscuous mode while capturing.
        batch_size: frames per batch, 1 to 1048576; a smaller batch is yielded
            when frames have waited ``timeout_ms``.
        timeout_ms: how long a partial batch (and a part-filled kernel block) may wait,
            1 to 60000.
        ignore_outgoing: skip frames this host sends (``PACKET_IGNORE_OUTGOING``);
            by default both directions are captured, like tcpdump (on loopback,
            where each frame passes twice, only the incoming copy is kept).
        ring: use the ``TPACKET_V3`` ring; ``False`` forces the slower
            ``recvmsg`` fallback used when the kernel has no ring support.

    Raises:
        ConfigError: a parameter out of range.
        InterfaceError: an unknown interface (the message lists the existing ones),
            one that is down, or whose link type cannot be captured.
        FilterError: libpcap refused ``bpf``; the message is libpcap's.
        PrivilegeError: not root and no CAP_NET_RAW.
        CaptureError: the kernel refused the capture ring (e.g. out of memory).
    """

    def __init__(
        self,
        interfaces: Sequence[str],
        *,
        bpf: str | None = None,
        snaplen: int = MAX_SNAPLEN,
        buffer_mb: int = 64,
        promisc: bool = True,
        batch_size: int = 8192,
        timeout_ms: int = 100,
        ignore_outgoing: bool = False,
        ring: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(interfaces, str) or not interfaces:
            raise ConfigError("interfaces must be a non-empty list of interface names")
        names = list(interfaces)
        if len(set(names)) != len(names):
            raise ConfigError(f"interfaces repeats a name: {', '.join(names)}")
        _check_int("snaplen", snaplen, 1, MAX_SNAPLEN)
        _check_int("buffer_mb", buffer_mb, 1, 4096)
        _check_int("batch_size", batch_size, 1, 1 << 20)
        _check_int("timeout_ms", timeout_ms, 1, 60000)
        self.name = ",".join(names)
        self.bpf = bpf
        self.snaplen = snaplen
        self.batch_size = batch_size
        self.timeout_ms = timeout_ms
        self.promisc = promisc

        infos = [lookup_interface(n) for n in names]
        for info in infos:
            if info.linktype is None:
                raise InterfaceError(
                    f"{info.name}: cannot capture on hardware type ARPHRD {info.arphrd}"
                )
            if not info.up:
                raise InterfaceError(f"{info.name} is down")
        linktypes = {info.linktype for info in infos if info.linktype is not None}
        programs = {
            lt: compile_filter(bpf, lt, snaplen) if bpf is not None else _ret_snaplen(snaplen)
            for lt in sorted(linktypes)
        }
        self._interfaces = tuple(
            Interface(linktype=int(i.linktype or 0), snaplen=snaplen, name=i.name, tsresol=10**9)
            for i in infos
        )

        self._lock = threading.Lock()
        self._owner: int | None = None  # thread inside the capture loop
        self._released = False
        self._readers: list[_Reader] = []
        buffer_bytes = buffer_mb << 20
        try:
            for idx, info in enumerate(infos):
                lt = int(info.linktype or 0)
                program = programs[lt]
                if bpf is not None:
                    program = _compile_for_interface(info.name, bpf, snaplen) or program
                reader = _open(
                    info.name,
                    info.index,
                    idx,
                    lt,
                    program,
                    snaplen,
                    buffer_bytes,
                    promisc=promisc,
                    # On loopback every frame passes twice (out, then in); like libpcap,
                    # keep one copy.
                    ignore_outgoing=ignore_outgoing or info.arphrd == ARPHRD_LOOPBACK,
                    ring=ring,
                    timeout_ms=timeout_ms,
                )
                self._readers.append(reader)
            self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except BaseException:
            for r in self._readers:
                r.close()
            raise
        self.mode = (
            "tpacket_v3" if all(isinstance(r, _RingReader) for r in self._readers) else "recv"
        )

    @property
    def interfaces(self) -> tuple[Interface, ...]:
        return self._interfaces

    # --- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop capturing and release the sockets; safe from any thread, more than once."""
        self._closed = True
        if self._released:
            return
        with contextlib.suppress(OSError):
            os.eventfd_write(self._wake, 1)
        if self._owner == threading.get_ident():
            return  # called inside the loop (a signal handler): the loop releases on exit
        if self._lock.acquire(timeout=self.timeout_ms / 1000 + 5):
            try:
                self._release()
            finally:
                self._lock.release()

    def _release(self) -> None:
        """Close everything; the caller holds ``_lock``."""
        if self._released:
            return
        self._released = True
        with contextlib.suppress(OSError):
            self._read_kernel_stats()
        for r in self._readers:
            with contextlib.suppress(OSError):
                r.close()
        with contextlib.suppress(OSError):
            os.close(self._wake)

    def _read_kernel_stats(self) -> None:
        for r in self._readers:
            _packets, drops = r.kernel_counts()
            self.stats.kernel_drops += drops

    # --- the capture loop -----------------------------------------------------------------------

    def _batches(self) -> Iterator[FrameBatch]:
        pending: deque[_Chunk] = deque()
        count = 0
        first_at = 0.0
        frame_no = 1
        down: dict[str, float] = {}  # interface name -> when it was seen down
        fatal: CaptureError | None = None
        grace = 2 * self.timeout_ms / 1000 + 0.1
        poller = select.poll()
        by_fd = {}
        for r in self._readers:
            poller.register(r.fd, select.POLLIN | select.POLLERR)
            by_fd[r.fd] = r
        poller.register(self._wake, select.POLLIN)
        next_check = time.monotonic() + STATS_INTERVAL_S
        limit = self.batch_size
        try:
            while True:
                with self._lock:
                    if self._closed or self._released:
                        return
                    self._owner = threading.get_ident()
                    try:
                        now = time.monotonic()
                        wait = self.timeout_ms / 1000
                        if count:
                            wait = max(0.0, first_at + self.timeout_ms / 1000 - now)
                        if down:
                            wait = min(wait, 0.02)
                        for fd, ev in poller.poll(wait * 1000):
                            if fd == self._wake:
                                with contextlib.suppress(OSError):
                                    os.eventfd_read(self._wake)
                            elif ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                                r = by_fd[fd]
                                err = r.error()
                                poller.unregister(fd)
                                if err in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV) or not err:
                                    down.setdefault(r.name, time.monotonic())
                                elif fatal is None:
                                    fatal = CaptureError(
                                        f"{r.name}: capture failed: {os.strerror(err)}"
                                    )
                        if self._closed:
                            return
                        for r in self._readers:
                            chunks = r.read(limit)
                            if chunks and not count:
                                # Deadline from the oldest frame's age, so a frame that sat in a
                                # part-filled block for timeout_ms is not held another timeout_ms.
                                age = (time.time_ns() - int(chunks[0].ts[0])) / 1e9
                                age = min(max(age, 0.0), self.timeout_ms / 1000)
                                first_at = time.monotonic() - age
                            for c in chunks:
                                pending.append(c)
                                count += len(c)
                            if isinstance(r, _RecvReader) and r.down:
                                down.setdefault(r.name, time.monotonic())
                        now = time.monotonic()
                        if now >= next_check:
                            next_check = now + STATS_INTERVAL_S
                            self._read_kernel_stats()
                            self._check_flags(down, now)
                    finally:
                        self._owner = None
                while count >= limit:
                    batch, count = self._assemble(pending, limit, count, frame_no)
                    frame_no += len(batch)
                    yield batch
                if count and time.monotonic() >= first_at + self.timeout_ms / 1000:
                    batch, count = self._assemble(pending, count, count, frame_no)
                    frame_no += len(batch)
                    yield batch
                if fatal is not None or (down and self._drained(down, grace)):
                    # Everything captured so far first, then the error.
                    if count:
                        batch, count = self._assemble(pending, count, count, frame_no)
                        frame_no += len(batch)
                        yield batch
                    if fatal is not None:
                        raise fatal
                    raise InterfaceError(f"{', '.join(sorted(down))} went down")
        finally:
            with self._lock:
                self._release()

    def _check_flags(self, down: dict[str, float], now: float) -> None:
        for r in self._readers:
            if r.name in down:
                continue
            flags = interface_flags(r.sock, r.name)
            if flags is None or not flags & IFF_UP:
                down[r.name] = now

    def _drained(self, down: dict[str, float], grace: float) -> bool:
        """Whether the rings of interfaces that went down have nothing left to hand over."""
        now = time.monotonic()
        for r in self._readers:
            since = down.get(r.name)
            if since is not None and now - since < grace and r.pending_in_kernel():
                return False
        return True

    def _assemble(
        self, pending: deque[_Chunk], take: int, count: int, frame_no: int
    ) -> tuple[FrameBatch, int]:
        """Pop ``take`` frames off ``pending`` into one batch; return it and the new count."""
        parts: list[_Chunk] = []
        need = take
        while need:
            c = pending.popleft()
            if len(c) > need:
                c, rest = c.split(need)
                pending.appendleft(rest)
            parts.append(c)
            need -= len(c)
        if len(parts) == 1:
            p = parts[0]
            data, offsets = p.data, p.offsets
            if int(offsets[0]) != 0:
                offsets = offsets - offsets[0]
            iface = np.full(len(p), p.iface, dtype=np.int32)
            ts, caplen, wirelen = p.ts, p.caplen, p.wirelen
        else:
            data = np.concatenate([p.data for p in parts])
            caplen = np.concatenate([p.caplen for p in parts])
            offsets = _offsets(caplen)
            ts = np.concatenate([p.ts for p in parts])
            wirelen = np.concatenate([p.wirelen for p in parts])
            iface = np.repeat(
                np.array([p.iface for p in parts], dtype=np.int32), [len(p) for p in parts]
            )
        batch = FrameBatch(
            frame=np.arange(frame_no, frame_no + take, dtype=np.int64),
            ts_ns=ts,
            caplen=caplen,
            wirelen=wirelen,
            iface=iface,
            data=data,
            offsets=offsets,
            interfaces=self._interfaces,
        )
        return batch, count - take


def _open(
    name: str,
    ifindex: int,
    iface: int,
    linktype: int,
    program: bytes,
    snaplen: int,
    buffer_bytes: int,
    *,
    promisc: bool,
    ignore_outgoing: bool,
    ring: bool,
    timeout_ms: int,
) -> _Reader:
    """Open, filter and bind one interface's capture socket."""
    try:
        # Protocol 0: nothing is received until bind(), after the filter is in place.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError as exc:
        raise PrivilegeError("needs root or CAP_NET_RAW: run with sudo") from exc
    except OSError as exc:
        raise CaptureError(f"{name}: cannot open a packet socket: {exc.strerror}") from exc
    try:
        reader: _Reader
        try:
            _attach_filter(sock, program)
        except OSError as exc:
            raise CaptureError(f"{name}: the kernel refused the filter: {exc.strerror}") from exc
        if ignore_outgoing:
            try:
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            except OSError as exc:
                raise CaptureError(
                    f"{name}: cannot skip outgoing frames: {exc.strerror} (needs Linux 4.20)"
                ) from exc
        use_ring = ring
        if use_ring:
            try:
                sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            except OSError:
                use_ring = False  # an old kernel: fall back to recvmsg
        if use_ring:
            block, nr = _ring_geometry(buffer_bytes, snaplen)
            frame = min(block, 2048)
            req = struct.pack("=7I", block, nr, frame, (block // frame) * nr, timeout_ms, 0, 0)
            try:
                sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            except OSError as exc:
                raise CaptureError(
                    f"{name}: the kernel refused a {block * nr >> 20} MiB capture ring "
                    f"({exc.strerror}); try a smaller buffer"
                ) from exc
            reader = _RingReader(sock, iface, name, linktype, snaplen, block, nr)
        else:
            reader = _RecvReader(sock, iface, name, linktype, snaplen, buffer_bytes)
        try:
            sock.bind((name, ETH_P_ALL))
            if promisc:
                mreq = struct.pack("=iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        except OSError as exc:
            reader.close()
            if exc.errno in (errno.ENODEV, errno.ENXIO):
                raise InterfaceError(f"{name} disappeared while opening it") from exc
            raise CaptureError(f"{name}: cannot bind the capture socket: {exc.strerror}") from exc
        return reader
    except BaseException:
        sock.close()
        raise
