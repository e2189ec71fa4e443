"""BPF capture filters: compiled by libpcap, run vectorized over whole batches.

``compile_bpf`` asks libpcap itself (through ctypes) to compile a tcpdump-style
expression for one link type, for a live capture or, given the file's byte
order, exactly as ``tcpdump -r FILE EXPR`` does. The resulting classic-BPF program is executed by ``run_bpf`` for every frame of a
``FrameBatch`` at once: instead of one interpreter loop per frame, each
instruction is applied, as a handful of numpy operations, to the set of frames
whose program counter currently stands on it. Classic BPF jumps forward (the one
exception, libpcap's ``protochain``, jumps back and is run in extra sweeps), so
one pass over the instructions in order runs every frame to its ``ret``.

Semantics follow libpcap's ``bpf_filter`` (``bpf/net/bpf_filter.c``): unsigned
32-bit arithmetic, big-endian loads from the captured bytes, a load past the
captured length or a division by zero returns 0 (reject), shifts by ``x >= 32``
give 0, ``len`` is the wire length.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import struct
import sys
import warnings
from typing import Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from wirelearn.capture._batch import FrameBatch, linktype_name
from wirelearn.errors import ConfigError, DependencyError, FilterError

__all__ = [
    "SO_ATTACH_FILTER",
    "BpfFilter",
    "BpfProgram",
    "SockFilter",
    "SockFprog",
    "compile_bpf",
    "linktype_to_dlt",
    "run_bpf",
    "run_bpf_values",
]

#: ``setsockopt(SOL_SOCKET, SO_ATTACH_FILTER, bytes(program.sock_fprog()))`` on Linux.
SO_ATTACH_FILTER: Final = 26

#: libpcap's ``MAXIMUM_SNAPLEN``, the snapshot length of a file that gives none.
DEFAULT_SNAPLEN: Final = 262144
#: ``BPF_MAXINSNS``: the longest program the Linux kernel accepts.
KERNEL_MAX_INSNS: Final = 4096
_PCAP_NETMASK_UNKNOWN: Final = 0xFFFFFFFF
_MEMWORDS: Final = 16
# A backward jump (only protochain makes them) starts one more sweep; this bounds
# a program that would loop forever (libpcap would hang), rejecting those frames.
_MAX_SWEEPS: Final = 65536

# --- opcodes (pcap/bpf.h) ---------------------------------------------------------------------

_LD, _LDX, _ST, _STX, _ALU, _JMP, _RET, _MISC = range(8)
_W, _H, _B = 0x00, 0x08, 0x10
_IMM, _ABS, _IND, _MEM, _LEN, _MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
_ADD, _SUB, _MUL, _DIV, _OR, _AND, _LSH, _RSH, _NEG, _MOD, _XOR = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0
)  # fmt: skip
_JA, _JEQ, _JGT, _JGE, _JSET = 0x00, 0x10, 0x20, 0x30, 0x40
_K, _X, _A = 0x00, 0x08, 0x10
_TAX, _TXA = 0x00, 0x80

_ALU_NAMES: Final = {
    _ADD: "add", _SUB: "sub", _MUL: "mul", _DIV: "div", _OR: "or", _AND: "and",
    _LSH: "lsh", _RSH: "rsh", _MOD: "mod", _XOR: "xor",
}  # fmt: skip
# bpf_image prints these ALU immediates in hex, the others in signed decimal.
_ALU_HEX: Final = frozenset({_OR, _AND, _XOR})
_JMP_NAMES: Final = {_JEQ: "jeq", _JGT: "jgt", _JGE: "jge", _JSET: "jset"}
_LOAD_NAMES: Final = {_W: "ld", _H: "ldh", _B: "ldb"}
_LOAD_SIZES: Final = {_W: 4, _H: 2, _B: 1}

#: Every opcode libpcap's ``bpf_filter`` executes (any other makes it abort).
VALID_CODES: Final[frozenset[int]] = frozenset(
    [_RET | _K, _RET | _A]
    + [_LD | s | m for s in (_W, _H, _B) for m in (_ABS, _IND)]
    + [_LD | _W | _LEN, _LD | _IMM, _LD | _MEM]
    + [_LDX | _W | _LEN, _LDX | _MSH | _B, _LDX | _IMM, _LDX | _MEM, _ST, _STX]
    + [_JMP | _JA]
    + [_JMP | op | src for op in _JMP_NAMES for src in (_K, _X)]
    + [_ALU | op | src for op in _ALU_NAMES for src in (_K, _X)]
    + [_ALU | _NEG, _MISC | _TAX, _MISC | _TXA]
)

# LINKTYPE_* values (capture files) whose Linux DLT_* value (what pcap_open_dead wants)
# differs, as libpcap's linktype_to_dlt() maps them; every other value is the same.
_LINKTYPE_TO_DLT: Final = {
    100: 11,  # ATM_RFC1483
    101: 12,  # RAW
    102: 15,  # SLIP_BSDOS
    103: 16,  # PPP_BSDOS
    106: 19,  # ATM_CLIP
    14: 12,  # OpenBSD's DLT_RAW, found in files written there; raw IP all the same
}
# pcap_adjust_snapshot(): DLTs whose largest snapshot is not MAXIMUM_SNAPLEN.
_MAX_SNAPLEN: Final = {231: 128 * 1024 * 1024, 279: 8 * 1024 * 1024, 249: 1024 * 1024}


def linktype_to_dlt(linktype: int) -> int:
    """The libpcap DLT value (Linux) for a capture file's LINKTYPE value.

    The FCS bits libpcap keeps above the link type in a pcap header are dropped.

    >>> linktype_to_dlt(1), linktype_to_dlt(101), linktype_to_dlt(113)
    (1, 12, 113)
    """
    lt = int(linktype) & 0x03FFFFFF
    return _LINKTYPE_TO_DLT.get(lt, lt)


def _adjust_snaplen(dlt: int, snaplen: int) -> int:
    limit = _MAX_SNAPLEN.get(dlt, DEFAULT_SNAPLEN)
    return limit if snaplen <= 0 or snaplen > limit else snaplen


# --- libpcap through ctypes -------------------------------------------------------------------


class _BpfInsn(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint32),
    )


class _BpfProgramStruct(ctypes.Structure):
    _fields_ = (("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_BpfInsn)))


@functools.lru_cache(maxsize=1)
def _libpcap() -> ctypes.CDLL:
    """Load libpcap once and declare the few functions used."""
    names = [ctypes.util.find_library("pcap"), "libpcap.so.1", "libpcap.so.0.8", "libpcap.so"]
    lib = None
    errors = []
    for name in names:
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError as exc:
            errors.append(str(exc))
    if lib is None:
        detail = f" ({errors[-1]})" if errors else ""
        raise DependencyError(
            "BPF filters need libpcap; install it (Debian/Ubuntu: apt-get install libpcap0.8,"
            f" Fedora: dnf install libpcap, macOS: it ships with the system){detail}"
        )
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = (ctypes.c_int, ctypes.c_int)
    lib.pcap_compile.restype = ctypes.c_int
    lib.pcap_compile.argtypes = (
        ctypes.c_void_p,
        ctypes.POINTER(_BpfProgramStruct),
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_uint32,
    )
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = (ctypes.c_void_p,)
    lib.pcap_freecode.restype = None
    lib.pcap_freecode.argtypes = (ctypes.POINTER(_BpfProgramStruct),)
    lib.pcap_close.restype = None
    lib.pcap_close.argtypes = (ctypes.c_void_p,)
    lib.pcap_fopen_offline.restype = ctypes.c_void_p
    lib.pcap_fopen_offline.argtypes = (ctypes.c_void_p, ctypes.c_char_p)
    return lib


ByteOrder = Literal["little", "big"]


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    """The C library, for ``fmemopen`` (POSIX 2008: glibc, musl, macOS 10.13+)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "fmemopen"):
        raise DependencyError("compiling BPF filters for capture files needs fmemopen in libc")
    libc.fmemopen.restype = ctypes.c_void_p
    libc.fmemopen.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
    libc.fclose.restype = ctypes.c_int
    libc.fclose.argtypes = (ctypes.c_void_p,)
    return libc


def _open_handle(
    lib: ctypes.CDLL, linktype: int, dlt: int, snaplen: int, byte_order: ByteOrder | None
) -> tuple[int, object, str]:
    """A pcap_t to compile with (0 on failure), what must outlive it, and libpcap's error.

    ``None`` opens a dead handle (live-capture semantics); a byte order opens a
    capture file of that byte order holding only its header, from memory, so that
    libpcap compiles exactly as ``tcpdump -r`` does for such a file.
    """
    if byte_order is None:
        return lib.pcap_open_dead(dlt, snaplen) or 0, None, "pcap_open_dead failed"
    # The file header names the LINKTYPE; libpcap maps it to the DLT itself.
    header_linktype = 101 if dlt == 12 else linktype & 0x03FFFFFF
    endian = "<" if byte_order == "little" else ">"
    header = struct.pack(endian + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, header_linktype)
    buf = ctypes.create_string_buffer(header, len(header))
    libc = _libc()
    fp = libc.fmemopen(buf, len(header), b"rb")
    if not fp:
        return 0, None, "fmemopen failed"
    errbuf = ctypes.create_string_buffer(256)
    handle = lib.pcap_fopen_offline(fp, errbuf)
    if not handle:
        libc.fclose(fp)
        return 0, None, errbuf.value.decode("utf-8", "replace")
    return handle, buf, ""  # pcap_close() closes fp; buf must live until then


def compile_bpf(
    expression: str,
    linktype: int,
    snaplen: int = DEFAULT_SNAPLEN,
    *,
    byte_order: ByteOrder | None = None,
) -> BpfProgram:
    """Compile a tcpdump filter expression with libpcap for one link type.

    This is ``pcap_open_dead`` + ``pcap_compile`` (optimized, netmask unknown).
    Given a ``byte_order``, libpcap compiles instead for reading a capture file
    of that byte order, which is what ``tcpdump -r FILE EXPR`` runs: the two
    differ in that files refuse ``inbound``/``outbound`` (a live Linux handle
    reads the kernel's packet type) and in the address-family words of the NULL,
    LOOP and ENC link types (a file is matched against every BSD's ``AF_INET6``,
    in the file's byte order).

    Args:
        expression: a pcap-filter(7) expression; ``""`` accepts every frame.
        linktype: the LINKTYPE_* value of the frames (as in pcap/pcapng files);
            mapped to libpcap's DLT_* value where the two differ (``101`` → ``12``).
        snaplen: the snapshot length; ``0`` or too large means libpcap's maximum.
        byte_order: ``None`` to compile for a live capture and the kernel
            (``SO_ATTACH_FILTER``), or the byte order of the capture file the
            frames come from.

    Returns:
        The compiled program.

    Raises:
        FilterError: libpcap refused the expression for this link type; the
            message is ``bad filter '<expression>': <libpcap's message>``.
        DependencyError: libpcap is not installed.
        ConfigError: a negative link type or an unknown byte order.
    """
    if not isinstance(expression, str):
        raise ConfigError(f"BPF filter must be a string, not {type(expression).__name__}")
    if "\x00" in expression:
        raise FilterError(f"bad filter {expression!r}: it contains a NUL character")
    if int(linktype) < 0:
        raise ConfigError(f"link type must be 0 or more, not {linktype}")
    if byte_order not in (None, "little", "big"):
        raise ConfigError(f"byte_order must be None, 'little' or 'big', not {byte_order!r}")
    dlt = linktype_to_dlt(linktype)
    snap = _adjust_snaplen(dlt, int(snaplen))
    lib = _libpcap()
    handle, keepalive, error = _open_handle(lib, int(linktype), dlt, snap, byte_order)
    if not handle:
        raise FilterError(f"bad filter '{expression}': link type {linktype}: {error}")
    prog = _BpfProgramStruct()
    try:
        rc = lib.pcap_compile(
            handle, ctypes.byref(prog), expression.encode("utf-8"), 1, _PCAP_NETMASK_UNKNOWN
        )
        if rc != 0:
            raw = lib.pcap_geterr(handle) or b"unknown libpcap error"
            message = raw.decode("utf-8", "replace")
            raise FilterError(f"bad filter '{expression}': {message}")
        try:
            n = int(prog.bf_len)
            raw_insns = ctypes.string_at(prog.bf_insns, n * ctypes.sizeof(_BpfInsn))
        finally:
            lib.pcap_freecode(ctypes.byref(prog))
    finally:
        lib.pcap_close(handle)
        del keepalive
    rec = np.frombuffer(
        raw_insns, dtype=np.dtype([("code", "=u2"), ("jt", "u1"), ("jf", "u1"), ("k", "=u4")])
    )
    insns = np.stack([rec["code"], rec["jt"], rec["jf"], rec["k"]], axis=1).astype(np.uint32)
    return BpfProgram(
        insns, expression=expression, linktype=int(linktype), snaplen=snap, byte_order=byte_order
    )


# --- the program ------------------------------------------------------------------------------


class SockFilter(ctypes.Structure):
    """Linux ``struct sock_filter`` (the same layout as libpcap's ``struct bpf_insn``)."""

    _fields_ = (
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    )


class SockFprog(ctypes.Structure):
    """Linux ``struct sock_fprog``; ``bytes(fprog)`` is the ``SO_ATTACH_FILTER`` value.

    The instruction array it points to is kept alive by the structure itself
    (ctypes stores the array assigned to ``filter`` in the structure's ``_objects``).
    """

    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter)))


def _signed(k: int) -> int:
    return k - (1 << 32) if k & 0x80000000 else k


class BpfProgram:
    """A validated classic-BPF program.

    Args:
        instructions: ``(n, 4)`` integers ``code, jt, jf, k`` (as ``tcpdump -ddd``
            prints them, one instruction per row).
        expression: the filter expression it was compiled from, if any.
        linktype: the LINKTYPE_* value it was compiled for, if any; ``run_bpf``
            then refuses frames of another link type.
        snaplen: the snapshot length it was compiled with (what ``ret`` accepts).
        byte_order: the capture-file byte order it was compiled for, or ``None``
            for a live capture (see ``compile_bpf``).

    Raises:
        ConfigError: an instruction libpcap's ``bpf_filter`` would not run safely:
            an unknown opcode, a jump out of the program, a scratch-memory index
            of 16 or more, a constant division or modulo by zero, a constant shift
            by 32 or more, or a last instruction that is not ``ret``.

    Attributes:
        instructions: ``uint32[n, 4]``, read-only.
    """

    def __init__(
        self,
        instructions: ArrayLike,
        *,
        expression: str | None = None,
        linktype: int | None = None,
        snaplen: int | None = None,
        byte_order: ByteOrder | None = None,
    ) -> None:
        arr = np.asarray(instructions)
        if arr.ndim != 2 or arr.shape[1] != 4 or arr.shape[0] == 0:
            raise ConfigError(
                f"a BPF program is an (n, 4) array of code, jt, jf, k with n >= 1, not shape {arr.shape}"
            )
        if arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() > 0xFFFFFFFF:
            raise ConfigError("BPF instructions must be integers in 0..2**32-1")
        insns = arr.astype(np.uint32)
        insns.setflags(write=False)
        self.instructions: NDArray[np.uint32] = insns
        self.expression = expression
        self.linktype = linktype
        self.dlt = None if linktype is None else linktype_to_dlt(linktype)
        self.snaplen = snaplen
        self.byte_order = byte_order
        self._ops = self._validate()
        self._uses_mem = any(
            (code & 0x07) in (_ST, _STX) or (code & 0xE7) in (_LD | _MEM, _LDX | _MEM)
            for code, *_ in self._ops
        )

    def _validate(self) -> list[tuple[int, int, int, int]]:
        """Check every instruction; return them as ``(code, jt_target, jf_target, k)``."""
        n = len(self.instructions)
        ops: list[tuple[int, int, int, int]] = []
        for pc, (code, jt, jf, k) in enumerate(self.instructions.tolist()):
            where = f"BPF instruction {pc} ({code:#x}, {jt}, {jf}, {k:#x})"
            if code not in VALID_CODES:
                raise ConfigError(f"{where}: unknown opcode {code:#x}")
            cls = code & 0x07
            jt_to = jf_to = pc + 1
            if cls == _JMP:
                if code == _JMP | _JA:
                    # The offset is signed: libpcap's protochain jumps back.
                    jt_to = jf_to = pc + 1 + _signed(k)
                else:
                    if jt > 255 or jf > 255:
                        raise ConfigError(f"{where}: jt and jf must be 0..255")
                    jt_to, jf_to = pc + 1 + jt, pc + 1 + jf
                if not (0 <= jt_to < n and 0 <= jf_to < n):
                    raise ConfigError(f"{where}: jumps outside the program of {n} instructions")
            elif code in (_LD | _MEM, _LDX | _MEM, _ST, _STX) and k >= _MEMWORDS:
                raise ConfigError(f"{where}: scratch memory index {k} is not 0..15")
            elif code in (_ALU | _DIV | _K, _ALU | _MOD | _K) and k == 0:
                raise ConfigError(f"{where}: constant division by zero")
            elif code in (_ALU | _LSH | _K, _ALU | _RSH | _K) and k >= 32:
                raise ConfigError(f"{where}: constant shift by {k} is not 0..31")
            ops.append((code, jt_to, jf_to, k))
        if ops[-1][0] & 0x07 != _RET:
            raise ConfigError(f"BPF instruction {n - 1}: a program must end with ret")
        return ops

    def __len__(self) -> int:
        return len(self.instructions)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BpfProgram):
            return NotImplemented
        return np.array_equal(self.instructions, other.instructions)

    def __hash__(self) -> int:
        return hash(self.instructions.tobytes())

    def __repr__(self) -> str:
        what = f"{self.expression!r}, " if self.expression is not None else ""
        lt = f", linktype={self.linktype}" if self.linktype is not None else ""
        return f"BpfProgram({what}{len(self)} instructions{lt})"

    @property
    def has_backward_jumps(self) -> bool:
        """True when a ``ja`` goes back (``ip6 protochain``); the Linux kernel refuses those."""
        return any(jt <= pc for pc, (_, jt, _jf, _k) in enumerate(self._ops))

    def sock_fprog(self) -> SockFprog:
        """The program as a Linux ``struct sock_fprog``, for ``SO_ATTACH_FILTER``.

        ``sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(prog.sock_fprog()))``
        attaches it; keep the returned structure alive until that call returns.

        Raises:
            FilterError: the program is longer than the kernel's 4096 instructions.
        """
        n = len(self)
        if n > KERNEL_MAX_INSNS:
            raise FilterError(
                f"BPF program of {n} instructions is longer than the kernel's {KERNEL_MAX_INSNS}"
            )
        array = (SockFilter * n)(*(SockFilter(*row) for row in self.instructions.tolist()))
        return SockFprog(n, array)

    def dump(self) -> str:
        """The program as ``tcpdump -d`` prints it (libpcap's ``bpf_image``), one line each.

        ``ldx #pktlen``, which ``bpf_image`` shows as ``unimp 0x81``, is named.
        """
        return "\n".join(_image(pc, row) for pc, row in enumerate(self.instructions.tolist()))


def _image(n: int, row: list[int]) -> str:
    """One line of ``tcpdump -d``, formatted like libpcap 1.10's ``bpf_image``."""
    code, jt, jf, k = row
    cls = code & 0x07
    sk = _signed(k)
    if cls == _RET:
        op, operand = "ret", ("" if code & _A else f"#{sk}")
    elif code == _LD | _W | _LEN:
        op, operand = "ld", "#pktlen"
    elif code == _LDX | _W | _LEN:
        op, operand = "ldx", "#pktlen"
    elif cls == _LD and code & 0xE0 in (_ABS, _IND):
        op = _LOAD_NAMES[code & 0x18]
        operand = f"[{sk}]" if code & 0xE0 == _ABS else f"[x + {sk}]"
    elif code in (_LD | _IMM, _LDX | _IMM):
        op, operand = ("ld" if cls == _LD else "ldx"), f"#{k:#x}"
    elif code == _LDX | _MSH | _B:
        op, operand = "ldxb", f"4*([{sk}]&0xf)"
    elif code in (_LD | _MEM, _LDX | _MEM, _ST, _STX):
        op = {_LD | _MEM: "ld", _LDX | _MEM: "ldx", _ST: "st", _STX: "stx"}[code]
        operand = f"M[{sk}]"
    elif code == _JMP | _JA:
        op, operand = "ja", str(_signed((n + 1 + k) & 0xFFFFFFFF))
    elif cls == _JMP and code & 0xF0 in _JMP_NAMES:
        op = _JMP_NAMES[code & 0xF0]
        operand = "x" if code & _X else f"#{k:#x}"
        return f"({n:03d}) {op:<8s} {operand:<16s} jt {n + 1 + jt}\tjf {n + 1 + jf}"
    elif code == _ALU | _NEG:
        op, operand = "neg", ""
    elif cls == _ALU and code & 0xF0 in _ALU_NAMES:
        aop = code & 0xF0
        op = _ALU_NAMES[aop]
        operand = "x" if code & _X else (f"#{k:#x}" if aop in _ALU_HEX else f"#{sk}")
    elif code in (_MISC | _TAX, _MISC | _TXA):
        op, operand = ("tax" if code == _MISC | _TAX else "txa"), ""
    else:
        op, operand = "unimp", f"{code:#x}"
    return f"({n:03d}) {op:<8s} {operand}"


# --- the vectorized interpreter ---------------------------------------------------------------


def _load(
    data: NDArray[np.uint8],
    starts: NDArray[np.int64],
    buflen: NDArray[np.int64],
    idx: NDArray[np.int64],
    offset: NDArray[np.int64] | int,
    size: int,
) -> tuple[NDArray[np.int64], NDArray[np.uint32]]:
    """Big-endian loads of ``size`` bytes at ``offset`` for frames ``idx``.

    Returns the frames whose load lies inside their captured bytes, and the values.
    """
    # int64 cannot overflow here: k < 2**32 and x < 2**32, as libpcap checks without wrap.
    ok = offset + size <= buflen[idx]
    if not ok.all():
        idx = idx[ok]
        if not isinstance(offset, int):
            offset = offset[ok]
    if len(idx) == 0:
        return idx, np.zeros(0, dtype=np.uint32)
    pos = starts[idx] + offset
    value = data[pos].astype(np.uint32)
    # A gather per byte beats one unaligned multi-byte gather in numpy.
    for i in range(1, size):
        value <<= np.uint32(8)
        value |= data[pos + i]
    return idx, value


def run_bpf_values(
    program: BpfProgram,
    batch: FrameBatch,
    frames: NDArray[np.int64] | None = None,
) -> NDArray[np.uint32]:
    """Run a program over a batch and return what ``bpf_filter`` returns per frame.

    Args:
        program: the program (its link type, if it has one, is not checked here).
        batch: the frames.
        frames: positions in ``batch`` to run it on; all frames when ``None``.

    Returns:
        ``uint32[len(frames)]``: the ``ret`` value of each frame, 0 for a reject
        (including a load past the captured bytes and a division by zero).
    """
    # Loads read each frame where it lies (a view is not packed): same bytes, same result.
    buf, all_starts, _end = batch.spans()
    if frames is None:
        starts = all_starts
        buflen = batch.caplen
        wirelen = batch.wirelen
    else:
        frames = np.asarray(frames, dtype=np.int64)
        starts = all_starts[frames]
        buflen = batch.caplen[frames]
        wirelen = batch.wirelen[frames]
    return _execute(program, buf, starts, buflen, wirelen)


def _execute(
    program: BpfProgram,
    data: NDArray[np.uint8],
    starts: NDArray[np.int64],
    buflen: NDArray[np.int64],
    wirelen: NDArray[np.int64],
) -> NDArray[np.uint32]:
    m = len(starts)
    ret = np.zeros(m, dtype=np.uint32)
    if m == 0:
        return ret
    ops = program._ops
    n = len(ops)
    a = np.zeros(m, dtype=np.uint32)
    x = np.zeros(m, dtype=np.uint32)
    # libpcap leaves scratch memory uninitialised; its compiler never reads before writing.
    mem = np.zeros((_MEMWORDS, m), dtype=np.uint32) if program._uses_mem else None
    # waiting[pc]: arrays of frame positions whose program counter stands at pc.
    waiting: list[list[NDArray[np.int64]] | None] = [None] * n
    waiting[0] = [np.arange(m, dtype=np.int64)]
    first = 0
    sweeps = 0

    def wait(pc: int, idx: NDArray[np.int64]) -> None:
        if len(idx):
            slot = waiting[pc]
            if slot is None:
                waiting[pc] = [idx]
            else:
                slot.append(idx)

    while first < n:
        sweeps += 1
        if sweeps > _MAX_SWEEPS:
            break  # a runaway backward loop: its frames stay rejected
        back = n
        for pc in range(first, n):
            parts = waiting[pc]
            if parts is None:
                continue
            waiting[pc] = None
            idx = parts[0] if len(parts) == 1 else np.concatenate(parts)
            code, jt_to, jf_to, k = ops[pc]
            cls = code & 0x07
            if cls == _RET:
                ret[idx] = k if code == _RET | _K else a[idx]
                continue
            if cls == _JMP:
                if code == _JMP | _JA:
                    wait(jt_to, idx)
                    back = min(back, jt_to) if jt_to <= pc else back
                    continue
                av = a[idx]
                rhs: NDArray[np.uint32] | int = x[idx] if code & _X else k
                op = code & 0xF0
                if op == _JEQ:
                    cond = av == rhs
                elif op == _JGT:
                    cond = av > rhs
                elif op == _JGE:
                    cond = av >= rhs
                else:
                    cond = (av & rhs) != 0
                if jt_to == jf_to:
                    wait(jt_to, idx)
                else:
                    wait(jt_to, idx[cond])
                    wait(jf_to, idx[~cond])
                continue
            if cls in (_LD, _LDX):
                mode = code & 0xE0
                dest = a if cls == _LD else x
                if mode in (_ABS, _IND, _MSH):
                    off: NDArray[np.int64] | int = k
                    if mode == _IND:
                        off = x[idx].astype(np.int64) + k
                    size = 1 if mode == _MSH else _LOAD_SIZES[code & 0x18]
                    idx, value = _load(data, starts, buflen, idx, off, size)
                    if mode == _MSH:
                        value = (value & np.uint32(0xF)) << np.uint32(2)
                    dest[idx] = value
                elif mode == _IMM:
                    dest[idx] = k
                elif mode == _MEM:
                    assert mem is not None
                    dest[idx] = mem[k, idx]
                else:  # _LEN: the wire length, as a 32-bit value
                    dest[idx] = (wirelen[idx] & 0xFFFFFFFF).astype(np.uint32)
            elif cls == _ST:
                assert mem is not None
                mem[k, idx] = a[idx]
            elif cls == _STX:
                assert mem is not None
                mem[k, idx] = x[idx]
            elif cls == _ALU:
                idx = _alu(code, k, a, x, idx)
            elif code == _MISC | _TAX:
                x[idx] = a[idx]
            else:  # _MISC | _TXA
                a[idx] = x[idx]
            wait(pc + 1, idx)
        first = back
    return ret


def _alu(
    code: int, k: int, a: NDArray[np.uint32], x: NDArray[np.uint32], idx: NDArray[np.int64]
) -> NDArray[np.int64]:
    """Apply one ALU instruction to ``a[idx]``; return the frames that go on."""
    op = code & 0xF0
    av = a[idx]
    if op == _NEG:
        a[idx] = np.uint32(0) - av
        return idx
    rhs: NDArray[np.uint32] | np.uint32
    if code & _X:
        rhs = x[idx]
        if op in (_DIV, _MOD):
            # libpcap returns 0 (reject) on a division by zero.
            nz = rhs != 0
            if not nz.all():
                idx, av, rhs = idx[nz], av[nz], rhs[nz]
        elif op in (_LSH, _RSH):
            big = rhs >= 32
            if big.any():
                rhs = np.where(big, np.uint32(0), rhs)
                av = np.where(big, np.uint32(0), av)
    else:
        rhs = np.uint32(k)
    if op == _ADD:
        res = av + rhs
    elif op == _SUB:
        res = av - rhs
    elif op == _MUL:
        res = av * rhs
    elif op == _DIV:
        res = av // rhs
    elif op == _MOD:
        res = av % rhs
    elif op == _OR:
        res = av | rhs
    elif op == _AND:
        res = av & rhs
    elif op == _XOR:
        res = av ^ rhs
    elif op == _LSH:
        res = av << rhs
    else:  # _RSH
        res = av >> rhs
    a[idx] = res
    return idx


def run_bpf(program: BpfProgram, batch: FrameBatch) -> NDArray[np.bool_]:
    """Which frames of a batch a BPF program accepts (returns non-zero for).

    Args:
        program: the program, e.g. from ``compile_bpf``.
        batch: the frames; all of the program's link type when it has one.

    Returns:
        ``bool[len(batch)]``.

    Raises:
        ConfigError: the batch holds frames of a link type other than the one the
            program was compiled for (``BpfFilter`` handles mixed batches).
    """
    if program.dlt is not None and len(batch):
        dlts = {linktype_to_dlt(lt) for lt in np.unique(batch.linktype).tolist()}
        other = dlts - {program.dlt}
        if other:
            names = ", ".join(f"{linktype_name(lt)} ({lt})" for lt in sorted(other))
            raise ConfigError(
                f"BPF program for link type {linktype_name(program.linktype or 0)}"
                f" ({program.linktype}) cannot run on frames of link type {names};"
                " use BpfFilter for batches of several link types"
            )
    accepted: NDArray[np.bool_] = run_bpf_values(program, batch) != 0
    return accepted


# DLT_NULL and DLT_ENC start with an address family in the capturing host's byte
# order; libpcap compiles them for the byte order of the file being read.
_HOST_ORDER_DLTS: Final = frozenset({0, 109})
# What libpcap's optimizer says of a program that can only return 0.
_REJECTS_ALL: Final = "expression rejects all packets"


def _big_endian_af(batch: FrameBatch, sel: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Which of frames ``sel`` have a big-endian address-family word (``00 00 xx yy``)."""
    ok = batch.caplen[sel] >= 4
    big = np.zeros(len(sel), dtype=np.bool_)
    buf, all_starts, _end = batch.spans()
    start = all_starts[sel[ok]]
    if len(start):
        big[ok] = (
            (buf[start] == 0) & (buf[start + 1] == 0) & ((buf[start + 2] | buf[start + 3]) != 0)
        )
    return big


class BpfFilter:
    """A tcpdump filter expression, applied to batches of any link type.

    The expression is compiled by libpcap once per link type met (and cached),
    the way ``tcpdump -r`` compiles it for a capture file, so that the frames
    kept are exactly those tcpdump keeps. For the NULL and ENC link types, whose
    address-family word is in the capturing host's byte order, that order is
    read from each frame (where tcpdump takes the file header's).

    Frames of a link type the expression cannot be compiled for (``vlan`` on
    Linux cooked captures, ``wlan`` on Ethernet, an unknown link type) are
    rejected with one ``RuntimeWarning`` per link type; if no link type seen so
    far compiles, that is a ``FilterError`` instead. An expression that cannot
    match a link type at all (``ip[8] < 64`` on IPv6-only link types, which
    libpcap refuses with "expression rejects all packets") rejects its frames
    without a warning, once the capture has shown another link type.

    Args:
        expression: a pcap-filter(7) expression; ``""`` accepts every frame.
        linktype: the link type to check the expression against at once, so that
            a typo fails before any capture is read (Ethernet by default; pass the
            capture's own when it is known, e.g. for 802.11-only expressions).

    Raises:
        FilterError: libpcap refused the expression for ``linktype``.
        DependencyError: libpcap is not installed.
    """

    def __init__(self, expression: str, *, linktype: int = 1) -> None:
        self.expression = expression
        self._programs: dict[tuple[int, str], BpfProgram] = {}
        self._unsupported: dict[int, str] = {}
        self._rejects_all: dict[int, str] = {}
        self._compiled_any = False
        # Compile eagerly: a typo must fail before any reading.
        program = compile_bpf(expression, linktype, byte_order=sys.byteorder)
        self._programs[(linktype_to_dlt(linktype), sys.byteorder)] = program

    def __repr__(self) -> str:
        return f"BpfFilter({self.expression!r})"

    @property
    def unsupported(self) -> dict[int, str]:
        """Link types met whose frames are rejected, with libpcap's reason."""
        return dict(self._unsupported)

    def program(self, linktype: int, byte_order: ByteOrder | None = None) -> BpfProgram | None:
        """The compiled program for a link type, or ``None`` if libpcap cannot compile it.

        Args:
            linktype: the LINKTYPE_* value.
            byte_order: the capture file's byte order; this host's by default.
        """
        dlt = linktype_to_dlt(linktype)
        order: ByteOrder = byte_order or sys.byteorder
        prog = self._programs.get((dlt, order))
        if prog is None and dlt not in self._unsupported:
            try:
                prog = compile_bpf(self.expression, linktype, byte_order=order)
            except FilterError as exc:
                if not exc.message.endswith(_REJECTS_ALL):
                    self._unsupported[dlt] = exc.message
                    return None
                # Valid, but it cannot match this link type (``ip[8] < 64`` on IPv6):
                # libpcap refuses such a program; its frames are simply rejected.
                self._rejects_all[dlt] = exc.message
                prog = BpfProgram(
                    [[_RET | _K, 0, 0, 0]], expression=self.expression, linktype=linktype
                )
            self._programs[(dlt, order)] = prog
        return prog

    def mask(self, batch: FrameBatch) -> NDArray[np.bool_]:
        """Which frames of the batch the expression accepts.

        Raises:
            FilterError: the expression compiles for none of the link types seen.
        """
        out = np.zeros(len(batch), dtype=np.bool_)
        if len(batch) == 0:
            return out
        lts = batch.linktype
        table = sorted({i.linktype for i in batch.interfaces}) or [1]
        if len(table) == 1:
            uniq = table
        else:
            # Link types of the interfaces present, without sorting every frame.
            last = len(batch.interfaces) - 1
            counts = np.bincount(np.clip(batch.iface, 0, last), minlength=last + 1)
            uniq = sorted({batch.interfaces[i].linktype for i in np.flatnonzero(counts).tolist()})
        groups: dict[int, list[int]] = {}
        for lt in uniq:
            groups.setdefault(linktype_to_dlt(lt), []).append(lt)
        new_failures: list[tuple[int, str]] = []
        runnable: list[tuple[int, list[int]]] = []
        for dlt, members in groups.items():
            known = dlt in self._unsupported
            if self.program(members[0]) is None:
                if not known:
                    new_failures.append((members[0], self._unsupported[dlt]))
            else:
                runnable.append((dlt, members))
        if any(dlt not in self._rejects_all for dlt, _ in runnable):
            self._compiled_any = True
        elif not self._compiled_any:
            # Like tcpdump on a file of these link types only: the expression is refused.
            lt = uniq[0]
            dlt = linktype_to_dlt(lt)
            message = self._unsupported.get(dlt) or self._rejects_all[dlt]
            raise FilterError(
                f"{message} (link type {linktype_name(lt)} ({lt});"
                " no link type in the capture compiles)"
            )
        for lt, message in new_failures:
            warnings.warn(
                f"{message}: frames of link type {linktype_name(lt)} ({lt}) are rejected",
                RuntimeWarning,
                stacklevel=2,
            )
        for dlt, members in runnable:
            sel = None if len(uniq) == 1 else np.flatnonzero(np.isin(lts, members))
            if dlt not in _HOST_ORDER_DLTS:
                prog = self.program(members[0])
                assert prog is not None
                values = run_bpf_values(prog, batch, sel)
                out[slice(None) if sel is None else sel] = values != 0
                continue
            where = np.arange(len(batch), dtype=np.int64) if sel is None else sel
            big = _big_endian_af(batch, where)
            parts: tuple[tuple[ByteOrder, NDArray[np.int64]], ...] = (
                ("big", where[big]),
                ("little", where[~big]),
            )
            for order, part in parts:
                prog = self.program(members[0], order)
                if prog is not None and len(part):
                    out[part] = run_bpf_values(prog, batch, part) != 0
        return out

    def filter(self, batch: FrameBatch) -> FrameBatch:
        """The frames of the batch the expression accepts, keeping their frame numbers."""
        return batch.take(self.mask(batch))
