"""Damped per-host, per-channel and per-flow statistics, computed per batch with numpy.

The statistics follow Kitsune's damped incremental statistics (Mirsky et al.,
NDSS 2018): every key (a host, a host pair, a flow) keeps sums that decay with
capture time by a factor ``2 ** (-lam * dt)`` for each decay rate ``lam`` (per
second; the defaults are 5, 1 and 0.1, half-lives of 0.2 s, 1 s and 10 s). For
frame ``i`` of key ``k`` and rate ``lam``::

    w_i = sum over frames j of k with j <= i of 2 ** (-lam * (t_i - t_j))
    m_i = the same weighted mean of x_j
    v_i = the same weighted mean of (x_j - m_i) ** 2

so ``w`` is a damped frame count (``w * lam * ln 2`` estimates frames per
second), ``m`` the damped mean of a value ``x`` (the frame length) and ``v`` its
variance. Unlike Kitsune's ``SS / w - mean ** 2``, the variance is accumulated
with West's weighted form of Welford's update, ``S_i = decay * S_{i-1} +
(x_i - m_{i-1}) ** 2 * B_i / (B_i + 1)`` with ``B_i`` the decayed mass before
frame ``i``: a damped sum of terms >= 0 that cannot cancel, so a constant size
has a standard deviation of exactly 0.

Semantics, decided once for every statistic here:

* **Causal, in stream order.** A frame's statistics include itself and the frames
  before it in the stream, never later ones, even within one batch.
* **Capture time.** Time is ``ts_ns``. A timestamp that goes backwards is clamped
  to the largest one seen so far (so ``dt >= 0`` and rates stay finite); nothing
  ever reads the wall clock.
* **Bounded state.** State carried between batches lives in ``KeyTable``\\ s of at
  most ``max_keys`` entries. When a table is full the least recently *updated*
  keys (by capture time) are evicted and counted in ``evictions``; a key seen
  again after eviction starts afresh. A scan of random addresses therefore
  costs evictions, never memory.
* **Hashed keys.** Keys are 64-bit hashes (splitmix64) of the address bytes; two
  distinct keys collide with probability about ``2**-64`` per pair.

How a batch is computed without a per-frame loop: rows are grouped by key
(``pandas.factorize`` then a stable radix sort of the codes, so stream order is
kept inside each key). Inside a group, ``w_i = 2 ** (lam * t_i) * cumsum(2 ** (-lam * t_j))``
would overflow over long gaps, so each group is cut into *segments* whose times
span at most ``_SPAN`` doublings (one segment per key when the batch is short),
terms are taken relative to the segment's last time (every factor is in
``(0, 1]``), and one global ``cumsum`` minus its value before each segment gives
the segment-local prefix sums. Columns that carry values of any size (the value,
the variance terms) are divided by their per-segment maximum, and the variance
terms also split into magnitude bands, so that other keys' (or the key's own
later) large terms cannot swamp a key's small ones. Earlier segments of the same
key and the state from earlier batches are added as decayed carries; segments
more than ``_CARRY`` steps back contribute less than ``2**-64`` and are left
out. The tests check every statistic against a plain per-frame loop: counts,
rates, means and sums to 1e-6 relative, standard deviations to 1e-6 relative
or 1e-6 absolute.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from wirelearn.errors import ConfigError
from wirelearn.features._schema import FeatureBatch

__all__ = [
    "DEFAULT_LAMBDAS",
    "STAT_GROUPS",
    "DampedResult",
    "DampedStats",
    "KeyTable",
    "TrafficStats",
    "host_keys",
    "mix64",
]

#: Decay rates per second; half-lives 0.2 s, 1 s and 10 s.
DEFAULT_LAMBDAS: Final[tuple[float, ...]] = (5.0, 1.0, 0.1)

#: The statistic groups ``TrafficStats`` can compute.
STAT_GROUPS: Final[tuple[str, ...]] = ("src", "src_ports", "dst", "channel", "flow")

_F64 = NDArray[np.float64]
_I64 = NDArray[np.int64]
_U64 = NDArray[np.uint64]
_B = NDArray[np.bool_]

#: Largest time span of one segment, in doublings of the decay (``lam * dt``).
_SPAN: Final = 12.0
#: Earlier segments carried into a segment: ``_CARRY * _SPAN >= 64`` doublings.
_CARRY: Final = 7
_LN2: Final = math.log(2.0)
#: Keys with one frame and no history, at least this many (and a quarter of a batch's
#: keys), take the direct path of ``DampedStats._lone``.
_LONE_MIN: Final = 64
#: Magnitude bands (relative to a segment's largest term) of the variance terms.
_BANDS: Final = (2.0**-30,)

# Distinct salts keep keys of different kinds apart (an IPv4 host never equals a MAC).
_TAG_V4: Final = np.uint64(0x6A09E667F3BCC908)
_TAG_V6: Final = np.uint64(0xBB67AE8584CAA73B)
_TAG_MAC: Final = np.uint64(0x3C6EF372FE94F82B)
_TAG_PAIR: Final = np.uint64(0xA54FF53A5F1D36F1)
_TAG_PORT: Final = np.uint64(0x510E527FADE682D1)
_TAG_FLOW: Final = np.uint64(0x9B05688C2B3E6C1F)

#: Fibonacci hashing multiplier (2**64 / golden ratio) of the key tables' index.
_FIB: Final = np.uint64(0x9E3779B97F4A7C15)
#: Index positions never used, and freed by an eviction (probing goes on past these).
_EMPTY: Final = -1
_TOMB: Final = -2


def mix64(x: _U64) -> _U64:
    """The splitmix64 finalizer: a fast, well-mixing bijection of ``uint64`` values.

    >>> int(mix64(np.array([0, 1], dtype=np.uint64))[1])
    6238072747940578789
    """
    y: _U64 = np.asarray(x, dtype=np.uint64)
    y = (y ^ (y >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    y = (y ^ (y >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    out: _U64 = y ^ (y >> np.uint64(31))
    return out


def host_keys(
    ip_version: NDArray[np.integer],
    ip: NDArray[np.uint8],
    ip_valid: _B,
    mac: _I64,
) -> tuple[_U64, _B]:
    """Hash each frame's host into a 64-bit key: its IP address when known, else its MAC.

    IP wins because on a routed network every remote host arrives with the
    gateway's MAC; frames without IP (ARP, LLDP, ...) fall back to the MAC.

    Args:
        ip_version: 4, 6, or anything else for "no IP".
        ip: ``uint8[n, 16]`` addresses (IPv4 in the first 4 bytes).
        ip_valid: where the address is known.
        mac: 48-bit MACs, ``-1`` for null.

    Returns:
        ``(keys, valid)``; ``valid`` is False where the frame has neither address.
    """
    words = np.ascontiguousarray(ip, dtype=np.uint8).view(np.uint64).reshape(len(ip), 2)
    v4 = (ip_version == 4) & ip_valid
    v6 = (ip_version == 6) & ip_valid
    tag = np.where(v4, _TAG_V4, _TAG_V6)
    ip_key = mix64(mix64(words[:, 0] ^ tag) ^ words[:, 1])
    mac_key = mix64(mac.astype(np.uint64) ^ _TAG_MAC)
    has_ip = v4 | v6
    return np.where(has_ip, ip_key, mac_key), has_ip | (mac >= 0)


def _pair_keys(a: _U64, b: _U64) -> _U64:
    """Directional key of the pair ``(a, b)``."""
    return mix64(a ^ mix64(b ^ _TAG_PAIR))


class KeyTable:
    """A bounded map from ``uint64`` keys to rows of ``float64`` state, evicting by recency.

    Keys live in an open-addressing hash index (linear probing, Fibonacci
    hashing) probed for a whole batch of keys at once: each probe round is one
    vectorized gather and settles most keys, so a lookup costs a few passes over
    the batch's keys, never a pass over the table. State rows live in slots that
    never move. Evicted keys leave tombstones; the index is rebuilt (one
    vectorized insert of the live keys) when live keys and tombstones fill half
    of it. ``last`` holds each key's recency (capture time in ns for statistics,
    a counter for the MAC encoder). Beyond ``max_keys`` the entries with the
    smallest ``last`` are evicted.

    Args:
        width: state values per key (may be 0 for a set).
        max_keys: the most keys kept.
    """

    def __init__(self, width: int, max_keys: int) -> None:
        if int(max_keys) < 1:
            raise ConfigError(f"max_keys must be at least 1, not {max_keys}")
        self.width = int(width)
        self.max_keys = int(max_keys)
        self.evictions = 0
        cap = min(self.max_keys, 256)
        self.values: _F64 = np.zeros((cap, self.width), dtype=np.float64)
        self.last: _I64 = np.zeros(cap, dtype=np.int64)
        # Per slot: its key and its position in the hash index (-1 for a free slot).
        self._skey: _U64 = np.zeros(cap, dtype=np.uint64)
        self._spos: _I64 = np.full(cap, -1, dtype=np.int64)
        self._free: _I64 = np.zeros(0, dtype=np.int64)
        self._fresh = 0  # slots below this index have been handed out at least once
        self._size = 0
        self._tombs = 0
        self._bits = 4
        self._hkey: _U64 = np.zeros(16, dtype=np.uint64)
        # The slot at each index position: _EMPTY, _TOMB, or a slot >= 0.
        self._hslot: _I64 = np.full(16, _EMPTY, dtype=np.int64)

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        """Bytes held by the table's arrays."""
        return int(
            self._hkey.nbytes
            + self._hslot.nbytes
            + self._skey.nbytes
            + self._spos.nbytes
            + self.values.nbytes
            + self.last.nbytes
            + self._free.nbytes
        )

    def keys(self) -> _U64:
        """The keys present, sorted."""
        n = self._fresh
        keys: _U64 = np.sort(self._skey[:n][self._spos[:n] >= 0])
        return keys

    def _home(self, keys: _U64) -> _I64:
        """Each key's first probe position (Fibonacci hashing, so unmixed keys spread too)."""
        home: _I64 = ((keys * _FIB) >> np.uint64(64 - self._bits)).astype(np.int64)
        return home

    def lookup(self, keys: _U64) -> _I64:
        """The slot of each key, ``-1`` where absent."""
        keys = np.asarray(keys, dtype=np.uint64)
        out = np.full(len(keys), -1, dtype=np.int64)
        if self._size == 0 or len(keys) == 0:
            return out
        mask = len(self._hslot) - 1
        pos = self._home(keys)
        idx: _I64 | None = None  # None while every key is still probing
        want = keys
        while len(pos):
            s = self._hslot[pos]
            hit = self._hkey[pos] == want
            hit &= s >= 0
            if idx is None:
                np.copyto(out, s, where=hit)
            else:
                out[idx[hit]] = s[hit]
            go = s != _EMPTY
            go &= ~hit
            sel = np.flatnonzero(go)
            idx = sel if idx is None else idx[sel]
            want = keys[idx]
            pos = (pos[sel] + 1) & mask
        return out

    def _insert(self, keys: _U64, slots: _I64) -> None:
        """Put absent, distinct ``keys`` into the index (kept at most half full)."""
        mask = len(self._hslot) - 1
        pos = self._home(keys)
        idx = np.arange(len(keys))
        claim = np.empty(len(self._hslot), dtype=np.int64)
        while len(idx):
            fi = np.flatnonzero(self._hslot[pos] < 0)
            p, cand = pos[fi], idx[fi]
            # Keys racing for one free position: the last write wins, the others probe on.
            claim[p] = cand
            won = claim[p] == cand
            p, cand = p[won], cand[won]
            self._tombs -= int(np.count_nonzero(self._hslot[p] == _TOMB))
            self._hkey[p] = keys[cand]
            self._hslot[p] = slots[cand]
            self._spos[slots[cand]] = p
            left = np.ones(len(idx), dtype=np.bool_)
            left[fi[won]] = False
            idx = idx[left]
            pos = (pos[left] + 1) & mask

    def store(self, keys: _U64, slots: _I64, last: _I64, values: _F64 | None = None) -> _I64:
        """Write state for ``keys`` (unique), inserting absent ones, and evict if over size.

        Args:
            keys: unique keys.
            slots: their slots from ``lookup`` (``-1`` for keys to insert).
            last: the recency of each key after this update.
            values: ``(len(keys), width)`` new state, or None for a width-0 table.

        Returns:
            The slot of each key afterwards, ``-1`` for new keys that were evicted at once
            (more new keys than ``max_keys``, the least recent dropped first).
        """
        keys = np.asarray(keys, dtype=np.uint64)
        slots = slots.copy()
        hit = slots >= 0
        new = np.flatnonzero(~hit)
        if len(new) < len(slots):
            old = slots[hit]
            self.last[old] = last[hit]
            if values is not None and self.width:
                self.values[old] = np.take(values, np.flatnonzero(hit), axis=0)
        if len(new) == 0:
            return slots
        over = self._size + len(new) - self.max_keys
        if over > 0:
            new = self._evict(over, new, last)
        if len(new) == 0:
            return slots
        got = self._allocate(len(new))
        slots[new] = got
        self.last[got] = last[new]
        if values is not None and self.width:
            self.values[got] = np.take(values, new, axis=0)
        new_keys = keys[new]
        self._skey[got] = new_keys
        self._size += len(new)
        if 2 * (self._size + self._tombs) > len(self._hslot):
            # Rebuild at a quarter full: no tombstones, room for the next inserts.
            live = np.flatnonzero(self._spos[: self._fresh] >= 0)
            self._bits = max(4, (4 * self._size - 1).bit_length())
            self._hkey = np.zeros(1 << self._bits, dtype=np.uint64)
            self._hslot = np.full(1 << self._bits, _EMPTY, dtype=np.int64)
            self._tombs = 0
            self._insert(np.concatenate([self._skey[live], new_keys]), np.concatenate([live, got]))
        else:
            self._insert(new_keys, got)
        return slots

    def _evict(self, over: int, new: _I64, last: _I64) -> _I64:
        """Drop the ``over`` least recent of (present keys, new keys); return the new survivors."""
        present = np.flatnonzero(self._spos[: self._fresh] >= 0)
        n_old = len(present)
        recency = np.concatenate([self.last[present], last[new]])
        if over >= len(recency):
            victims = np.arange(len(recency))
        else:
            victims = np.argpartition(recency, over - 1)[:over]
        self.evictions += int(over)
        old_victims = present[victims[victims < n_old]]
        if len(old_victims):
            self._hslot[self._spos[old_victims]] = _TOMB
            self._tombs += len(old_victims)
            self._spos[old_victims] = -1
            self._size -= len(old_victims)
            self._free = np.concatenate([self._free, old_victims])
        dropped = np.zeros(len(new), dtype=np.bool_)
        dropped[victims[victims >= n_old] - n_old] = True
        return new[~dropped]

    def _allocate(self, k: int) -> _I64:
        """``k`` free slots, growing the arrays (doubling, up to ``max_keys``) when needed."""
        reuse = self._free[len(self._free) - min(k, len(self._free)) :]
        self._free = self._free[: len(self._free) - len(reuse)]
        fresh = k - len(reuse)
        if self._fresh + fresh > len(self.last):
            cap = len(self.last)
            while cap < self._fresh + fresh:
                cap *= 2
            cap = min(cap, self.max_keys)
            values = np.zeros((cap, self.width), dtype=np.float64)
            values[: len(self.values)] = self.values
            self.values = values
            self.last = _grown(self.last, cap, 0)
            self._skey = _grown(self._skey, cap, 0)
            self._spos = _grown(self._spos, cap, -1)
        got = np.concatenate([reuse, np.arange(self._fresh, self._fresh + fresh, dtype=np.int64)])
        self._fresh += fresh
        return got


def _grown(arr: NDArray[Any], cap: int, fill: int) -> NDArray[Any]:
    """``arr`` copied into a longer array, the new tail set to ``fill``."""
    out = np.full(cap, fill, dtype=arr.dtype)
    out[: len(arr)] = arr
    return out


def _scatter(dst: _F64, idx: _I64, vals: _F64 | np.float64) -> None:
    """``dst[..., idx] = vals``, one 1-D assignment per leading row (several times faster
    than the multi-dimensional fancy assignment); ``vals`` broadcasts to ``(..., len(idx))``."""
    rows = dst.reshape(-1, dst.shape[-1])
    src = np.broadcast_to(vals, (*dst.shape[:-1], len(idx))).reshape(-1, len(idx))
    for j in range(len(rows)):
        rows[j][idx] = src[j]


@dataclass(frozen=True)
class _Groups:
    """Rows of a batch grouped by key, stream order kept inside each group."""

    rows: _I64  # original row of each sorted position
    counts: _I64  # rows per group (groups are contiguous runs of sorted positions)
    starts: _I64  # first sorted position of each group
    ends: _I64  # last sorted position of each group
    keys: _U64  # key of each group

    def spread(self, per_group: NDArray[Any]) -> NDArray[Any]:
        """Per-group values repeated onto the group's rows (faster than fancy indexing)."""
        return np.repeat(per_group, self.counts, axis=0)

    def subset(self, keep: _B) -> _Groups:
        """The groups where ``keep`` is True, their rows in the same order."""
        counts = self.counts[keep]
        ends = np.cumsum(counts) - 1
        return _Groups(
            rows=self.rows[self.spread(keep)],
            counts=counts,
            starts=ends - counts + 1,
            ends=ends,
            keys=self.keys[keep],
        )


def _group(keys: _U64, rows: _I64) -> _Groups:
    """Group ``keys`` (of the given original ``rows``) with a hash factorization and a radix sort."""
    codes, uniques = pd.factorize(keys)
    n_groups = len(uniques)
    # A stable sort of small integers is a radix sort in numpy: far cheaper than sorting keys.
    small = codes.astype(np.uint16) if n_groups <= 0xFFFF else codes
    order = np.argsort(small, kind="stable")
    counts = np.bincount(codes, minlength=n_groups)
    ends = np.cumsum(counts) - 1
    return _Groups(
        rows=rows[order],
        counts=counts,
        starts=ends - counts + 1,
        ends=ends,
        keys=np.asarray(uniques, dtype=np.uint64),
    )


# Arrays over the sorted rows of a batch are laid out rows-last, ``(columns, m)``: every
# elementwise operation then runs along long contiguous rows (a small trailing axis
# such as the decay rates would make each numpy inner loop a handful of elements).


def _segment_cumsum(flat: _F64, starts: _I64, counts: _I64) -> _F64:
    """Inclusive prefix sums along rows ``(C, m)``, restarting at each segment.

    One global ``cumsum`` serves every segment: a segment's sums are the
    ``cumsum`` minus its value just before the segment, whose rounding error is
    about ``eps * (everything summed before)``; that is why callers keep every
    term at most 1 or normalise it (see ``_run``).
    """
    csum = np.cumsum(flat, axis=1)
    if len(starts) < 2:
        return csum
    # Segments are contiguous and the first starts at 0; ``take`` along the last axis is
    # several times faster than the equivalent fancy index.
    before = np.take(csum, starts[1:] - 1, axis=1)
    csum[:, starts[1] :] -= np.repeat(before, counts[1:], axis=1)
    return csum


def _normalized_cumsum(flat: _F64, starts: _I64, counts: _I64, bands: tuple[float, ...]) -> _F64:
    """``_segment_cumsum`` of rows ``(C, m)`` of any magnitude, keeping each term's digits.

    Each row is divided by its per-segment maximum, so other segments cannot
    swamp it. With ``bands`` (thresholds relative to that maximum), terms are
    also split by magnitude and each band normalised on its own: a key's small
    terms then keep their digits even next to its own later large ones.
    """
    size = np.abs(flat)
    top = np.maximum.reduceat(size, starts, axis=1)
    top[top == 0.0] = 1.0
    spread_top = np.repeat(top, counts, axis=1)
    if not bands:
        out = _segment_cumsum(flat / spread_top, starts, counts)
        out *= spread_top
        return out
    ratio = size / spread_top
    band = np.zeros(flat.shape, dtype=np.int8)
    for edge in bands:
        band += ratio < edge
    k = flat.shape[0]
    pieces = np.empty((k * (len(bands) + 1), flat.shape[1]), dtype=np.float64)
    scales = [spread_top]
    for b in range(len(bands) + 1):
        piece = np.where(band == b, flat, 0.0)
        if b:
            scale = np.maximum.reduceat(np.abs(piece), starts, axis=1)
            scale[scale == 0.0] = 1.0
            scales.append(np.repeat(scale, counts, axis=1))
        np.divide(piece, scales[b], out=pieces[b * k : (b + 1) * k])
    summed = _segment_cumsum(pieces, starts, counts)
    total: _F64 = summed[:k] * scales[0]
    for b in range(1, len(bands) + 1):
        total += summed[b * k : (b + 1) * k] * scales[b]
    return total


@dataclass(frozen=True)
class _Plan:
    """How one subset of decay rates is computed: its segments and per-row decay factors."""

    lam_idx: _I64  # which decay rates
    counts: _I64  # rows per segment (segments are contiguous runs of sorted rows)
    starts: _I64  # first row of each segment
    ends: _I64  # last row of each segment
    seg_group: _I64 | None  # group of each segment (None: one segment per group)
    f: _F64  # (L', m) decay from each row to its segment's end, in (0, 1]
    t_end: _I64  # time of each segment's last row


def _plans(t: _I64, g: _Groups, lams: _F64) -> list[_Plan]:
    """Segment the sorted rows for each decay rate (all short-span rates share one plan)."""
    m = len(t)
    span = (t[g.ends] - t[g.starts]).astype(np.float64) / 1e9
    max_span = float(span.max()) if len(span) else 0.0
    fast = lams * max_span <= _SPAN
    todo: list[tuple[_I64, _I64, _I64, _I64, _I64 | None]] = []
    if fast.any():
        todo.append((np.flatnonzero(fast), g.counts, g.starts, g.ends, None))
    if not fast.all():
        gid = g.spread(np.arange(len(g.counts)))
        since_first = (t - g.spread(t[g.starts])).astype(np.float64) / 1e9
    for li in np.flatnonzero(~fast):
        # Fixed-width bins of _SPAN doublings from each group's first frame.
        bins = np.floor(since_first * (lams[li] / _SPAN)).astype(np.int64)
        cut = np.ones(m, dtype=np.bool_)
        cut[1:] = (gid[1:] != gid[:-1]) | (bins[1:] != bins[:-1])
        starts = np.flatnonzero(cut)
        ends = np.empty(len(starts), dtype=np.int64)
        ends[:-1] = starts[1:] - 1
        ends[-1] = m - 1
        todo.append((np.array([li]), ends - starts + 1, starts, ends, gid[starts]))
    plans = []
    for idx, counts, starts, ends, seg_group in todo:
        t_end = t[ends]
        back = (np.repeat(t_end, counts) - t).astype(np.float64) * -1e-9
        f = np.exp2(lams[idx][:, None] * back[None, :])
        plans.append(_Plan(idx, counts, starts, ends, seg_group, f, t_end))
    return plans


def _prev_decay(
    plans: list[_Plan], t: _I64, g: _Groups, carry_t: _I64, known: _B, lams: _F64
) -> _F64:
    """``(L, m)`` decay from each row's previous frame of its key (0 when there is none)."""
    m = len(t)
    out = np.empty((len(lams), m), dtype=np.float64)
    prev_t = np.empty(m, dtype=np.int64)
    prev_t[1:] = t[:-1]
    prev_t[g.starts] = carry_t
    fresh = np.zeros(m, dtype=np.bool_)
    fresh[g.starts[~known]] = True
    for p in plans:
        d = np.empty((len(p.lam_idx), m), dtype=np.float64)
        # Inside a segment the ratio of decays to its end is exact and costs no exp.
        np.divide(p.f[:, :-1], p.f[:, 1:], out=d[:, 1:])
        cut = p.starts
        gap = np.where(fresh[cut], np.inf, (t[cut] - prev_t[cut]).astype(np.float64) / 1e9)
        d[:, cut] = np.exp2(-lams[p.lam_idx][:, None] * gap[None, :])
        out[p.lam_idx] = d
    return out


def _run(
    plan: _Plan,
    lams: _F64,
    contrib: _F64,
    carry: _F64,
    carry_t: _I64,
    has_carry: _B,
    normalized: int,
    bands: tuple[float, ...],
) -> _F64:
    """Damped sums ``(Q, L', m)`` of ``contrib`` for one plan: see the module docstring.

    Args:
        plan: the segmentation and decay factors.
        lams: ``(L',)`` the plan's decay rates.
        contrib: ``(Q, m)`` or ``(Q, L', m)``: what each sorted row adds.
        carry: ``(G, Q, L')`` sums carried from earlier batches, per group.
        carry_t: ``(G,)`` time of the carried sums, ns.
        has_carry: ``(G,)`` whether a group has carried sums.
        normalized: how many of the last columns (``Q`` axis) hold values of any
            magnitude (the others are counts of terms in ``[0, 1]``).
        bands: magnitude bands for those columns (see ``_normalized_cumsum``).
    """
    f = plan.f
    n_l, m = f.shape
    terms = (contrib[:, None, :] if contrib.ndim == 2 else contrib) * f
    q = terms.shape[0]
    flat = terms.reshape(q * n_l, m)
    plain = (q - normalized) * n_l
    if not normalized:
        flat = _segment_cumsum(flat, plan.starts, plan.counts)
    elif not plain:
        flat = _normalized_cumsum(flat, plan.starts, plan.counts, bands)
    else:
        flat[:plain] = _segment_cumsum(flat[:plain], plan.starts, plan.counts)
        flat[plain:] = _normalized_cumsum(flat[plain:], plan.starts, plan.counts, bands)
    sums = flat.reshape(q, n_l, m)
    if plan.seg_group is not None:
        carry, carry_t, has_carry = (
            np.take(carry, plan.seg_group, axis=0),
            carry_t[plan.seg_group],
            has_carry[plan.seg_group],
        )
    # Everything carried into a segment, valued at the segment's end: (S, Q, L').
    gap = np.where(has_carry, (plan.t_end - carry_t).astype(np.float64) * -1e-9, -np.inf)
    at_end = carry * np.exp2(gap[:, None] * lams[None, :])[:, None, :]
    if plan.seg_group is not None:
        seg_group = plan.seg_group
        totals = np.take(sums, plan.ends, axis=2).transpose(2, 0, 1)
        for k in range(1, min(_CARRY + 1, len(seg_group))):
            # Segment s takes segment s - k of its own group.
            same = seg_group[k:] == seg_group[:-k]
            hits = np.flatnonzero(same)
            if len(hits) == 0:
                break
            if 4 * len(hits) < len(same):
                # Few groups have that many segments (a scan: mostly one frame per key).
                dt = (plan.t_end[hits + k] - plan.t_end[hits]).astype(np.float64) * -1e-9
                decay = np.exp2(dt[:, None] * lams[None, :])
                at_end[hits + k] += np.take(totals, hits, axis=0) * decay[:, None, :]
                continue
            # Many do: dense, with the other pairs weighted 0 (no gathers).
            dt = (plan.t_end[k:] - plan.t_end[:-k]).astype(np.float64) * -1e-9
            np.minimum(dt, 0.0, out=dt)  # other groups' segments may end later
            decay = np.exp2(dt[:, None] * lams[None, :])
            decay *= same[:, None]
            at_end[k:] += totals[:-k] * decay[:, None, :]
    sums += np.repeat(at_end.transpose(1, 2, 0), plan.counts, axis=2)
    sums /= f
    return sums


def _damped(
    plans: list[_Plan],
    lams: _F64,
    contrib: _F64,
    carry: _F64,
    carry_t: _I64,
    has_carry: _B,
    normalized: int,
    bands: tuple[float, ...] = (),
) -> _F64:
    """Damped sums ``(Q, L, m)`` over every plan; ``contrib`` is ``(Q, m)`` or ``(Q, L, m)``."""
    if len(plans) == 1 and len(plans[0].lam_idx) == len(lams):
        return _run(plans[0], lams, contrib, carry, carry_t, has_carry, normalized, bands)
    out = np.empty((contrib.shape[0], len(lams), contrib.shape[-1]), dtype=np.float64)
    for p in plans:
        c = contrib if contrib.ndim == 2 else contrib[:, p.lam_idx]
        out[:, p.lam_idx] = _run(
            p, lams[p.lam_idx], c, carry[:, :, p.lam_idx], carry_t, has_carry, normalized, bands
        )
    return out


@dataclass(frozen=True)
class DampedResult:
    """Per-frame output of ``DampedStats.update``; rows of frames without a key are NaN.

    Attributes:
        lambdas: the decay rates, one per column of the ``(n, L)`` arrays.
        count: damped frame count ``w`` ``(n, L)``.
        mean: damped mean of the tracked value ``(n, L)``, or None.
        std: damped standard deviation of the tracked value ``(n, L)``, or None.
        extras: damped sums of the extra columns ``(n, E, L)``, or None.
        iat: seconds since the key's previous frame ``(n,)``; NaN for its first frame.
        first_seen: the frame is the first of a key absent from the table.
    """

    lambdas: tuple[float, ...]
    count: _F64
    mean: _F64 | None
    std: _F64 | None
    extras: _F64 | None
    iat: _F64
    first_seen: _B

    @property
    def rate(self) -> _F64:
        """Frames per second: ``count * lam * ln 2`` (the steady-state inverse of ``w``)."""
        rate: _F64 = self.count * (np.asarray(self.lambdas) * _LN2)
        return rate


class DampedStats:
    """Damped count, optional mean/std of a value, and damped sums of extra columns, per key.

    Args:
        lambdas: decay rates per second (each > 0).
        track_value: keep the damped mean and standard deviation of ``value``.
        extras: how many extra columns to sum, each with values in ``[0, 1]``
            (e.g. 0/1 indicators).
        max_keys: the most keys whose state is kept between batches.
    """

    def __init__(
        self,
        lambdas: Sequence[float] = DEFAULT_LAMBDAS,
        *,
        track_value: bool = False,
        extras: int = 0,
        max_keys: int = 65536,
    ) -> None:
        lams = tuple(float(x) for x in lambdas)
        if not lams or any(not (x > 0.0 and math.isfinite(x)) for x in lams):
            raise ConfigError(f"lambdas must be finite decay rates > 0 per second, not {lambdas!r}")
        if int(extras) < 0:
            raise ConfigError(f"extras must be >= 0, not {extras}")
        self.lambdas = lams
        self.track_value = bool(track_value)
        self.extras = int(extras)
        self._lams = np.asarray(lams, dtype=np.float64)
        # Per key and decay rate: [w, extras..., LS, S] (LS, S with value tracking), then
        # the shift subtracted from values.
        self._q = 1 + self.extras + (2 if self.track_value else 0)
        self.table = KeyTable(self._q * len(lams) + 1, max_keys)
        self._t_max = np.iinfo(np.int64).min

    @property
    def evictions(self) -> int:
        """Keys evicted from the table so far."""
        return self.table.evictions

    def __len__(self) -> int:
        return len(self.table)

    def clamp_time(self, t_ns: _I64) -> _I64:
        """Timestamps made non-decreasing across calls (each is at least every earlier one)."""
        tau = np.maximum.accumulate(np.maximum(np.asarray(t_ns, dtype=np.int64), self._t_max))
        if len(tau):
            self._t_max = int(tau[-1])
        return tau

    def update(
        self,
        keys: _U64,
        valid: _B,
        t_ns: _I64,
        value: _F64 | None = None,
        extras: _F64 | None = None,
    ) -> DampedResult:
        """Add a batch of frames and return every frame's statistics (itself included).

        Args:
            keys: the key of each frame.
            valid: frames that have a key; the others get NaN and change nothing.
            t_ns: capture times in ns (clamped to be non-decreasing, see the module).
            value: ``(n,)`` the tracked value, when ``track_value``.
            extras: ``(n, E)`` extra columns to sum, values in ``[0, 1]``.
        """
        n = len(keys)
        n_l = len(self.lambdas)
        tau = self.clamp_time(t_ns)
        # Outputs are filled rows-last, (L, n), and returned as (n, L) views. When every
        # frame has a key, each is written whole by one gather (no NaN fill first).
        every = n > 0 and bool(np.all(valid))
        alloc = np.empty if every else functools.partial(np.full, fill_value=np.nan)
        count = alloc((n_l, n))
        mean = alloc((n_l, n)) if self.track_value else None
        std = alloc((n_l, n)) if self.track_value else None
        ext = alloc((self.extras, n_l, n)) if self.extras else None
        iat = alloc(n)
        first_seen = np.zeros(n, dtype=np.bool_)

        def result() -> DampedResult:
            return DampedResult(
                self.lambdas,
                count.T,
                None if mean is None else mean.T,
                None if std is None else std.T,
                None if ext is None else ext.transpose(2, 0, 1),
                iat,
                first_seen,
            )

        if self.track_value and value is None:
            raise ValueError("this DampedStats tracks a value: pass value=")
        if self.extras and (extras is None or extras.shape != (n, self.extras)):
            raise ValueError(f"extras must have shape ({n}, {self.extras})")
        rows = np.arange(n) if every else np.flatnonzero(valid)
        if len(rows) == 0:
            return result()
        g = _group(np.asarray(keys, dtype=np.uint64)[rows], rows)
        slots = self.table.lookup(g.keys)
        known = slots >= 0
        lone = (g.counts == 1) & ~known
        n_lone = int(np.count_nonzero(lone))
        lone_state: tuple[_U64, _I64, _I64, _F64] | None = None
        if n_lone >= max(_LONE_MIN, len(g.keys) // 4):
            # A scan: many keys with one frame and no history. Their statistics are those
            # of one frame, written directly; the general path below gets the others.
            r1 = g.rows[g.starts[lone]]
            lone_state = (g.keys[lone], slots[lone], tau[r1], self._lone(r1, value, extras))
            _scatter(count, r1, np.float64(1.0))
            iat[r1] = np.nan
            first_seen[r1] = True
            if ext is not None:
                ex = np.take(np.asarray(extras, dtype=np.float64), r1, axis=0).T
                _scatter(ext, r1, np.broadcast_to(ex[:, None, :], (*ext.shape[:2], len(r1))))
            if mean is not None and std is not None:
                _scatter(mean, r1, np.asarray(value, dtype=np.float64)[r1])
                _scatter(std, r1, np.float64(0.0))
            if n_lone == len(g.keys):
                self.table.store(*lone_state)
                return result()
            keep = ~lone
            g = g.subset(keep)
            slots, known = slots[keep], known[keep]
            every = False
        inv: _I64 | None = None
        if every:
            # The sorted position of each frame: outputs are gathered, not scattered.
            inv = np.empty(n, dtype=np.int64)
            inv[g.rows] = np.arange(n)

        def place(dst: _F64, vals: _F64) -> None:
            if inv is None:
                _scatter(dst, g.rows, vals)
            else:
                np.take(vals, inv, axis=-1, out=dst)

        t = tau[g.rows]
        m = len(t)
        n_g, q, width = len(g.keys), self._q, self._q * n_l
        # ``take`` of rows is several times faster than fancy indexing; absent keys start at 0.
        state = np.take(self.table.values, np.maximum(slots, 0), axis=0)
        state[~known] = 0.0
        carry = state[:, :width].reshape(n_g, q, n_l)
        carry_t = np.zeros(n_g, dtype=np.int64)
        carry_t[known] = self.table.last[slots[known]]
        plans = _plans(t, g, self._lams)

        # Pass 1: damped count, extras, and the damped sum of the value relative to a
        # per-key shift (its first value ever; it only keeps the sums well conditioned).
        e = 1 + self.extras
        contrib = np.empty((e + (1 if self.track_value else 0), m), dtype=np.float64)
        contrib[0] = 1.0
        if self.extras:
            assert extras is not None
            contrib[1:e] = np.take(np.asarray(extras, dtype=np.float64), g.rows, axis=0).T
        if self.track_value:
            assert value is not None
            x = np.asarray(value, dtype=np.float64)[g.rows]
            shift = np.where(known, state[:, width], x[g.starts])
            xs = x - g.spread(shift)
            contrib[e] = xs
        sums = _damped(
            plans,
            self._lams,
            contrib,
            carry[:, : len(contrib)],
            carry_t,
            known,
            1 if self.track_value else 0,
        )
        w = sums[0]
        place(count, w)
        if ext is not None:
            place(ext, sums[1:e])
        ends = [np.take(sums, g.ends, axis=2)]
        if self.track_value:
            assert mean is not None and std is not None
            # Pass 2, the variance without cancellation (West's weighted Welford update):
            # S_i = decay * S_{i-1} + (x_i - m_{i-1})^2 * B_i / (B_i + 1), where
            # B_i = W_{i-1} * decay is the decayed mass before frame i: a damped sum of
            # terms >= 0, each formed from differences of nearby numbers.
            m_rel = sums[e] / w
            m_prev = np.empty_like(m_rel)
            m_prev[:, 1:] = m_rel[:, :-1]
            w_prev = np.empty_like(w)
            w_prev[:, 1:] = w[:, :-1]
            w_prev[:, g.starts] = carry[:, 0].T
            with np.errstate(invalid="ignore", divide="ignore"):
                m_prev[:, g.starts] = np.where(known[:, None], carry[:, e] / carry[:, 0], 0.0).T
            before = w_prev * _prev_decay(plans, t, g, carry_t, known, self._lams)
            dev = xs - m_prev
            delta = dev * dev * (before / (before + 1.0))
            var_sums = _damped(
                plans, self._lams, delta[None], carry[:, e + 1 :], carry_t, known, 1, _BANDS
            )
            ends.append(np.take(var_sums, g.ends, axis=2))
            m_rel += g.spread(shift)
            place(mean, m_rel)
            var = np.divide(var_sums[0], w, out=var_sums[0])
            place(std, np.sqrt(var, out=var))

        new_state = np.empty((n_g, width + 1), dtype=np.float64)
        new_state[:, :width] = np.concatenate(ends).transpose(2, 0, 1).reshape(n_g, width)
        new_state[:, width] = shift if self.track_value else 0.0
        prev_t = np.empty(m, dtype=np.int64)
        prev_t[1:] = t[:-1]
        prev_t[g.starts] = carry_t
        gap = (t - prev_t).astype(np.float64) / 1e9
        gap[g.starts[~known]] = np.nan
        place(iat, gap)
        first_seen[g.rows[g.starts[~known]]] = True
        if lone_state is None:
            self.table.store(g.keys, slots, t[g.ends], new_state)
        else:
            k1, s1, t1, v1 = lone_state
            self.table.store(
                np.concatenate([k1, g.keys]),
                np.concatenate([s1, slots]),
                np.concatenate([t1, t[g.ends]]),
                np.concatenate([v1, new_state]),
            )
        return result()

    def _lone(self, r1: _I64, value: _F64 | None, extras: _F64 | None) -> _F64:
        """The state after one frame of a new key, for the frames ``r1``: ``w = 1``, the
        extras as they are, the value as the shift with ``LS = S = 0``."""
        k, n_l, e = len(r1), len(self.lambdas), 1 + self.extras
        state = np.zeros((k, self._q * n_l + 1), dtype=np.float64)
        per = state[:, :-1].reshape(k, self._q, n_l)
        per[:, 0, :] = 1.0
        if self.extras:
            assert extras is not None
            per[:, 1:e, :] = np.take(np.asarray(extras, dtype=np.float64), r1, axis=0)[:, :, None]
        if self.track_value:
            assert value is not None
            state[:, -1] = np.asarray(value, dtype=np.float64)[r1]
        return state


class _SeenSet:
    """A bounded set of keys with recency: which keys are seen for the first time."""

    def __init__(self, max_keys: int) -> None:
        self.table = KeyTable(0, max_keys)

    def first_seen(self, keys: _U64, valid: _B, tau: _I64) -> _B:
        """True at the first frame of each valid key that the set does not hold; adds them."""
        out = np.zeros(len(keys), dtype=np.bool_)
        rows = np.flatnonzero(valid)
        if len(rows) == 0:
            return out
        codes, uniques = pd.factorize(keys[rows])
        first = np.full(len(uniques), len(rows), dtype=np.int64)
        np.minimum.at(first, codes, np.arange(len(rows)))
        last_t = np.full(len(uniques), np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(last_t, codes, tau[rows])
        uk = np.asarray(uniques, dtype=np.uint64)
        slots = self.table.lookup(uk)
        out[rows[first[slots < 0]]] = True
        self.table.store(uk, slots, last_t)
        return out


def _lam_name(lam: float) -> str:
    return f"{lam:g}"


class TrafficStats:
    """The per-host, per-channel and per-flow damped statistics of a frame stream.

    Keys (see ``host_keys``): a host is its IP address when the frame has one,
    else its MAC. A *channel* is the directional pair (source host, destination
    host); a *flow* is the directional 5-tuple (hosts, IP protocol, ports), or
    (hosts, IP protocol) without ports, or (hosts, ethertype) without IP.

    Outputs, each ``float64[n]``, NaN where the frame lacks the key; names with a
    ``_l<rate>`` suffix exist once per decay rate:

    * ``src``: ``src_iat`` (s since the source's previous frame), ``src_rate``
      (frames/s), ``src_byterate`` (bytes/s of ``frame_len``), ``src_size_mean``,
      ``src_size_std``, ``src_new_dsts`` (rate of destination hosts this source
      contacts for the first time).
    * ``src_ports``: ``src_new_dports`` (rate of destination ports this source
      uses for the first time: the port-scan indicator) and ``src_first_dport``
      (0/1, this frame is such a first); a group of its own because it reads
      ``dport``, which port-defined targets exclude.
    * ``dst``: ``dst_rate`` (frames/s received), ``dst_syn_ratio`` (damped share of
      SYN-without-ACK frames), ``dst_new_srcs`` (rate of sources contacting it for
      the first time: SYN floods from spoofed sources).
    * ``channel``: ``chan_iat``, ``chan_rate``, ``chan_first``.
    * ``flow``: ``flow_iat``, ``flow_rate``, ``flow_first``.

    "First time" is approximate: it means "absent from a bounded table of
    ``max_keys`` recently seen (source, port) or channel keys", so a pair evicted
    long ago counts as new again.

    Args:
        lambdas: decay rates per second.
        max_keys: the bound of every table (hosts, channels, flows, port pairs).
        groups: which of ``STAT_GROUPS`` to compute (others cost nothing).
    """

    def __init__(
        self,
        lambdas: Sequence[float] = DEFAULT_LAMBDAS,
        *,
        max_keys: int = 65536,
        groups: Sequence[str] = STAT_GROUPS,
    ) -> None:
        unknown = [x for x in groups if x not in STAT_GROUPS]
        if unknown:
            raise ConfigError(
                f"unknown statistic group {unknown[0]!r}; valid groups: {', '.join(STAT_GROUPS)}"
            )
        self.groups = tuple(x for x in STAT_GROUPS if x in groups)
        self.lambdas = tuple(float(x) for x in lambdas)
        self.max_keys = int(max_keys)
        self._src = DampedStats(lambdas, track_value=True, extras=2, max_keys=max_keys)
        self._dst = DampedStats(lambdas, extras=2, max_keys=max_keys)
        self._chan = DampedStats(lambdas, max_keys=max_keys)
        self._flow = DampedStats(lambdas, max_keys=max_keys)
        self._src_ports = _SeenSet(max_keys)
        self._chan_seen = _SeenSet(max_keys)
        self._t_max = np.iinfo(np.int64).min

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the outputs, in order."""
        by_group = self.names_by_group()
        return tuple(name for grp in self.groups for name in by_group[grp])

    def names_by_group(self) -> dict[str, tuple[str, ...]]:
        """Output names of each statistic group."""
        sfx = [f"_l{_lam_name(x)}" for x in self.lambdas]

        def per(*base: str) -> list[str]:
            return [b + s for b in base for s in sfx]

        return {
            "src": (
                "src_iat",
                *per("src_rate", "src_byterate", "src_size_mean", "src_size_std"),
                *per("src_new_dsts"),
            ),
            "src_ports": ("src_first_dport", *per("src_new_dports")),
            "dst": tuple(per("dst_rate", "dst_syn_ratio", "dst_new_srcs")),
            "channel": ("chan_iat", "chan_first", *per("chan_rate")),
            "flow": ("flow_iat", "flow_first", *per("flow_rate")),
        }

    def _tables(self) -> dict[str, KeyTable]:
        """The tables this configuration uses, by name."""
        tables = {
            "src": self._src.table,
            "dst": self._dst.table,
            "channel": self._chan.table,
            "flow": self._flow.table,
        }
        out = {k: v for k, v in tables.items() if k in self.groups}
        if "src_ports" in self.groups:
            out["src"] = self._src.table
            out["src_ports"] = self._src_ports.table
        if ("src" in self.groups or "dst" in self.groups) and "channel" not in self.groups:
            out["channel_seen"] = self._chan_seen.table
        return out

    @property
    def evictions(self) -> dict[str, int]:
        """Evictions so far, per table in use."""
        return {k: t.evictions for k, t in self._tables().items()}

    @property
    def sizes(self) -> dict[str, int]:
        """Keys held, per table in use (each at most ``max_keys``)."""
        return {k: len(t) for k, t in self._tables().items()}

    @property
    def nbytes(self) -> int:
        """Bytes held by the tables in use."""
        return sum(t.nbytes for t in self._tables().values())

    def update(self, fb: FeatureBatch) -> dict[str, _F64]:
        """Add a batch and return each frame's statistics by name (see the class)."""
        n = len(fb)
        out: dict[str, _F64] = {}
        if not self.groups:
            return out
        # One clamp for all tables, so they agree on time.
        tau = np.maximum.accumulate(np.maximum(np.asarray(fb.ts_ns, dtype=np.int64), self._t_max))
        if n:
            self._t_max = int(tau[-1])
        src, src_ok = host_keys(fb.ip_version, fb.ip_src, fb.ip_src_valid, fb.src_mac)
        dst, dst_ok = host_keys(fb.ip_version, fb.ip_dst, fb.ip_dst_valid, fb.dst_mac)
        chan = _pair_keys(src, dst)
        chan_ok = src_ok & dst_ok
        need_ports = "src_ports" in self.groups
        need_src = "src" in self.groups or need_ports
        need_pairs = "src" in self.groups or "dst" in self.groups
        sfx = [f"_l{_lam_name(x)}" for x in self.lambdas]

        def put(base: str, arr: _F64) -> None:
            for j, s in enumerate(sfx):
                out[base + s] = arr[:, j]

        # The channel table doubles as the set of host pairs seen (same keys, same bound).
        new_chan = np.zeros(n, dtype=np.bool_)
        if "channel" in self.groups:
            r = self._chan.update(chan, chan_ok, tau)
            new_chan = r.first_seen
            out["chan_iat"] = r.iat
            out["chan_first"] = np.where(chan_ok, r.first_seen.astype(np.float64), np.nan)
            put("chan_rate", r.rate)
        elif need_pairs:
            new_chan = self._chan_seen.first_seen(chan, chan_ok, tau)
        if need_src:
            new_port = np.zeros(n, dtype=np.bool_)
            if need_ports:
                dport = np.asarray(fb.dport, dtype=np.int64)
                port_ok = src_ok & (dport >= 0)
                sp_key = mix64(src ^ mix64(dport.astype(np.uint64) ^ _TAG_PORT))
                new_port = self._src_ports.first_seen(sp_key, port_ok, tau)
            r = self._src.update(
                src,
                src_ok,
                tau,
                value=np.asarray(fb.frame_len, dtype=np.float64),
                extras=np.stack([new_port, new_chan], axis=1).astype(np.float64),
            )
            assert r.mean is not None and r.std is not None and r.extras is not None
            lam_ln2 = self._src._lams * _LN2
            out["src_iat"] = r.iat
            out["src_first_dport"] = np.where(src_ok, new_port.astype(np.float64), np.nan)
            put("src_rate", r.count * lam_ln2)
            put("src_byterate", r.mean * r.count * lam_ln2)
            put("src_size_mean", r.mean)
            put("src_size_std", r.std)
            put("src_new_dports", r.extras[:, 0] * lam_ln2)
            put("src_new_dsts", r.extras[:, 1] * lam_ln2)
        if "dst" in self.groups:
            flags = np.asarray(fb.tcp_flags, dtype=np.int64)
            syn_only = (flags >= 0) & ((flags & 0x12) == 0x02)
            r = self._dst.update(
                dst, dst_ok, tau, extras=np.stack([syn_only, new_chan], axis=1).astype(np.float64)
            )
            assert r.extras is not None
            lam_ln2 = self._dst._lams * _LN2
            put("dst_rate", r.count * lam_ln2)
            put("dst_syn_ratio", r.extras[:, 0] / r.count)
            put("dst_new_srcs", r.extras[:, 1] * lam_ln2)
        if "flow" in self.groups:
            proto = np.asarray(fb.ip_proto, dtype=np.int64)
            has_ip = (fb.ip_version == 4) | (fb.ip_version == 6)
            what = np.where(has_ip, proto + 1, (np.asarray(fb.ethertype, np.int64) + 1) << 8)
            ports = ((np.asarray(fb.sport, np.int64) + 1) << 17) | (
                np.asarray(fb.dport, np.int64) + 1
            )
            detail = ((what << 34) | ports).astype(np.uint64)
            flow = mix64(chan ^ mix64(detail ^ _TAG_FLOW))
            r = self._flow.update(flow, chan_ok, tau)
            out["flow_iat"] = r.iat
            out["flow_first"] = np.where(chan_ok, r.first_seen.astype(np.float64), np.nan)
            put("flow_rate", r.rate)
        return {name: out[name] for name in self.names}
