"""The commands whose frames come from a device or a peer: ``serial``, ``connect``,
``listen``, and the ``send`` command that feeds them.

``wirelearn.cli.build_parser`` calls ``add_commands``. The receiving commands
wrap their source in a ``BackgroundSource`` (the line or socket is read on its
own thread behind a bounded queue) and run the whole learning pipeline with
``wirelearn._run.run_learning``. Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from wirelearn.errors import ConfigError, WirelearnError

__all__ = ["add_commands", "cmd_connect", "cmd_listen", "cmd_send", "cmd_serial"]

_OptionAdder = Callable[..., None]

#: Link type names ``--linktype`` accepts besides numbers.
_LINKTYPES = {
    "NULL": 0,
    "EN10MB": 1,
    "ETHERNET": 1,
    "SLIP": 8,
    "PPP": 9,
    "RAW": 101,
    "IEEE802_11": 105,
    "LOOP": 108,
    "LINUX_SLL": 113,
    "IPV4": 228,
    "IPV6": 229,
    "LINUX_SLL2": 276,
}


# --- argument types -----------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {v}")
    return v


def _number(text: str, *, zero: bool = False) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not (v >= 0 if zero else v > 0) or v == float("inf") or v != v:
        raise argparse.ArgumentTypeError(
            f"must be a {'non-negative' if zero else 'positive'} number, not {text}"
        )
    return v


def _positive_float(text: str) -> float:
    return _number(text)


def _seconds(text: str) -> float:
    return _number(text, zero=True)


def _linktype(text: str) -> int:
    name = text.strip().upper().removeprefix("LINKTYPE_").removeprefix("DLT_")
    if name in _LINKTYPES:
        return _LINKTYPES[name]
    try:
        v = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown link type {text!r}; give a number or one of: {', '.join(_LINKTYPES)}"
        ) from None
    if not 0 <= v <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"a link type is from 0 to 65535, not {v}")
    return v


def _backoff(text: str) -> tuple[float, float]:
    first, _, top = text.partition(":")
    initial = _number(first)
    most = _number(top) if top else max(30.0, initial)
    if most < initial:
        raise argparse.ArgumentTypeError(f"the maximum {most:g} is below the initial {initial:g}")
    return initial, most


# --- registration -------------------------------------------------------------------------------


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_stream_options: _OptionAdder,
    add_view_options: _OptionAdder,
    add_learning_options: _OptionAdder,
) -> None:
    """Register ``serial``, ``connect``, ``listen`` and ``send`` on the CLI's subparsers."""

    def receiver(p: argparse.ArgumentParser) -> None:
        add_stream_options(p)
        add_view_options(p)
        add_learning_options(p)

    p = sub.add_parser(
        "serial",
        help="learn from frames on a serial line (SLIP or a pcap stream)",
        description="Read SLIP-framed frames or a pcap stream from a serial device or a "
        "pyserial URL (socket://HOST:PORT, rfc2217://HOST:PORT) and run the learning pipeline.",
    )
    p.add_argument("device", metavar="DEVICE|URL")
    p.add_argument("--baud", type=_positive_int, default=115200, help="line speed (default 115200)")
    p.add_argument(
        "--framing",
        choices=("slip", "pcap"),
        default="slip",
        help="slip: RFC 1055 frames, stamped on arrival (default); pcap: a pcap stream",
    )
    p.add_argument(
        "--linktype",
        type=_linktype,
        default=1,
        metavar="LT",
        help="link type of SLIP frames, a number or a name such as EN10MB or RAW (default EN10MB)",
    )
    p.add_argument(
        "--max-frame",
        type=_positive_int,
        default=65535,
        metavar="BYTES",
        help="drop and count longer frames (default 65535)",
    )
    receiver(p)
    p.set_defaults(func=cmd_serial)

    p = sub.add_parser(
        "connect",
        help="learn from a pcap stream read from a TCP sender (wirelearn send)",
        description="Connect to HOST:PORT, read a pcap or pcapng stream and run the learning pipeline.",
    )
    p.add_argument("address", metavar="HOST:PORT")
    p.add_argument(
        "--reconnect",
        action="store_true",
        help="when the sender goes away, reconnect with backoff; frames it sends again are skipped",
    )
    p.add_argument(
        "--backoff",
        type=_backoff,
        default=(0.5, 30.0),
        metavar="S[:MAX]",
        help="seconds before the first reconnection attempt, doubling up to MAX (default 0.5:30)",
    )
    receiver(p)
    _engine_options(p)
    p.set_defaults(func=cmd_connect)

    p = sub.add_parser(
        "listen",
        help="learn from pcap streams that TCP senders send to this port",
        description="Listen on [HOST:]PORT (127.0.0.1 unless HOST is given) for senders of "
        "pcap or pcapng streams; their frames are merged, each sender's interfaces apart.",
    )
    p.add_argument("address", metavar="[HOST:]PORT")
    p.add_argument(
        "--max-senders",
        type=_positive_int,
        default=16,
        metavar="N",
        help="senders accepted at once (default 16)",
    )
    receiver(p)
    _engine_options(p)
    p.set_defaults(func=cmd_listen)

    _add_send(sub)


def _add_send(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "send",
        help="stream captures or a synthetic scenario over TCP or a serial line",
        description="Stream capture files (or --synthetic SCENARIO) as a pcap stream to TCP "
        "clients (listening on 127.0.0.1:6100 by default), to a TCP listener (--to), or to a "
        "serial line (--serial). Timing follows the capture unless a rate is given.",
    )
    p.add_argument(
        "files", nargs="*", metavar="FILE", help="captures to send, in order (- for stdin)"
    )
    dest = p.add_mutually_exclusive_group()
    dest.add_argument(
        "--listen",
        metavar="[HOST:]PORT",
        help="serve each client that connects, from the start (default 127.0.0.1:6100)",
    )
    dest.add_argument("--to", metavar="HOST:PORT", help="connect to a listener (wirelearn listen)")
    dest.add_argument(
        "--serial", metavar="DEVICE|URL", help="write to a serial device or pyserial URL"
    )
    p.add_argument(
        "--baud", type=_positive_int, default=115200, help="serial line speed (default 115200)"
    )
    p.add_argument("--framing", choices=("slip", "pcap"), help="serial framing (default slip)")
    p.add_argument(
        "--format",
        choices=("pcap", "pcapng"),
        help="TCP stream format (default pcap; pcapng for several link types)",
    )
    p.add_argument("--once", action="store_true", help="with --listen: serve one client, then exit")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--pps", type=_positive_float, metavar="N", help="N frames per second")
    rate.add_argument(
        "--mbps", type=_positive_float, metavar="M", help="M megabits of frames per second"
    )
    rate.add_argument(
        "--multiplier",
        type=_positive_float,
        metavar="X",
        help="X times the capture's own pace (the default is 1)",
    )
    rate.add_argument("--topspeed", action="store_true", help="as fast as the receiver takes them")
    rate.add_argument(
        "--sleep", type=_seconds, metavar="S", help="send --batch-size frames, then sleep S seconds"
    )
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=1024,
        metavar="N",
        help="frames read and sent as one batch (default 1024)",
    )
    p.add_argument(
        "--endless",
        action="store_true",
        help="loop forever, shifting timestamps so capture time keeps increasing",
    )
    p.add_argument("--limit", type=_positive_int, metavar="N", help="stop after N frames in total")
    p.add_argument(
        "--synthetic",
        metavar="SCENARIO",
        help="send a generated scenario instead of files (benign, portscan, synflood, arpspoof, mixed)",
    )
    p.add_argument(
        "--frames",
        type=_positive_int,
        metavar="N",
        help="frames of the --synthetic scenario per loop (default 10000)",
    )
    p.add_argument(
        "--seed", type=int, metavar="N", help="seed of the --synthetic scenario (default 0)"
    )
    p.add_argument(
        "--labels-out",
        metavar="FILE.csv",
        help="with --synthetic: write the label of every frame sent (frame,label; for --labels)",
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="report progress on stderr every second"
    )
    p.set_defaults(func=cmd_send)


# --- receiving commands -------------------------------------------------------------------------


def _stderr(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        print(message, file=sys.stderr, flush=True)


def _warn(message: str) -> None:
    _stderr(f"wirelearn: warning: {message}")


def _info(message: str) -> None:
    _stderr(f"wirelearn: {message}")


def _run(source: Any, args: argparse.Namespace) -> int:
    from wirelearn._run import run_learning
    from wirelearn.capture._threaded import BackgroundSource

    background = BackgroundSource(source)
    try:
        return run_learning(background, args)
    finally:
        background.close()


def cmd_serial(args: argparse.Namespace) -> int:
    """``wirelearn serial DEVICE``: SLIP or pcap frames from a serial line."""
    import wirelearn._run  # noqa: F401 - fail before opening the device if the pipeline cannot load
    from wirelearn.capture._serial import SerialSource

    source = SerialSource(
        args.device,
        baud=args.baud,
        framing=args.framing,
        linktype=args.linktype,
        max_frame=args.max_frame,
        on_warning=_warn,
    )
    _info(f"reading {args.device} ({args.framing} framing)")
    return _run(source, args)


def _engine_options(p: argparse.ArgumentParser) -> None:
    from wirelearn._cli_batch import add_engine_options

    add_engine_options(p)


def cmd_connect(args: argparse.Namespace) -> int:
    """``wirelearn connect HOST:PORT``: a pcap stream from a TCP sender."""
    import wirelearn._run  # noqa: F401 - fail before connecting if the pipeline cannot load
    from wirelearn.capture._tcp import TcpClientSource, parse_hostport

    host, port = parse_hostport(args.address, what="connect", need_host=True)
    assert host is not None
    if args.engine == "spark":
        from wirelearn.engines import run_spark_stream

        return run_spark_stream(host, port, args, listen=False)
    source = TcpClientSource(
        host, port, reconnect=args.reconnect, backoff=args.backoff, on_warning=_warn
    )
    if source.connections:
        _info(f"connected to {source.address}")
    return _run(source, args)


def cmd_listen(args: argparse.Namespace) -> int:
    """``wirelearn listen [HOST:]PORT``: pcap streams from any number of TCP senders."""
    import wirelearn._run  # noqa: F401 - fail before binding if the pipeline cannot load
    from wirelearn.capture._tcp import TcpListenSource, exposure_warning, parse_hostport

    host, port = parse_hostport(args.address, what="listen", allow_zero=True)
    if args.engine == "spark":
        from wirelearn.engines import run_spark_stream

        return run_spark_stream(host or "127.0.0.1", port, args, listen=True)
    source = TcpListenSource(
        port,
        host or "127.0.0.1",
        max_senders=args.max_senders,
        on_warning=_warn,
        on_info=_info,
    )
    _info(f"listening on {source.address}")
    warning = exposure_warning(source.host, source.port)
    if warning is not None:
        _warn(warning)
    return _run(source, args)


# --- send ---------------------------------------------------------------------------------------


class _SendInterrupted(BaseException):
    """SIGINT or SIGTERM arrived: stop sending, close, report."""


def _check_send_args(args: argparse.Namespace) -> None:
    if args.synthetic is None and not args.files:
        raise ConfigError("send needs capture FILEs or --synthetic SCENARIO")
    if args.synthetic is not None:
        from wirelearn.scenarios import SCENARIOS

        if args.files:
            raise ConfigError("give capture FILEs or --synthetic, not both")
        if args.synthetic not in SCENARIOS:
            raise ConfigError(
                f"unknown scenario {args.synthetic!r}; choose one of: {', '.join(SCENARIOS)}"
            )
    else:
        for opt, value in (
            ("--frames", args.frames),
            ("--seed", args.seed),
            ("--labels-out", args.labels_out),
        ):
            if value is not None:
                raise ConfigError(f"{opt} goes with --synthetic")
    if args.serial is None:
        if args.framing is not None:
            raise ConfigError("--framing goes with --serial (TCP streams take --format)")
    elif args.format is not None:
        raise ConfigError("--format is for TCP streams; a serial line takes --framing slip|pcap")
    if args.once and (args.to is not None or args.serial is not None):
        raise ConfigError("--once goes with --listen")
    if "-" in args.files:
        if args.files.count("-") > 1:
            raise ConfigError("stdin (-) can be given only once")
        if args.endless:
            raise ConfigError("stdin (-) cannot be sent --endless: it can be read only once")
        if args.to is None and args.serial is None and not args.once:
            raise ConfigError("stdin (-) can be served to one client only: add --once, or use --to")


def cmd_send(args: argparse.Namespace) -> int:
    """``wirelearn send``: stream captures or a scenario, paced, until done or stopped."""
    from wirelearn.capture._batch import FrameBatch
    from wirelearn.capture._sender import (
        Pacing,
        SendStats,
        frame_feed,
        open_labels,
        send_serial,
        send_to,
        serve,
    )
    from wirelearn.capture._tcp import DEFAULT_PORT, exposure_warning, parse_hostport

    _check_send_args(args)
    if args.files and "-" not in args.files:
        from wirelearn.capture._multi import ConcatSource

        # Open every capture now, so that a typo fails before anyone connects.
        ConcatSource(args.files).close()
    pacing = Pacing(
        pps=args.pps,
        mbps=args.mbps,
        multiplier=args.multiplier,
        topspeed=args.topspeed,
        sleep=args.sleep,
        batch_size=args.batch_size,
    )
    listen: tuple[str, int] | None = None
    to: tuple[str, int] | None = None
    if args.to is not None:
        h, port = parse_hostport(args.to, what="--to", need_host=True)
        assert h is not None
        to = (h, port)
    elif args.serial is None:
        if args.listen is None:
            listen = ("127.0.0.1", DEFAULT_PORT)
        else:
            h, port = parse_hostport(args.listen, what="--listen", allow_zero=True)
            listen = (h or "127.0.0.1", port)
    labels = open_labels(args.labels_out)
    stats = SendStats()
    first = [True]

    def make_feed() -> Iterator[FrameBatch]:
        # Only the first stream writes labels: every stream sends the same frames.
        own_labels = labels if first[0] else None
        first[0] = False
        return frame_feed(
            args.files,
            synthetic=args.synthetic,
            frames=args.frames or 10_000,
            seed=args.seed or 0,
            endless=args.endless,
            limit=args.limit,
            batch_size=args.batch_size,
            labels=own_labels,
            stats=stats,
        )

    clients: list[tuple[str, SendStats]] = []
    stop = threading.Event()
    done = threading.Event()
    stopping = [False]

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if not stopping[0]:
            stopping[0] = True
            raise _SendInterrupted(signal.Signals(signum).name)

    def report() -> None:
        while not done.wait(1.0):
            if listen is None:
                _info(stats.line("sending:"))
            for peer, own in list(clients):
                if own.last is not None:
                    _info(f"{peer}: {own.line('sending:')}")

    def on_listening(address: str) -> None:
        _info(f"send: listening on {address}")
        assert listen is not None
        warning = exposure_warning(listen[0], listen[1])
        if warning is not None:
            _warn(warning)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    reporter = threading.Thread(target=report, name="send-report", daemon=True)
    if args.verbose:
        reporter.start()
    error: WirelearnError | None = None
    interrupted = False
    try:
        try:
            if args.serial is not None:
                send_serial(
                    args.serial,
                    make_feed,
                    pacing,
                    baud=args.baud,
                    framing=args.framing or "slip",
                    stats=stats,
                    stop=stop,
                )
            elif to is not None:
                send_to(
                    to[0],
                    to[1],
                    make_feed,
                    pacing,
                    fmt=args.format or "pcap",
                    stats=stats,
                    stop=stop,
                )
            else:
                assert listen is not None
                serve(
                    listen[0],
                    listen[1],
                    make_feed,
                    pacing,
                    fmt=args.format or "pcap",
                    stats=stats,
                    stop=stop,
                    once=args.once,
                    log=_info,
                    on_listening=on_listening,
                    clients=clients,
                )
        except _SendInterrupted:
            interrupted = True
        except WirelearnError as exc:
            error = exc
    except _SendInterrupted:
        # The signal arrived while a stream was being closed.
        interrupted = True
    finally:
        stop.set()
        done.set()
        for signum, handler in old.items():
            signal.signal(signum, handler)
        if labels is not None:
            with contextlib.suppress(OSError):
                labels.close()
    _info(f"send: {stats.line()}")
    if stats.clamped:
        _warn(
            f"{stats.clamped:,} frames were stamped earlier than the frame before them "
            "and were sent with that frame's time"
        )
    if interrupted:
        _info("send: stopped")
    if error is not None:
        raise error
    return 0
