"""MAC addresses: first-seen codes, model features, vendor names."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from conftest import FIXTURES, need_tool
from scapy.config import conf

from wirelearn.capture import FrameBatch, open_capture
from wirelearn.errors import ConfigError
from wirelearn.features import MacEncoder, decode, mac_features, vendor_names


def _mac(text: str) -> int:
    return int(text.replace(":", ""), 16)


def test_codes_are_first_seen_stable_and_null_safe() -> None:
    enc = MacEncoder()
    a, b, c, d = 0x0A, 0x0B, 0x0C, 0x0D
    assert enc.encode(np.array([b, -1, a, b, -1])).tolist() == [0, -1, 1, 0, -1]
    # Codes stay, new addresses continue the numbering in order of appearance.
    assert enc.encode(np.array([d, a, c, d, b])).tolist() == [2, 1, 3, 2, 0]
    assert enc.encode(np.array([], dtype=np.int64)).tolist() == []
    assert enc.encode(np.full(3, -1)).tolist() == [-1, -1, -1]
    assert len(enc) == 4 and enc.evictions == 0


def test_unseen_addresses_never_raise() -> None:
    rng = np.random.default_rng(1)
    enc = MacEncoder()
    for _ in range(5):
        macs = rng.integers(-1, 1 << 48, 5000)
        codes = enc.encode(macs)
        assert (codes[macs < 0] == -1).all() and (codes[macs >= 0] >= 0).all()
        # Equal addresses, equal codes; different addresses, different codes.
        pairs = {(int(m), int(c)) for m, c in zip(macs, codes, strict=True) if m >= 0}
        assert len({m for m, _ in pairs}) == len(pairs) == len({c for _, c in pairs})


def test_eviction_is_bounded_least_recently_seen_first() -> None:
    enc = MacEncoder(max_entries=3)
    assert enc.encode(np.array([1, 2, 3])).tolist() == [0, 1, 2]
    assert enc.encode(np.array([1])).tolist() == [0]  # 1 is now the most recent
    assert enc.encode(np.array([4])).tolist() == [3]  # evicts 2, the least recently seen
    assert enc.evictions == 1 and len(enc) == 3
    assert enc.encode(np.array([1, 3, 4])).tolist() == [0, 2, 3]
    assert enc.encode(np.array([2])).tolist() == [4]  # 2 comes back with a new code

    big = MacEncoder(max_entries=1000)
    rng = np.random.default_rng(2)
    for _ in range(20):
        big.encode(rng.integers(0, 1 << 48, 4096))
    assert len(big) == 1000
    assert big.evictions == 20 * 4096 - 1000
    with pytest.raises(ConfigError, match="max_entries"):
        MacEncoder(max_entries=0)


def test_mac_features_bits_and_hash() -> None:
    macs = np.array(
        [
            _mac("ff:ff:ff:ff:ff:ff"),
            _mac("01:00:5e:00:00:fb"),  # IPv4 multicast
            _mac("33:33:00:00:00:01"),  # IPv6 multicast
            _mac("02:42:ac:11:00:02"),  # locally administered (docker)
            _mac("00:00:0c:12:34:56"),  # Cisco
            _mac("00:00:0c:ab:cd:ef"),  # Cisco again
            -1,
        ]
    )
    f = mac_features(macs)
    assert f["broadcast"][:6].tolist() == [1, 0, 0, 0, 0, 0]
    assert f["multicast"][:6].tolist() == [1, 1, 1, 0, 0, 0]
    assert f["local"][:6].tolist() == [1, 0, 1, 1, 0, 0]
    oui = f["oui"]
    assert oui[4] == oui[5] and len(set(oui[:5].tolist())) == 5  # one vendor, one value
    assert ((oui[:6] >= 0) & (oui[:6] < 1)).all()
    assert all(np.isnan(v[6]) for v in f.values())
    assert not np.array_equal(mac_features(macs, seed=1)["oui"][:6], oui[:6])
    np.testing.assert_array_equal(mac_features(macs)["oui"], oui)  # deterministic


def test_vendor_names_for_known_ouis() -> None:
    macs = np.array(
        [
            _mac("00:00:0c:12:34:56"),
            _mac("00:1b:21:00:00:01"),
            _mac("02:42:ac:11:00:02"),
            _mac("ff:ff:ff:ff:ff:ff"),
            -1,
        ]
    )
    names = vendor_names(macs)
    assert names[0] == "Cisco Systems, Inc"
    assert names[1] is not None and "Intel" in names[1]
    assert names[2:].tolist() == [None, None, None]
    assert vendor_names(macs[:1], short=True).tolist() == ["Cisco"]


@pytest.mark.parametrize(
    "name", ["service-eapon1.pcap", "dhcp-arp-icmp.pcap", "service-ssh.pcap", "lldp.pcap"]
)
def test_vendor_names_match_scapy_and_tshark_on_real_addresses(name: str) -> None:
    with open_capture(FIXTURES / name) as src:
        batch = FrameBatch.concat(list(src))
    fb = decode(batch)
    ours = vendor_names(fb.src_mac)
    short = vendor_names(fb.src_mac, short=True)
    # scapy's own lookup, one frame at a time: the straightforward reference.
    for mac, vendor, brief in zip(fb.src_mac.tolist(), ours.tolist(), short.tolist(), strict=True):
        text = ":".join(f"{mac:012x}"[i : i + 2] for i in range(0, 12, 2))
        want_short, want_long = conf.manufdb.lookup(text)
        registered = want_long != text and not (mac >> 40) & 0x03
        assert vendor == (want_long if registered else None)
        assert brief == (want_short if registered else None)
    # tshark's OUI resolution (its own copy of the same Wireshark database).
    out = subprocess.run(
        [
            need_tool("tshark"),
            "-r",
            str(FIXTURES / name),
            "-T",
            "fields",
            "-e",
            "eth.src.oui_resolved",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    known = [(o, t) for o, t in zip(ours.tolist(), out, strict=True) if o is not None and t]
    assert known, "the fixture has registered vendors"
    for o, t in known:
        assert o == t, (o, t)
