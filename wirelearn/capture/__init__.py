"""Frame sources, capture file readers and writers.

Every source yields ``FrameBatch`` objects: raw frames in numpy arrays.
"""

from __future__ import annotations

from wirelearn.capture._batch import LINKTYPE_NAMES, FrameBatch, Interface, linktype_name
from wirelearn.capture._source import MemorySource, Source, SourceStats
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
    "FrameBatch",
    "Interface",
    "MemorySource",
    "PcapWriter",
    "PcapngWriter",
    "Source",
    "SourceStats",
    "Writer",
    "encode_pcap_header",
    "encode_pcap_records",
    "encode_pcapng_epbs",
    "encode_pcapng_idb",
    "encode_pcapng_shb",
    "linktype_name",
    "open_writer",
]
