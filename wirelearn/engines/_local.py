"""The batch job on one machine, and the pieces the Spark engine runs inside its tasks.

``wirelearn batch`` has two engines that produce the same things:

* a Parquet dataset ``OUT/features/date=YYYY-MM-DD/source_file=.../*.parquet``
  whose columns are exactly those of ``wirelearn read --json`` (``COLUMNS``),
  plus ``source_file`` and ``date`` (the partition columns: the capture's path
  or URI, and the UTC day of the frame) and ``label`` when a target is given;
* when a target is given, models trained and evaluated in **time order**: the
  labelled frames of every input are ordered by ``ts`` and cut into windows at
  rank quantiles (``--train-fraction F``: two windows cut at ``F``; ``--windows
  N``: ``N`` equal windows); every window after the first is predicted by
  models trained only on the windows before it, so no frame is ever predicted
  by a model that has seen a later one. Scores use the local engine's metric
  names (``accuracy``, ``macro_f1``, ``kappa``, per-class ``recall``) and the
  majority-class baseline.

Everything per frame is done by wirelearn's own vectorized code: ``open_capture``
reads, ``decode`` decodes, ``FeatureBatch.to_pandas`` gives the public columns,
the label providers label and ``FeaturePipeline`` (unscaled, one per capture, so
its flow statistics follow each capture's own time) builds the model inputs.
``extract`` is that per-file path; the local engine runs it in a loop and the
Spark engine in ``mapInArrow`` tasks.

Labels come from ``--target service``, ``--label-rule`` (BPF rules) or label
files. A label file applies per capture: ``--labels FILE.csv`` names the file of
a single input capture; ``--labels auto`` gives each capture the
``<stem>.labels.csv`` (else ``<stem>.ranges.csv``) found next to it, where
``<stem>`` is the capture's name without ``.gz`` and its last extension
(``mixed.pcap`` -> ``mixed.labels.csv``). Captures without one are unlabelled.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Final, TextIO

import numpy as np
from numpy.typing import NDArray

from wirelearn.errors import (
    ConfigError,
    DependencyError,
    FormatError,
    InputError,
    OutputError,
    WirelearnError,
)
from wirelearn.features._schema import COLUMN_DTYPES, COLUMNS
from wirelearn.models._metrics import ClassIndex, ConfusionMatrix
from wirelearn.models._snapshot import ModelScore, Snapshot, SourceStatus, TrafficMix

if TYPE_CHECKING:
    from wirelearn.capture._batch import FrameBatch
    from wirelearn.features._pipeline import FeaturePipeline
    from wirelearn.features._schema import FeatureBatch
    from wirelearn.models._labels import LabelProvider

__all__ = [
    "BATCH_TARGETS",
    "ENGINES",
    "SPARK_MODELS",
    "BatchConfig",
    "BatchOutcome",
    "ExtractSpec",
    "FileReport",
    "InputFile",
    "LabelSpec",
    "dataset_schema",
    "discover_local",
    "extract",
    "label_file_for",
    "run_local",
    "split_cuts",
]

#: The engines of ``wirelearn batch``.
ENGINES: Final[tuple[str, ...]] = ("local", "spark")
#: Targets a batch job can train on (the anomaly detector has no batch counterpart).
BATCH_TARGETS: Final[tuple[str, ...]] = ("service", "labels", "rules")
#: Models of the Spark engine (MLlib); the local engine has the same names and more.
SPARK_MODELS: Final[tuple[str, ...]] = ("svm", "logistic", "nb", "rf")
#: Partition columns of the features dataset, outermost first.
PARTITION_COLUMNS: Final[tuple[str, str]] = ("date", "source_file")
#: The column that carries the model inputs inside the job (never written).
FEATURES_COLUMN: Final = "features"
#: Frames per learn/predict call of the local engine's online models.
_LOCAL_STEP: Final = 4096
#: Captures' name endings that ``--labels auto`` strips to find ``<stem>``.
_COMPRESSED: Final = (".gz",)


def _pa() -> Any:
    try:
        import pyarrow
    except ImportError as exc:
        raise DependencyError(
            "wirelearn batch writes Parquet with pyarrow, which is not installed:"
            " pip install 'wirelearn[spark]' (or pip install pyarrow)"
        ) from exc
    return pyarrow


def dataset_schema(*, labels: bool, features: bool = False) -> Any:
    """The Arrow schema of the rows a batch job produces.

    Args:
        labels: add the ``label`` column (string, null when unlabelled).
        features: add the model inputs (``list<float32>``), used inside the job only.
    """
    pa = _pa()
    kinds = {
        "int64": pa.int64(),
        "Int64": pa.int64(),
        "float64": pa.float64(),
        "string": pa.string(),
    }
    fields = [
        pa.field(name, kinds[dtype], nullable=dtype in ("Int64", "string"))
        for name, dtype in COLUMN_DTYPES.items()
    ]
    fields += [pa.field("source_file", pa.string(), False), pa.field("date", pa.string(), False)]
    if labels:
        fields.append(pa.field("label", pa.string()))
    if features:
        fields.append(pa.field(FEATURES_COLUMN, pa.list_(pa.float32())))
    return pa.schema(fields)


# --- configuration --------------------------------------------------------------------------------


def _check_fraction(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
        raise ConfigError(f"--train-fraction must be a number between 0 and 1, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class BatchConfig:
    """Everything ``wirelearn batch`` was asked to do, checked when built.

    Args:
        paths: capture files or directories (recursive); local paths, or Hadoop
            URIs (``hdfs://``, ``s3a://``) with the Spark engine.
        engine: ``local`` or ``spark``.
        out: the output directory (``features/``, ``models/``, ``metrics.json``);
            None writes nothing.
        overwrite: replace what an earlier run wrote to ``out``.
        master: the Spark master URL (None: ``spark-submit``'s, else ``local[*]``).
        conf: Spark properties.
        target: ``service``, ``labels`` or ``rules``; None infers it from the label
            options, and without any there is no training (extraction only).
        rules: ``--label-rule NAME=BPF`` values.
        default_label: the label of frames no rule matches.
        labels: a label CSV for a single input capture, or ``auto`` (see the module).
        models: model names; None for ``SPARK_MODELS``.
        features: model inputs to use (``AVAILABLE_FEATURES`` names); None for all
            but those the target is defined by.
        train_fraction: the share of labelled frames (in time order) trained on.
        windows: cut the labelled frames into this many time windows instead
            (expanding-window evaluation); at least 2.
        seed: the seed of every model.
        batch_size: frames per read batch.
        train: False to write the labelled features without training (``--no-train``).

    Raises:
        ConfigError: a bad value or combination; the message lists what is allowed.
    """

    paths: tuple[str, ...]
    engine: str = "local"
    out: str | None = None
    overwrite: bool = False
    master: str | None = None
    conf: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    rules: tuple[str, ...] = ()
    default_label: str | None = None
    labels: str | None = None
    models: tuple[str, ...] | None = None
    features: tuple[str, ...] | None = None
    train_fraction: float = 0.7
    windows: int | None = None
    seed: int = 0
    batch_size: int = 65536
    train: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.paths, str):
            raise ConfigError("paths must be a sequence of paths, not one string")
        object.__setattr__(self, "paths", tuple(self.paths))
        if not self.paths:
            raise ConfigError("batch needs at least one capture file or directory")
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown engine {self.engine!r}; choose from: {', '.join(ENGINES)}")
        if self.target == "anomaly":
            raise ConfigError(
                "batch trains classifiers; --target anomaly has no batch counterpart"
                f" (choose from: {', '.join(BATCH_TARGETS)})"
            )
        if self.target is not None and self.target not in BATCH_TARGETS:
            raise ConfigError(
                f"unknown target {self.target!r}; choose from: {', '.join(BATCH_TARGETS)}"
            )
        _check_fraction(self.train_fraction)
        if self.windows is not None and (
            isinstance(self.windows, bool) or not isinstance(self.windows, int) or self.windows < 2
        ):
            raise ConfigError(
                f"--windows must be a whole number of at least 2, not {self.windows!r}"
            )
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or not 1 <= self.batch_size <= 1 << 22
        ):
            raise ConfigError(f"--batch-size must be from 1 to {1 << 22}, not {self.batch_size!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"--seed must be a whole number >= 0, not {self.seed!r}")
        self._check_labels()
        if self.models is not None:
            object.__setattr__(self, "models", self._check_models(self.models))
        elif self.trains:
            object.__setattr__(self, "models", SPARK_MODELS)

    def _check_labels(self) -> None:
        rules, labels, target = self.rules, self.labels, self.target
        if self.default_label is not None and not rules:
            raise ConfigError("--default-label only applies with --label-rule")
        if rules and labels is not None:
            raise ConfigError(
                "use either --labels or --label-rule, not both: each defines the labels on its own"
            )
        if target == "service" and (rules or labels is not None):
            raise ConfigError(
                "--target service derives its labels from ethertype, IP protocol and ports;"
                " it cannot take --labels or --label-rule"
            )
        if target == "labels" and labels is None:
            raise ConfigError("--target labels needs --labels FILE.csv or --labels auto")
        if target == "rules" and not rules:
            raise ConfigError("--target rules needs at least one --label-rule NAME=BPF")
        if rules:
            from wirelearn.models._labels import RuleLabels

            RuleLabels(list(rules), default=self.default_label)  # compiles: typos fail now
        if labels is not None and labels != "auto":
            from wirelearn.models._labels import FileLabels

            FileLabels(labels)  # reads and checks the file now

    def _check_models(self, models: Sequence[str]) -> tuple[str, ...]:
        if not self.train:
            raise ConfigError("--models and --no-train contradict each other")
        if not self.trains:
            raise ConfigError(
                "--models needs something to learn: --target service, --labels or --label-rule"
            )
        names = tuple(dict.fromkeys(m.strip().lower() for m in models if m.strip()))
        if not names or names == ("all",):
            return SPARK_MODELS
        if self.engine == "spark":
            valid: tuple[str, ...] = SPARK_MODELS
        else:
            from wirelearn.models._registry import MODEL_NAMES

            valid = MODEL_NAMES
        for name in names:
            if name not in valid:
                raise ConfigError(
                    f"unknown model {name!r} for the {self.engine} engine; choose from:"
                    f" {', '.join(valid)}"
                )
        return names

    @property
    def target_name(self) -> str | None:
        """The target trained on: ``service``, ``labels`` or ``rules``; None for extraction only."""
        if self.target is not None:
            return self.target
        if self.labels is not None:
            return "labels"
        if self.rules:
            return "rules"
        return None

    @property
    def trains(self) -> bool:
        """Whether models are trained (a target is given, and not ``train=False``)."""
        return self.train and self.target_name is not None

    @property
    def fractions(self) -> tuple[float, ...]:
        """The rank quantiles of ``ts`` at which the labelled frames are cut into windows."""
        if self.windows is None:
            return (self.train_fraction,)
        return tuple(k / self.windows for k in range(1, self.windows))


# --- inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputFile:
    """One file to read.

    Attributes:
        uri: what a task opens: a local path or a Hadoop URI.
        source_file: the value of the ``source_file`` column (the absolute path or URI).
        size: its size in bytes (to schedule big files first).
        explicit: named on the command line (then it must be a capture) rather
            than found in a directory (then a file that is not a capture is skipped).
    """

    uri: str
    source_file: str
    size: int
    explicit: bool


def has_scheme(path: str) -> bool:
    """Whether ``path`` is a URI with a scheme other than ``file:``.

    >>> has_scheme("hdfs://nn/x"), has_scheme("file:///tmp/x"), has_scheme("/tmp/x")
    (True, False, False)
    """
    head, sep, _ = path.partition("://")
    return bool(sep) and head.lower() != "file" and head.replace("+", "").isalnum()


def local_path(path: str) -> str:
    """A ``file:`` URI or a plain path as an absolute local path.

    >>> local_path("file:///tmp/a.pcap")
    '/tmp/a.pcap'
    """
    if path.startswith("file://"):
        path = path[len("file://") :]
    elif path.startswith("file:"):
        path = path[len("file:") :]
    return os.path.abspath(path)


def discover_local(paths: Iterable[str]) -> list[InputFile]:
    """Every regular file under ``paths`` (directories recursively), sorted by path.

    Captures are recognised later by their content, not their names; a file
    named twice is read once.

    Raises:
        ConfigError: a path is a URI other than ``file:`` (only Spark lists those).
        InputError: a path does not exist or is neither a file nor a directory.
    """
    found: dict[str, InputFile] = {}
    for given in paths:
        if has_scheme(given):
            raise ConfigError(
                f"{given}: the local engine reads local paths; use --engine spark for Hadoop URIs"
            )
        path = local_path(given)
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    full = os.path.join(root, name)
                    if os.path.isfile(full) and full not in found:
                        found[full] = InputFile(full, full, os.path.getsize(full), explicit=False)
        elif os.path.isfile(path):
            found[path] = InputFile(path, path, os.path.getsize(path), explicit=True)
        elif os.path.exists(path):
            raise InputError("neither a capture file nor a directory", path=given)
        else:
            raise InputError("no such file or directory", path=given)
    return sorted(found.values(), key=lambda f: f.source_file)


def check_captures(files: Iterable[InputFile]) -> None:
    """Open every explicitly named local capture once, so that a bad one fails before the job.

    Raises:
        InputError: a named file is not a capture or cannot be read.
    """
    from wirelearn.capture._reader import open_capture

    for f in files:
        if f.explicit and not has_scheme(f.uri):
            open_capture(f.uri, chunk_size=1 << 16).close()


def label_stem(name: str) -> str:
    """A capture's file name without ``.gz`` and its last extension.

    >>> label_stem("mixed.pcap"), label_stem("day1.pcapng.gz"), label_stem("raw")
    ('mixed', 'day1', 'raw')
    """
    base = name
    for suffix in _COMPRESSED:
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
    stem, _ = os.path.splitext(base)
    return stem or base


def label_file_for(capture: str, exists: Callable[[str], bool] = os.path.isfile) -> str | None:
    """The label file ``--labels auto`` gives a capture: ``<stem>.labels.csv``, else ``<stem>.ranges.csv``.

    Args:
        capture: the capture's path or URI.
        exists: tells whether a path exists (the Spark engine passes its listing).
    """
    folder, name = capture.rsplit("/", 1) if "/" in capture else ("", capture)
    stem = label_stem(name)
    for kind in ("labels", "ranges"):
        candidate = f"{folder}/{stem}.{kind}.csv" if folder else f"{stem}.{kind}.csv"
        if exists(candidate):
            return candidate
    return None


# --- labels ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelSpec:
    """How to label the frames of each capture; picklable, so tasks can rebuild the providers.

    Attributes:
        target: ``service``, ``rules`` or ``labels``.
        rules: the ``NAME=BPF`` rules (``rules``).
        default_label: the label of frames no rule matches.
        files: per ``source_file``, its ``FileLabels`` (``labels``); captures not
            in it are unlabelled.
    """

    target: str
    rules: tuple[str, ...] = ()
    default_label: str | None = None
    files: Mapping[str, Any] = field(default_factory=dict)

    def provider(self, source_file: str) -> LabelProvider | None:
        """The label provider of one capture, or None when it has no labels."""
        from wirelearn.models._labels import RuleLabels, ServiceTarget

        if self.target == "service":
            return ServiceTarget()
        if self.target == "rules":
            return RuleLabels(list(self.rules), default=self.default_label)
        provider: LabelProvider | None = self.files.get(source_file)
        return provider

    @property
    def defining_columns(self) -> frozenset[str]:
        """The columns the target is defined by (left out of the model inputs)."""
        from wirelearn.models._labels import ServiceTarget, bpf_defining_columns

        if self.target == "service":
            return ServiceTarget.defining_columns
        if self.target == "rules":
            cols: set[str] = set()
            for rule in self.rules:
                cols |= bpf_defining_columns(rule.partition("=")[2])
            return frozenset(cols)
        return frozenset()

    @property
    def classes(self) -> tuple[str, ...] | None:
        """Every label the providers can give, when known up front."""
        from wirelearn.models._labels import SERVICE_CLASSES, parse_label_rule

        if self.target == "service":
            return SERVICE_CLASSES
        if self.target == "rules":
            names = [parse_label_rule(r)[0] for r in self.rules]
            return tuple(
                dict.fromkeys([*names, *([self.default_label] if self.default_label else [])])
            )
        names = [c for fl in self.files.values() for c in (fl.classes or ())]
        return tuple(dict.fromkeys(names)) or None


def make_label_spec(
    config: BatchConfig,
    files: Sequence[InputFile],
    *,
    read_labels: Callable[[str], Any] | None = None,
) -> LabelSpec | None:
    """The ``LabelSpec`` of a job, reading the label files of its captures.

    Args:
        config: the job.
        files: its inputs.
        read_labels: turns a label file's path or URI into a ``FileLabels``
            (default: read a local file).

    Raises:
        ConfigError: ``--labels FILE.csv`` with more than one input capture.
    """
    from wirelearn.models._labels import FileLabels

    target = config.target_name
    if target is None:
        return None
    if target != "labels":
        return LabelSpec(target, tuple(config.rules), config.default_label)
    assert config.labels is not None
    read = read_labels or FileLabels
    if config.labels != "auto":
        if len(files) != 1 or not files[0].explicit:
            raise ConfigError(
                f"--labels {config.labels} labels a single capture file, but"
                f" {', '.join(config.paths)} holds {len(files)} files; put <stem>.labels.csv"
                " next to each capture and use --labels auto"
            )
        return LabelSpec("labels", files={files[0].source_file: read(config.labels)})
    listing = {f.uri for f in files}
    local = not any(has_scheme(f.uri) for f in files)
    out: dict[str, Any] = {}
    for f in files:
        found = label_file_for(f.uri, os.path.isfile if local else listing.__contains__)
        if found is not None:
            out[f.source_file] = read(found)
    return LabelSpec("labels", files=out)


# --- extraction -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtractSpec:
    """What a task computes for each capture; picklable.

    Attributes:
        labels: how to label, or None for no ``label`` column.
        train: also compute the model inputs (the ``features`` column).
        features: the model inputs to compute; None for all but those the target defines.
        seed: the salt of the MAC vendor hash.
        batch_size: frames per read batch.
    """

    labels: LabelSpec | None
    train: bool = False
    features: tuple[str, ...] | None = None
    seed: int = 0
    batch_size: int = 65536

    def pipeline(self) -> FeaturePipeline:
        """A fresh, unscaled feature pipeline (nulls as 0.0, no clipping)."""
        from wirelearn.features._pipeline import FeaturePipeline

        exclude = self.labels.defining_columns if self.labels is not None else frozenset()
        return FeaturePipeline(
            self.features, exclude=sorted(exclude), seed=self.seed, scale=False, clip=None
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the model inputs, in column order."""
        return self.pipeline().output_names

    def schema(self) -> Any:
        """The Arrow schema of ``extract``'s batches."""
        return dataset_schema(labels=self.labels is not None, features=self.train)


@dataclass
class FileReport:
    """What reading one file gave; tasks send these back to the driver.

    Attributes:
        source_file: the file.
        frames: frames read.
        bytes: captured bytes read.
        labelled: frames that got a label.
        skipped: why the file was skipped (not a capture), or None.
        error: the error that ended the file early (the frames before it are kept), or None.
        warnings: the reader's warnings (a truncated last record, ...).
    """

    source_file: str
    frames: int = 0
    bytes: int = 0
    labelled: int = 0
    skipped: str | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


class _UriStream:
    """A binary stream over a Hadoop URI, read with pyarrow's filesystems (in a task)."""

    def __init__(self, uri: str) -> None:
        _pa()
        import pyarrow.fs

        scheme, sep, rest = uri.partition("://")
        # pyarrow calls S3 "s3"; Hadoop's s3a/s3n URIs name the same buckets.
        fixed = f"s3://{rest}" if scheme.lower() in ("s3a", "s3n") and sep else uri
        try:
            fs, inner = pyarrow.fs.FileSystem.from_uri(fixed)
            self._file = fs.open_input_stream(inner)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot open: {exc}", path=uri) from exc
        self.name = uri

    def read(self, size: int = -1) -> bytes:
        try:
            data: bytes = self._file.read(size if size >= 0 else None)
        except OSError as exc:
            raise InputError(f"read error: {exc}", path=self.name) from exc
        return data

    def close(self) -> None:
        self._file.close()


def _dates(ts_ns: NDArray[np.int64]) -> Any:
    """The UTC day of each timestamp as ``YYYY-MM-DD`` (an Arrow string array)."""
    pa = _pa()
    days = np.floor_divide(ts_ns, 86_400 * 1_000_000_000)
    uniq, inverse = np.unique(days, return_inverse=True)
    names = np.datetime_as_string(uniq.astype("datetime64[D]"), unit="D")
    dictionary = pa.array(names.tolist(), type=pa.string())
    return pa.DictionaryArray.from_arrays(
        pa.array(inverse.reshape(-1).astype(np.int32)), dictionary
    ).dictionary_decode()


def _features_array(X: NDArray[np.float32]) -> Any:
    pa = _pa()
    n, d = X.shape
    values = pa.array(np.ascontiguousarray(X, dtype=np.float32).reshape(-1))
    offsets = pa.array(np.arange(0, n * d + 1, d, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, values)


def _batch_rows(
    frames: FrameBatch,
    fb: FeatureBatch,
    source_file: str,
    schema: Any,
    labels: NDArray[np.object_] | None,
    X: NDArray[np.float32] | None,
) -> Any:
    pa = _pa()
    n = len(fb)
    public = pa.Table.from_pandas(
        fb.to_pandas(), schema=pa.schema([schema.field(c) for c in COLUMNS]), preserve_index=False
    )
    arrays = [public.column(c).combine_chunks() for c in COLUMNS]
    arrays.append(pa.repeat(pa.scalar(source_file, pa.string()), n))
    arrays.append(_dates(fb.ts_ns))
    if labels is not None:
        arrays.append(pa.array(labels, type=pa.string(), from_pandas=True))
    if X is not None:
        arrays.append(_features_array(X))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _open(uri: str) -> Any:
    if has_scheme(uri):
        return _UriStream(uri)
    return local_path(uri) if uri.startswith("file:") else uri


def extract(
    uri: str,
    source_file: str,
    spec: ExtractSpec,
    report: FileReport,
    *,
    explicit: bool = False,
) -> Iterator[Any]:
    """Read one capture and yield its rows as Arrow record batches of ``spec.schema()``.

    The file is streamed batch by batch (``spec.batch_size`` frames), never
    loaded whole. A file that is not a capture is skipped (``report.skipped``)
    unless ``explicit``; an error inside a capture ends it after every frame
    before the fault (``report.error``).

    Raises:
        InputError: ``explicit`` and the file is not a capture or cannot be opened.
    """
    from wirelearn.capture._reader import open_capture
    from wirelearn.features._decode import decode

    schema = spec.schema()
    target = _open(uri)
    try:
        source = open_capture(target, batch_size=spec.batch_size)
    except InputError as exc:
        if isinstance(target, _UriStream):
            target.close()
        if explicit:
            raise
        if isinstance(exc, FormatError):
            report.skipped = exc.message
        else:
            report.error = str(exc)
        return
    provider = spec.labels.provider(source_file) if spec.labels is not None else None
    pipeline = spec.pipeline() if spec.train else None
    try:
        with source:
            for frames in source:
                fb = decode(frames)
                y: NDArray[np.object_] | None = None
                if spec.labels is not None:
                    if provider is None:
                        y = np.full(len(fb), None, dtype=object)
                    else:
                        y = provider.labels(fb, frames)
                        report.labelled += int(np.count_nonzero(y != None))  # noqa: E711
                X = pipeline.transform(fb) if pipeline is not None else None
                report.frames += len(fb)
                report.bytes += frames.nbytes
                yield _batch_rows(frames, fb, source_file, schema, y, X)
    except WirelearnError as exc:
        report.error = str(exc)
    finally:
        report.warnings.extend(source.stats.warnings)
        if isinstance(target, _UriStream):
            target.close()


# --- time-ordered evaluation ----------------------------------------------------------------------


def split_cuts(ts_sorted: NDArray[np.float64], fractions: Sequence[float]) -> NDArray[np.float64]:
    """The ``ts`` values at which the labelled frames are cut into time windows.

    The cut for quantile ``q`` is the element of rank ``ceil(q * n)`` (1-based) of
    the sorted timestamps, as Spark's exact ``approxQuantile(..., 0.0)`` picks
    it, so both engines cut at the same frames. Window ``k`` holds the frames with
    ``cuts[k-1] <= ts < cuts[k]``; equal cuts are merged.

    >>> split_cuts(np.arange(1.0, 11.0), [0.7]).tolist()
    [7.0]
    >>> split_cuts(np.arange(1.0, 8.0), [0.25, 0.5, 0.75]).tolist()
    [2.0, 4.0, 6.0]
    """
    n = len(ts_sorted)
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    ranks = [max(math.ceil(q * n), 1) - 1 for q in fractions]
    return np.unique(ts_sorted[ranks])


def score_pairs(
    name: str,
    truth: Sequence[str],
    predicted: Sequence[str | None],
    counts: Sequence[int],
    classes: ClassIndex,
    *,
    learned: int,
    fit_s: float,
    predict_s: float,
    is_baseline: bool = False,
) -> ModelScore:
    """A ``ModelScore`` from (truth, prediction, count) triples, with the evaluator's metrics.

    A prediction of None (a model that cannot predict yet) counts as wrong, in a
    column of its own, exactly as the prequential evaluator counts it.
    """
    t = classes.encode(np.array(list(truth), dtype=object))
    pred = np.array(list(predicted), dtype=object)
    known = np.array([p is not None for p in pred], dtype=bool)
    p = np.zeros(len(pred), dtype=np.int64)
    if known.any():
        p[known] = classes.encode(pred[known])
    k = len(classes) + (1 if (~known).any() else 0)
    p[~known] = k - 1
    cm = ConfusionMatrix(k)
    np.add.at(cm.m, (t, p), np.asarray(counts, dtype=np.int64))
    labels = classes.labels
    recall = cm.recall()
    scored = cm.total
    return ModelScore(
        name=name,
        accuracy=cm.accuracy(),
        macro_f1=cm.macro_f1(),
        kappa=cm.kappa(),
        rolling_accuracy=math.nan,
        rolling_macro_f1=math.nan,
        rolling_kappa=math.nan,
        recall={labels[i]: float(recall[i]) for i in range(min(len(recall), len(labels)))},
        rolling_recall={},
        scored=scored,
        learned=learned,
        predict_us=predict_s / scored * 1e6 if scored else math.nan,
        learn_us=fit_s / learned * 1e6 if learned else math.nan,
        is_baseline=is_baseline,
    )


# --- the outcome ----------------------------------------------------------------------------------


@dataclass
class BatchOutcome:
    """What a batch job did: files, frames, the split and the scores.

    Attributes:
        engine: ``local`` or ``spark``.
        master: the Spark master URL (None for the local engine).
        files: one report per file read (and per file skipped).
        target: the target trained on, or None.
        feature_names: the model inputs.
        train_frames: labelled frames the final models were trained on.
        test_frames: labelled frames predicted (every window but the first).
        windows: how many time windows the labelled frames were cut into.
        cuts: the window boundaries (epoch seconds).
        scores: one row per model, the baseline last.
        extract_s: seconds spent reading, decoding and writing.
        train_s: seconds spent training and predicting.
        notes: things the user should know (a window with one class, ...).
    """

    engine: str
    master: str | None = None
    files: list[FileReport] = field(default_factory=list)
    target: str | None = None
    feature_names: tuple[str, ...] = ()
    train_frames: int = 0
    test_frames: int = 0
    windows: int = 0
    cuts: tuple[float, ...] = ()
    scores: tuple[ModelScore, ...] = ()
    extract_s: float = 0.0
    train_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        """Frames read from every capture."""
        return sum(f.frames for f in self.files)

    @property
    def labelled(self) -> int:
        """Frames that got a label."""
        return sum(f.labelled for f in self.files)

    @property
    def captures(self) -> list[FileReport]:
        """The files read as captures (not skipped)."""
        return [f for f in self.files if f.skipped is None]

    @property
    def best(self) -> str | None:
        """The model (not the baseline) with the best macro-F1."""
        ranked = [
            (s.macro_f1, s.accuracy, s.name)
            for s in self.scores
            if not s.is_baseline and not math.isnan(s.macro_f1)
        ]
        return max(ranked)[2] if ranked else None

    def score(self, name: str) -> ModelScore | None:
        """The row of model ``name``."""
        return next((s for s in self.scores if s.name == name), None)

    def snapshot(self) -> Snapshot:
        """The outcome as a final ``Snapshot``, so that ``render_summary`` prints it."""
        classes: dict[str, None] = {}
        for s in self.scores:
            classes.update(dict.fromkeys(s.recall))
        return Snapshot(
            seq=self.windows,
            ts_first=self.cuts[0] if self.cuts else 0.0,
            ts_last=self.cuts[-1] if self.cuts else 0.0,
            frames=self.frames,
            bytes=sum(f.bytes for f in self.files),
            labelled=self.labelled,
            evaluated=self.test_frames,
            target=self.target or "none",
            classes=tuple(classes),
            models=self.scores,
            best=self.best,
            anomaly=None,
            recent=(),
            traffic=TrafficMix(),
            source=SourceStatus(name=self.engine, frames=self.frames),
            rate_fps=0.0,
            rate_mbps=0.0,
            sampling_ratio=1.0,
            history=(),
            final=True,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``OUT/metrics.json`` (nan as null)."""
        from wirelearn.models._snapshot import _clean

        return dict(
            _clean(
                {
                    "engine": self.engine,
                    "master": self.master,
                    "target": self.target,
                    "frames": self.frames,
                    "labelled": self.labelled,
                    "files": len(self.captures),
                    "skipped": [f.source_file for f in self.files if f.skipped is not None],
                    "errors": {f.source_file: f.error for f in self.files if f.error},
                    "train_frames": self.train_frames,
                    "test_frames": self.test_frames,
                    "windows": self.windows,
                    "cuts": list(self.cuts),
                    "features": list(self.feature_names),
                    "best": self.best,
                    "models": [asdict(s) for s in self.scores],
                    "extract_s": self.extract_s,
                    "train_s": self.train_s,
                }
            )
        )

    def print_report(self, out: TextIO, err: TextIO) -> None:
        """Print the summary table (when models were trained) and the run's totals."""
        from wirelearn.outputs import print_summary

        if self.scores:
            print_summary(self.snapshot(), out)
        where = self.engine if self.master is None else f"{self.engine} ({self.master})"
        rate = self.frames / self.extract_s if self.extract_s > 0 else 0.0
        skipped = len(self.files) - len(self.captures)
        lines = [
            f"engine {where}: {len(self.captures):,} capture{'' if len(self.captures) == 1 else 's'}"
            + (f" ({skipped:,} other files skipped: not captures)" if skipped else "")
            + f", {self.frames:,} frames extracted in {self.extract_s:.1f} s ({rate:,.0f} frames/s)"
        ]
        if self.target is not None:
            cut = ", ".join(_utc(c) for c in self.cuts) or "-"
            lines.append(
                f"time-ordered evaluation: {self.windows} windows cut at {cut};"
                f" trained on {self.train_frames:,} labelled frames, tested on"
                f" {self.test_frames:,} later ones ({self.train_s:.1f} s)"
            )
        for line in lines:
            print(f"wirelearn: {line}", file=err)
        for f in self.files:
            for w in f.warnings:
                print(f"wirelearn: warning: {w}", file=err)
            if f.error:
                print(f"wirelearn: warning: {f.error} (frames before it were kept)", file=err)
        for note in self.notes:
            print(f"wirelearn: note: {note}", file=err)


def _utc(ts: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_metrics(outcome: BatchOutcome, out_dir: str) -> None:
    """Write ``OUT/metrics.json`` (a local directory)."""
    import json

    path = os.path.join(out_dir, "metrics.json")
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(outcome.to_dict(), fh, indent=2)
            fh.write("\n")
    except OSError as exc:
        raise OutputError(exc.strerror or str(exc), path=path) from exc


def prepare_out(out: str, overwrite: bool) -> None:
    """Make a local output directory; refuse to mix with an earlier run unless ``overwrite``.

    Raises:
        OutputError: ``OUT/features`` exists (without ``overwrite``) or cannot be made.
    """
    import shutil

    features = os.path.join(out, "features")
    try:
        if os.path.exists(features):
            if not overwrite:
                raise OutputError(
                    "features/ exists from an earlier run; use --overwrite or another --out",
                    path=out,
                )
            shutil.rmtree(features)
            if os.path.isdir(os.path.join(out, "models")):
                shutil.rmtree(os.path.join(out, "models"))
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise OutputError(exc.strerror or str(exc), path=out) from exc


# --- the local engine -----------------------------------------------------------------------------


@dataclass
class _Labelled:
    """The labelled rows gathered for training (only those: unlabelled rows are not kept)."""

    ts: list[NDArray[np.float64]] = field(default_factory=list)
    y: list[NDArray[np.object_]] = field(default_factory=list)
    X: list[NDArray[np.float32]] = field(default_factory=list)

    def add(self, batch: Any) -> None:
        labels = batch.column("label").to_numpy(zero_copy_only=False)
        keep = np.asarray(labels != None, dtype=bool)  # noqa: E711
        if not keep.any():
            return
        flat = batch.column(FEATURES_COLUMN).flatten().to_numpy(zero_copy_only=False)
        d = len(flat) // len(batch)
        self.ts.append(batch.column("ts").to_numpy()[keep])
        self.y.append(labels[keep])
        self.X.append(flat.reshape(len(batch), d)[keep])


def run_local(config: BatchConfig) -> BatchOutcome:
    """Run the batch job on this machine with wirelearn's own pipeline and online models.

    Args:
        config: the job (``config.engine`` is not looked at).

    Raises:
        WirelearnError: bad inputs, outputs or options.
    """
    pa = _pa()
    import pyarrow.dataset as ds

    t0 = time.perf_counter()
    files = discover_local(config.paths)
    check_captures(files)
    spec = ExtractSpec(
        make_label_spec(config, files),
        train=config.trains,
        features=config.features,
        seed=config.seed,
        batch_size=config.batch_size,
    )
    outcome = BatchOutcome("local", target=config.target_name if config.trains else None)
    if config.trains:
        outcome.feature_names = spec.feature_names
    if config.out is not None:
        if has_scheme(config.out):
            raise ConfigError(f"--out {config.out}: the local engine writes local directories")
        prepare_out(config.out, config.overwrite)
    gathered = _Labelled()
    schema = spec.schema()
    public = pa.schema([f for f in schema if f.name != FEATURES_COLUMN])

    def rows() -> Iterator[Any]:
        for f in files:
            report = FileReport(f.source_file)
            outcome.files.append(report)
            for batch in extract(f.uri, f.source_file, spec, report, explicit=f.explicit):
                if spec.train:
                    gathered.add(batch)
                    batch = batch.drop_columns([FEATURES_COLUMN])
                yield batch

    if config.out is not None:
        part = ds.partitioning(
            pa.schema([public.field(c) for c in PARTITION_COLUMNS]), flavor="hive"
        )
        try:
            ds.write_dataset(
                rows(),
                os.path.join(config.out, "features"),
                schema=public,
                format="parquet",
                partitioning=part,
                basename_template="part-{i}.parquet",
                existing_data_behavior="overwrite_or_ignore",
                max_partitions=1 << 20,
            )
        except OSError as exc:
            raise OutputError(str(exc), path=config.out) from exc
    else:
        for _ in rows():
            pass
    outcome.extract_s = time.perf_counter() - t0
    if config.trains:
        t1 = time.perf_counter()
        classes = spec.labels.classes if spec.labels is not None else None
        models = _train_online(config, gathered, outcome, classes)
        outcome.train_s = time.perf_counter() - t1
        if config.out is not None and models:
            from wirelearn.models._persist import save_models

            save_models(
                os.path.join(config.out, "models"),
                models,
                feature_names=list(outcome.feature_names),
            )
    if config.out is not None:
        write_metrics(outcome, config.out)
    return outcome


def _train_online(
    config: BatchConfig, data: _Labelled, outcome: BatchOutcome, classes: tuple[str, ...] | None
) -> dict[str, Any]:
    """Expanding-window, time-ordered training of the online models; fills ``outcome.scores``."""
    from wirelearn.features._scale import OnlineScaler
    from wirelearn.models._base import MajorityBaseline
    from wirelearn.models._registry import make_model

    if not data.ts:
        outcome.notes.append("no labelled frames: nothing to train on")
        return {}
    ts = np.concatenate(data.ts)
    y = np.concatenate(data.y)
    X = np.concatenate(data.X)
    order = np.argsort(ts, kind="stable")
    ts, y, X = ts[order], y[order], X[order]
    cuts = split_cuts(ts, config.fractions)
    window = np.searchsorted(cuts, ts, side="right")
    outcome.cuts = tuple(float(c) for c in cuts)
    outcome.windows = len(cuts) + 1
    names = list(config.models or SPARK_MODELS)
    models: dict[str, Any] = {n: make_model(n, classes=classes, seed=config.seed) for n in names}
    baseline = MajorityBaseline(classes=classes)
    everyone: dict[str, Any] = {**models, "baseline": baseline}
    fit_s = dict.fromkeys(everyone, 0.0)
    predict_s = dict.fromkeys(everyone, 0.0)
    pairs: dict[str, list[tuple[NDArray[np.object_], NDArray[np.object_]]]] = {
        n: [] for n in everyone
    }
    scaler = OnlineScaler(clip=10.0)
    learned = 0
    bounds = np.searchsorted(window, np.arange(outcome.windows + 1), side="left")
    for k in range(1, outcome.windows):
        lo, hi = int(bounds[k - 1]), int(bounds[k])
        for start in range(lo, hi, _LOCAL_STEP):
            stop = min(hi, start + _LOCAL_STEP)
            Xs = scaler.fit_transform(X[start:stop])
            for name, model in everyone.items():
                t = time.perf_counter()
                model.learn_many(Xs, y[start:stop])
                fit_s[name] += time.perf_counter() - t
        learned = hi
        test_lo, test_hi = hi, int(bounds[k + 1])
        outcome.test_frames += test_hi - test_lo
        for start in range(test_lo, test_hi, 65536):
            stop = min(test_hi, start + 65536)
            Xt = scaler.transform(X[start:stop])
            for name, model in everyone.items():
                t = time.perf_counter()
                pred = np.asarray(model.predict_many(Xt), dtype=object)
                predict_s[name] += time.perf_counter() - t
                pairs[name].append((y[start:stop], pred))
    outcome.train_frames = learned
    index = ClassIndex(list(classes or ()))
    scores = []
    for name in everyone:
        truth = np.concatenate([p[0] for p in pairs[name]]) if pairs[name] else np.zeros(0, object)
        pred = np.concatenate([p[1] for p in pairs[name]]) if pairs[name] else np.zeros(0, object)
        t_s, p_s, c = _count_pairs(truth, pred)
        scores.append(
            score_pairs(
                name,
                t_s,
                p_s,
                c,
                index,
                learned=learned,
                fit_s=fit_s[name],
                predict_s=predict_s[name],
                is_baseline=name == "baseline",
            )
        )
    outcome.scores = tuple(scores)
    return models


def _count_pairs(
    truth: NDArray[np.object_], pred: NDArray[np.object_]
) -> tuple[list[str], list[str | None], list[int]]:
    """Distinct (truth, prediction) pairs and their counts (one ``np.unique``, no per-frame loop)."""
    if not len(truth):
        return [], [], []
    t = truth.astype(str)
    none = np.asarray(pred == None, dtype=bool)  # noqa: E711
    p = np.where(none, "\x00", pred.astype(str))
    keys = np.char.add(np.char.add(t, "\x01"), p)
    uniq, counts = np.unique(keys, return_counts=True)
    ts_out: list[str] = []
    ps_out: list[str | None] = []
    for key in uniq.tolist():
        a, _, b = str(key).partition("\x01")
        ts_out.append(a)
        ps_out.append(None if b == "\x00" else b)
    return ts_out, ps_out, [int(c) for c in counts]
