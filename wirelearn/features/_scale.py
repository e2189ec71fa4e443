"""Online standard scaling over mini-batches, safe with nulls and constant columns."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from wirelearn.errors import ConfigError

__all__ = ["OnlineScaler"]

_F64 = NDArray[np.float64]

#: A column whose standard deviation is below this (relative to its mean) is constant.
_CONSTANT: float = 1e-12
#: Outputs are clipped to this much inside the float32 range even without ``clip``.
_FLOAT32_SAFE: float = 1e30


def _zero_missing(arr: _F64, ok: NDArray[np.bool_], copy: bool = True) -> _F64:
    """``arr`` with non-finite values as 0.0 (a copy in the same memory layout, or in place)."""
    vals: _F64 = arr.copy(order="K") if copy else arr
    np.copyto(vals, 0.0, where=~ok)
    return vals


class OnlineScaler:
    """Standardise columns to zero mean and unit variance, learning the moments online.

    ``partial_fit`` merges each batch's count, mean and sum of squared deviations
    into the running ones with Chan et al.'s parallel formula (numerically stable,
    no sum of squares). Non-finite values (NaN nulls, infinities) are ignored by
    ``partial_fit`` and come out of ``transform`` as 0.0, the mean; with
    ``missing_indicators`` a 0/1 column per (chosen) input says where they were.
    A column that has been constant so far is only centred (its scale is 1), so
    it never divides by zero. Before any ``partial_fit`` the transform is the
    identity (with nulls as 0.0).

    Args:
        missing_indicators: False, True (one indicator per column) or the indices
            of the columns that get one.
        clip: clip scaled values to ``[-clip, clip]`` (outliers early in a stream
            would otherwise dominate linear models); None for no clipping.

    >>> s = OnlineScaler()
    >>> s.partial_fit(np.array([[1.0, 5.0], [3.0, 5.0]])).transform(np.array([[2.0, np.nan]]))
    array([[0., 0.]], dtype=float32)

    Outputs keep the memory layout of the input (a column-major input gives a
    column-major output: no transposing copy).
    """

    def __init__(
        self, *, missing_indicators: bool | Sequence[int] = False, clip: float | None = None
    ) -> None:
        if clip is not None and not (float(clip) > 0 and math.isfinite(float(clip))):
            raise ConfigError(f"clip must be a positive number or None, not {clip!r}")
        if not isinstance(missing_indicators, bool):
            idx = [int(i) for i in missing_indicators]
            if any(i < 0 for i in idx) or len(set(idx)) != len(idx):
                raise ConfigError(
                    f"missing_indicators must be distinct column indices >= 0, not {idx}"
                )
            missing_indicators = tuple(sorted(idx))
        self.missing_indicators: bool | tuple[int, ...] = missing_indicators
        self.clip = None if clip is None else float(clip)
        self.n_features_in_: int | None = None
        self.count_: _F64 = np.zeros(0)
        self.mean_: _F64 = np.zeros(0)
        self._m2: _F64 = np.zeros(0)

    def __repr__(self) -> str:
        return f"OnlineScaler(missing_indicators={self.missing_indicators!r}, clip={self.clip!r})"

    @property
    def var_(self) -> _F64:
        """Population variance of each column so far (0 where nothing was seen)."""
        var: _F64 = np.divide(
            self._m2, self.count_, out=np.zeros_like(self._m2), where=self.count_ > 0
        )
        return var

    @property
    def scale_(self) -> _F64:
        """The divisor of each column: its standard deviation, or 1 where it is constant."""
        std = np.sqrt(self.var_)
        constant = std <= _CONSTANT * np.maximum(1.0, np.abs(self.mean_))
        scale: _F64 = np.where(constant, 1.0, std)
        return scale

    def _check(self, x: ArrayLike) -> _F64:
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 2:
            raise ValueError(f"expected a 2-D array (n, d), got shape {arr.shape}")
        if self.n_features_in_ is None:
            d = arr.shape[1]
            if isinstance(self.missing_indicators, tuple) and any(
                i >= d for i in self.missing_indicators
            ):
                raise ConfigError(
                    f"missing_indicators {list(self.missing_indicators)} name columns beyond"
                    f" the {d} there are"
                )
            self.n_features_in_ = d
            self.count_ = np.zeros(d)
            self.mean_ = np.zeros(d)
            self._m2 = np.zeros(d)
        elif arr.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} columns, got {arr.shape[1]}")
        return arr

    def partial_fit(self, x: ArrayLike) -> OnlineScaler:
        """Merge a batch ``(n, d)`` into the running moments; returns ``self``."""
        arr = self._check(x)
        ok = np.isfinite(arr)
        self._merge(_zero_missing(arr, ok), ok)
        return self

    def _merge(self, vals: _F64, ok: NDArray[np.bool_]) -> None:
        """Chan et al.'s merge of a batch (``vals`` with missing values as 0.0) into the moments."""
        nb = ok.sum(axis=0).astype(np.float64)
        if not nb.any():
            return
        mean_b = np.divide(vals.sum(axis=0), nb, out=np.zeros_like(nb), where=nb > 0)
        dev = vals - mean_b
        dev *= ok
        m2_b = np.einsum("ij,ij->j", dev, dev)
        na = self.count_
        n = na + nb
        delta = mean_b - self.mean_
        frac = np.divide(nb, n, out=np.zeros_like(n), where=n > 0)
        self.mean_ = self.mean_ + delta * frac
        self._m2 = self._m2 + m2_b + delta * delta * na * frac
        self.count_ = n

    def _apply(self, vals: _F64, ok: NDArray[np.bool_]) -> NDArray[np.float32]:
        """Scale ``vals`` (missing values as 0.0) into ``float32`` of the same memory layout."""
        vals -= self.mean_
        out = np.empty_like(vals, dtype=np.float32)
        # The multiply writes float32 directly: one pass less over the float64 values.
        with np.errstate(over="ignore"):  # beyond float32: inf, clipped below
            np.multiply(vals, 1.0 / self.scale_, out=out, casting="same_kind")
        np.copyto(out, np.float32(0.0), where=~ok)  # missing values become 0.0, the mean
        limit = _FLOAT32_SAFE if self.clip is None else self.clip
        np.clip(out, -limit, limit, out=out)
        if self.missing_indicators is False:
            return out
        cols = (
            slice(None)
            if self.missing_indicators is True
            else np.asarray(self.missing_indicators, dtype=np.intp)
        )
        missing = ~ok[:, cols]
        return np.concatenate([out, missing.astype(np.float32)], axis=1)

    def transform(self, x: ArrayLike, *, copy: bool = True) -> NDArray[np.float32]:
        """Scaled copy of ``(n, d)`` as ``float32``, nulls as 0.0, plus any indicator columns.

        Args:
            x: the values.
            copy: False lets a ``float64`` input be overwritten (saves a copy).
        """
        arr = self._check(x)
        ok = np.isfinite(arr)
        return self._apply(_zero_missing(arr, ok, copy), ok)

    def transform_columns(
        self, columns: Iterable[NDArray[np.float64] | NDArray[np.bool_]], n: int, d: int
    ) -> NDArray[np.float32]:
        """``transform`` of the matrix whose columns are ``columns``, without building it.

        Each column is scaled on its own as it comes (so a lazily computed column is
        still in the cache), in ``float64`` scratch the size of one column, straight
        into a column-major ``float32 (n, d)`` result; the values equal ``transform``'s.

        Args:
            columns: ``d`` arrays of ``n`` values each (bools count as 0.0/1.0).
            n: the number of rows.
            d: the number of columns.
        """
        if self.n_features_in_ is None:
            self._check(np.zeros((0, d)))
        elif d != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} columns, got {d}")
        if self.missing_indicators is not False:
            stacked = np.stack(list(columns), axis=1).astype(np.float64, copy=False)
            return self.transform(stacked.reshape(n, d))
        inv = 1.0 / self.scale_
        mean = self.mean_
        limit = np.float32(_FLOAT32_SAFE if self.clip is None else self.clip)
        rows = np.empty((d, n), dtype=np.float32)
        scratch = np.empty(n, dtype=np.float64)
        bad = np.empty(n, dtype=np.bool_)
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, clipped below
            for j, col in enumerate(columns):
                if j >= d or len(col) != n:
                    raise ValueError(f"expected {d} columns of {n} values")
                row = rows[j]
                np.subtract(col, mean[j], out=scratch)
                np.multiply(scratch, inv[j], out=row, casting="same_kind")
                if col.dtype != np.bool_:
                    # Missing (non-finite) values become 0.0, the mean.
                    np.isfinite(col, out=bad)
                    if not bad.all():
                        np.logical_not(bad, out=bad)
                        np.copyto(row, np.float32(0.0), where=bad)
                np.clip(row, -limit, limit, out=row)
        result: NDArray[np.float32] = rows.T
        return result

    def fit_transform(self, x: ArrayLike, *, copy: bool = True) -> NDArray[np.float32]:
        """``partial_fit(x)`` then ``transform(x)``: the batch is scaled with moments that include it.

        Args:
            x: the values.
            copy: False lets a ``float64`` input be overwritten (saves a copy).
        """
        arr = self._check(x)
        ok = np.isfinite(arr)
        vals = _zero_missing(arr, ok, copy)
        self._merge(vals, ok)
        return self._apply(vals, ok)

    def feature_names_out(self, names: Sequence[str]) -> list[str]:
        """Output column names: ``names`` then ``missing_<name>`` for each indicator."""
        names = list(names)
        if self.missing_indicators is False:
            return names
        cols = range(len(names)) if self.missing_indicators is True else self.missing_indicators
        return names + [f"missing_{names[i]}" for i in cols]
