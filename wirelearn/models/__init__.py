"""Online learners, labels and the test-then-train evaluator."""

from __future__ import annotations

__all__: list[str] = []
