"""The dashboard: render() as a pure function of real snapshots, the chart, and the Live runner.

Snapshots come from the real pipeline parts: the scenario generator's labelled
frames, the vectorized decoder, real online models and anomaly detector, and
the ``Evaluator``; they are drawn on fixed-size consoles writing to StringIO.
"""

from __future__ import annotations

import dataclasses
import doctest
import threading
import time
from collections.abc import Iterator
from io import StringIO
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console
from rich.live import _RefreshThread

import wirelearn.ui
from wirelearn.errors import ConfigError
from wirelearn.features import FeatureBatch, decode, ip_to_text, mac_to_text
from wirelearn.features._mac import MacEncoder, vendor_names
from wirelearn.features._scale import OnlineScaler
from wirelearn.models import AnomalyDetector, make_model
from wirelearn.models._evaluate import Evaluator, LabelledBatch, prequential
from wirelearn.models._snapshot import RecentFrame, Snapshot, SourceStatus
from wirelearn.scenarios import generate
from wirelearn.ui import (
    AccuracyChart,
    ChartSeries,
    Column,
    Dashboard,
    _chart,
    _live,
    _render,
    clock_text,
    fit_columns,
    layout_plan,
    render,
    should_use_dashboard,
    sparkline,
)

SIZES = [(80, 24), (120, 40), (200, 60)]
BRAILLE = {chr(c) for c in range(0x2801, 0x2900)}


class SmallFeaturizer:
    """A few numeric header columns, scaled online, and first-seen MAC codes."""

    def __init__(self) -> None:
        self.macs = MacEncoder()
        self.scaler = OnlineScaler()

    def transform(self, fb: FeatureBatch) -> np.ndarray:
        cols = (fb.frame_len, fb.ethertype, fb.ip_proto, fb.sport, fb.dport, fb.ttl, fb.tcp_flags)
        X = np.column_stack(cols).astype(np.float64)
        self.scaler.partial_fit(X)
        return self.scaler.transform(X)

    def mac_codes(self, fb: FeatureBatch) -> tuple[np.ndarray, np.ndarray]:
        return self.macs.encode(fb.dst_mac), self.macs.encode(fb.src_mac)


def run_scenario(frames: int = 6000, batch: int = 300, *, anomaly: bool = True) -> list[Snapshot]:
    """Every snapshot of a real test-then-train run over the 'mixed' scenario."""
    batches = list(generate("mixed", frames=frames, seed=3, batch_size=batch))
    total = sum(int(b.caplen.sum()) + 16 * len(b) for b, _ in batches) + 24
    read = {"bytes": 24}

    def status() -> SourceStatus:
        return SourceStatus(name="mixed.pcap", bytes_read=read["bytes"], bytes_total=total)

    def stream() -> Iterator[LabelledBatch]:
        for b, y in batches:
            read["bytes"] += int(b.caplen.sum()) + 16 * len(b)
            yield LabelledBatch(frames=b, features=decode(b), labels=y)

    detector = None
    if anomaly:
        detector = AnomalyDetector(
            grace_frames=1000, n_trees=16, refit_trees=4, threshold_quantile=0.95
        )
    ev = Evaluator(
        {"sgd": make_model("sgd"), "nb": make_model("nb"), "pa": make_model("pa")},
        SmallFeaturizer(),
        baseline=make_model("baseline"),
        anomaly=detector,
        source_status=status,
        vendor_names=lambda m: vendor_names(m, short=True),
        mac_text=mac_to_text,
        ip_text=ip_to_text,
    )
    return list(prequential(stream(), ev))


@pytest.fixture(scope="module")
def snaps() -> list[Snapshot]:
    return run_scenario()


@pytest.fixture(scope="module")
def snap(snaps: list[Snapshot]) -> Snapshot:
    """The last mini-batch's snapshot (not the final one): mid-run, with alerts."""
    s = snaps[-2]
    assert s.anomaly is not None and s.anomaly.latest_alerts, "the fixture run should alert"
    return s


def draw(renderable: Any, width: int, height: int, *, color: bool = False) -> str:
    console = Console(
        file=StringIO(),
        width=width,
        height=height,
        color_system="truecolor" if color else None,
        force_terminal=color,
        legacy_windows=False,
        _environ={},
    )
    console.print(renderable)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def text_of(snapshot: Snapshot, width: int, height: int, **kw: Any) -> str:
    out = draw(
        render(snapshot, width=width, height=height, elapsed=12.5, utc=True, **kw), width, height
    )
    lines = out.splitlines()
    assert len(lines) <= height, f"{len(lines)} lines for a {height}-row terminal"
    for line in lines:
        assert cell_len(line) <= width, f"line wider than {width}: {line!r}"
    return out


# --- render() at fixed sizes ------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), SIZES, ids=lambda v: str(v))
def test_header_and_models_at_every_size(snap: Snapshot, width: int, height: int) -> None:
    out = text_of(snap, width, height)
    header = "\n".join(out.splitlines()[:5])
    assert "wirelearn" in header and "mixed.pcap" in header and "[EN10MB]" in header
    assert "elapsed 0:00:12" in header
    assert f"frames {snap.frames:,}" in header
    assert f"{snap.rate_fps:,.0f} fr/s" in header and f"{snap.rate_mbps:,.2f} Mbit/s" in header
    # Replaying a file: a progress bar with the share read and an ETA from the wall clock.
    src = snap.source
    assert src.bytes_total
    assert f"{100 * src.bytes_read / src.bytes_total:5.1f}%" in header and "ETA " in header
    assert snap.anomaly is not None and snap.anomaly.threshold is not None
    assert f"anomaly {snap.anomaly.alerts:,} alerts" in header
    # Every model, its rolling accuracy, the baseline as a row, and the best marked.
    for m in snap.models:
        row = next(
            line for line in out.splitlines() if f" {m.name} " in line or f"*{m.name} " in line
        )
        assert f"{100 * m.rolling_accuracy:.1f}%" in row
        assert f"{m.learned:,}" in row
        assert any(ch in row for ch in _chart.BLOCKS), "no sparkline in the model row"
    assert snap.best is not None and f"*{snap.best} " in out
    assert "  baseline " in out or " baseline " in out


@pytest.mark.parametrize(("width", "height"), SIZES, ids=lambda v: str(v))
def test_recent_frames_show_macs_vendors_and_labels(
    snap: Snapshot, width: int, height: int
) -> None:
    out = text_of(snap, width, height)
    last = snap.recent[-1]
    assert last.src_mac and last.src_vendor and last.dst_mac
    assert "recent frames" in out
    # Narrow: Wireshark's Vendor_xx:yy:zz; wide: the full address and the vendor.
    short = f"{last.src_vendor}_{last.src_mac[9:]}"
    full = f"{last.src_mac} {last.src_vendor}"
    assert (full if width >= 200 else short) in out
    assert last.label is not None and last.label in out
    if width >= 120:
        assert "codes" in out and f"{last.src_code}→{last.dst_code}" in out
        assert last.ip_src is not None and last.ip_src in out
    else:
        assert "codes" not in out


def test_panels_that_drop_out_at_80x24(snap: Snapshot) -> None:
    plan = layout_plan(snap, 80, 24)
    assert plan.panels == ("header", "models", "recent")
    out = text_of(snap, 80, 24)
    assert "rolling accuracy over capture time" not in out
    assert "traffic" not in out and "anomaly alerts" not in out
    assert not BRAILLE.intersection(out)
    # A short recent-frames table still fits: heading plus several rows.
    assert plan.recent - 3 >= 5
    # The header keeps the anomaly state even without the alerts panel.
    assert "anomaly " in out


@pytest.mark.parametrize(("width", "height"), SIZES[1:], ids=lambda v: str(v))
def test_chart_traffic_and_alerts_join_on_larger_terminals(
    snap: Snapshot, width: int, height: int
) -> None:
    plan = layout_plan(snap, width, height)
    assert plan.panels == ("header", "models", "alerts", "chart", "traffic", "recent")
    out = text_of(snap, width, height)
    # Chart: y axis labels, braille line glyphs, capture-time labels and the legend.
    assert "rolling accuracy over capture time" in out
    assert "100%┤" in out and "  0%┤" in out and " 50%┤" in out
    assert BRAILLE.intersection(out)
    assert clock_text(snap.history[0].ts, utc=True) in out
    assert clock_text(snap.history[-1].ts, utc=True) in out
    assert "┄┄ baseline" in out and f"━━ {snap.best}" in out
    legend = next(line for line in out.splitlines() if "┄┄ baseline" in line)
    assert legend.split("━━ ")[1].split()[0] == snap.best  # the best model is listed first
    # Traffic: top talkers (MAC with vendor, IP) and the protocol mixes.
    mac, vendor, frames, _ = snap.traffic.top_macs[0]
    assert f"{mac} {vendor}" in out and f"{frames:,}" in out
    ip = snap.traffic.top_ips[0][0]
    assert ip in out
    assert "ethertypes" in out and "IP protocols" in out
    assert snap.traffic.ethertypes[0][0] == "IPv4" and "IPv4 █" in out
    # Alerts: threshold, counts, and the newest alert with its score against the threshold.
    a = snap.anomaly
    assert a is not None and a.threshold is not None
    newest = a.latest_alerts[-1]
    assert "anomaly alerts" in out and f"threshold {a.threshold:.4g}" in out
    row = next(line for line in out.splitlines() if f"{int(newest['frame']):,} " in line)
    assert f"{newest['score']:.4f}" in row and f"×{newest['score'] / a.threshold:.2f}" in row


def test_layout_order_on_narrow_and_tall_or_tiny_terminals(snap: Snapshot) -> None:
    assert layout_plan(snap, 80, 30).panels == ("header", "models", "chart", "recent")
    assert layout_plan(snap, 80, 60).panels == (
        "header",
        "models",
        "chart",
        "traffic",
        "alerts",
        "recent",
    )
    assert layout_plan(snap, 200, 24).panels == ("header", "models", "alerts", "recent")
    assert layout_plan(snap, 60, 14).panels == ("header", "models")
    # Too few rows for every model: the best and the baseline stay.
    plan = layout_plan(snap, 80, 10)
    assert plan.model_rows == 2
    out = text_of(snap, 80, 10)
    assert f"*{snap.best}" in out and "baseline" in out
    others = [m.name for m in snap.models if m.name not in (snap.best, "baseline")]
    assert not any(f" {name} " in out for name in others)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(width=st.integers(1, 230), height=st.integers(1, 70), index=st.integers(0, 19))
def test_any_size_fits_without_wrapping(
    snaps: list[Snapshot], width: int, height: int, index: int
) -> None:
    snapshot = snaps[min(index, len(snaps) - 1)]
    out = draw(render(snapshot, width=width, height=height, elapsed=3.0), width, height)
    lines = out.splitlines()
    assert len(lines) == height
    assert all(cell_len(line) == width for line in lines)


@pytest.mark.parametrize(("width", "height"), [*SIZES, (33, 12)], ids=lambda v: str(v))
def test_wide_characters_and_long_names_still_fit(snap: Snapshot, width: int, height: int) -> None:
    wide = "株式会社テスト電機"  # 2 cells per character
    recent = tuple(
        dataclasses.replace(r, src_vendor=wide, label="ラベル", prediction="ラベル")
        for r in snap.recent
    )
    mac, _, frames, nbytes = snap.traffic.top_macs[0]
    traffic = dataclasses.replace(snap.traffic, top_macs=((mac, wide, frames, nbytes),))
    source = dataclasses.replace(snap.source, name="/very/long/" + "capture-" * 30 + ".pcapng")
    s = dataclasses.replace(snap, recent=recent, traffic=traffic, source=source)
    out = text_of(s, width, height)
    assert len(out.splitlines()) == height
    assert all(cell_len(line) == width for line in out.splitlines())
    assert "/very/long/" in out  # the source is cut, not dropped


def test_render_is_pure(snap: Snapshot) -> None:
    a = text_of(snap, 120, 40)
    b = text_of(snap, 120, 40)
    assert a == b
    assert text_of(snap, 120, 40, now_wall=None) == a


def test_row_colours_follow_label_agreement_and_alerts(snap: Snapshot) -> None:
    base = snap.recent[-1]
    # Frame lengths 901..904 tell the rows apart in the "len" column.
    rows = (
        dataclasses.replace(base, length=901, label="benign", prediction="benign", alert=False),
        dataclasses.replace(base, length=902, label="benign", prediction="portscan", alert=False),
        dataclasses.replace(base, length=903, label=None, prediction="benign", alert=False),
        dataclasses.replace(base, length=904, label="synflood", prediction="synflood", alert=True),
    )
    s = dataclasses.replace(snap, recent=rows)
    console = Console(
        width=120, height=40, color_system="truecolor", legacy_windows=False, _environ={}
    )
    lines = console.render_lines(render(s, width=120, height=40, elapsed=1.0), pad=False)

    def segment(length: int, text: str) -> Any:
        line = next(ln for ln in lines if f" {length} " in "".join(seg.text for seg in ln))
        return next(seg for seg in line if text in seg.text)

    agree = segment(901, " 901 ").style
    assert agree.color.name == "green" and not agree.bold
    assert segment(902, " 902 ").style.color.name == "red"
    assert segment(903, " 903 ").style.dim
    alerted = segment(904, " 904 ").style
    assert alerted.color.name == "green" and alerted.bold
    marker = segment(904, "!").style
    assert marker.bold and marker.color.name == "red"


def test_grace_period_and_runs_without_anomaly(snaps: list[Snapshot]) -> None:
    early = snaps[1]
    assert early.anomaly is not None and early.anomaly.threshold is None
    out = text_of(early, 200, 60)
    assert "anomaly grace" in out and "grace period" in out
    plain = run_scenario(frames=900, batch=300, anomaly=False)[-1]
    out = text_of(plain, 200, 60)
    assert "anomaly" not in out and "score" not in out
    assert layout_plan(plain, 200, 60).panels == ("header", "models", "chart", "traffic", "recent")


def test_live_source_header_shows_drops_queue_lag_and_sampling(snap: Snapshot) -> None:
    live = dataclasses.replace(
        snap,
        source=SourceStatus(name="eth0", linktypes=("EN10MB",), kernel_drops=1234, queue_depth=7),
        sampling_ratio=0.25,
    )
    out = text_of(live, 200, 60, now_wall=snap.ts_last + 0.5)
    assert "eth0" in out and "drops 1,234" in out and "queue 7" in out
    assert "learning 25% sampled" in out and "lag 0.5s" in out and "ETA" not in out


def test_waiting_screen_fits() -> None:
    out = draw(wirelearn.ui.render_waiting(width=90, height=24, elapsed=2.0, source="eth0"), 90, 24)
    assert "waiting for the first frames from eth0…  elapsed 0:00:02" in out
    assert len(out.splitlines()) == 3
    narrow = draw(wirelearn.ui.render_waiting(width=30, height=2, elapsed=2.0), 30, 2)
    assert len(narrow.splitlines()) == 2 and all(cell_len(x) == 30 for x in narrow.splitlines())


def test_bad_size_is_a_config_error(snap: Snapshot) -> None:
    with pytest.raises(ConfigError, match="terminal size"):
        render(snap, width=0, height=10, elapsed=0.0)


# --- the chart and the small renderables ------------------------------------------------------


def chart_rows(series: list[ChartSeries], width: int, height: int) -> list[str]:
    out = draw(AccuracyChart(series, height=height, utc=True), width, height)
    return out.splitlines()


def test_chart_constant_series_draws_top_and_bottom_rows() -> None:
    t = [1_700_000_000.0, 1_700_000_060.0]
    rows = chart_rows(
        [ChartSeries.of("hi", t, [1.0, 1.0]), ChartSeries.of("lo", t, [0.0, 0.0])], 30, 8
    )
    assert len(rows) == 8 and all(cell_len(r) == 30 for r in rows)
    # 100 %: the top dot row of every cell (dots 1 and 4) -> U+2809 across the top line.
    assert rows[0] == "100%┤" + "⠉" * 25
    # 0 %: the bottom dot row (dots 7 and 8) -> U+28C0 across the last plot line.
    assert rows[5] == "  0%┤" + "⣀" * 25
    assert all(set(r[5:]) == {" "} for r in rows[1:5])
    assert rows[6].split() == ["22:13:20", "22:14:20"]
    # Legend: the line drawn on top (last) first.
    assert rows[7].split() == ["━━", "lo", "━━", "hi"]


def test_chart_step_draws_a_vertical_line_at_the_step_time() -> None:
    # Flat at 0 % then at 100 % from the middle of the time axis.
    t = np.array([0.0, 49.999, 50.0, 100.0]) + 1_700_000_000
    rows = chart_rows([ChartSeries.of("step", t, [0.0, 0.0, 1.0, 1.0])], 25, 6)
    plot = [r[5:] for r in rows[:4]]  # 20 cells = 40 dot columns x 16 dot rows
    # Dot columns: t=49.999 -> 19 (cell 9, right), t=50 -> 20 (cell 10, left). The jump
    # from dot row 15 to 0 is split: column 19 draws rows 8..15, column 20 rows 0..7.
    assert plot[0] == " " * 10 + "⡏" + "⠉" * 9  # left column rows 0-3 + right top dot
    assert plot[1] == " " * 10 + "⡇" + " " * 9  # left column rows 4-7
    assert plot[2] == " " * 9 + "⢸" + " " * 10  # right column rows 8-11
    assert plot[3] == "⣀" * 9 + "⣸" + " " * 10  # bottom dots + right column rows 12-15
    assert rows[1][:5] == "    │" and rows[0][:5] == "100%┤" and rows[3][:5] == "  0%┤"


def test_chart_uses_the_width_it_is_given_and_skips_nan() -> None:
    t = np.linspace(1_700_000_000, 1_700_000_600, 50)
    full = ChartSeries.of("full", t, np.full(50, 1.0))
    late = ChartSeries.of("late", t, np.where(np.arange(50) < 25, np.nan, 0.0))
    for width in (12, 40, 90):
        rows = chart_rows([full, late], width, 10)
        assert all(cell_len(r) == width for r in rows)
    rows = chart_rows([full, late], 45, 10)
    # Undefined (nan) accuracy in the first half is left blank, not drawn at 0 %.
    assert rows[0] == "100%┤" + "⠉" * 40
    assert rows[7][:5] == "  0%┤" and rows[7][5:25].strip() == "" and set(rows[7][26:]) == {"⣀"}
    with pytest.raises(ConfigError, match="2 times but 3 values"):
        ChartSeries.of("bad", [1, 2], [0.1, 0.2, 0.3])


def test_chart_from_history_colours_and_order(snap: Snapshot) -> None:
    styles = _render.model_styles(snap)
    assert styles["baseline"] == _render.BASELINE_STYLE
    chart = AccuracyChart.from_history(snap.history, styles)
    assert chart.series[0].name == "baseline" and chart.series[0].dashed
    assert {s.name for s in chart.series} == {m.name for m in snap.models}
    bits, owner = chart.dots(60, 10)
    assert bits.any() and set(np.unique(owner).tolist()) <= {-1, 0, 1, 2, 3}


def test_sparkline_blocks() -> None:
    assert sparkline([0.0, 0.5, 1.0], 3) == "▁▅█"
    assert sparkline([0.0, 0.5, 1.0], 2) == "▅█"
    assert sparkline([float("nan"), 1.2, -1], 5) == " █▁"
    assert sparkline([], 4) == "" and sparkline([0.3], 0) == ""


def test_fit_columns_by_priority_and_growth() -> None:
    cols: list[Column[int]] = [
        Column("a", 4, 4, 0, lambda x, w: "a"),
        Column("b", 5, 9, 2, lambda x, w: "b"),
        Column("c", 6, 10, 1, lambda x, w: "c", grow=5),
    ]
    assert [(c.header, w) for c, w in fit_columns(cols, 4)] == [("a", 4)]
    # c (priority 1) does not fit in 10; the narrower b (priority 2) does.
    assert [(c.header, w) for c, w in fit_columns(cols, 10)] == [("a", 4), ("b", 5)]
    assert [(c.header, w) for c, w in fit_columns(cols, 17)] == [("a", 4), ("b", 5), ("c", 6)]
    # Spare cells go to b before c (c grows last).
    assert [(c.header, w) for c, w in fit_columns(cols, 21)] == [("a", 4), ("b", 9), ("c", 6)]
    lines = _render.table_lines(fit_columns(cols, 21), [1, 2])
    assert [line.plain for line in lines] == [
        "a    b         c     ",
        *["a    b         c     "] * 2,
    ]


# --- the Live runner --------------------------------------------------------------------------


def terminal(width: int = 120, height: int = 40) -> Console:
    return Console(
        file=StringIO(),
        width=width,
        height=height,
        force_terminal=True,
        color_system=None,
        legacy_windows=False,
        _environ={},
    )


def wait_for(pred: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.01)


def test_dashboard_draws_on_rich_thread_and_update_never_blocks(
    snap: Snapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []
    entered = threading.Event()
    release = threading.Event()
    real = _live.render

    def slow_render(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread())
        entered.set()
        release.wait(5)
        return real(*args, **kwargs)

    monkeypatch.setattr(_live, "render", slow_render)
    console = terminal()
    with Dashboard(console, refresh_per_second=4, cpu_budget=1.0) as dash:
        dash.update(snap)
        assert entered.wait(5), "Live never refreshed on its own"
        # Drawing is in progress (and holding Live's lock): update() must not wait for it.
        worst = 0.0
        for s in (snap, snap, snap) * 300:
            t0 = time.perf_counter()
            dash.update(s)
            worst = max(worst, time.perf_counter() - t0)
        assert worst < 0.005, f"update() took {worst * 1e3:.1f} ms"
        release.set()
        wait_for(lambda: dash.renders >= 1 and "recent frames" in console.file.getvalue())  # type: ignore[attr-defined]
    assert threads and all(t is not threading.main_thread() for t in threads)
    assert all(isinstance(t, _RefreshThread) for t in threads)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "mixed.pcap" in out and f"*{snap.best}" in out
    # Exit restores the terminal: cursor shown, alternate screen left, thread gone.
    assert out.rstrip("\n").endswith("\x1b[?1049l") and "\x1b[?25h" in out
    assert "\x1b[?1049h" in out and "\x1b[?25l" in out
    assert not any(isinstance(t, _RefreshThread) for t in threading.enumerate())


def test_dashboard_waits_for_first_snapshot_then_caches_frames(snap: Snapshot) -> None:
    console = terminal(100, 30)
    clock = {"t": 100.0}
    with Dashboard(
        console, refresh_per_second=4, cpu_budget=1.0, get_time=lambda: clock["t"], screen=False
    ) as dash:
        wait_for(lambda: "waiting for the first frames" in console.file.getvalue())  # type: ignore[attr-defined]
        clock["t"] = 112.0
        dash.update(snap)
        wait_for(lambda: dash.renders >= 1)
        time.sleep(0.8)  # a few more refreshes of the same snapshot at the same second
    assert dash.renders == 1 and dash.refreshes >= 3
    assert "elapsed 0:00:12" in console.file.getvalue()  # type: ignore[attr-defined]


def test_dashboard_cpu_budget_skips_refreshes(snap: Snapshot) -> None:
    console = terminal(200, 60)
    with Dashboard(console, refresh_per_second=4, cpu_budget=1e-4) as dash:
        dash.update(snap)
        wait_for(lambda: dash._live is not None and dash._live.refreshes >= 1)
        time.sleep(1.0)
    # One refresh costs milliseconds: at 0.01 % of a CPU the next is minutes away.
    assert dash.refreshes == 1 and dash.skipped >= 2 and dash.cpu_spent > 0


def test_dashboard_reports_a_drawing_bug_at_exit(
    snap: Snapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("bug in a panel")

    monkeypatch.setattr(_live, "render", broken)
    console = terminal()
    dash = Dashboard(console)

    def run() -> None:
        with dash:
            dash.update(snap)
            wait_for(lambda: dash.error is not None)
            wait_for(lambda: "dashboard error" in console.file.getvalue())  # type: ignore[attr-defined]

    # The run goes on (capture must not stop for a drawing bug), but exit re-raises it.
    with pytest.raises(ZeroDivisionError, match="bug in a panel"):
        run()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"refresh_per_second": 0}, "refresh_per_second"),
        ({"refresh_per_second": 10}, "at most 4"),
        ({"cpu_budget": 0}, "cpu_budget"),
        ({"cpu_budget": 1.5}, "cpu_budget"),
    ],
)
def test_dashboard_rejects_bad_settings(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Dashboard(terminal(), **kwargs)


@pytest.mark.parametrize(
    ("isatty", "no_ui", "json_out", "env", "expected"),
    [
        (True, False, False, {"TERM": "xterm-256color"}, True),
        (True, False, False, {}, True),
        (False, False, False, {"TERM": "xterm"}, False),
        (True, True, False, {"TERM": "xterm"}, False),
        (True, False, True, {"TERM": "xterm"}, False),
        (True, False, False, {"TERM": "dumb"}, False),
        (True, False, False, {"TERM": "xterm", "CI": "true"}, False),
        (True, False, False, {"TERM": "xterm", "CI": "1"}, False),
        (True, False, False, {"TERM": "xterm", "CI": ""}, True),
        (True, False, False, {"TERM": "xterm", "CI": "false"}, True),
    ],
)
def test_should_use_dashboard(
    isatty: bool, no_ui: bool, json_out: bool, env: dict[str, str], expected: bool
) -> None:
    assert should_use_dashboard(isatty, no_ui, json_out, env) is expected


# --- module hygiene ---------------------------------------------------------------------------


def test_exported_members() -> None:
    public = {name for name in dir(wirelearn.ui) if not name.startswith("_")}
    modules = {"wirelearn", "ui"}
    assert set(wirelearn.ui.__all__) == public - modules - {"annotations"}


@pytest.mark.parametrize("module", [_chart, _render, _live], ids=lambda m: m.__name__)
def test_doctests(module: Any) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_recent_frame_fields_are_all_known() -> None:
    # The recent-frames table reads these fields; a schema change must show up here.
    used = {"frame", "ts", "src_mac", "dst_mac", "src_vendor", "dst_vendor", "src_code"}
    used |= {"dst_code", "ethertype", "length", "ip_src", "ip_dst", "proto", "sport", "dport"}
    used |= {"label", "prediction", "score", "alert"}
    assert used == {f.name for f in dataclasses.fields(RecentFrame)}
