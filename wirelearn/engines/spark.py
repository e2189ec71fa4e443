"""Spark plumbing: the dependency checks, the ``SparkSession``, and a driver script for ``spark-submit``.

Nothing here imports pyspark at module level: ``wirelearn`` works without the
``spark`` extra, and asking for the Spark engine without it raises
``DependencyError`` with the command that installs it.

Run under ``spark-submit`` with this file as the application::

    spark-submit --master spark://host:7077 \\
        "$(python -c 'import wirelearn.engines.spark as m; print(m.__file__)')" \\
        batch hdfs://nn/captures/ --engine spark --out hdfs://nn/wirelearn/ --target service

Under ``spark-submit`` the session takes its master and configuration from
``spark-submit``; ``--master`` and ``--conf`` given to wirelearn still win.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wirelearn.errors import ConfigError, DependencyError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "INSTALL_JAVA",
    "INSTALL_SPARK",
    "SparkHandle",
    "find_java",
    "main",
    "parse_conf",
    "quiet_spark_warnings",
    "require_spark",
    "spark_session",
]

#: How to install the Python side of the Spark engine.
INSTALL_SPARK = "pip install 'wirelearn[spark]'"
#: How to install the Java runtime Spark needs (Debian/Ubuntu).
INSTALL_JAVA = "apt-get install openjdk-17-jre-headless"
#: The oldest Java that Spark 4 runs on.
MIN_JAVA = 17


def find_java(env: Mapping[str, str] | None = None) -> str:
    """The ``java`` executable Spark will launch, as ``spark-class`` picks it.

    ``$JAVA_HOME/bin/java`` when ``JAVA_HOME`` is set, else ``java`` on ``PATH``.

    Raises:
        DependencyError: neither gives a runnable ``java`` (the message says how to fix it).
    """
    env = os.environ if env is None else env
    home = env.get("JAVA_HOME")
    if home:
        java = os.path.join(home, "bin", "java")
        if os.path.isfile(java) and os.access(java, os.X_OK):
            return java
        raise DependencyError(
            f"JAVA_HOME is {home!r} but {java} is not a runnable java; the spark engine needs"
            f" a Java {MIN_JAVA}+ runtime: fix or unset JAVA_HOME, or {INSTALL_JAVA}"
        )
    java_on_path = shutil.which("java", path=env.get("PATH", ""))
    if java_on_path is None:
        raise DependencyError(
            f"the spark engine needs a Java {MIN_JAVA}+ runtime and no java is on PATH"
            f" (and JAVA_HOME is not set): {INSTALL_JAVA}"
        )
    return java_on_path


def _java_major(java: str) -> int | None:
    """The major version ``java -version`` reports, or None if it says nothing usable."""
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise DependencyError(f"cannot run {java}: {exc}; {INSTALL_JAVA}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    # Java 8 and older call themselves 1.x.
    return int(match.group(2) or 0) if major == 1 else major


def require_spark(env: Mapping[str, str] | None = None, *, check_version: bool = True) -> None:
    """Check that pyspark, pyarrow and a Java runtime are there, before starting anything.

    Args:
        env: the environment to look for Java in (default ``os.environ``).
        check_version: also run ``java -version`` and refuse Java older than 17.

    Raises:
        DependencyError: what is missing and how to install it.
    """
    for module in ("pyspark", "pyarrow"):
        try:
            __import__(module)
        except ImportError as exc:
            raise DependencyError(
                f"the spark engine needs {module}, which is not installed: {INSTALL_SPARK}"
                f" (and a Java {MIN_JAVA}+ runtime: {INSTALL_JAVA})"
            ) from exc
    java = find_java(env)
    if check_version:
        major = _java_major(java)
        if major is not None and major < MIN_JAVA:
            raise DependencyError(
                f"{java} is Java {major}; Spark 4 needs Java {MIN_JAVA} or later: {INSTALL_JAVA}"
            )


def parse_conf(items: Sequence[str] | None) -> dict[str, str]:
    """``--conf k=v`` values as a dict (later ones win).

    >>> parse_conf(["spark.executor.memory=4g", "spark.sql.shuffle.partitions=8"])
    {'spark.executor.memory': '4g', 'spark.sql.shuffle.partitions': '8'}

    Raises:
        ConfigError: an item without ``=`` or with an empty key.
    """
    conf: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--conf {item!r}: expected KEY=VALUE, e.g. spark.executor.memory=4g")
        conf[key.strip()] = value
    return conf


@contextlib.contextmanager
def quiet_spark_warnings() -> Iterator[None]:
    """Hide pyspark's warning that it does not fully support pandas 3 (wirelearn only uses Arrow)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
        )
        yield


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables while the JVM and the context start (both read them then)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _under_spark_submit() -> bool:
    # spark-submit starts the Python driver with the gateway already running.
    return "PYSPARK_GATEWAY_PORT" in os.environ


@dataclass
class SparkHandle:
    """A session and whether this handle started it (then ``close`` stops it).

    Attributes:
        spark: the session.
        owned: True when the session was created here; False when one was already active
            (a test fixture, a notebook, ``spark-submit``'s own), which is left running.
    """

    spark: SparkSession
    owned: bool

    @property
    def master(self) -> str:
        """The master URL the session runs on."""
        return str(self.spark.sparkContext.master)

    def close(self) -> None:
        """Stop the session if this handle started it."""
        if self.owned:
            self.spark.stop()


def spark_session(
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
    *,
    app_name: str = "wirelearn",
) -> SparkHandle:
    """Get the active ``SparkSession`` or start one.

    Args:
        master: the master URL; None means what ``spark-submit`` gave, else ``local[*]``.
        conf: Spark properties (``--conf``); they override wirelearn's defaults.
        app_name: the application name shown by the cluster manager.

    Returns:
        A handle whose ``close()`` stops the session only if it was started here.

    Raises:
        DependencyError: pyspark, pyarrow or Java is missing, or the JVM did not start.
    """
    require_spark()
    from pyspark.sql import SparkSession

    conf = dict(conf or {})
    active = SparkSession.getActiveSession()
    if active is not None:
        for key, value in conf.items():
            with contextlib.suppress(Exception):  # static properties cannot change any more
                active.conf.set(key, value)
        return SparkHandle(active, owned=False)
    builder: Any = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    elif not _under_spark_submit():
        master = "local[*]"
        builder = builder.master(master)
    defaults = {"spark.ui.showConsoleProgress": "false"}
    python: dict[str, str] = {}
    if master is not None and master.startswith("local") and "PYSPARK_PYTHON" not in os.environ:
        # Local workers must run this interpreter: it is the one that has wirelearn.
        defaults["spark.pyspark.python"] = sys.executable
        python["PYSPARK_PYTHON"] = sys.executable
    for key, value in {**defaults, **conf}.items():
        builder = builder.config(key, value)
    try:
        with quiet_spark_warnings(), _environ(python):
            spark: SparkSession = builder.getOrCreate()
    except Exception as exc:
        if type(exc).__name__ in ("PySparkRuntimeError", "Py4JError", "Py4JNetworkError"):
            raise DependencyError(
                f"Spark did not start ({str(exc).strip().splitlines()[0]}); check the Java"
                f" {MIN_JAVA}+ runtime ({INSTALL_JAVA}) and the --master/--conf values"
            ) from exc
        raise
    spark.sparkContext.setLogLevel("ERROR")
    return SparkHandle(spark, owned=True)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``spark-submit`` driver: ``batch ...`` runs the batch command, anything else the CLI.

    Args:
        argv: the arguments after the script (default ``sys.argv[1:]``).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "batch":
        from wirelearn._cli_batch import main as batch_main

        return batch_main(args[1:])
    from wirelearn.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
