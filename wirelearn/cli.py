"""The ``wirelearn`` command line: argument parsing, wiring sources into views, exit codes.

Every command maps user errors (``WirelearnError``) to a one-line message on
stderr and the exit code in ``wirelearn.errors``; anything else is a bug and
prints a traceback (exit 70).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Sequence

from wirelearn import __version__
from wirelearn._signals import Interrupted, install_early_sigterm
from wirelearn.errors import EXIT_INTERNAL, ConfigError, WirelearnError

__all__ = ["build_parser", "main"]


# --- option groups ------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {v}")
    return v


def _non_negative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return v


def _add_stream_options(p: argparse.ArgumentParser, *, write: bool = True) -> None:
    g = p.add_argument_group("stream")
    g.add_argument(
        "-c",
        "--count",
        type=_non_negative_int,
        metavar="COUNT",
        help="stop after COUNT frames (after the filter)",
    )
    g.add_argument(
        "--duration", type=_positive_float, metavar="S", help="stop after S seconds of capture time"
    )
    g.add_argument(
        "-f", "--filter", metavar="BPF", help="libpcap filter expression, as tcpdump takes"
    )
    if write:
        g.add_argument(
            "-w",
            "--write",
            metavar="OUT",
            help="write the frames that passed to OUT (.pcapng or .pcap)",
        )


def _add_view_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("views")
    g.add_argument(
        "--no-ui",
        action="store_true",
        help="no live dashboard: a progress line on stderr and the summary",
    )
    out = g.add_mutually_exclusive_group()
    out.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per frame on stdout, with label and predictions",
    )
    out.add_argument("--csv", action="store_true", help="CSV per frame on stdout")
    g.add_argument(
        "--metrics", metavar="FILE", help="write the snapshot history to FILE (.jsonl or .csv)"
    )
    g.add_argument(
        "--plot",
        metavar="FILE",
        help="draw accuracy and anomaly score over time to FILE (.png/.svg) at exit",
    )
    g.add_argument(
        "--progress-every", type=_positive_float, default=5.0, metavar="S", help=argparse.SUPPRESS
    )


def _add_learning_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("learning")
    g.add_argument(
        "--models",
        metavar="A,B,...",
        help="models to run: sgd,svm,logistic,pa,perceptron,nb,rf (default: all)",
    )
    g.add_argument(
        "--sgd-loss",
        choices=("hinge", "log_loss", "modified_huber"),
        help="loss of the sgd model (default hinge)",
    )
    g.add_argument(
        "--target",
        choices=("service", "anomaly"),
        help="derived target (default: service, or the label options)",
    )
    g.add_argument(
        "--label-rule",
        action="append",
        metavar="NAME=BPF",
        help="label frames matching BPF as NAME (repeatable, first match wins)",
    )
    g.add_argument(
        "--default-label",
        metavar="NAME",
        help="label of frames no --label-rule matches (else unlabelled)",
    )
    g.add_argument(
        "--labels",
        metavar="FILE.csv",
        help="per-frame labels: header frame,label or ts_start,ts_end,label",
    )
    g.add_argument(
        "--normal-label",
        default="benign",
        metavar="NAME",
        help="the label of normal traffic, for anomaly scoring (default benign)",
    )
    g.add_argument(
        "--features",
        metavar="A,B,...",
        help="model inputs to use (default: all but those defining the target)",
    )
    g.add_argument(
        "--batch-size",
        type=_positive_int,
        default=65536,
        metavar="N",
        help="frames per mini-batch (default 65536); the first mini-batches are learned "
        "in growing steps, so learning starts at once",
    )
    g.add_argument(
        "--batch-interval",
        type=_positive_float,
        metavar="S",
        help="also close a mini-batch after S s of capture time (default: 1 for live and paced sources, none at top speed)",
    )
    g.add_argument(
        "--window",
        type=_positive_int,
        default=10_000,
        metavar="N",
        help="frames in the rolling metrics window (default 10000)",
    )
    g.add_argument(
        "--grace",
        type=_positive_int,
        default=1_000,
        metavar="N",
        help="frames taken as normal traffic at the start (default 1000): the anomaly detector's "
        "normal model, its threshold and the feature scaling come from them; they should hold no attack",
    )
    g.add_argument("--no-anomaly", action="store_true", help="do not run the anomaly detector")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument(
        "--no-learn",
        action="store_true",
        help="only score with the models (for example loaded ones)",
    )
    g.add_argument(
        "--save-models", metavar="DIR", help="save the models to DIR (skops format) at exit"
    )
    g.add_argument("--load-models", metavar="DIR", help="resume from models saved in DIR")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``wirelearn`` command."""
    parser = argparse.ArgumentParser(
        prog="wirelearn",
        description="A packet-capture network analyzer for the terminal that learns from the traffic it sees.",
    )
    parser.add_argument("--version", action="version", version=f"wirelearn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("read", help="print the frames of a capture (file or - for stdin)")
    p.add_argument("file", metavar="FILE|-")
    _add_stream_options(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object per frame")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header")
    fmt.add_argument("-q", "--quiet", action="store_true", help="print nothing per frame (with -w)")
    p.add_argument("--utc", action="store_true", help="print times in UTC")
    p.set_defaults(func=cmd_read)

    p = sub.add_parser("info", help="summarise captures, like capinfos")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("replay", help="run the learning pipeline on captures")
    p.add_argument("files", nargs="+", metavar="FILE|-")
    speed = p.add_mutually_exclusive_group()
    speed.add_argument(
        "--speed",
        type=_positive_float,
        metavar="X",
        help="replay at X times the capture's own pace",
    )
    speed.add_argument(
        "--topspeed", action="store_true", help="as fast as possible (the default for files)"
    )
    _add_stream_options(p)
    _add_view_options(p)
    _add_learning_options(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("plot", help="draw a saved --metrics history")
    p.add_argument("metrics", metavar="METRICS.jsonl")
    p.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="the picture to write (.png or .svg)"
    )
    p.set_defaults(func=cmd_plot)

    _add_source_commands(sub)
    return parser


def _add_source_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands whose source is a device or a peer, and the sender."""
    from wirelearn import _cli_live, _cli_sources

    for module in (_cli_live, _cli_sources):
        module.add_commands(sub, _add_stream_options, _add_view_options, _add_learning_options)
    from wirelearn._cli_batch import add_batch_command

    add_batch_command(sub)


# --- commands -----------------------------------------------------------------------------------


def cmd_read(args: argparse.Namespace) -> int:
    """``wirelearn read``: frames as lines, JSON or CSV; ``-w`` writes those that passed."""
    from wirelearn._run import frame_stream
    from wirelearn.capture._reader import open_capture
    from wirelearn.capture._writer import open_writer
    from wirelearn.features._decode import decode
    from wirelearn.outputs import CsvFrameWriter, FrameLinePrinter, JsonFrameWriter

    source = open_capture(args.file)
    writer = open_writer(args.write) if args.write else None
    out: FrameLinePrinter | JsonFrameWriter | CsvFrameWriter | None
    if args.quiet:
        out = None
    elif args.json:
        out = JsonFrameWriter(sys.stdout)
    elif args.csv:
        out = CsvFrameWriter(sys.stdout)
    else:
        out = FrameLinePrinter(sys.stdout, utc=args.utc)
    error: WirelearnError | None = None
    try:
        for batch in frame_stream(
            source, bpf=args.filter, count=args.count, duration=args.duration, writer=writer
        ):
            if out is not None:
                out.write(decode(batch))
        if isinstance(out, CsvFrameWriter) and source.stats.frames == 0:
            from wirelearn.features._schema import FeatureBatch

            out.write(FeatureBatch.empty())
    except WirelearnError as exc:
        error = exc
    except KeyboardInterrupt:
        pass
    finally:
        source.close()
        if writer is not None:
            try:
                writer.close()
            except WirelearnError as exc:
                error = error or exc
    for msg in source.stats.warnings:
        print(f"wirelearn: warning: {msg}", file=sys.stderr)
    if error is not None:
        raise error
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """``wirelearn info``: a capinfos-like summary of each file."""
    from wirelearn._info import print_info, summarize

    worst = 0
    for i, path in enumerate(args.files):
        try:
            info = summarize(path)
        except WirelearnError as exc:
            print(f"wirelearn: error: {exc}", file=sys.stderr)
            worst = worst or exc.exit_code
            continue
        print_info(info, sys.stdout, as_json=args.json, first=i == 0)
        if info.error is not None:
            print(f"wirelearn: error: {info.error}", file=sys.stderr)
            worst = worst or info.error.exit_code
    return worst


def cmd_replay(args: argparse.Namespace) -> int:
    """``wirelearn replay``: the whole pipeline over one or more captures, in order."""
    from wirelearn._run import run_learning
    from wirelearn.capture._multi import ConcatSource

    if args.files.count("-") > 1:
        raise ConfigError("stdin (-) can be given only once")
    source = ConcatSource(args.files)
    return run_learning(source, args)


def cmd_plot(args: argparse.Namespace) -> int:
    """``wirelearn plot``: redraw a ``--metrics`` history."""
    from wirelearn.plot import plot_metrics_file

    plot_metrics_file(args.metrics, args.output)
    print(f"wirelearn: wrote {args.output}", file=sys.stderr)
    return 0


# --- entry point --------------------------------------------------------------------------------


def _limit_threads() -> None:
    # Mini-batches are small: BLAS threads only add contention with the capture thread.
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)


#: glibc ``mallopt`` parameters, and the values ``_bound_heap`` gives them.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 16 << 20
_TRIM_THRESHOLD = 32 << 20


def _bound_heap() -> None:
    """Fix glibc's heap thresholds, so a long run's resident memory stays near its working set.

    By default glibc raises its mmap threshold to the largest block freed (up to
    32 MiB) and keeps twice that at the top of the heap: the mini-batch's
    multi-megabyte arrays then come from the heap, which never shrinks back.
    Fixed thresholds (blocks of 16 MiB or more are mapped and returned at once,
    at most 32 MiB of free heap is kept) cut the peak by about 30 MiB, for about
    0.3 s more start-up (steady state within noise). Not glibc (musl, macOS): nothing to do.
    """
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)


def _import_pandas(args: argparse.Namespace) -> None:
    """Import pandas (and numpy) before anything else, without pyarrow unless Parquet or Spark need it.

    pandas loads pyarrow whenever it is installed (about 37 MB of resident
    memory); the streaming commands only use pandas for ``factorize`` and label
    files, so pandas is imported with pyarrow hidden, then pyarrow is unhidden
    for anything that imports it directly later.
    """
    if "pandas" in sys.modules or "pyarrow" in sys.modules:
        return
    from wirelearn._cli_batch import cmd_batch

    arrow = args.func is cmd_batch or getattr(args, "engine", "local") == "spark"
    if not arrow:
        sys.modules["pyarrow"] = None  # type: ignore[assignment]  # "not installed", for pandas
    try:
        import pandas  # noqa: F401
    finally:
        if not arrow and sys.modules.get("pyarrow", False) is None:
            del sys.modules["pyarrow"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wirelearn`` console script; returns the exit code."""
    install_early_sigterm()
    parser = build_parser()
    args = parser.parse_args(argv)
    _bound_heap()
    _import_pandas(args)
    _limit_threads()  # after numpy is loaded, or there would be no BLAS to limit
    try:
        code = int(args.func(args))
    except WirelearnError as exc:
        print(f"wirelearn: error: {exc}", file=sys.stderr)
        code = exc.exit_code
    except (KeyboardInterrupt, Interrupted):
        # Stopped before any work began (while starting up): nothing to summarise.
        print("wirelearn: stopped", file=sys.stderr)
        code = 0
    except BrokenPipeError:
        # The reader went away (| head): not an error, but stdout must not be flushed again.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        code = 0
    except Exception:
        traceback.print_exc()
        print(
            "wirelearn: internal error (a bug): please report it with the traceback above",
            file=sys.stderr,
        )
        code = EXIT_INTERNAL
    with contextlib.suppress(BrokenPipeError, OSError):
        sys.stdout.flush()
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
