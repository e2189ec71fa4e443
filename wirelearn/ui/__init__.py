"""The terminal views of a run: the live dashboard, its panels and charts.

Views consume ``Snapshot`` objects only (``wirelearn.models._snapshot``) and
never reach into capture. ``render`` is a pure function of a snapshot and a
terminal size; ``Dashboard`` draws it on rich's own refresh thread.
"""

from __future__ import annotations

from wirelearn.ui._chart import BLOCKS, AccuracyChart, ChartSeries, clock_text, sparkline
from wirelearn.ui._live import MAX_REFRESH_PER_SECOND, Dashboard, should_use_dashboard
from wirelearn.ui._render import (
    BASELINE_STYLE,
    MODEL_STYLES,
    Column,
    LayoutPlan,
    Rows,
    fit_columns,
    layout_plan,
    model_styles,
    render,
    render_waiting,
    table_lines,
)

__all__ = [
    "BASELINE_STYLE",
    "BLOCKS",
    "MAX_REFRESH_PER_SECOND",
    "MODEL_STYLES",
    "AccuracyChart",
    "ChartSeries",
    "Column",
    "Dashboard",
    "LayoutPlan",
    "Rows",
    "clock_text",
    "fit_columns",
    "layout_plan",
    "model_styles",
    "render",
    "render_waiting",
    "should_use_dashboard",
    "sparkline",
    "table_lines",
]
