"""The ``wirelearn batch`` command, and the ``--engine``/``--master``/``--conf`` options.

``wirelearn.cli.build_parser`` calls ``add_batch_command(sub)``; ``connect`` and
``listen`` call ``add_engine_options(parser)`` and, for ``--engine spark``,
``wirelearn.engines.run_spark_stream``. Nothing heavy is imported until a
command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from wirelearn.errors import EXIT_ABORTED, EXIT_INTERNAL, InputError, WirelearnError

if TYPE_CHECKING:
    from wirelearn.engines import BatchConfig

__all__ = [
    "add_batch_command",
    "add_engine_options",
    "build_parser",
    "cmd_batch",
    "config_from_args",
    "main",
]

_ENGINES = ("local", "spark")
_TARGETS = ("service", "labels", "rules")

_EPILOG = """\
outputs (with --out DIR):
  DIR/features/date=YYYY-MM-DD/source_file=.../*.parquet   the columns of `read --json`,
                                                            plus source_file, date and label
  DIR/models/<name>    trained models (Spark: MLlib PipelineModel; local: skops files)
  DIR/metrics.json     the scores, the time split and per-file counts

labels: --target service derives them from the traffic; --label-rule NAME=BPF from
filters; --labels FILE.csv labels a single capture file; --labels auto gives each
capture the <stem>.labels.csv (else <stem>.ranges.csv) next to it, where <stem> is
its name without .gz and its last extension (mixed.pcap -> mixed.labels.csv).

evaluation is time-ordered: the labelled frames are ordered by ts and cut into
windows; each window after the first is predicted by models trained only on the
windows before it (--train-fraction F: two windows, cut at F; --windows N: N windows).
"""


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return v


def _whole(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {v}")
        return v

    return parse


def add_engine_options(p: argparse.ArgumentParser, *, default: str = "local") -> None:
    """Add ``--engine local|spark``, ``--master URL`` and ``--conf K=V`` to a command.

    Args:
        p: the command's parser.
        default: the engine when ``--engine`` is not given.
    """
    g = p.add_argument_group("engine")
    g.add_argument(
        "--engine",
        choices=_ENGINES,
        default=default,
        help=f"run on this machine (local) or on Apache Spark (spark); default {default}",
    )
    g.add_argument(
        "--master",
        metavar="URL",
        help="Spark master URL, e.g. local[4], spark://host:7077, yarn"
        " (default: spark-submit's, else local[*])",
    )
    g.add_argument(
        "--conf",
        action="append",
        metavar="KEY=VALUE",
        help="a Spark property, e.g. spark.executor.memory=4g (repeatable)",
    )


def add_batch_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Register ``wirelearn batch`` on the CLI's subparsers and return its parser."""
    p = sub.add_parser(
        "batch",
        help="extract features of many captures to Parquet and train in time order (local or Spark)",
        description="Read pcap/pcapng files and directories (recursively, recognised by\n"
        "content; local paths or, with --engine spark, Hadoop URIs such as hdfs://\n"
        "and s3a://), write their feature columns as a Parquet dataset partitioned\n"
        "by date and source file, and with a target train and evaluate models in\n"
        "time order.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="capture files or directories")
    p.add_argument("--out", metavar="DIR", help="write features/, models/ and metrics.json to DIR")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an earlier run's output in DIR"
    )
    add_engine_options(p)
    g = p.add_argument_group("learning")
    g.add_argument(
        "--target", choices=_TARGETS, help="what to learn (default: from the label options)"
    )
    g.add_argument(
        "--label-rule",
        action="append",
        metavar="NAME=BPF",
        help="label frames matching BPF as NAME (repeatable, first match wins)",
    )
    g.add_argument(
        "--default-label", metavar="NAME", help="label of frames no --label-rule matches"
    )
    g.add_argument(
        "--labels",
        metavar="FILE.csv|auto",
        help="frame,label or ts_start,ts_end,label for a single capture; auto: <stem>.labels.csv"
        " next to each capture",
    )
    g.add_argument(
        "--models",
        metavar="A,B,...",
        help="spark: svm,logistic,nb,rf; local: also sgd,pa,perceptron (default svm,logistic,nb,rf)",
    )
    g.add_argument(
        "--features", metavar="A,B,...", help="model inputs (default: all but the target's)"
    )
    split = g.add_mutually_exclusive_group()
    split.add_argument(
        "--train-fraction",
        type=_fraction,
        default=0.7,
        metavar="F",
        help="train on the first F of the labelled frames in time, test on the rest (default 0.7)",
    )
    split.add_argument(
        "--windows",
        type=_whole(2),
        metavar="N",
        help="cut the labelled frames into N time windows; test each on the windows before it",
    )
    g.add_argument(
        "--no-train",
        action="store_true",
        help="only write the (labelled) features: no training",
    )
    g.add_argument("--seed", type=_whole(0), default=0, help="random seed (default 0)")
    g.add_argument(
        "--batch-size",
        type=_whole(1),
        default=65536,
        metavar="N",
        help="frames read and decoded at once (default 65536)",
    )
    p.set_defaults(func=cmd_batch)
    return p


def _names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(x.strip() for x in text.split(",") if x.strip())


def config_from_args(args: argparse.Namespace) -> BatchConfig:
    """The ``BatchConfig`` of parsed ``batch`` options (checked).

    Raises:
        ConfigError: a bad option or combination.
    """
    from wirelearn.engines import BatchConfig
    from wirelearn.engines.spark import parse_conf

    return BatchConfig(
        paths=tuple(args.paths),
        engine=args.engine,
        out=args.out,
        overwrite=args.overwrite,
        master=args.master,
        conf=parse_conf(args.conf),
        target=args.target,
        rules=tuple(args.label_rule or ()),
        default_label=args.default_label,
        labels=args.labels,
        models=_names(args.models),
        features=_names(args.features),
        train_fraction=args.train_fraction,
        windows=args.windows,
        seed=args.seed,
        batch_size=args.batch_size,
        train=not args.no_train,
    )


def cmd_batch(args: argparse.Namespace) -> int:
    """``wirelearn batch``: extract, write, train and report; return the exit code."""
    from wirelearn.engines import run_batch

    config = config_from_args(args)
    outcome = run_batch(config)
    outcome.print_report(sys.stdout, sys.stderr)
    if not outcome.captures:
        raise InputError("no pcap or pcapng captures among " + ", ".join(config.paths))
    failed = [f for f in outcome.files if f.error]
    if failed:
        raise InputError(
            f"{len(failed)} of {len(outcome.captures)} captures ended with an error (see the"
            " warnings); their frames before it were kept"
        )
    if config.out is not None:
        print(f"wirelearn: wrote {os.path.join(config.out, 'features')}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """A parser with only the ``batch`` command (until ``wirelearn.cli`` registers it)."""
    parser = argparse.ArgumentParser(prog="wirelearn")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_batch_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``wirelearn batch ARGS`` (``argv`` without the word ``batch``); return the exit code."""
    args = build_parser().parse_args(["batch", *(sys.argv[1:] if argv is None else argv)])
    try:
        code = int(args.func(args))
    except WirelearnError as exc:
        print(f"wirelearn: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        print("wirelearn: interrupted", file=sys.stderr)
        code = EXIT_ABORTED
    except Exception:
        traceback.print_exc()
        print(
            "wirelearn: internal error (a bug): please report it with the traceback above",
            file=sys.stderr,
        )
        code = EXIT_INTERNAL
    with contextlib.suppress(OSError):
        sys.stdout.flush()
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
