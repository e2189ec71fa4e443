"""Engines that run wirelearn beyond one stream: batch jobs (local or Spark) and Spark streaming.

``run_batch`` is ``wirelearn batch``; ``run_spark_stream`` is the receiver of
``wirelearn connect|listen --engine spark``. Importing this package never
imports pyspark: the Spark parts load (and check their dependencies) when used.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from wirelearn.engines._local import (
    BATCH_TARGETS,
    ENGINES,
    SPARK_MODELS,
    BatchConfig,
    BatchOutcome,
    run_local,
)
from wirelearn.engines.spark import require_spark, spark_session

__all__ = [
    "BATCH_TARGETS",
    "ENGINES",
    "SPARK_MODELS",
    "BatchConfig",
    "BatchOutcome",
    "require_spark",
    "run_batch",
    "run_local",
    "run_spark_stream",
    "spark_session",
]


def run_batch(config: BatchConfig) -> BatchOutcome:
    """Run ``wirelearn batch`` on the engine ``config.engine`` names.

    Raises:
        DependencyError: the Spark engine without pyspark, pyarrow or Java.
        WirelearnError: bad inputs, outputs or options.
    """
    if config.engine == "spark":
        require_spark()
        from wirelearn.engines._spark_batch import run_spark

        return run_spark(config)
    return run_local(config)


def run_spark_stream(
    host: str | None,
    port: int,
    args: argparse.Namespace,
    *,
    listen: bool,
    stdout: TextIO | None = None,
) -> int:
    """Run the ``connect``/``listen`` receiver as a Spark Structured Streaming query.

    See ``wirelearn.engines._spark_stream`` for the design and its delivery
    guarantees.

    Args:
        host: the sender to connect to, or the address to bind (None: 127.0.0.1).
        port: its port.
        args: the parsed options of ``connect``/``listen`` (plus ``--master``/``--conf``).
        listen: True for ``listen``, False for ``connect``.
        stdout: where the summary goes (default ``sys.stdout``).

    Returns:
        The exit code.

    Raises:
        DependencyError: pyspark, pyarrow or Java is missing.
    """
    require_spark()
    from wirelearn.engines._spark_stream import run_spark_stream as run

    return run(host, port, args, listen=listen, stdout=stdout)
