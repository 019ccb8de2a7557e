"""The reference firmware's protocol core against the host codec: the firmware we ship, tested.

The end-to-end behaviour (handshake, ACK latency, stream, watchdog, reconnect with the real
driver over a pty) runs in test_mcu.py on the ``firmware-pty`` backend; here are the codec
properties and the core's answers to bad input.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from hal.mcu import protocol as p
from hil.fwhost import FIRMWARE_DIR, PlantBoard, load_firmware
from sim_hw.plant import SimplePlant

pytestmark = pytest.mark.timeout(60)

fw = load_firmware()


class Board(PlantBoard):
    def __init__(self) -> None:
        super().__init__(SimplePlant(seed=1))


def make() -> tuple[object, list[bytes]]:
    out: list[bytes] = []
    return fw.Firmware(Board(), out.append), out


def replies(out: list[bytes]) -> list[p.Message]:
    dec = p.FrameDecoder()
    msgs = [d.msg for frame in out for d in dec.feed(frame)]
    assert dec.counters.dropped == 0
    return msgs


def test_crc_check_value_and_table_match_the_host() -> None:
    assert fw.crc16(b"123456789") == 0x29B1
    assert tuple(fw.CRC_TABLE) == p.CRC16_TABLE


@given(st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_cobs_matches_the_cobs_package(data: bytes) -> None:
    enc = fw.cobs_encode(data)
    assert enc == cobs.encode(data)
    assert fw.cobs_decode(enc) == data


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_cobs_decode_agrees_on_arbitrary_input(data: bytes) -> None:
    try:
        want = cobs.decode(data)
    except cobs.DecodeError:
        want = None
    assert fw.cobs_decode(data) == want


@given(st.integers(0, 255), st.integers(0, 0xFFFF), st.binary(max_size=p.MAX_PAYLOAD))
@settings(max_examples=300, deadline=None)
def test_frames_are_byte_identical_both_ways(msg_id: int, seq: int, payload: bytes) -> None:
    ours = fw.encode_frame(msg_id, seq, payload)
    assert ours == p.encode_frame(msg_id, seq, payload)
    status, version, mid, s, pl = fw.decode_frame(ours[:-1])
    assert (status, version, mid, s, pl) == ("ok", 1, msg_id, seq, payload)


@given(st.binary(min_size=1, max_size=300))
@settings(max_examples=300, deadline=None)
def test_decode_verdicts_match_the_host(encoded: bytes) -> None:
    status = fw.decode_frame(encoded)[0]
    try:
        packet = p.decode_frame(encoded)
    except p.FrameError as exc:
        assert status == exc.kind
    else:
        assert status == "ok" and fw.decode_frame(encoded)[4] == packet.payload


@given(st.lists(st.binary(max_size=400), max_size=20))
@settings(max_examples=200, deadline=None)
def test_any_bytes_never_raise_and_everything_sent_is_a_valid_frame(chunks: list[bytes]) -> None:
    firmware, out = make()
    for i, chunk in enumerate(chunks):
        firmware.feed(chunk, i)
        firmware.tick(i)
    replies(out)  # whatever it answered decodes cleanly on the host


def test_handshake_commands_and_refusals() -> None:
    firmware, out = make()
    firmware.feed(p.encode(p.SetWheels(100, 100), 1), 0)
    firmware.feed(p.encode(p.Hello(), 2), 1)
    firmware.feed(p.encode(p.SetWheels(100, -100), 3), 2)
    firmware.feed(p.encode(p.SetWheels(5000, 0), 4), 3)
    firmware.feed(p.encode_frame(p.SetWheels.MSG_ID, 5, b"\x01"), 4)  # short payload
    firmware.feed(p.encode_frame(0x55, 6, b""), 5)  # unknown id
    firmware.feed(p.encode_frame(p.Hello.MSG_ID, 7, p.Hello().pack(), version=9), 6)
    firmware.feed(p.encode(p.SetStreamRate(2000), 8), 7)
    firmware.feed(p.encode(p.SetWatchdog(5), 9), 8)
    bad = bytearray(p.encode(p.Stop(), 10))
    bad[3] ^= 0x01  # CRC mismatch: never answered
    firmware.feed(bytes(bad), 9)
    msgs = replies(out)
    assert msgs[0] == p.Nack(1, p.SetWheels.MSG_ID, p.NackReason.NOT_READY)
    assert isinstance(msgs[1], p.Version) and msgs[1].firmware == "1.0.0"
    assert msgs[2] == p.Ack(3, p.SetWheels.MSG_ID)
    assert [m.reason for m in msgs[3:]] == [p.NackReason.OUT_OF_RANGE, p.NackReason.BAD_LENGTH,
                                           p.NackReason.UNKNOWN_MESSAGE, p.NackReason.BAD_VERSION,
                                           p.NackReason.OUT_OF_RANGE, p.NackReason.OUT_OF_RANGE]
    assert firmware.counters["crc"] == 1 and firmware.board.plant.command == [0.1, -0.1]


def test_watchdog_and_stream_on_the_millisecond_clock() -> None:
    firmware, out = make()
    firmware.feed(p.encode(p.Hello(), 1), 0)
    firmware.feed(p.encode(p.SetWatchdog(100), 2), 0)
    firmware.feed(p.encode(p.SetStreamRate(50), 3), 0)
    firmware.feed(p.encode(p.SetWheels(300, 300), 4), 0)
    for ms in range(0, 101):
        firmware.tick(ms)
    assert firmware.board.plant.command == [0.3, 0.3]  # 100 ms of silence: not yet
    firmware.tick(101)
    assert firmware.board.plant.command == [0.0, 0.0]
    assert firmware.faults & fw.WATCHDOG_STOP and firmware.counters["watchdog_trips"] == 1
    for ms in range(102, 200):
        firmware.tick(ms)
    reports = [m for m in replies(out) if isinstance(m, p.SensorReport)]
    assert len(reports) == 10  # 50 Hz over 0..199 ms
    assert reports[-1].fault_flags & p.FaultFlags.WATCHDOG_STOP
    firmware.feed(p.encode(p.Hello(), 5), 200)
    assert not firmware.faults & fw.WATCHDOG_STOP


def test_core_uses_only_what_micropython_has() -> None:
    tree = ast.parse((FIRMWARE_DIR / "magpie_fw.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"struct", "ustruct"}, imported
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.AnnAssign | ast.AsyncFunctionDef)]
    main = ast.parse((FIRMWARE_DIR / "main.py").read_text())
    assert main.body  # the board binding exists and parses
    assert Path(FIRMWARE_DIR / "README.md").read_text().count("mpremote") >= 2


def test_the_rover_firmware_answers_sampling_commands_unsupported() -> None:
    firmware, out = make()
    firmware.feed(p.encode(p.Hello(), 1), 0)
    firmware.feed(p.encode(p.DrillStart.from_si(2.0, 10.0), 2), 1)
    firmware.feed(p.encode(p.ContainerSeal(), 3), 2)
    msgs = replies(out)
    assert not msgs[0].capabilities & int(p.Capability.sampling())  # type: ignore[attr-defined]
    assert msgs[1:] == [p.Nack(2, p.DrillStart.MSG_ID, p.NackReason.UNSUPPORTED),
                        p.Nack(3, p.ContainerSeal.MSG_ID, p.NackReason.UNSUPPORTED)]
    assert firmware.counters["unsupported"] == 2
