"""Plots from a real run's history and from the --metrics files MetricsWriter writes.

PNGs are read back with Pillow: exact pixel size, not blank, and the model
colours are there. Attack phases derived from label counts are checked against
the scenario generator's own ranges.
"""

from __future__ import annotations

import csv
import doctest
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from test_dashboard import run_scenario
from test_tty import WIRELEARN, cli_ready

import wirelearn.plot
from wirelearn.errors import ConfigError, DependencyError, FormatError, InputError, OutputError
from wirelearn.models._snapshot import HistoryPoint, Snapshot
from wirelearn.outputs import MetricsWriter
from wirelearn.plot import (
    BASELINE_COLOR,
    PLOT_COLORS,
    attack_phases,
    history_figure,
    plot_history,
    plot_metrics_file,
    read_metrics,
)
from wirelearn.scenarios import write_scenario


@pytest.fixture(scope="module")
def snaps() -> list[Snapshot]:
    return run_scenario()


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return (int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16))


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).reshape(-1, 3)


def count(px: np.ndarray, colour: str) -> int:
    return int((px == rgb(colour)).all(axis=1).sum())


def metrics_file(snaps: list[Snapshot], path: Path) -> Path:
    writer = MetricsWriter(str(path))
    for s in snaps:
        writer.write(s)
    writer.close()
    return path


def test_png_from_history_has_size_and_model_colours(snaps: list[Snapshot], tmp_path: Path) -> None:
    out = tmp_path / "run.png"
    assert plot_history(snaps[-1].history, out, size=(1001, 603), dpi=96) == str(out)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (1001, 603)
    px = pixels(out)
    assert len(np.unique(px, axis=0)) > 500, "the image is (nearly) blank"
    models = [m.name for m in snaps[-1].models if not m.is_baseline]
    for colour in PLOT_COLORS[: len(models)]:
        assert count(px, colour) > 100, f"no line in {colour}"
    assert count(px, BASELINE_COLOR) > 50


def test_figure_titles_axes_legend_and_panels(snaps: list[Snapshot]) -> None:
    fig = history_figure(snaps[-1], time_axis="clock", utc=True)
    top, bottom = fig.axes
    assert "accuracy over capture time" in top.get_title() and "6,000 frames" in top.get_title()
    assert top.get_ylabel() == "rolling accuracy (%)" and top.get_ylim() == (-2, 102)
    assert bottom.get_ylabel() == "anomaly score"
    assert bottom.get_xlabel() == "capture time (HH:MM:SS, UTC)"
    legend = [t.get_text() for t in top.get_legend().get_texts()]
    assert legend[:4] == ["sgd", "nb", "pa", "baseline (majority)"]
    assert {"attack: portscan", "attack: synflood", "attack: arpspoof"} <= set(legend)
    lower = [t.get_text() for t in bottom.get_legend().get_texts()]
    assert {"alert threshold", "mean score per batch", "grace period"} <= set(lower)
    formatter = bottom.xaxis.get_major_formatter()
    assert formatter(1_700_000_000.0, 0) == "22:13:20"
    # Without anomaly scores, one panel and seconds on the x axis.
    plain = history_figure(run_scenario(frames=900, anomaly=False)[-1])
    (only,) = plain.axes
    assert only.get_xlabel() == "capture time (s since the first frame)"


def test_attack_phases_match_the_scenario_ranges(snaps: list[Snapshot], tmp_path: Path) -> None:
    # The scenario writer's own ranges (first and last frame of each attack label).
    ranges = tmp_path / "mixed.ranges.csv"
    write_scenario(
        "mixed", tmp_path / "m.pcap", tmp_path / "m.csv", frames=6000, seed=3, ranges_path=ranges
    )
    with open(ranges, encoding="ascii") as f:
        truth = {r["label"]: (float(r["ts_start"]), float(r["ts_end"])) for r in csv.DictReader(f)}
    history = snaps[-1].history
    phases = attack_phases(history)
    assert [label for _, _, label in phases] == ["portscan", "synflood", "arpspoof"]
    step = max(b.ts - a.ts for a, b in itertools.pairwise(history))
    for t0, t1, label in phases:
        lo, hi = truth[label]
        # The phase covers the labelled frames, and is off by at most one history step.
        assert t0 <= lo + 1e-6 and t1 >= hi - 1e-6
        assert lo - t0 <= step and t1 - hi <= step


def test_explicit_phases_and_no_phases(snaps: list[Snapshot], tmp_path: Path) -> None:
    h = snaps[-1].history
    out = tmp_path / "explicit.png"
    plot_history(h, out, attack_phases=[(h[2].ts, h[5].ts, "drill")], anomaly=False)
    fig = history_figure(h, attack_phases=[(h[2].ts, h[5].ts, "drill")], anomaly=False)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "attack: drill" in legend and "attack: portscan" not in legend
    benign_only = [
        HistoryPoint(float(i), i, {"m": 0.5}, {}, labels={"benign": i}) for i in range(5)
    ]
    assert attack_phases(benign_only) == []


def test_read_metrics_jsonl_rebuilds_the_history(snaps: list[Snapshot], tmp_path: Path) -> None:
    path = metrics_file(snaps, tmp_path / "metrics.jsonl")
    points = read_metrics(path)
    # One point per mini-batch; the final snapshot repeats the last one and is merged.
    assert len(points) == len(snaps) - 1
    for p, s in zip(points, snaps, strict=False):
        assert p.ts == s.ts_last and p.frames == s.frames
        for m in s.models:
            assert p.rolling_accuracy[m.name] == pytest.approx(m.rolling_accuracy, nan_ok=True)
        assert s.anomaly is not None
        assert p.threshold == s.anomaly.threshold
        mean = s.anomaly.last_score_mean  # JSON has no nan: null, read back as None
        assert p.anomaly_mean == (None if math.isnan(mean) else pytest.approx(mean))
    out = tmp_path / "from-metrics.png"
    plot_history(path, out, size=(800, 500))
    with Image.open(out) as im:
        assert im.size == (800, 500)
    assert count(pixels(out), PLOT_COLORS[0]) > 50


def test_read_metrics_prefers_a_written_history(snaps: list[Snapshot], tmp_path: Path) -> None:
    path = tmp_path / "with-history.jsonl"
    lines = [json.dumps(s.to_dict()) for s in snaps[:-1]]
    lines.append(json.dumps(snaps[-1].to_dict(history=True)))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    points = read_metrics(path)
    assert points == list(snaps[-1].history)
    assert [label for _, _, label in attack_phases(points)] == ["portscan", "synflood", "arpspoof"]


def test_read_metrics_csv(snaps: list[Snapshot], tmp_path: Path) -> None:
    path = metrics_file(snaps, tmp_path / "metrics.csv")
    points = read_metrics(path)
    assert len(points) == len(snaps) - 1
    assert points[-1].rolling_accuracy["sgd"] == pytest.approx(snaps[-1].models[0].rolling_accuracy)
    plot_history(path, tmp_path / "csv.png")


def test_svg_and_pdf(snaps: list[Snapshot], tmp_path: Path) -> None:
    svg = tmp_path / "run.svg"
    plot_history(snaps[-1], svg, size=(900, 600), dpi=100)
    text = svg.read_text(encoding="utf-8")
    assert text.startswith("<?xml") and "<svg" in text
    assert 'width="648pt" height="432pt"' in text  # 9 x 6 inches at 72 pt per inch
    assert PLOT_COLORS[0] in text
    pdf = tmp_path / "run.pdf"
    plot_history(snaps[-1], pdf)
    assert pdf.read_bytes().startswith(b"%PDF")


def test_missing_matplotlib_names_the_extra(
    snaps: list[Snapshot], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(DependencyError, match=r"pip install 'wirelearn\[plot\]'") as info:
        plot_history(snaps[-1], tmp_path / "x.png")
    assert info.value.exit_code == 7
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"out": "plot.jpg"}, ConfigError, r"\.png, \.svg, \.pdf"),
        ({"size": (10, 600)}, ConfigError, "size"),
        ({"dpi": 0}, ConfigError, "dpi"),
        ({"time_axis": "frames"}, ConfigError, "seconds, clock"),
        ({"out": "no-such-dir/plot.png"}, OutputError, "no-such-dir"),
    ],
)
def test_bad_arguments(
    snaps: list[Snapshot], tmp_path: Path, kwargs: dict[str, Any], error: type, match: str
) -> None:
    args: dict[str, Any] = {"out": "plot.png"} | kwargs
    out = tmp_path / args.pop("out")
    with pytest.raises(error, match=match):
        plot_history(snaps[-1], out, **args)


def test_bad_metrics_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing\.jsonl"):
        read_metrics(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"ts_last": 1, "models": []}\n{not json\n', encoding="utf-8")
    with pytest.raises(FormatError, match="line 2: not JSON"):
        read_metrics(bad)
    other = tmp_path / "other.jsonl"
    other.write_text('{"hello": 1}\n', encoding="utf-8")
    with pytest.raises(FormatError, match="line 1: not a wirelearn metrics record"):
        read_metrics(other)
    newer = tmp_path / "newer.jsonl"
    newer.write_text('{"version": 99, "ts_last": 1, "models": []}\n', encoding="utf-8")
    with pytest.raises(FormatError, match="version 99 is newer"):
        read_metrics(newer)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(FormatError, match="no metrics records"):
        read_metrics(empty)
    with pytest.raises(InputError, match="nothing to plot"):
        plot_history([], tmp_path / "x.png")


def test_plot_metrics_file(snaps: list[Snapshot], tmp_path: Path) -> None:
    path = metrics_file(snaps, tmp_path / "metrics.jsonl")
    out = plot_metrics_file(path, tmp_path / "cli.svg", size=(640, 480))
    assert out == str(tmp_path / "cli.svg") and "<svg" in Path(out).read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.skipif(not cli_ready(), reason="`wirelearn replay --help` does not exit 0 yet")
def test_wirelearn_replay_metrics_then_wirelearn_plot(tmp_path: Path) -> None:
    pcap, labels = tmp_path / "mixed.pcap", tmp_path / "mixed.labels.csv"
    write_scenario("mixed", pcap, labels, frames=6000, seed=1)
    metrics, png = tmp_path / "m.jsonl", tmp_path / "m.png"
    replay = subprocess.run(
        [
            str(WIRELEARN),
            "replay",
            str(pcap),
            "--labels",
            str(labels),
            "--no-ui",
            "--models",
            "sgd,nb",
            "--batch-size",
            "500",
            "--metrics",
            str(metrics),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert replay.returncode == 0, replay.stderr
    plot = subprocess.run(
        [str(WIRELEARN), "plot", str(metrics), "-o", str(png)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert plot.returncode == 0, plot.stderr
    with Image.open(png) as im:
        assert im.size == (1200, 800)
    px = pixels(png)
    assert count(px, PLOT_COLORS[0]) > 100 and count(px, PLOT_COLORS[1]) > 100
    assert len(read_metrics(metrics)) >= 5


def test_doctests() -> None:
    result = doctest.testmod(wirelearn.plot)
    assert result.attempted > 0 and result.failed == 0
