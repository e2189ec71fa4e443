"""Frame sources, capture file readers and writers.

Every source yields ``FrameBatch`` objects: raw frames in numpy arrays.
"""

from __future__ import annotations

from wirelearn.capture._batch import LINKTYPE_NAMES, FrameBatch, Interface, linktype_name
from wirelearn.capture._bpf import BpfFilter, BpfProgram, compile_bpf, run_bpf
from wirelearn.capture._decoder import CaptureDecoder
from wirelearn.capture._interfaces import InterfaceInfo, list_interfaces
from wirelearn.capture._live import LiveSource
from wirelearn.capture._privileges import drop_privileges
from wirelearn.capture._reader import CaptureFileSource, open_capture, read_batches
from wirelearn.capture._serial import SerialSource
from wirelearn.capture._slip import SlipDecoder, slip_encode
from wirelearn.capture._source import MemorySource, Source, SourceStats
from wirelearn.capture._tcp import TcpClientSource, TcpListenSource, parse_hostport
from wirelearn.capture._threaded import BackgroundSource
from wirelearn.capture._writer import (
    PcapngWriter,
    PcapWriter,
    Writer,
    encode_pcap_header,
    encode_pcap_records,
    encode_pcapng_epbs,
    encode_pcapng_idb,
    encode_pcapng_shb,
    open_writer,
)

__all__ = [
    "LINKTYPE_NAMES",
    "BackgroundSource",
    "BpfFilter",
    "BpfProgram",
    "CaptureDecoder",
    "CaptureFileSource",
    "FrameBatch",
    "Interface",
    "InterfaceInfo",
    "LiveSource",
    "MemorySource",
    "PcapWriter",
    "PcapngWriter",
    "SerialSource",
    "SlipDecoder",
    "Source",
    "SourceStats",
    "TcpClientSource",
    "TcpListenSource",
    "Writer",
    "compile_bpf",
    "drop_privileges",
    "encode_pcap_header",
    "encode_pcap_records",
    "encode_pcapng_epbs",
    "encode_pcapng_idb",
    "encode_pcapng_shb",
    "linktype_name",
    "list_interfaces",
    "open_capture",
    "open_writer",
    "parse_hostport",
    "read_batches",
    "run_bpf",
    "slip_encode",
]
