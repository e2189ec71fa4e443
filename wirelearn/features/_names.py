"""Names people read for ethertypes and IP protocols."""

from __future__ import annotations

from typing import Final

__all__ = ["ETHERTYPE_NAMES", "IP_PROTO_NAMES", "ethertype_name", "ip_proto_name"]

ETHERTYPE_NAMES: Final[dict[int, str]] = {
    0x0800: "IPv4",
    0x0806: "ARP",
    0x0842: "WoL",
    0x22F0: "AVTP",
    0x22F3: "TRILL",
    0x6003: "DECnet",
    0x8035: "RARP",
    0x809B: "AppleTalk",
    0x80F3: "AARP",
    0x8100: "802.1Q",
    0x8137: "IPX",
    0x8809: "Slow",
    0x8847: "MPLS",
    0x8848: "MPLS-mc",
    0x8863: "PPPoE-D",
    0x8864: "PPPoE-S",
    0x886D: "Intel-ANS",
    0x888E: "EAPOL",
    0x8892: "PROFINET",
    0x889A: "HyperSCSI",
    0x88A2: "AoE",
    0x88A4: "EtherCAT",
    0x88A8: "802.1ad",
    0x88AB: "Powerlink",
    0x88B8: "GOOSE",
    0x88CC: "LLDP",
    0x88CD: "SERCOS",
    0x88E1: "HomePlug",
    0x88E3: "MRP",
    0x88E5: "MACsec",
    0x88E7: "PBB",
    0x88F7: "PTP",
    0x8902: "CFM",
    0x8906: "FCoE",
    0x8914: "FIP",
    0x893A: "1905.1",
    0x9000: "Loopback",
    0x9100: "QinQ",
    0x86DD: "IPv6",
}

IP_PROTO_NAMES: Final[dict[int, str]] = {
    0: "HOPOPT",
    1: "ICMP",
    2: "IGMP",
    4: "IPIP",
    6: "TCP",
    8: "EGP",
    9: "IGP",
    17: "UDP",
    27: "RDP",
    33: "DCCP",
    41: "IPv6",
    46: "RSVP",
    47: "GRE",
    50: "ESP",
    51: "AH",
    58: "ICMPv6",
    59: "NoNxt",
    88: "EIGRP",
    89: "OSPF",
    94: "IPIP",
    103: "PIM",
    108: "IPComp",
    112: "VRRP",
    115: "L2TP",
    132: "SCTP",
    135: "MobHdr",
    136: "UDPLite",
    137: "MPLS-in-IP",
    143: "Ethernet",
}


def ethertype_name(value: int) -> str | None:
    """A short name for an ethertype (or ``802.3`` for a length field).

    >>> ethertype_name(0x0800), ethertype_name(46), ethertype_name(0x1234)
    ('IPv4', '802.3', '0x1234')
    """
    if value < 0:
        return None
    if value < 0x0600:
        return "802.3"
    return ETHERTYPE_NAMES.get(value, f"0x{value:04x}")


def ip_proto_name(value: int) -> str | None:
    """A short name for an IP protocol number.

    >>> ip_proto_name(6), ip_proto_name(200)
    ('TCP', '200')
    """
    if value < 0:
        return None
    return IP_PROTO_NAMES.get(value, str(value))
