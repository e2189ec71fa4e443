"""The streaming receiver on Spark: ``wirelearn connect|listen ... --engine spark``.

Design
------
The pcap stream enters Spark through a **Python data source**
(``PcapStreamDataSource``, format ``wirelearn_pcap``) whose
``DataSourceStreamReader`` lives on the driver side, in the long-lived Python
process Spark starts for a streaming source. That is where the socket lives:

* on the first ``initialOffset``/``latestOffset`` call the reader starts a
  background thread that runs wirelearn's own ``TcpClientSource`` (connect) or
  ``TcpListenSource`` (listen, any number of senders) and appends every
  ``FrameBatch`` it yields to an in-memory buffer. A listener binds and reads
  at once (senders push); a client connects once Spark has run its first,
  empty micro-batch (the query's warm-up, seconds long), since a sender it
  connects to streams on demand and would otherwise pile its first seconds
  into one huge micro-batch;
* **offsets are frames received** (``{"frames": n}``); ``latestOffset`` hands
  out what has arrived (at most ``max_frames_per_trigger`` per micro-batch);
* ``partitions(start, end)`` cuts the buffered frames of that range into
  ``InputPartition``\\ s that carry the raw frames; ``read`` (in the executors)
  turns a partition into one Arrow record batch of raw frames;
* ``commit(end)`` drops the frames Spark has finished with.

Each micro-batch reaches ``foreachBatch`` on the driver, which collects it as
Arrow, rebuilds the ``FrameBatch`` and runs it through the **same** path as the
local engine: ``-f``/``-c``/``--duration``/``-w``, ``decode``, the label
provider and ``Evaluator.step`` (test-then-train) in ``--batch-size`` pieces;
the evaluator, its models and metrics live on the driver across micro-batches.
The views are the local engine's: the progress line (one per micro-batch,
at most every ``--progress-every`` seconds), the dashboard, ``--metrics``, and
the final summary. When the sender closes, the reader adds one marker row
after the last frame; the micro-batch that carries it ends the query (so does
``-c``, ``--duration``, an error, Ctrl-C or SIGTERM).

Delivery guarantees
-------------------
* Within a running query every frame received is delivered to the learner
  exactly once and in order: frames stay buffered until the micro-batch that
  holds them commits, so a re-planned or retried micro-batch reads the same
  frames again, and learning happens only in ``foreachBatch`` on the driver
  (a failure there stops the query rather than retrying it).
* The TCP stream itself cannot be replayed, so nothing survives a restart of
  the query or of the reader's process: frames received but not yet committed
  are lost (at most once across restarts). No checkpoint is kept for that
  reason. With ``--reconnect``, frames a restarted sender sends again are
  skipped by timestamp, as in the local engine.
* Back-pressure, not loss: when ``buffer_frames`` frames wait uncommitted, the
  reader stops reading the socket and TCP flow control slows the senders down.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.streaming.datasource import ReadAllAvailable, ReadLimit, ReadMaxRows
from pyspark.sql.types import BinaryType, DataType, LongType, StringType, StructField, StructType

from wirelearn.capture._batch import FrameBatch, Interface
from wirelearn.errors import ConfigError, WirelearnError

__all__ = [
    "SOURCE_FORMAT",
    "STREAM_SCHEMA",
    "FramePartition",
    "PcapStreamDataSource",
    "PcapStreamReader",
    "StreamOptions",
    "run_spark_stream",
    "stream_struct",
]

#: The format name of the data source (``spark.readStream.format(...)``).
SOURCE_FORMAT = "wirelearn_pcap"
#: Rows of the source: one per frame (``event`` null), plus one end marker.
STREAM_SCHEMA = (
    "frame long, ts_ns long, caplen long, wirelen long, linktype long, data binary, event string"
)


def stream_struct() -> StructType:
    """``STREAM_SCHEMA`` as a ``StructType`` (built without a JVM: executors have none)."""
    kinds: dict[str, DataType] = {
        "long": LongType(),
        "binary": BinaryType(),
        "string": StringType(),
    }
    fields = [item.strip().split(" ") for item in STREAM_SCHEMA.split(",")]
    return StructType([StructField(name, kinds[kind], True) for name, kind in fields])


#: The largest bytes of frames in one partition.
_PARTITION_BYTES = 64 << 20


def _flag(value: str, what: str) -> bool:
    low = value.strip().lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no", ""):
        return False
    raise ConfigError(f"option {what} must be true or false, not {value!r}")


def _count(options: Mapping[str, str], key: str, default: int, low: int) -> int:
    text = options.get(key)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"option {key} must be a whole number, not {text!r}") from None
    if value < low:
        raise ConfigError(f"option {key} must be at least {low}, not {value}")
    return value


@dataclass(frozen=True)
class StreamOptions:
    """The data source's options, checked (``ConfigError`` for bad ones).

    Attributes:
        mode: ``connect`` (to a sender) or ``listen`` (for senders).
        host: the host to connect to, or to bind.
        port: the port.
        reconnect: with ``connect``: reconnect when the sender goes away.
        backoff: ``(initial, max)`` seconds between reconnection attempts.
        max_senders: with ``listen``: senders accepted at once.
        partition_frames: the most frames in one partition.
        max_frames_per_trigger: the most frames in one micro-batch (0: no limit).
        buffer_frames: frames buffered before the reader stops reading the socket.
    """

    mode: str
    host: str
    port: int
    reconnect: bool = False
    backoff: tuple[float, float] = (0.5, 30.0)
    max_senders: int = 16
    partition_frames: int = 65536
    max_frames_per_trigger: int = 0
    buffer_frames: int = 1_000_000

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> StreamOptions:
        """Read and check the string options Spark passes to the data source."""
        mode = options.get("mode", "connect")
        if mode not in ("connect", "listen"):
            raise ConfigError(f"option mode must be connect or listen, not {mode!r}")
        host = options.get("host", "127.0.0.1")
        if not host:
            raise ConfigError("option host is empty")
        port = _count(options, "port", -1, 0 if mode == "listen" else 1)
        if port < 0 or port > 65535:
            raise ConfigError("option port is required: a number from 1 to 65535")
        backoff = (0.5, 30.0)
        if "backoff" in options:
            first, _, top = options["backoff"].partition(":")
            try:
                backoff = (float(first), float(top or max(30.0, float(first))))
            except ValueError:
                raise ConfigError(
                    f"option backoff must be S[:MAX], not {options['backoff']!r}"
                ) from None
        return cls(
            mode=mode,
            host=host,
            port=port,
            reconnect=_flag(options.get("reconnect", "false"), "reconnect"),
            backoff=backoff,
            max_senders=_count(options, "max_senders", 16, 1),
            partition_frames=_count(options, "partition_frames", 65536, 1),
            max_frames_per_trigger=_count(options, "max_frames_per_trigger", 0, 0),
            buffer_frames=_count(options, "buffer_frames", 1_000_000, 1),
        )

    def to_options(self) -> dict[str, str]:
        """The options as strings, for ``DataStreamReader.options``."""
        return {
            "mode": self.mode,
            "host": self.host,
            "port": str(self.port),
            "reconnect": str(self.reconnect).lower(),
            "backoff": f"{self.backoff[0]}:{self.backoff[1]}",
            "max_senders": str(self.max_senders),
            "partition_frames": str(self.partition_frames),
            "max_frames_per_trigger": str(self.max_frames_per_trigger),
            "buffer_frames": str(self.buffer_frames),
        }


class FramePartition(InputPartition):  # type: ignore[misc]
    """Raw frames ``first+1 ...`` of the stream (or the end marker), shipped to an executor.

    Args:
        first: the offset of the first frame (its frame number minus one).
        ts_ns, caplen, wirelen, linktype: per-frame arrays.
        data: the frames' bytes back to back.
        event: for the end marker: ``end`` or ``error:<ErrorClass>:<message>``.
    """

    def __init__(
        self,
        first: int,
        ts_ns: np.ndarray[Any, Any],
        caplen: np.ndarray[Any, Any],
        wirelen: np.ndarray[Any, Any],
        linktype: np.ndarray[Any, Any],
        data: bytes,
        event: str | None = None,
    ) -> None:
        super().__init__(first)
        self.first = first
        self.ts_ns = ts_ns
        self.caplen = caplen
        self.wirelen = wirelen
        self.linktype = linktype
        self.data = data
        self.event = event

    @classmethod
    def marker(cls, first: int, event: str) -> FramePartition:
        """The one-row partition that ends the stream."""
        one = np.zeros(1, dtype=np.int64)
        return cls(first, one, one, one, one, b"", event)

    def __repr__(self) -> str:
        return f"FramePartition(first={self.first}, frames={len(self.ts_ns)}, event={self.event!r})"


class PcapStreamReader(DataSourceStreamReader):  # type: ignore[misc]
    """The driver-side stream reader; see the module docstring for the design.

    Nothing is opened by the constructor: Spark also builds (and pickles) a
    reader just to plan ``read``; only the long-lived one is ever asked for offsets.
    """

    def __init__(self, options: StreamOptions) -> None:
        self.options = options
        self._lock: threading.Condition | None = None
        self._thread: threading.Thread | None = None
        self._source: Any = None
        self._pieces: list[tuple[int, FrameBatch]] = []
        self._received = 0
        self._committed = 0
        self._event: str | None = None
        self._stopping = False
        self._go = threading.Event()
        self._asked = 0

    def __getstate__(self) -> dict[str, Any]:
        # Executors only need the options: a started reader's thread and socket stay here.
        return {"options": self.options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["options"])  # type: ignore[misc]

    # --- the receiving thread ------------------------------------------------------------------

    def _ensure_started(self) -> threading.Condition:
        if self._lock is None:
            self._lock = threading.Condition()
            self._thread = threading.Thread(
                target=self._pump, name="wirelearn-receiver", daemon=True
            )
            self._thread.start()
        return self._lock

    def _open(self) -> Any:
        from wirelearn.capture._tcp import TcpClientSource, TcpListenSource

        o = self.options

        def say(message: str) -> None:
            with contextlib.suppress(OSError, ValueError):
                print(f"wirelearn: {message}", file=sys.stderr, flush=True)

        def warn(message: str) -> None:
            say(f"warning: {message}")

        if o.mode == "listen":
            source: Any = TcpListenSource(
                o.port, o.host, max_senders=o.max_senders, on_warning=warn, on_info=say
            )
            say(f"spark receiver listening on {source.address}")
        else:
            source = TcpClientSource(
                o.host, o.port, reconnect=o.reconnect, backoff=o.backoff, on_warning=warn
            )
            if source.connections:
                say(f"spark receiver connected to {source.address}")
        return source

    def _pump(self) -> None:
        lock = self._lock
        assert lock is not None
        try:
            if self.options.mode == "connect":
                # A sender we connect to streams on demand: wait until Spark's first,
                # empty micro-batch (its warm-up) is over, so that it does not swallow
                # everything sent meanwhile.
                while not self._go.wait(0.2):
                    if self._stopping:
                        return
            source = self._open()
            with lock:
                self._source = source
                stopping = self._stopping
            if stopping:
                source.close()
            for batch in source:
                with lock:
                    while (
                        self._received - self._committed >= self.options.buffer_frames
                        and not self._stopping
                    ):
                        lock.wait(0.5)
                    if self._stopping:
                        break
                    self._pieces.append((self._received, batch))
                    self._received += len(batch)
            event = "end"
        except WirelearnError as exc:
            event = f"error:{type(exc).__name__}:{exc}"
        except Exception as exc:  # reported in-band; the driver turns it into an error
            event = f"error:WirelearnError:receiver failed: {exc!r}"
        with lock:
            self._event = event
            lock.notify_all()

    # --- the DataSourceStreamReader contract ---------------------------------------------------

    def initialOffset(self) -> dict[str, int]:  # noqa: N802 - Spark's name
        """Frame 0: the stream starts empty."""
        self._ensure_started()
        return {"frames": 0}

    def getDefaultReadLimit(self) -> ReadLimit:  # noqa: N802 - Spark's name
        """At most ``max_frames_per_trigger`` frames per micro-batch, when set."""
        n = self.options.max_frames_per_trigger
        return ReadMaxRows(n) if n > 0 else ReadAllAvailable()

    def latestOffset(self, start: dict[str, int], limit: ReadLimit) -> dict[str, int]:  # noqa: N802 - Spark's name
        """Every frame received so far (plus the end marker once the stream ended), within ``limit``."""
        lock = self._ensure_started()
        self._asked += 1
        if self._asked > 1:
            self._go.set()
        with lock:
            available = self._received + (1 if self._event is not None else 0)
        if isinstance(limit, ReadMaxRows):
            available = min(available, int(start["frames"]) + int(limit.max_rows))
        return {"frames": max(available, int(start["frames"]))}

    def reportLatestOffset(self) -> dict[str, int] | None:  # noqa: N802 - Spark's name
        """Frames received so far (for the query's progress)."""
        if self._lock is None:
            return None
        with self._lock:
            return {"frames": self._received}

    def partitions(self, start: dict[str, int], end: dict[str, int]) -> Sequence[FramePartition]:
        """The buffered frames of ``[start, end)``, in partitions of at most ``partition_frames``."""
        lock = self._ensure_started()
        lo, hi = int(start["frames"]), int(end["frames"])
        with lock:
            received, event = self._received, self._event
            pieces = [
                batch.slice(max(lo, first) - first, min(hi, first + len(batch)) - first)
                for first, batch in self._pieces
                if first < hi and first + len(batch) > lo
            ]
        out: list[FramePartition] = []
        frames = FrameBatch.concat(pieces).compact() if pieces else FrameBatch.empty()
        step = self.options.partition_frames
        i = 0
        while i < len(frames):
            j = min(len(frames), i + step)
            # Keep partitions to a bounded size even with jumbo frames.
            cum = frames.offsets[i + 1 : j + 1] - frames.offsets[i]
            j = i + max(1, int(np.searchsorted(cum, _PARTITION_BYTES, side="right")))
            j = min(j, len(frames))
            part = frames.slice(i, j).compact()
            out.append(
                FramePartition(
                    lo + i,
                    part.ts_ns,
                    part.caplen,
                    part.wirelen,
                    part.linktype,
                    part.data.tobytes(),
                )
            )
            i = j
        if event is not None and lo <= received < hi:
            out.append(FramePartition.marker(received, event))
        return out

    def read(self, partition: InputPartition) -> Iterator[Any]:
        """One Arrow record batch of the partition's frames (runs in an executor)."""
        import pyarrow as pa
        from pyspark.sql.pandas.types import to_arrow_schema

        assert isinstance(partition, FramePartition)
        # Exactly the schema Spark checks the batch against.
        schema = to_arrow_schema(stream_struct(), timezone="UTC")
        p = partition
        n = len(p.ts_ns)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(p.caplen, out=offsets[1:])
        binary = schema.field("data").type
        off_type = np.int64 if binary in (pa.large_binary(),) else np.int32
        data = pa.Array.from_buffers(
            binary, n, [None, pa.py_buffer(offsets.astype(off_type)), pa.py_buffer(p.data)]
        )
        if p.event is None:
            event = pa.nulls(n, schema.field("event").type)
        else:
            event = pa.array([p.event] * n, type=schema.field("event").type)
        arrays = [
            pa.array(np.arange(p.first + 1, p.first + 1 + n, dtype=np.int64)),
            pa.array(np.asarray(p.ts_ns, dtype=np.int64)),
            pa.array(np.asarray(p.caplen, dtype=np.int64)),
            pa.array(np.asarray(p.wirelen, dtype=np.int64)),
            pa.array(np.asarray(p.linktype, dtype=np.int64)),
            data,
            event,
        ]
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    def commit(self, end: dict[str, int]) -> None:
        """Forget the frames before ``end``: Spark is done with them."""
        lock = self._ensure_started()
        self._go.set()
        upto = int(end["frames"])
        with lock:
            kept: list[tuple[int, FrameBatch]] = []
            for first, batch in self._pieces:
                if first + len(batch) <= upto:
                    continue
                if first < upto:
                    batch = batch.slice(upto - first, len(batch)).compact()
                    first = upto
                kept.append((first, batch))
            self._pieces = kept
            self._committed = max(self._committed, min(upto, self._received))
            lock.notify_all()

    def stop(self) -> None:
        """Close the socket(s) and end the receiving thread."""
        if self._lock is None:
            return
        with self._lock:
            self._stopping = True
            source = self._source
            self._lock.notify_all()
        self._go.set()
        if source is not None:
            source.close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)


class PcapStreamDataSource(DataSource):  # type: ignore[misc]
    """A streaming source of the frames of a pcap/pcapng stream over TCP.

    Options (strings): ``mode`` (``connect`` or ``listen``), ``host``, ``port``,
    ``reconnect``, ``backoff`` (``S[:MAX]``), ``max_senders``,
    ``partition_frames``, ``max_frames_per_trigger``, ``buffer_frames``; see
    ``StreamOptions``. Schema: ``STREAM_SCHEMA``.
    """

    @classmethod
    def name(cls) -> str:
        """The format name: ``wirelearn_pcap``."""
        return SOURCE_FORMAT

    def schema(self) -> str:
        """``STREAM_SCHEMA``."""
        return STREAM_SCHEMA

    def streamReader(self, schema: Any) -> PcapStreamReader:  # noqa: N802 - Spark's name
        """The stream reader (it opens nothing until Spark asks for offsets)."""
        return PcapStreamReader(StreamOptions.parse(self.options))


# --- the driver: foreachBatch -> the local engine's evaluator ------------------------------------


def frames_from_arrow(table: Any) -> tuple[FrameBatch, list[str]]:
    """The ``FrameBatch`` of a collected micro-batch (sorted by frame) and its events.

    Column arrays are read straight from the Arrow buffers: no object per frame.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    table = table.sort_by("frame")
    events_col = table.column("event")
    is_frame = pc.is_null(events_col)
    events = [str(e) for e in pc.filter(events_col, pc.invert(is_frame)).to_pylist()]
    if len(events):
        table = table.filter(is_frame)
    n = table.num_rows

    def ints(name: str) -> np.ndarray[Any, Any]:
        return np.asarray(table.column(name).to_numpy(), dtype=np.int64)

    if n == 0:
        return FrameBatch.empty(), events
    arr = table.column("data").combine_chunks()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.chunk(0) if arr.num_chunks else pa.array([], type=arr.type)
    buffers = arr.buffers()
    wide = arr.type == pa.large_binary()
    off = np.frombuffer(buffers[1], dtype=np.int64 if wide else np.int32)
    offsets = off[arr.offset : arr.offset + n + 1].astype(np.int64)
    data = (
        np.frombuffer(buffers[2], dtype=np.uint8)
        if buffers[2] is not None
        else np.zeros(0, dtype=np.uint8)
    )
    linktype = ints("linktype")
    kinds, iface = np.unique(linktype, return_inverse=True)
    interfaces = tuple(Interface(linktype=int(k)) for k in kinds.tolist())
    batch = FrameBatch(
        frame=ints("frame"),
        ts_ns=ints("ts_ns"),
        caplen=ints("caplen"),
        wirelen=ints("wirelen"),
        iface=iface.reshape(-1).astype(np.int32),
        data=data,
        offsets=offsets,
        interfaces=interfaces,
    )
    return batch, events


def _error_from_event(event: str) -> WirelearnError | None:
    """``error:<Class>:<message>`` as that ``wirelearn.errors`` class; None for ``end``."""
    from wirelearn import errors

    if not event.startswith("error:"):
        return None
    _, name, message = event.split(":", 2)
    cls = getattr(errors, name, WirelearnError)
    if not (isinstance(cls, type) and issubclass(cls, WirelearnError)):
        cls = WirelearnError
    return cls(message)


class _Receiver:
    """The ``foreachBatch`` function: each micro-batch through the local engine's pipeline."""

    def __init__(self, args: argparse.Namespace, setup: Any, name: str, out: TextIO) -> None:
        from wirelearn.outputs import CsvFrameWriter, JsonFrameWriter, MetricsWriter

        self.args = args
        self.setup = setup
        self.name = name
        self.done = threading.Event()
        self.error: WirelearnError | None = None
        self.failure: BaseException | None = None
        self.micro_batches = 0
        self.frames = 0
        self.bytes = 0
        self.t0 = time.monotonic()
        self._last_line = -1e9
        self._t_end: int | None = None
        self.writer: Any = None
        if getattr(args, "write", None):
            from wirelearn.capture._writer import open_writer

            self.writer = open_writer(args.write)
        self.filter: Any = None
        if getattr(args, "filter", None):
            from wirelearn.capture._bpf import BpfFilter

            self.filter = BpfFilter(args.filter)
        names = [st.name for st in setup.evaluator.states]
        self.frame_out: Any = None
        if getattr(args, "json", False):
            self.frame_out = JsonFrameWriter(out, names)
        elif getattr(args, "csv", False):
            self.frame_out = CsvFrameWriter(out, names)
        metrics = getattr(args, "metrics", None)
        self.metrics = MetricsWriter(metrics) if metrics else None
        self.dashboard: Any = None
        self.progress = True

    def __call__(self, df: Any, epoch_id: int) -> None:
        if self.done.is_set():
            return
        try:
            self._micro_batch(df.toArrow())
        except WirelearnError as exc:
            self.error = exc
            self.done.set()
        except BaseException as exc:
            self.failure = exc
            self.done.set()
            raise

    def _limit(self, batch: FrameBatch) -> FrameBatch:
        """``-f``, ``-c`` and ``--duration``, as ``frame_stream`` applies them."""
        args = self.args
        if self.filter is not None and len(batch):
            batch = batch.take(self.filter.mask(batch))
        duration = getattr(args, "duration", None)
        if duration is not None and len(batch):
            if self._t_end is None:
                self._t_end = int(batch.ts_ns[0]) + int(duration * 1e9)
            inside = int(np.count_nonzero(batch.ts_ns < self._t_end))
            if inside < len(batch):
                batch = batch.take(np.flatnonzero(batch.ts_ns < self._t_end))
                self.done.set()
        count = getattr(args, "count", None)
        if count is not None:
            left = max(0, count - self.frames)
            if len(batch) >= left:
                batch = batch.slice(0, left)
                self.done.set()
        return batch

    def _micro_batch(self, table: Any) -> None:
        from wirelearn.features._decode import decode
        from wirelearn.models._evaluate import LabelledBatch
        from wirelearn.outputs import ProgressLine

        batch, events = frames_from_arrow(table)
        batch = self._limit(batch)
        ev = self.setup.evaluator
        if len(batch):
            self.micro_batches += 1
            self.frames += len(batch)
            self.bytes += batch.nbytes
            if self.writer is not None:
                self.writer.write(batch)
            step = max(1, int(getattr(self.args, "batch_size", 4096)))
            snap = None
            for i in range(0, len(batch), step):
                part = batch.slice(i, i + step).compact()
                fb = decode(part)
                labels = self.setup.labels.labels(fb, part)
                snap = ev.step(LabelledBatch(frames=part, features=fb, labels=labels))
                if snap.batch is not None and self.frame_out is not None:
                    self.frame_out.write(snap.batch.features, snap.batch)
                if self.metrics is not None:
                    self.metrics.write(snap)
                if self.dashboard is not None:
                    self.dashboard.update(snap)
            now = time.monotonic()
            every = float(getattr(self.args, "progress_every", 5.0))
            if snap is not None and self.progress and now - self._last_line >= every:
                self._last_line = now
                line = ProgressLine.line(snap, now - self.t0)
                print(
                    f"wirelearn: micro-batch {self.micro_batches} (+{len(batch):,} frames): {line}",
                    file=sys.stderr,
                    flush=True,
                )
        for event in events:
            error = _error_from_event(event)
            if error is not None and self.error is None:
                self.error = error
            self.done.set()

    def status(self) -> Any:
        from wirelearn.models._snapshot import SourceStatus

        return SourceStatus(name=self.name, frames=self.frames, bytes=self.bytes)


def run_spark_stream(
    host: str | None,
    port: int,
    args: argparse.Namespace,
    *,
    listen: bool,
    stdout: TextIO | None = None,
) -> int:
    """Receive a pcap stream as a Spark Structured Streaming query and learn from it.

    ``connect`` and ``listen`` call this for ``--engine spark``. Every learning,
    view and stream option of those commands applies as in the local engine;
    ``--batch-interval S`` is the trigger (``processingTime``), ``--master``
    and ``--conf`` go to Spark.

    Args:
        host: the sender to connect to, or the address to bind (None: 127.0.0.1).
        port: its port.
        args: the command's parsed options.
        listen: listen for senders (``listen``) instead of connecting (``connect``).
        stdout: where the summary (or ``--json``/``--csv`` records) go.

    Returns:
        The exit code (0, or the code of the error that ended the run).

    Raises:
        DependencyError: pyspark, pyarrow or Java is missing.
        ConfigError: a bad option (before anything starts).
    """
    from wirelearn.engines.spark import parse_conf, quiet_spark_warnings, require_spark

    require_spark()
    options = StreamOptions(
        mode="listen" if listen else "connect",
        host=host or "127.0.0.1",
        port=port,
        reconnect=bool(getattr(args, "reconnect", False)),
        backoff=tuple(getattr(args, "backoff", (0.5, 30.0))),  # type: ignore[arg-type]
        max_senders=int(getattr(args, "max_senders", 16)),
    )
    StreamOptions.parse(options.to_options())  # the same checks the source makes, but here
    conf = parse_conf(getattr(args, "conf", None))
    with quiet_spark_warnings():
        return _run_stream(options, args, conf, stdout or sys.stdout)


def _run_stream(
    options: StreamOptions, args: argparse.Namespace, conf: dict[str, str], out: TextIO
) -> int:
    from wirelearn._run import Interrupted, RunResult, StopSignals, _after_run, build_evaluator
    from wirelearn.engines.spark import spark_session
    from wirelearn.outputs import ProgressLine, print_summary
    from wirelearn.ui import Dashboard, should_use_dashboard

    setup = build_evaluator(args, None)
    scheme = "tcp-listen" if options.mode == "listen" else "tcp"
    name = f"{scheme}://{options.host}:{options.port} (spark)"
    receiver = _Receiver(args, setup, name, out)
    setup.evaluator.source_status = receiver.status
    use_ui = should_use_dashboard(
        stdout_isatty=out.isatty(),
        no_ui=bool(getattr(args, "no_ui", True)),
        json_to_stdout=receiver.frame_out is not None,
        env=os.environ,
    )
    dash = Dashboard() if use_ui else None
    receiver.dashboard = dash
    receiver.progress = dash is None
    result = RunResult(final=setup.evaluator.snapshot(final=True))
    handle: Any = None
    query: Any = None
    interval = float(getattr(args, "batch_interval", None) or 1.0)
    signals = StopSignals()
    try:
        with tempfile.TemporaryDirectory(prefix="wirelearn-stream-") as checkpoint, signals:
            try:
                handle = spark_session(getattr(args, "master", None), conf)
                spark = handle.spark
                spark.dataSource.register(PcapStreamDataSource)
                reader = spark.readStream.format(SOURCE_FORMAT).options(**options.to_options())
                stream = reader.load()
                with dash if dash is not None else contextlib.nullcontext():
                    query = (
                        stream.writeStream.foreachBatch(receiver)
                        .trigger(processingTime=f"{interval} seconds")
                        .option("checkpointLocation", checkpoint)
                        .queryName(f"wirelearn-{options.mode}-{options.port}")
                        .start()
                    )
                    while not receiver.done.wait(0.2):
                        if not query.isActive:
                            break
            except (KeyboardInterrupt, Interrupted):
                # Ctrl-C (Spark's own handler raises it too) or SIGTERM: stop cleanly.
                result.interrupted = True
            finally:
                signals.shutting_down()
                if query is not None:
                    with contextlib.suppress(Exception):
                        query.stop()
        if receiver.failure is not None:
            raise receiver.failure
        result.error = receiver.error
        if result.error is None and query is not None and not result.interrupted:
            failed = query.exception()
            if failed is not None:
                from wirelearn.errors import CaptureError

                first = str(failed).strip().splitlines()[0] if str(failed).strip() else repr(failed)
                result.error = CaptureError(f"the streaming query failed: {first}")
    finally:
        result.final = setup.evaluator.snapshot(final=True)
        closers: list[Any] = []
        if receiver.writer is not None:
            closers.append(receiver.writer.close)
        if receiver.metrics is not None:
            metrics = receiver.metrics
            closers += [lambda: metrics.write(result.final), metrics.close]
        for closer in closers:
            try:
                closer()
            except WirelearnError as exc:
                result.error = result.error or exc
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.close()
    try:
        summary_to = sys.stderr if receiver.frame_out is not None else out
        print_summary(result.final, summary_to)
        elapsed = time.monotonic() - receiver.t0
        print(
            f"wirelearn: {receiver.micro_batches:,} micro-batches; "
            + ProgressLine.line(result.final, elapsed),
            file=sys.stderr,
            flush=True,
        )
        post = _after_run(args, setup, result)
    finally:
        signals.restore()  # kept abort-on-second-signal through the summary and saving
    if result.interrupted:
        print("wirelearn: stopped", file=sys.stderr)
    error = result.error or (post[0] if post else None)
    if error is not None:
        print(f"wirelearn: error: {error}", file=sys.stderr)
        return error.exit_code
    return 0
