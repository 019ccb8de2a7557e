"""Uplink authentication: forged, replayed, truncated and random packets are never accepted."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.link.auth import (
    TAG_LEN,
    Key,
    KeyFileError,
    Reject,
    Signer,
    Verifier,
    load_key,
    write_key_file,
)
from flight.link.packets import Apid, encode_packet

pytestmark = pytest.mark.timeout(60)

SECRET = bytes(range(32))


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Signer, Verifier]:
    key = Key(1, SECRET)
    return Signer(key, tmp_path / "signer.json"), Verifier([key], tmp_path / "verifier.json")


def test_signed_command_is_accepted_once(pair: tuple[Signer, Verifier]) -> None:
    signer, verifier = pair
    tc = signer.sign(Apid.TC_COMMAND, b"\x00\x10hello", time_s=5.0)
    v = verifier.verify(tc)
    assert v is not None and v.body == b"\x00\x10hello" and v.apid == Apid.TC_COMMAND
    assert verifier.verify(tc) is None
    assert verifier.rejected[Reject.REPLAY] == 1


def test_forged_replayed_truncated_and_random_are_all_rejected(
    pair: tuple[Signer, Verifier], tmp_path: Path
) -> None:
    signer, verifier = pair
    rng = random.Random(7)
    good = [signer.sign(Apid.TC_COMMAND, bytes([i]) * 4) for i in range(20)]
    for tc in good:
        assert verifier.verify(tc) is not None
    expected = dict.fromkeys(Reject, 0)
    # replays, in order and out of order
    for tc in rng.sample(good, 10):
        assert verifier.verify(tc) is None
        expected[Reject.REPLAY] += 1
    # forged: one flipped bit anywhere in a fresh packet, or signed with another key
    for _ in range(30):
        tc = bytearray(signer.sign(Apid.TC_COMMAND, b"drive"))
        i = rng.randrange(6, len(tc))  # leave the primary header so the packet still parses
        tc[i] ^= 1 << rng.randrange(8)
        verifier.verify(bytes(tc))
    other = Signer(Key(1, b"x" * 32), tmp_path / "other.json")
    for _ in range(5):
        assert verifier.verify(other.sign(Apid.TC_LINK, b"ack everything")) is None
    unknown = Signer(Key(9, SECRET), tmp_path / "unknown.json")
    assert verifier.verify(unknown.sign(Apid.TC_COMMAND, b"x")) is None
    # truncated
    fresh = signer.sign(Apid.TC_COMMAND, b"some command bytes")
    for n in (0, 5, 12, 20, len(fresh) - 1):
        assert verifier.verify(fresh[:n]) is None
    # random bytes and a TM packet
    for _ in range(50):
        assert verifier.verify(rng.randbytes(rng.randrange(0, 120))) is None
    assert verifier.verify(encode_packet(Apid.EVENT, 0, 0.0, bytes(60))) is None
    assert verifier.accepted == 20
    total_rejects = sum(verifier.rejected.values())
    assert total_rejects == 10 + 30 + 5 + 1 + 5 + 50 + 1
    assert verifier.rejected[Reject.REPLAY] == expected[Reject.REPLAY]
    assert verifier.rejected[Reject.BAD_TAG] >= 5
    assert verifier.rejected[Reject.UNKNOWN_KEY] >= 1
    assert verifier.rejected[Reject.TRUNCATED] >= 4
    # the untouched fresh packet is still good (nothing above advanced the counter)
    assert verifier.verify(fresh) is not None


@given(st.binary(max_size=200))
@settings(max_examples=300, deadline=None)
def test_random_bytes_never_accepted(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    d = tmp_path_factory.mktemp("v")
    verifier = Verifier([Key(1, SECRET)], d / "v.json")
    assert verifier.verify(data) is None
    assert sum(verifier.rejected.values()) == 1


def test_counters_persist_across_restart(tmp_path: Path) -> None:
    key = Key(3, SECRET)
    signer = Signer(key, tmp_path / "s.json", block=4)
    verifier = Verifier([key], tmp_path / "v.json")
    sent = [signer.sign(Apid.TC_COMMAND, b"c%d" % i) for i in range(6)]
    for tc in sent[:5]:
        assert verifier.verify(tc)
    # both sides restart (the signer without a clean shutdown)
    signer2 = Signer(key, tmp_path / "s.json", block=4)
    verifier2 = Verifier([key], tmp_path / "v.json")
    assert signer2.next_counter > 6  # never reuses a counter handed out before the restart
    for tc in sent[:5]:
        assert verifier2.verify(tc) is None
    assert verifier2.rejected[Reject.REPLAY] == 5
    assert verifier2.verify(sent[5]) is not None  # in the window, never seen: accepted
    assert verifier2.verify(signer2.sign(Apid.TC_COMMAND, b"next")) is not None


def test_window_accepts_reordered_but_not_too_old(pair: tuple[Signer, Verifier]) -> None:
    signer, verifier = pair
    tcs = [signer.sign(Apid.TC_LINK, b"%d" % i) for i in range(100)]
    assert verifier.verify(tcs[99])
    assert verifier.verify(tcs[50])  # 49 back: inside the 64 window
    assert verifier.verify(tcs[10]) is None  # 89 back: outside
    assert verifier.rejected[Reject.REPLAY] == 1


def test_key_file_permissions_and_formats(tmp_path: Path) -> None:
    p = tmp_path / "k.hex"
    write_key_file(p, SECRET)
    assert load_key(p, 1).tag(b"a") == Key(1, SECRET).tag(b"a")
    raw = tmp_path / "k.bin"
    raw.write_bytes(b"\xff" * 24)
    os.chmod(raw, 0o600)
    assert load_key(raw, 2).tag(b"a") == Key(2, b"\xff" * 24).tag(b"a")
    os.chmod(p, 0o640)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key(p, 1)
    os.chmod(p, 0o604)
    with pytest.raises(KeyFileError):
        load_key(p, 1)
    short = tmp_path / "short"
    short.write_bytes(b"abc")
    os.chmod(short, 0o600)
    with pytest.raises(KeyFileError):
        load_key(short, 1)
    with pytest.raises(KeyFileError):
        load_key(tmp_path / "missing", 1)


def test_key_never_in_repr_or_logs(
    pair: tuple[Signer, Verifier], caplog: pytest.LogCaptureFixture
) -> None:
    signer, verifier = pair
    caplog.set_level("DEBUG")
    verifier.verify(signer.sign(Apid.TC_COMMAND, b"x")[:-1] + b"\x00")
    texts = [repr(signer.key), str(signer.key), repr(signer), repr(verifier), caplog.text]
    for text in texts:
        assert SECRET.hex() not in text and repr(SECRET) not in text
    assert len(signer.sign(Apid.TC_COMMAND, b"")) == 12 + 10 + TAG_LEN
