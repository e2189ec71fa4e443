"""The Spark batch job: captures read in parallel tasks, Parquet out, MLlib trained in time order.

Files are spread over the cluster one per task (biggest first, so the long
ones start early). Each task runs ``wirelearn.engines._local.extract`` in
``mapInArrow``: wirelearn's own reader streams the file batch by batch, the
vectorized decoder decodes it and the rows leave the task as Arrow record
batches; nothing is re-implemented in Spark SQL. Tasks report per file (frames,
skipped non-captures, errors, warnings) through an accumulator.

Local paths are listed on the driver and must be readable by the executors at
the same path (always true for ``local[*]``; a shared filesystem on a cluster).
This module needs pyspark at import: check with ``require_spark()`` first.

Hadoop URIs (``hdfs://``, ``s3a://``, ...) are listed with Spark's
``binaryFile`` source (without reading the contents) and opened inside the
tasks with pyarrow's filesystems.

Training uses MLlib on the labelled rows, cut into time windows exactly as the
local engine cuts them (``split_cuts``): ``svm`` (``LinearSVC``, through
``OneVsRest`` for more than two classes), ``logistic`` (``LogisticRegression``),
both on standardised inputs; ``nb`` (multinomial ``NaiveBayes`` on inputs scaled
to [0, 1] by ``MinMaxScaler`` and clipped there, as later frames may fall outside
the training range); ``rf`` (``RandomForestClassifier`` on the raw inputs). The
models of the last window are saved as ``PipelineModel``\\ s under ``OUT/models/<name>``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame

from wirelearn.engines._local import (
    FEATURES_COLUMN,
    PARTITION_COLUMNS,
    SPARK_MODELS,
    BatchConfig,
    BatchOutcome,
    ExtractSpec,
    FileReport,
    InputFile,
    check_captures,
    discover_local,
    extract,
    has_scheme,
    make_label_spec,
    prepare_out,
    score_pairs,
    write_metrics,
)
from wirelearn.engines.spark import SparkHandle, quiet_spark_warnings, spark_session
from wirelearn.errors import ConfigError, InputError, OutputError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["ClipUnit", "list_uris", "run_spark"]


def _reports_param() -> Any:
    from pyspark.accumulators import AccumulatorParam

    class Reports(AccumulatorParam[list[FileReport]]):
        """Concatenates the tasks' lists of ``FileReport``."""

        def zero(self, value: list[FileReport]) -> list[FileReport]:
            return []

        def addInPlace(  # noqa: N802 - Spark's name
            self, a: list[FileReport], b: list[FileReport]
        ) -> list[FileReport]:
            a.extend(b)
            return a

    return Reports()


def list_uris(spark: SparkSession, uris: Sequence[str]) -> list[InputFile]:
    """Every file under each Hadoop URI (recursively), listed by Spark without reading them.

    Raises:
        InputError: a URI that does not exist or cannot be listed.
    """
    from pyspark.errors import AnalysisException

    out: dict[str, InputFile] = {}
    for uri in uris:
        try:
            rows = (
                spark.read.format("binaryFile")
                .option("recursiveFileLookup", "true")
                .load(uri)
                .select("path", "length")
                .collect()
            )
        except AnalysisException as exc:
            raise InputError(f"cannot list: {str(exc).splitlines()[0]}", path=uri) from exc
        for row in rows:
            path = str(row["path"])
            out.setdefault(path, InputFile(path, path, int(row["length"]), explicit=False))
    return sorted(out.values(), key=lambda f: f.source_file)


def _read_label_uris(spark: SparkSession, uris: Sequence[str]) -> dict[str, Any]:
    """``FileLabels`` of label files given as URIs (fetched once, through Spark)."""
    from wirelearn.models._labels import FileLabels

    if not uris:
        return {}
    rows = spark.read.format("binaryFile").load(list(uris)).select("path", "content").collect()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="wirelearn-labels-") as tmp:
        for i, row in enumerate(rows):
            local = os.path.join(tmp, f"{i}.csv")
            with open(local, "wb") as fh:
                fh.write(bytes(row["content"]))
            out[str(row["path"])] = FileLabels(local)
    return out


def _inputs(spark: SparkSession, config: BatchConfig) -> list[InputFile]:
    local = [p for p in config.paths if not has_scheme(p)]
    remote = [p for p in config.paths if has_scheme(p)]
    files = discover_local(local) if local else []
    check_captures(files)
    files += list_uris(spark, remote)
    return files


def _spark_schema(arrow_schema: Any) -> Any:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(arrow_schema)


def run_spark(config: BatchConfig, *, handle: SparkHandle | None = None) -> BatchOutcome:
    """Run the batch job on Spark.

    Args:
        config: the job.
        handle: a session to use; by default the active one, or a new one on
            ``config.master`` with ``config.conf`` (stopped at the end).

    Raises:
        DependencyError: pyspark, pyarrow or Java is missing.
        WirelearnError: bad inputs, outputs or options.
    """
    own = handle is None
    if handle is None:
        handle = spark_session(config.master, config.conf)
    try:
        with quiet_spark_warnings():
            return _run(handle, config)
    finally:
        if own:
            handle.close()


def _run(handle: SparkHandle, config: BatchConfig) -> BatchOutcome:
    from pyspark import StorageLevel

    spark = handle.spark
    sc = spark.sparkContext
    t0 = time.perf_counter()
    files = _inputs(spark, config)
    if not files:
        raise InputError("no files found in " + ", ".join(config.paths))

    def read_labels(path: str) -> Any:
        from wirelearn.models._labels import FileLabels

        return labels_by_uri[path] if path in labels_by_uri else FileLabels(path)

    labels_by_uri: dict[str, Any] = {}
    if config.labels == "auto" and any(has_scheme(f.uri) for f in files):
        from wirelearn.engines._local import label_file_for

        known = {f.uri for f in files}
        wanted = [label_file_for(f.uri, known.__contains__) for f in files if has_scheme(f.uri)]
        labels_by_uri = _read_label_uris(spark, [w for w in wanted if w is not None])
    spec = ExtractSpec(
        make_label_spec(config, files, read_labels=read_labels),
        train=config.trains,
        features=config.features,
        seed=config.seed,
        batch_size=config.batch_size,
    )
    outcome = BatchOutcome(
        "spark", master=handle.master, target=config.target_name if config.trains else None
    )
    if config.trains:
        outcome.feature_names = spec.feature_names
    out = config.out
    if out is not None and not has_scheme(out):
        prepare_out(out, config.overwrite)

    reports = sc.accumulator([], _reports_param())
    arrow_schema = spec.schema()

    def task(batches: Iterable[Any]) -> Iterator[Any]:
        for batch in batches:
            cols = batch.to_pydict()
            for uri, name in zip(cols["uri"], cols["source_file"], strict=True):
                report = FileReport(name)
                try:
                    yield from extract(uri, name, spec, report)
                finally:
                    reports.add([report])

    ordered = sorted(files, key=lambda f: -f.size)
    listing = sc.parallelize([(f.uri, f.source_file) for f in ordered], numSlices=len(ordered))
    inputs = spark.createDataFrame(listing, "uri string, source_file string")
    rows = inputs.mapInArrow(task, _spark_schema(arrow_schema))
    if config.trains:
        rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        public = rows.drop(FEATURES_COLUMN) if config.trains else rows
        if out is not None:
            mode = "overwrite" if config.overwrite else "errorifexists"
            with _concurrent_writers(spark):
                _save(
                    lambda: (
                        public.write.mode(mode)
                        .partitionBy(*PARTITION_COLUMNS)
                        .parquet(_join(out, "features"))
                    ),
                    out,
                )
        else:
            public.write.format("noop").mode("overwrite").save()
        outcome.files = _dedupe(reports.value, files)
        outcome.extract_s = time.perf_counter() - t0
        if config.trains:
            t1 = time.perf_counter()
            _train(spark, rows, config, outcome)
            outcome.train_s = time.perf_counter() - t1
    finally:
        if config.trains:
            rows.unpersist()
    if out is not None:
        if has_scheme(out):
            import json

            text = json.dumps(outcome.to_dict(), indent=2)
            mode = "overwrite" if config.overwrite else "errorifexists"
            frame = spark.createDataFrame([(text,)], "value string").coalesce(1)
            _save(lambda: frame.write.mode(mode).text(_join(out, "metrics")), out)
        else:
            write_metrics(outcome, out)
    return outcome


@contextlib.contextmanager
def _concurrent_writers(spark: SparkSession) -> Iterator[None]:
    """Let each task write its few (date, file) partitions at once instead of sorting first.

    A task holds one capture, so it writes one or two partitions: sorting its
    rows by partition before writing (Spark's default) only costs time. A value
    the user set is left alone.
    """
    key = "spark.sql.maxConcurrentOutputFileWriters"
    if spark.conf.get(key, "0") not in ("0", None):
        yield
        return
    spark.conf.set(key, "16")
    try:
        yield
    finally:
        spark.conf.unset(key)


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def _save(write: Any, out: str) -> None:
    """Run a Spark write, mapping "already exists" and I/O failures to ``OutputError``."""
    from pyspark.errors import AnalysisException

    try:
        write()
    except AnalysisException as exc:
        first = str(exc).strip().splitlines()[0]
        if "PATH_ALREADY_EXISTS" in str(exc) or "already exists" in str(exc):
            raise OutputError(
                "an earlier run's output is there; use --overwrite or another --out", path=out
            ) from exc
        raise OutputError(first, path=out) from exc


def _dedupe(reports: list[FileReport], files: Sequence[InputFile]) -> list[FileReport]:
    """One report per file, in listing order (a recomputed task reports twice)."""
    by_name = {r.source_file: r for r in reports}
    return [by_name.get(f.source_file, FileReport(f.source_file)) for f in files]


# --- MLlib ----------------------------------------------------------------------------------------


class ClipUnit(
    Transformer,
    HasInputCol,
    HasOutputCol,
    DefaultParamsReadable["ClipUnit"],
    DefaultParamsWritable,
):
    """Clip every element of a vector column to [0, 1] (for ``NaiveBayes`` after ``MinMaxScaler``).

    Frames after the training window can fall outside the range ``MinMaxScaler``
    learnt, and multinomial naive Bayes refuses negative inputs. The clipping
    runs in the JVM (``transform`` on the array form), and the stage saves and
    loads with its ``PipelineModel``.

    Args:
        inputCol: the vector column to read.
        outputCol: the vector column to write.
    """

    @keyword_only
    def __init__(self, *, inputCol: str | None = None, outputCol: str | None = None) -> None:
        super().__init__()
        self._set(**self._input_kwargs)  # type: ignore[attr-defined]

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from pyspark.ml.functions import array_to_vector, vector_to_array
        from pyspark.sql import functions as sf

        values = vector_to_array(sf.col(self.getInputCol()))
        clipped = sf.transform(values, lambda x: sf.least(sf.greatest(x, sf.lit(0.0)), sf.lit(1.0)))
        return dataset.withColumn(self.getOutputCol(), array_to_vector(clipped))


def _estimator(name: str, n_classes: int, seed: int, parallelism: int = 1) -> Any:
    """The MLlib pipeline of model ``name`` (a ``Pipeline`` reading ``features``, label ``y``).

    Iteration counts are modest: every iteration is one Spark job, and on
    standardised inputs the linear models converge well before them.
    """
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import (
        LinearSVC,
        LogisticRegression,
        NaiveBayes,
        OneVsRest,
        RandomForestClassifier,
    )
    from pyspark.ml.feature import MinMaxScaler, StandardScaler

    standard = StandardScaler(inputCol="features", outputCol="scaled", withMean=True, withStd=True)
    stages: list[Any]
    if name == "svm":
        svm = LinearSVC(featuresCol="scaled", labelCol="y", maxIter=25, regParam=0.01)
        if n_classes > 2:
            ovr = OneVsRest(
                classifier=svm, featuresCol="scaled", labelCol="y", parallelism=parallelism
            )
            stages = [standard, ovr]
        else:
            stages = [standard, svm]
    elif name == "logistic":
        lr = LogisticRegression(featuresCol="scaled", labelCol="y", maxIter=40, regParam=1e-3)
        stages = [standard, lr]
    elif name == "nb":
        stages = [
            MinMaxScaler(inputCol="features", outputCol="unit"),
            ClipUnit(inputCol="unit", outputCol="unit01"),
            NaiveBayes(featuresCol="unit01", labelCol="y", modelType="multinomial", smoothing=1.0),
        ]
    elif name == "rf":
        stages = [
            RandomForestClassifier(
                featuresCol="features", labelCol="y", numTrees=40, maxDepth=10, seed=seed
            )
        ]
    else:
        raise ConfigError(f"unknown model {name!r}; choose from: {', '.join(SPARK_MODELS)}")
    return Pipeline(stages=stages)


def _train(
    spark: SparkSession, rows: DataFrame, config: BatchConfig, outcome: BatchOutcome
) -> None:
    """Expanding-window, time-ordered MLlib training and scoring; fills ``outcome.scores``."""
    from pyspark import StorageLevel
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as sf

    from wirelearn.models._metrics import ClassIndex

    lab = rows.where(sf.col("label").isNotNull()).select(
        "ts", "label", array_to_vector(sf.col(FEATURES_COLUMN)).alias("features")
    )
    quantiles = lab.approxQuantile("ts", list(config.fractions), 0.0)
    if not quantiles:
        outcome.notes.append("no labelled frames: nothing to train on")
        return
    cuts = sorted(set(quantiles))
    window = sum((sf.when(sf.col("ts") >= c, 1).otherwise(0) for c in cuts), sf.lit(0))
    # A handful of partitions: every model iteration is a job, and empty tasks cost as much.
    parallelism = max(1, spark.sparkContext.defaultParallelism)
    lab = (
        lab.withColumn("window", window)
        .repartition(parallelism)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    try:
        counts: dict[int, dict[str, int]] = {}
        for row in lab.groupBy("window", "label").count().collect():
            counts.setdefault(int(row["window"]), {})[str(row["label"])] = int(row["count"])
        outcome.cuts = tuple(float(c) for c in cuts)
        outcome.windows = len(cuts) + 1
        names = list(config.models or SPARK_MODELS)
        everyone = [*names, "baseline"]
        triples: dict[str, list[tuple[str, str | None, int]]] = {n: [] for n in everyone}
        fit_s = dict.fromkeys(everyone, 0.0)
        predict_s = dict.fromkeys(everyone, 0.0)
        fitted: dict[str, Any] = {}
        for k in range(1, outcome.windows):
            seen: dict[str, int] = {}
            for w in range(k):
                for label, c in counts.get(w, {}).items():
                    seen[label] = seen.get(label, 0) + c
            tested = counts.get(k, {})
            if not seen or not tested:
                continue
            outcome.train_frames = sum(seen.values())
            outcome.test_frames += sum(tested.values())
            classes = sorted(seen, key=lambda lbl: (-seen[lbl], lbl))
            for label, c in tested.items():
                triples["baseline"].append((label, classes[0], c))
            if len(classes) < 2:
                outcome.notes.append(
                    f"window {k}: the frames before it hold one class ({classes[0]});"
                    " every model predicts it"
                )
                for name in names:
                    for label, c in tested.items():
                        triples[name].append((label, classes[0], c))
                continue
            mapping = sf.create_map(
                *[x for i, lbl in enumerate(classes) for x in (sf.lit(lbl), sf.lit(float(i)))]
            )
            train_df = lab.where(sf.col("window") < k).withColumn("y", mapping[sf.col("label")])
            test_df = lab.where(sf.col("window") == k)
            for name in names:
                t = time.perf_counter()
                with warnings.catch_warnings():
                    # pyspark's OneVsRest never closes its thread pool; say nothing of it.
                    warnings.filterwarnings(
                        "ignore", "unclosed running multiprocessing pool", ResourceWarning
                    )
                    model = _estimator(name, len(classes), config.seed, parallelism).fit(train_df)
                    gc.collect()
                fit_s[name] += time.perf_counter() - t
                t = time.perf_counter()
                got = model.transform(test_df).groupBy("label", "prediction").count().collect()
                predict_s[name] += time.perf_counter() - t
                for row in got:
                    pred = classes[int(row["prediction"])]
                    triples[name].append((str(row["label"]), pred, int(row["count"])))
                fitted[name] = model
        index = ClassIndex()
        scores = []
        for name in everyone:
            rows_ = triples[name]
            scores.append(
                score_pairs(
                    name,
                    [r[0] for r in rows_],
                    [r[1] for r in rows_],
                    [r[2] for r in rows_],
                    index,
                    learned=outcome.train_frames,
                    fit_s=fit_s[name],
                    predict_s=predict_s[name],
                    is_baseline=name == "baseline",
                )
            )
        outcome.scores = tuple(scores)
        if config.out is not None:
            for name, model in fitted.items():
                path = _join(config.out, f"models/{name}")
                writer = model.write().overwrite() if config.overwrite else model.write()
                _save(lambda w=writer, p=path: w.save(p), config.out)
    finally:
        lab.unpersist()
