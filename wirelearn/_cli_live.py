"""The ``live`` and ``interfaces`` commands: capture from NICs into the learning pipeline."""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["add_commands"]

_Adder = Callable[..., None]


def _buffer_mb(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of MiB, not {text!r}") from None
    if not 1 <= v <= 4096:
        raise argparse.ArgumentTypeError(f"must be from 1 to 4096 MiB, not {v}")
    return v


def _snaplen(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of bytes, not {text!r}"
        ) from None
    if not 1 <= v <= 262144:
        raise argparse.ArgumentTypeError(f"must be from 1 to 262144 bytes, not {v}")
    return v


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_stream: _Adder,
    add_view: _Adder,
    add_learning: _Adder,
) -> None:
    """Register ``live`` and ``interfaces``."""
    p = sub.add_parser(
        "live",
        help="capture from network interfaces and learn (needs root or CAP_NET_RAW)",
        description="Capture frames from one or more interfaces (AF_PACKET, TPACKET_V3 ring, "
        "filter in the kernel) and run the learning pipeline with the live dashboard.",
    )
    p.add_argument(
        "-i",
        "--interface",
        action="append",
        required=True,
        metavar="IFACE",
        help="interface to capture on (repeat for several)",
    )
    add_stream(p)
    p.add_argument(
        "--snaplen",
        type=_snaplen,
        default=262144,
        metavar="N",
        help="bytes kept per frame (default 262144)",
    )
    p.add_argument(
        "--buffer-size",
        type=_buffer_mb,
        default=64,
        metavar="MB",
        help="kernel ring per interface, MiB (default 64)",
    )
    p.add_argument(
        "--no-promisc", action="store_true", help="do not put the interfaces in promiscuous mode"
    )
    p.add_argument(
        "-Z",
        "--user",
        metavar="USER",
        help="drop root privileges to USER once the capture sockets are open",
    )
    add_view(p)
    add_learning(p)
    p.set_defaults(func=cmd_live)

    p = sub.add_parser("interfaces", help="list network interfaces: name, MAC, addresses, state")
    p.add_argument("--json", action="store_true", help="one JSON object per interface")
    p.set_defaults(func=cmd_interfaces)


# Everything the pipeline may import after privileges are dropped: the interpreter
# may live where an unprivileged user cannot read (e.g. under /root).
_PRELOAD = (
    "wirelearn._run",
    "wirelearn.ui",
    "wirelearn.models",
    "wirelearn.models._persist",
    "wirelearn.capture._bpf",
    "sklearn.linear_model",
    "sklearn.naive_bayes",
    "sklearn.tree",
    "sklearn.ensemble",
    "sklearn.kernel_approximation",
    "sklearn.metrics",
    "encodings.idna",
)


def _preload(args: argparse.Namespace) -> None:
    names = list(_PRELOAD)
    if args.plot:
        names += [
            "wirelearn.plot",
            "matplotlib",
            "matplotlib.pyplot",
            "matplotlib.backends.backend_agg",
        ]
    if args.save_models or args.load_models:
        names += ["skops.io"]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            continue  # reported where it is needed, with how to install it


def cmd_live(args: argparse.Namespace) -> int:
    """``wirelearn live``: capture, optionally drop privileges, then run the pipeline."""
    from wirelearn._run import run_learning
    from wirelearn.capture._live import LiveSource
    from wirelearn.capture._threaded import BackgroundSource

    _preload(args)
    source = LiveSource(
        list(dict.fromkeys(args.interface)),
        bpf=args.filter,
        snaplen=args.snaplen,
        buffer_mb=args.buffer_size,
        promisc=not args.no_promisc,
    )
    # The kernel filters: the pipeline must not compile the expression again.
    args.filter = None
    try:
        if args.user:
            from wirelearn.capture._privileges import drop_privileges

            drop_privileges(args.user)
            print(f"wirelearn: dropped privileges to {args.user}", file=sys.stderr)
    except BaseException:
        source.close()
        raise
    background = BackgroundSource(source)
    timer: threading.Timer | None = None
    if args.duration is not None:
        # Capture time stops the run too, but only when frames arrive: the wall clock
        # ends a quiet capture.
        timer = threading.Timer(args.duration + 0.5, background.close)
        timer.daemon = True
        timer.start()
    print(f"wirelearn: capturing on {', '.join(args.interface)} ({source.mode})", file=sys.stderr)
    try:
        return run_learning(background, args)
    finally:
        if timer is not None:
            timer.cancel()
        background.close()


def cmd_interfaces(args: argparse.Namespace) -> int:
    """``wirelearn interfaces``: what ``live -i`` can capture on."""
    import json

    from wirelearn.capture._batch import linktype_name
    from wirelearn.capture._interfaces import list_interfaces

    infos = list_interfaces()
    if args.json:
        for info in infos:
            d: dict[str, Any] = {
                "name": info.name,
                "index": info.index,
                "mac": info.mac,
                "ipv4": list(info.ipv4),
                "ipv6": list(info.ipv6),
                "state": info.state,
                "linktype": info.linktype,
                "mtu": info.mtu,
            }
            print(json.dumps(d))
        return 0
    rows = [("NAME", "STATE", "MAC", "LINK", "MTU", "ADDRESSES")]
    for info in infos:
        addrs = ", ".join([*info.ipv4, *info.ipv6]) or "-"
        link = linktype_name(info.linktype) if info.linktype is not None else "-"
        rows.append((info.name, info.state, info.mac or "-", link, str(info.mtu or "-"), addrs))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(r[i].ljust(widths[i]) for i in range(5)) + "  " + r[5])
    return 0
