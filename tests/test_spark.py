"""The batch engines (local and Spark) and the Spark streaming receiver.

One ``local[2]`` SparkSession is shared by the whole module (starting a JVM
costs tens of seconds); the engines find it as the active session. The
oracles are wirelearn's own local engine and ``read_frames()`` (for the
features, row for row), the scenario generator's exact labels (for the
models), and ``wirelearn send`` streaming a capture over 127.0.0.1 (for the
receiver). The dependency checks are exercised with a broken environment:
pyspark hidden, no java on PATH, a bogus JAVA_HOME, an old or broken java.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES

from wirelearn import read_frames
from wirelearn._cli_batch import main as batch_main
from wirelearn.engines import BatchConfig, require_spark, run_local
from wirelearn.engines._local import label_file_for, split_cuts
from wirelearn.engines.spark import INSTALL_JAVA, INSTALL_SPARK, SparkHandle, find_java
from wirelearn.errors import ConfigError, DependencyError, InputError, OutputError

pytestmark = pytest.mark.filterwarnings(
    "ignore:PySpark does not yet fully support pandas:FutureWarning"
)

SCENARIOS = FIXTURES / "scenarios"
_SCRIPT = Path(sys.executable).with_name("wirelearn")
WIRELEARN = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "wirelearn.cli"]
#: Captures of every kind the readers handle: pcap, pcapng with two interfaces and
#: four link types, gzip (by content), a truncated tail and a corrupt record.
MIXED_FIXTURES = (
    "vlan-ipv4-tcp-udp.pcap",
    "multi-interface.pcapng",
    "merged-linktypes.pcapng",
    "gzip-ext-lies.pcap",
    "sll2.pcap",
    "stp.pcap",
    "truncated-tail.pcap",
    "bad-record-7.pcap",
)


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkHandle]:
    """The module's one SparkSession: local[2], few shuffle partitions, no UI, quiet."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.fail(f"Java is not installed; the spark tests need it ({INSTALL_JAVA})")
    pytest.importorskip("pyspark", reason=f"the spark extra is not installed ({INSTALL_SPARK})")
    from wirelearn.engines import spark_session

    warehouse = tmp_path_factory.mktemp("warehouse")
    handle = spark_session(
        "local[2]",
        {
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.ui.enabled": "false",
            "spark.sql.warehouse.dir": str(warehouse),
            "spark.driver.memory": "1g",
        },
        app_name="wirelearn-tests",
    )
    yield handle
    handle.spark.stop()


def read_dataset(path: Path) -> pd.DataFrame:
    """A features dataset as one DataFrame sorted by (source_file, frame)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    table = ds.dataset(str(path), format="parquet", partitioning="hive").to_table()
    # The dtypes of read_frames(): nullable integers and strings.
    types = {
        pa.int64(): pd.Int64Dtype(),
        pa.string(): pd.StringDtype(),
        pa.int32(): pd.Int64Dtype(),
    }
    frame = table.to_pandas(types_mapper=types.get)
    frame["date"] = frame["date"].astype(str)
    frame = frame.sort_values(["source_file", "frame"], kind="stable").reset_index(drop=True)
    return frame[sorted(frame.columns)]


def mixed_inputs(root: Path) -> Path:
    """A directory of assorted captures, a labelled scenario in a subdirectory, and a text file."""
    folder = root / "captures"
    (folder / "scenario").mkdir(parents=True)
    for name in MIXED_FIXTURES:
        shutil.copy(FIXTURES / name, folder / name)
    shutil.copy(FIXTURES / "README.md", folder / "notes.txt")
    for name in ("portscan.pcap", "portscan.labels.csv"):
        shutil.copy(SCENARIOS / name, folder / "scenario" / name)
    return folder


# --- configuration and the pieces (no Spark) -------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"engine": "flink"}, "unknown engine 'flink'; choose from: local, spark"),
        ({"target": "anomaly"}, "--target anomaly has no batch counterpart"),
        ({"target": "dns"}, "unknown target 'dns'; choose from: service, labels, rules"),
        ({"train_fraction": 1.0}, "--train-fraction must be a number between 0 and 1"),
        ({"windows": 1}, "--windows must be a whole number of at least 2"),
        ({"models": ("rf",)}, "--models needs something to learn"),
        ({"target": "service", "models": ("xgb",)}, "unknown model 'xgb' for the local engine"),
        (
            {"target": "service", "engine": "spark", "models": ("sgd",)},
            "unknown model 'sgd' for the spark engine; choose from: svm, logistic, nb, rf",
        ),
        ({"default_label": "x"}, "--default-label only applies with --label-rule"),
        ({"target": "rules"}, "--target rules needs at least one --label-rule"),
        ({"rules": ("dns=udp port 53",), "labels": "auto"}, "use either --labels or --label-rule"),
        ({"target": "service", "labels": "auto"}, "--target service derives its labels"),
        ({"target": "service", "train": False, "models": ("rf",)}, "contradict"),
    ],
)
def test_bad_configurations_are_refused_with_the_allowed_values(
    kw: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        BatchConfig(paths=("x",), **kw)
    assert message in str(info.value)


def test_split_cuts_follow_spark_exact_quantiles() -> None:
    # Spark's approxQuantile(..., 0.0) picks the element of rank ceil(q * n).
    ts = np.arange(1.0, 11.0)
    assert split_cuts(ts, [0.25, 0.5, 0.7, 0.75, 0.71]).tolist() == [3.0, 5.0, 7.0, 8.0]
    assert split_cuts(np.arange(1.0, 8.0), [0.3]).tolist() == [3.0]
    assert split_cuts(np.array([5.0, 5.0, 5.0]), [0.2, 0.6]).tolist() == [5.0]
    assert split_cuts(np.zeros(0), [0.5]).tolist() == []


def test_label_files_are_found_next_to_each_capture(tmp_path: Path) -> None:
    (tmp_path / "a.labels.csv").write_text("frame,label\n")
    (tmp_path / "b.ranges.csv").write_text("ts_start,ts_end,label\n")
    assert label_file_for(str(tmp_path / "a.pcap")) == str(tmp_path / "a.labels.csv")
    assert label_file_for(str(tmp_path / "b.pcapng.gz")) == str(tmp_path / "b.ranges.csv")
    assert label_file_for(str(tmp_path / "c.pcap")) is None
    listing = {"hdfs://nn/x/d.labels.csv"}
    assert label_file_for("hdfs://nn/x/d.pcap", listing.__contains__) == "hdfs://nn/x/d.labels.csv"


def test_local_engine_rows_are_read_frames_columns(tmp_path: Path) -> None:
    capture = FIXTURES / "multi-interface.pcapng"
    out = tmp_path / "out"
    config = BatchConfig(paths=(str(capture),), out=str(out))
    outcome = run_local(config)
    assert outcome.frames == len(read_frames(capture)) > 0
    rows = read_dataset(out / "features")
    assert set(rows["source_file"]) == {str(capture)}
    want = read_frames(capture)
    got = rows.sort_values("frame").reset_index(drop=True)[list(want.columns)]
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    # Partitioned by UTC day and file, as Spark lays it out.
    dirs = sorted(p.relative_to(out / "features").parts[:2] for p in out.rglob("*.parquet"))
    assert dirs and all(d[0].startswith("date=") and d[1].startswith("source_file=") for d in dirs)
    day = pd.to_datetime(want["ts"], unit="s", utc=True).dt.strftime("%Y-%m-%d")
    assert sorted(rows["date"].unique()) == sorted(day.unique())


def test_local_engine_refuses_hadoop_uris_and_existing_output(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="use --engine spark for Hadoop URIs"):
        run_local(BatchConfig(paths=("hdfs://nn/captures",)))
    with pytest.raises(InputError, match="no such file or directory"):
        run_local(BatchConfig(paths=(str(tmp_path / "missing"),)))
    capture = str(FIXTURES / "arp.pcap")
    run_local(BatchConfig(paths=(capture,), out=str(tmp_path)))
    with pytest.raises(OutputError, match="use --overwrite"):
        run_local(BatchConfig(paths=(capture,), out=str(tmp_path)))
    run_local(BatchConfig(paths=(capture,), out=str(tmp_path), overwrite=True))
    folder = mixed_inputs(tmp_path / "in")
    with pytest.raises(ConfigError, match="labels a single capture file"):
        run_local(BatchConfig(paths=(str(folder),), labels=str(SCENARIOS / "portscan.labels.csv")))


def test_batch_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert batch_main([str(FIXTURES / "README.md")]) == 3  # named explicitly: must be a capture
    assert "not a pcap or pcapng file" in capsys.readouterr().err
    (tmp_path / "only.txt").write_text("no captures here\n")
    assert batch_main([str(tmp_path)]) == 3
    assert "no pcap or pcapng captures among" in capsys.readouterr().err
    assert batch_main([str(FIXTURES / "arp.pcap"), "--models", "rf"]) == 2
    assert "--models needs something to learn" in capsys.readouterr().err
    assert batch_main([str(FIXTURES / "arp.pcap"), "--conf", "nokey"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


# --- missing pyspark or Java ------------------------------------------------------------------------


def test_missing_pyspark_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark now fails
    with pytest.raises(DependencyError) as info:
        require_spark()
    assert "pip install 'wirelearn[spark]'" in str(info.value)
    assert batch_main([str(FIXTURES / "arp.pcap"), "--engine", "spark"]) == 7
    assert "pip install 'wirelearn[spark]'" in capsys.readouterr().err


def test_missing_java_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no java here
    with pytest.raises(DependencyError) as info:
        find_java()
    assert "no java is on PATH" in str(info.value) and INSTALL_JAVA in str(info.value)
    assert batch_main([str(FIXTURES / "arp.pcap"), "--engine", "spark"]) == 7
    assert "apt-get install openjdk-17-jre-headless" in capsys.readouterr().err


def test_bogus_java_home_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(DependencyError) as info:
        require_spark()
    text = str(info.value)
    assert str(tmp_path / "no-jdk") in text and "JAVA_HOME" in text and INSTALL_JAVA in text


def fake_java(home: Path, version: str, *, start: bool) -> Path:
    """A JAVA_HOME whose bin/java reports ``version`` and cannot start Spark unless ``start``."""
    java = home / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-version" ]; then echo \'openjdk version "{version}" 2024-01-16\' >&2;'
        " exit 0; fi\n"
        + ('exec java "$@"\n' if start else "echo 'fake java: cannot start' >&2; exit 1\n")
    )
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    return home


def test_old_java_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path / "jdk11", "11.0.22", start=True)))
    with pytest.raises(DependencyError, match=r"is Java 11; Spark 4 needs Java 17 or later"):
        require_spark()


def test_a_jvm_that_does_not_start_is_a_dependency_error(tmp_path: Path) -> None:
    pytest.importorskip("pyspark")
    home = fake_java(tmp_path / "jdk", "17.0.9", start=False)
    env = {**os.environ, "JAVA_HOME": str(home)}
    code = "from wirelearn._cli_batch import main; raise SystemExit(main())"
    done = subprocess.run(
        [sys.executable, "-c", code, str(FIXTURES / "arp.pcap"), "--engine", "spark"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 7, done.stderr
    assert "Spark did not start" in done.stderr and INSTALL_JAVA in done.stderr


# --- Spark ------------------------------------------------------------------------------------------


@pytest.mark.spark
def test_spark_features_equal_local_engine_row_for_row(
    spark: SparkHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = mixed_inputs(tmp_path)
    common = [str(folder), "--labels", "auto", "--no-train"]
    local_out, spark_out = tmp_path / "local", tmp_path / "spark"
    # bad-record-7.pcap ends with a corrupt record: both engines keep its first 6 frames
    # and exit 3 after writing everything.
    assert batch_main([*common, "--engine", "local", "--out", str(local_out)]) == 3
    local_err = capsys.readouterr().err
    assert batch_main([*common, "--engine", "spark", "--out", str(spark_out)]) == 3
    spark_err = capsys.readouterr().err
    for err in (local_err, spark_err):
        assert "9 captures (2 other files skipped: not captures)" in err
        assert "bad-record-7.pcap: offset 5043" in err
        assert "truncated-tail.pcap: offset 5772: the last record is cut short" in err

    local_rows = read_dataset(local_out / "features")
    spark_rows = read_dataset(spark_out / "features")
    assert len(local_rows) == len(spark_rows) > 6000
    pd.testing.assert_frame_equal(spark_rows, local_rows, check_dtype=False)
    assert spark_out.joinpath("metrics.json").is_file()

    # The columns are those of `wirelearn read --json` / read_frames(), plus the three extra ones.
    for name in ("multi-interface.pcapng", "gzip-ext-lies.pcap", "merged-linktypes.pcapng"):
        path = folder / name
        want = read_frames(path)
        got = spark_rows[spark_rows["source_file"] == str(path)]
        got = got.reset_index(drop=True)[list(want.columns)]
        pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert set(spark_rows.columns) == {*want.columns, "source_file", "date", "label"}
    labelled = spark_rows[spark_rows["label"].notna()]
    assert set(labelled["source_file"]) == {str(folder / "scenario" / "portscan.pcap")}
    assert labelled["label"].value_counts().to_dict() == {"benign": 3735, "portscan": 2265}

    # Spark reads the local engine's dataset as its own: same layout.
    back = spark.spark.read.parquet(str(local_out / "features"))
    assert back.count() == len(local_rows)
    assert {"date", "source_file"} <= set(back.columns)


@pytest.mark.spark
@pytest.mark.slow
def test_mllib_models_beat_the_majority_baseline_in_time_order(
    spark: SparkHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pyspark.ml import PipelineModel

    from wirelearn.engines._spark_batch import run_spark

    folder = tmp_path / "scenarios"
    shutil.copytree(SCENARIOS, folder)
    out = tmp_path / "out"
    config = BatchConfig(
        paths=(str(folder),), engine="spark", labels="auto", train_fraction=0.6, out=str(out)
    )
    outcome = run_spark(config, handle=spark)
    outcome.print_report(sys.stdout, sys.stdout)
    local = run_local(BatchConfig(paths=(str(folder),), labels="auto", train_fraction=0.6))
    with capsys.disabled():
        print("\nMLlib (spark) vs online models (local), time split at 0.6:")
        for engine in (outcome, local):
            for s in engine.scores:
                print(
                    f"  {engine.engine:5} {s.name:9} accuracy {s.accuracy:.3f}"
                    f"  macro-F1 {s.macro_f1:.3f}  kappa {s.kappa:.3f}"
                )
    # The same frames are cut at the same time in both engines.
    assert outcome.cuts == local.cuts and len(outcome.cuts) == 1
    assert (outcome.train_frames, outcome.test_frames) == (local.train_frames, local.test_frames)
    assert outcome.train_frames + outcome.test_frames == outcome.labelled == 40_000
    names = [s.name for s in outcome.scores]
    assert names == ["svm", "logistic", "nb", "rf", "baseline"]
    for s in outcome.scores:
        assert s.scored == outcome.test_frames and s.learned == outcome.train_frames
        assert all(math.isfinite(x) for x in (s.accuracy, s.macro_f1, s.kappa))
        assert {"benign", "arpspoof", "portscan"} <= set(s.recall)
    base = outcome.score("baseline")
    best = outcome.score(outcome.best or "")
    assert base is not None and best is not None
    assert best.macro_f1 > base.macro_f1 + 0.2
    assert base.kappa == 0.0  # a constant predictor agrees only by chance
    # The table printed is render_summary's, with the local engine's names.
    printed = capsys.readouterr().out
    assert "macro-F1" in printed and "baseline" in printed and f"{outcome.best} *" in printed

    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["name"] for m in metrics["models"]] == names
    assert metrics["best"] == outcome.best
    # The saved pipelines load and predict (nb's clipping stage included).
    for name in ("nb", "rf"):
        model = PipelineModel.load(str(out / "models" / name))
        from pyspark.ml.functions import array_to_vector
        from pyspark.sql import functions as sf

        rows = spark.spark.read.parquet(str(out / "features")).limit(5)
        assert rows.count() == 5
        x = spark.spark.createDataFrame(
            [([0.5] * len(outcome.feature_names),)], "features array<float>"
        ).select(array_to_vector(sf.col("features")).alias("features"))
        assert model.transform(x).select("prediction").count() == 1


@pytest.mark.spark
@pytest.mark.slow
def test_streaming_receiver_learns_from_a_send_stream(
    spark: SparkHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from wirelearn.cli import build_parser

    capture = SCENARIOS / "portscan.pcap"
    sender = subprocess.Popen(
        [*WIRELEARN, "send", str(capture), "--listen", "127.0.0.1:0", "--once", "--pps", "400"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert sender.stderr is not None
        line = sender.stderr.readline()
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert found, line
        port = int(found.group(1))
        metrics = tmp_path / "metrics.jsonl"
        args: argparse.Namespace = build_parser().parse_args(
            [
                "connect",
                f"127.0.0.1:{port}",
                "--no-ui",
                "--labels",
                str(SCENARIOS / "portscan.labels.csv"),
                "--models",
                "sgd",
                "--no-anomaly",
                "--batch-interval",
                "1",
                "--metrics",
                str(metrics),
                "--engine",
                "spark",
                "--master",
                "local[2]",
            ]
        )
        args.progress_every = 1e-9  # one progress line per micro-batch
        code = args.func(args)  # the CLI's own dispatch to the Spark receiver
        assert sender.wait(timeout=60) == 0
    finally:
        if sender.poll() is None:
            sender.kill()
        sender.communicate(timeout=30)  # also closes the stderr pipe
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = re.findall(r"micro-batch (\d+) \(\+([\d,]+) frames\): .*best \w+ acc", captured.err)
    with capsys.disabled():
        print(f"\n{len(lines)} micro-batches: {[int(n.replace(',', '')) for _, n in lines]}")
    assert len(lines) >= 3
    assert sum(int(n.replace(",", "")) for _, n in lines) == 6000
    assert "wirelearn summary: 6,000 frames, 6,000 labelled, target labels" in captured.out
    snaps = [json.loads(x) for x in metrics.read_text().splitlines()]
    final = snaps[-1]
    assert final["final"] and final["frames"] == 6000 and final["labelled"] == 6000
    scores = {m["name"]: m for m in final["models"]}
    assert set(scores) == {"sgd", "baseline"}
    assert scores["sgd"]["macro_f1"] > scores["baseline"]["macro_f1"] + 0.2
    assert [s["frames"] for s in snaps] == sorted(s["frames"] for s in snaps)


@pytest.mark.spark
@pytest.mark.slow
def test_streaming_receiver_listens_for_several_senders(
    spark: SparkHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket
    import threading
    import time

    from wirelearn.cli import build_parser

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    capture = FIXTURES / "vlan-ipv4-tcp-udp.pcap"  # 22 frames
    sent: list[int] = []
    stop = threading.Event()

    def sender() -> None:
        # The listener binds once the query starts: retry until a send goes through.
        while not stop.is_set():
            done = subprocess.run(
                [*WIRELEARN, "send", str(capture), "--to", f"127.0.0.1:{port}", "--topspeed"],
                capture_output=True,
                timeout=60,
                check=False,
            )
            if done.returncode == 0:
                sent.append(22)
                return
            time.sleep(0.5)

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    args = build_parser().parse_args(
        [
            "listen",
            f"127.0.0.1:{port}",
            "--no-ui",
            "-c",
            "44",
            "--models",
            "sgd",
            "--no-anomaly",
            "--engine",
            "spark",
            "--master",
            "local[2]",
        ]
    )
    args.progress_every = 1e-9
    try:
        code = args.func(args)  # the CLI's own dispatch to the Spark receiver
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sent == [22, 22]
    assert "wirelearn summary: 44 frames" in captured.out
