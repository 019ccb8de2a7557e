"""The MCU wire protocol: message layouts, CRC-16/CCITT-FALSE, COBS framing and a stream decoder.

One format joins the Raspberry Pi and its microcontroller, so this module is the reference a
firmware author reads beside ``PROTOCOL.md``. A frame on the wire is::

    COBS( header | payload | crc16 ) 0x00

    header  = version u8, message id u8, sequence u16          (little-endian)
    payload = fixed struct layout per message id                 (little-endian)
    crc16   = CRC-16/CCITT-FALSE over header+payload, u16        (little-endian)

Everything here is pure and thread-free; the driver and the emulator share it.
"""

from __future__ import annotations

import binascii
import enum
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import ClassVar, NamedTuple

from cobs import cobs

from hal.errors import ProtocolError

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
HEADER = struct.Struct("<BBH")
CRC = struct.Struct("<H")
MAX_PAYLOAD = 250
#: Largest decoded frame (header + payload + CRC).
MAX_FRAME = HEADER.size + MAX_PAYLOAD + CRC.size
#: Largest COBS-encoded frame without its delimiter (one overhead byte per 254 bytes, plus one).
MAX_ENCODED = MAX_FRAME + MAX_FRAME // 254 + 1

# ------------------------------------------------------------------------------------------
# CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor. Check value of
# b"123456789" is 0x29B1.


def _make_crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


#: The 256-entry table a firmware copies (one lookup per byte, MSB first).
CRC16_TABLE: tuple[int, ...] = _make_crc_table()


def crc16_table(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE, table-driven in pure Python: the reference for firmware authors."""
    table = CRC16_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFF00) ^ table[(crc >> 8) ^ byte]
    return crc


try:  # anycrc computes several bytes a step in C: about 3x binascii's byte-a-step table on a frame
    from anycrc import Model as _CrcModel

    _crc_fast = _CrcModel("CRC16-IBM-3740").calc  # the catalogue's name for CCITT-FALSE
except ImportError:  # pragma: no cover - the standard library's is the same CRC, slower
    _crc_fast = None

#: binascii's CRC of data of ``n`` bytes, continued from a given value (the standard library's
#: CRC-16/CCITT with the start value 0xFFFF is CCITT-FALSE).
_crc_hqx = binascii.crc_hqx
#: Below this many bytes binascii's table is the faster: anycrc pays a fixed ~0.35 us a call (it
#: takes a typed view of the buffer), binascii ~0.03 us and ~3 ns a byte. Measured side by side.
CRC_SHORT = 104


def _crc_std(data: bytes | bytearray | memoryview, init: int = 0xFFFF) -> int:
    return _crc_hqx(data, init)


_crc = _crc_std if _crc_fast is None else _crc_fast


def crc16(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE, fast path.

    ``anycrc``'s CRC16-IBM-3740 (its catalogue name for CCITT-FALSE: poly 0x1021, init 0xFFFF,
    MSB first, no final xor) from :data:`CRC_SHORT` bytes up, below it (or without anycrc)
    ``binascii.crc_hqx`` started from 0xFFFF, the same CRC in the standard library. Both are
    checked against :func:`crc16_table` at import time and by the property tests; ``crc``
    continues a running CRC.
    """
    return _crc_hqx(data, crc) if len(data) < CRC_SHORT else _crc(data, crc)


def _crc_continued(crc: int, data: bytes) -> int:
    return crc16_table(data, crc)


#: The CRC check without cutting the CRC off the frame. Run on over two more bytes ``d``, a CRC
#: value ``c`` becomes ``A c ^ B d`` (the CRC has no final xor, so it is linear), with ``A``
#: (sixteen steps of the register) one to one. So, ``d`` being the frame's own last two bytes,
#: the CRC of the whole body equals what the stored value ``r`` becomes over ``d`` exactly when
#: the CRC of the rest is ``r``. That value is linear in ``r`` alone (``d`` is ``r``, low byte
#: first), so it is two table lookups: ``RESIDUE_LO[r & 0xFF] ^ RESIDUE_HI[r >> 8]``.
RESIDUE_LO: tuple[int, ...] = tuple(_crc_continued(r, bytes((r, 0))) for r in range(256))
RESIDUE_HI: tuple[int, ...] = tuple(_crc_continued(r << 8, bytes((0, r))) for r in range(256))


def residue_ok(body: bytes | bytearray) -> bool:
    """Whether a decoded frame (header, payload, CRC; at least two bytes) carries a good CRC."""
    return crc16(body) == RESIDUE_LO[body[-2]] ^ RESIDUE_HI[body[-1]]


if not crc16(b"123456789") == crc16_table(b"123456789") == _crc(b"123456789") == 0x29B1:  # pragma: no cover
    raise ImportError("CRC-16/CCITT-FALSE self-check failed")
if not residue_ok(b"123456789\xb1\x29") or residue_ok(b"123456789\x29\xb1"):  # pragma: no cover
    raise ImportError("CRC-16/CCITT-FALSE residue self-check failed")

# ------------------------------------------------------------------------------------------
# Enumerations carried in payloads.


class NackReason(enum.IntEnum):
    """Why the MCU refused a frame whose CRC was good (a bad CRC is dropped silently)."""

    UNKNOWN_MESSAGE = 1
    BAD_LENGTH = 2
    OUT_OF_RANGE = 3
    BUSY = 4
    BAD_VERSION = 5
    NOT_READY = 6  # a command arrived before HELLO
    FAULT_ACTIVE = 7  # a latched fault forbids the command
    UNSUPPORTED = 8  # the firmware has no such device (a drill command to a rover's MCU)
    REFUSED = 9  # the device's state forbids it now (drill jammed, container still empty)


class FaultFlags(enum.IntFlag):
    """Bits of SENSOR_REPORT.fault_flags."""

    NONE = 0
    WATCHDOG_STOP = 1 << 0  # link silent past the watchdog timeout; motors stopped
    STALL_LEFT = 1 << 1
    STALL_RIGHT = 1 << 2
    OVERCURRENT = 1 << 3
    UNDERVOLTAGE = 1 << 4
    OVERTEMP = 1 << 5
    IMU_FAULT = 1 << 6
    ENCODER_FAULT = 1 << 7


class Capability(enum.IntFlag):
    """Bits of VERSION.capabilities."""

    NONE = 0
    ENCODERS = 1 << 0
    IMU = 1 << 1
    POWER = 1 << 2
    THERMAL = 1 << 3
    SOLAR = 1 << 4
    DRILL = 1 << 5
    SAMPLE_ARM = 1 << 6
    SAMPLE_CONTAINER = 1 << 7
    ASCENT = 1 << 8

    @classmethod
    def sampling(cls) -> Capability:
        """The bits of a sample-return lander's sampling board."""
        return cls.DRILL | cls.SAMPLE_ARM | cls.SAMPLE_CONTAINER | cls.ASCENT


class SamplingFlags(enum.IntFlag):
    """Bits of SAMPLING_REPORT.flags."""

    NONE = 0
    ARM_MOVING = 1 << 0
    ARM_SCOOPING = 1 << 1
    CONTAINER_SEALED = 1 << 2
    CONTAINER_SEALING = 1 << 3
    ASCENT_READY = 1 << 4
    ASCENT_ARMED = 1 << 5


# ------------------------------------------------------------------------------------------
# Messages. Each is a frozen dataclass whose fields are its payload layout, in order.


class Message:
    """Base of every message: ``pack()`` gives the payload bytes, ``unpack()`` parses them.

    Each catalogued class gets two small functions compiled from its fields by
    :func:`_bind_codec`: its layout values in order (a vector field spreads over several), and
    the reverse, which fills a new instance's slots directly. Both are the dataclass's own
    field order, so they cannot drift from the declaration; the second skips the generated
    ``__init__``, which on a frozen class costs a call per field and was most of the time a
    report took to decode.
    """

    __slots__ = ()
    MSG_ID: ClassVar[int]
    LAYOUT: ClassVar[struct.Struct]
    #: Fields that take several layout values (a vector), by name; every other field takes one.
    WIDTHS: ClassVar[dict[str, int]] = {}

    @staticmethod
    def _values(msg: Message) -> tuple:
        return tuple(getattr(msg, f.name) for f in fields(msg))  # type: ignore[arg-type]

    @classmethod
    def _build(cls, values: tuple) -> Message:
        return cls(*values)

    def pack(self) -> bytes:
        try:
            return self.LAYOUT.pack(*self._values(self))
        except struct.error as exc:
            raise ValueError(f"{type(self).__name__} field out of range: {exc}") from exc

    @classmethod
    def unpack(cls, payload: bytes) -> Message:
        return cls._build(cls.LAYOUT.unpack(payload))


def _bind_codec(cls: type[Message]) -> type[Message]:
    """Compile ``cls._values`` and ``cls._build`` from its fields (see :class:`Message`)."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    env: dict[str, object] = {"_new": object.__new__, "_cls": cls}
    spread, build = [], ["def _build(v):", "    o = _new(_cls)"]
    at = 0
    for k, name in enumerate(names):
        width = cls.WIDTHS.get(name, 1)
        spread.append(f"m.{name}," if width == 1 else f"*m.{name},")
        env[f"_set{k}"] = getattr(cls, name).__set__  # the slot's own setter: frozen or not
        build.append(f"    _set{k}(o, v[{at}])" if width == 1 else f"    _set{k}(o, v[{at}:{at + width}])")
        at += width
    build.append("    return o")
    if at != len(cls.LAYOUT.unpack(bytes(cls.LAYOUT.size))):
        raise TypeError(f"{cls.__name__}: fields take {at} values, the layout has another count")
    exec(f"def _values(m):\n    return ({' '.join(spread)})\n" + "\n".join(build), env)  # noqa: S102
    cls._values = staticmethod(env["_values"])  # type: ignore[assignment]
    cls._build = staticmethod(env["_build"])  # type: ignore[assignment]
    return cls


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """Host -> MCU, first frame of every connection. The MCU answers VERSION."""

    MSG_ID: ClassVar[int] = 0x01
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<BI")
    protocol_version: int = PROTOCOL_VERSION
    host_id: int = 0


@dataclass(frozen=True, slots=True)
class Version(Message):
    """MCU -> host, the answer to HELLO."""

    MSG_ID: ClassVar[int] = 0x02
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<BBBBHI")
    protocol_version: int = PROTOCOL_VERSION
    fw_major: int = 0
    fw_minor: int = 0
    fw_patch: int = 0
    board_id: int = 0
    capabilities: int = 0

    @property
    def firmware(self) -> str:
        return f"{self.fw_major}.{self.fw_minor}.{self.fw_patch}"


@dataclass(frozen=True, slots=True)
class Ack(Message):
    """MCU -> host: the command with this sequence number and id was accepted."""

    MSG_ID: ClassVar[int] = 0x03
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<HB")
    acked_seq: int = 0
    acked_id: int = 0


@dataclass(frozen=True, slots=True)
class Nack(Message):
    """MCU -> host: the command was refused; ``reason`` is a :class:`NackReason` value."""

    MSG_ID: ClassVar[int] = 0x04
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<HBB")
    nacked_seq: int = 0
    nacked_id: int = 0
    reason: int = NackReason.UNKNOWN_MESSAGE

    @property
    def reason_name(self) -> str:
        try:
            return NackReason(self.reason).name
        except ValueError:
            return f"REASON_{self.reason}"


@dataclass(frozen=True, slots=True)
class SetWheels(Message):
    """Host -> MCU: wheel rim speeds as signed millimetres per second (i16, +-32.767 m/s)."""

    MSG_ID: ClassVar[int] = 0x10
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<hh")
    left_mm_s: int = 0
    right_mm_s: int = 0

    @classmethod
    def from_mps(cls, left_mps: float, right_mps: float) -> SetWheels:
        """Round m/s to mm/s; raises ValueError outside the i16 range or for NaN."""
        vals = []
        for v in (left_mps, right_mps):
            if v != v or abs(v) > 32.767:
                raise ValueError(f"wheel speed {v!r} m/s outside +-32.767 m/s")
            vals.append(round(v * 1000.0))
        return cls(*vals)


@dataclass(frozen=True, slots=True)
class Stop(Message):
    """Host -> MCU: stop both sides now."""

    MSG_ID: ClassVar[int] = 0x11
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<")


@dataclass(frozen=True, slots=True)
class SetStreamRate(Message):
    """Host -> MCU: SENSOR_REPORT rate in Hz (0 stops the stream)."""

    MSG_ID: ClassVar[int] = 0x12
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<H")
    rate_hz: int = 0


@dataclass(frozen=True, slots=True)
class ResetEncoders(Message):
    """Host -> MCU: zero both encoder counters."""

    MSG_ID: ClassVar[int] = 0x13
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<")


@dataclass(frozen=True, slots=True)
class SetWatchdog(Message):
    """Host -> MCU: stop the motors after this many ms without a valid frame (default 500)."""

    MSG_ID: ClassVar[int] = 0x14
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<H")
    timeout_ms: int = 500


@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    """Either way, not acknowledged: keeps the link alive. The MCU answers with its own."""

    MSG_ID: ClassVar[int] = 0x20
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<I")
    time_ms: int = 0


Vec3 = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class SensorReport(Message):
    """MCU -> host, streamed at the set rate: everything the MCU measures, 84 bytes."""

    MSG_ID: ClassVar[int] = 0x30
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<Iii2f3f3f5f4fI")
    mcu_time_ms: int = 0
    left_ticks: int = 0
    right_ticks: int = 0
    left_current_a: float = 0.0
    right_current_a: float = 0.0
    accel_mps2: Vec3 = (0.0, 0.0, 0.0)
    gyro_rads: Vec3 = (0.0, 0.0, 0.0)
    imu_temp_c: float = 0.0
    bus_v: float = 0.0
    current_a: float = 0.0  # positive = discharging
    soc: float = 0.0  # 0..1
    solar_w: float = 0.0
    temp_motor_left_c: float = 0.0
    temp_motor_right_c: float = 0.0
    temp_battery_c: float = 0.0
    temp_board_c: float = 0.0
    fault_flags: int = 0

    #: Names of the temperatures, in payload order, as read_thermal() reports them.
    TEMP_NAMES: ClassVar[tuple[str, ...]] = ("motor_left", "motor_right", "battery", "board")
    WIDTHS: ClassVar[dict[str, int]] = {"accel_mps2": 3, "gyro_rads": 3}

    def temps(self) -> dict[str, float]:
        vals = (self.temp_motor_left_c, self.temp_motor_right_c, self.temp_battery_c,
                self.temp_board_c)
        return dict(zip(self.TEMP_NAMES, vals, strict=True))


# Sampling: a sample-return lander's drill, scoop arm, container and ascent interface. Integers
# on the way in (millimetres, micrometres per second, centidegrees) so firmware needs no floats to
# check a command; floats on the way out, like SENSOR_REPORT.


def _scaled(value: float, scale: float, lo: int, hi: int, what: str) -> int:
    if value != value or not lo <= round(value * scale) <= hi:
        raise ValueError(f"{what} {value!r} outside {lo / scale:g}..{hi / scale:g}")
    return round(value * scale)


@dataclass(frozen=True, slots=True)
class DrillStart(Message):
    """Host -> MCU: drill down to ``target_mm`` (u16 mm) at ``rate_um_s`` (u16 micrometres/s)."""

    MSG_ID: ClassVar[int] = 0x40
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<HH")
    target_mm: int = 0
    rate_um_s: int = 0

    @classmethod
    def from_si(cls, target_m: float, rate_mm_s: float) -> DrillStart:
        """Round metres and mm/s to the wire's units; ValueError outside them or for NaN."""
        return cls(_scaled(target_m, 1000.0, 0, 0xFFFF, "drill target m"),
                   _scaled(rate_mm_s, 1000.0, 0, 0xFFFF, "drill rate mm/s"))


@dataclass(frozen=True, slots=True)
class DrillStop(Message):
    """Host -> MCU: stop the drill where it is."""

    MSG_ID: ClassVar[int] = 0x41
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<")


@dataclass(frozen=True, slots=True)
class DrillRetract(Message):
    """Host -> MCU: pull the bit back to the surface (frees a jam, hands the core over)."""

    MSG_ID: ClassVar[int] = 0x42
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<")


@dataclass(frozen=True, slots=True)
class ArmMove(Message):
    """Host -> MCU: move the scoop arm's joints to these angles (i16 centidegrees)."""

    MSG_ID: ClassVar[int] = 0x43
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<hh")
    shoulder_cdeg: int = 0
    elbow_cdeg: int = 0

    @classmethod
    def from_deg(cls, shoulder_deg: float, elbow_deg: float) -> ArmMove:
        return cls(_scaled(shoulder_deg, 100.0, -0x8000, 0x7FFF, "shoulder deg"),
                   _scaled(elbow_deg, 100.0, -0x8000, 0x7FFF, "elbow deg"))


@dataclass(frozen=True, slots=True)
class ArmScoop(Message):
    """Host -> MCU: close the scoop through the surface under it."""

    MSG_ID: ClassVar[int] = 0x44
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<")


@dataclass(frozen=True, slots=True)
class ArmDeposit(Message):
    """Host -> MCU: empty the scoop into the sample container (from the stow pose)."""

    MSG_ID: ClassVar[int] = 0x45
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<")


@dataclass(frozen=True, slots=True)
class ContainerSeal(Message):
    """Host -> MCU: close and seal the sample container's lid (final)."""

    MSG_ID: ClassVar[int] = 0x46
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<")


@dataclass(frozen=True, slots=True)
class AscentArm(Message):
    """Host -> MCU: arm (1) or safe (0) the ascent vehicle's separation."""

    MSG_ID: ClassVar[int] = 0x47
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<B")
    armed: int = 0


@dataclass(frozen=True, slots=True)
class SamplingReport(Message):
    """MCU -> host, beside each SENSOR_REPORT when the firmware has a sampling board: 55 bytes."""

    MSG_ID: ClassVar[int] = 0x31
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<I4fB2f6fH")
    mcu_time_ms: int = 0
    drill_depth_m: float = 0.0
    drill_rate_mm_s: float = 0.0
    drill_torque_nm: float = 0.0
    drill_temp_c: float = 0.0
    drill_state: int = 0  # hal.contracts.DrillState
    drill_core_kg: float = 0.0
    drill_target_m: float = 0.0
    arm_shoulder_deg: float = 0.0
    arm_elbow_deg: float = 0.0
    arm_force_n: float = 0.0
    arm_reach_m: float = 0.0
    arm_holding_kg: float = 0.0
    container_mass_kg: float = 0.0
    flags: int = 0  # SamplingFlags


#: Message id -> class: the catalogue.
MESSAGES: dict[int, type[Message]] = {
    cls.MSG_ID: _bind_codec(cls)
    for cls in (Hello, Version, Ack, Nack, SetWheels, Stop, SetStreamRate, ResetEncoders,
                SetWatchdog, Heartbeat, SensorReport, DrillStart, DrillStop, DrillRetract, ArmMove,
                ArmScoop, ArmDeposit, ContainerSeal, AscentArm, SamplingReport)
}

#: Sampling commands and the capability bit the firmware must report for each.
SAMPLING_COMMANDS: dict[int, Capability] = {
    DrillStart.MSG_ID: Capability.DRILL, DrillStop.MSG_ID: Capability.DRILL,
    DrillRetract.MSG_ID: Capability.DRILL, ArmMove.MSG_ID: Capability.SAMPLE_ARM,
    ArmScoop.MSG_ID: Capability.SAMPLE_ARM, ArmDeposit.MSG_ID: Capability.SAMPLE_ARM,
    ContainerSeal.MSG_ID: Capability.SAMPLE_CONTAINER, AscentArm.MSG_ID: Capability.ASCENT,
}

#: Commands the MCU acknowledges with ACK or NACK.
ACKED: frozenset[int] = frozenset(
    c.MSG_ID for c in (SetWheels, Stop, SetStreamRate, ResetEncoders, SetWatchdog)
) | frozenset(SAMPLING_COMMANDS)

# ------------------------------------------------------------------------------------------
# Framing.


# The hot path binds its C helpers once: a 250 B frame's round trip is a few microseconds, so a
# Python-level wrapper call or attribute lookup per step is a visible share of it.
_cobs_encode = cobs.encode
_cobs_decode = cobs.decode
_pack_header = HEADER.pack
_MIN_BODY = HEADER.size + CRC.size
#: Header and payload of ``n`` bytes followed by their CRC, packed in one copy.
_WITH_CRC: list[Callable[..., bytes]] = [struct.Struct(f"<{HEADER.size + n}sH").pack
                                          for n in range(MAX_PAYLOAD + 1)]
#: The header's fields and the payload of a decoded frame of ``n`` bytes, its CRC left in place.
_HEADER_PAYLOAD: list[Callable[[bytes], tuple] | None] = [None] * _MIN_BODY + [
    struct.Struct(f"<BBH{n - _MIN_BODY}s").unpack_from for n in range(_MIN_BODY, MAX_FRAME + 1)]
_tuple_new = tuple.__new__


def encode_frame(msg_id: int, seq: int, payload: bytes, version: int = PROTOCOL_VERSION) -> bytes:
    """Build one wire frame (COBS-encoded, zero-terminated) from raw payload bytes."""
    n = len(payload)
    if n > MAX_PAYLOAD:
        raise ValueError(f"payload of {n} bytes exceeds {MAX_PAYLOAD}")
    body = _pack_header(version, msg_id, seq & 0xFFFF) + payload
    # crc16 inlined (a call is a tenth of the frame's time)
    crc = _crc_hqx(body, 0xFFFF) if n + 4 < CRC_SHORT else _crc(body)
    return _cobs_encode(_WITH_CRC[n](body, crc)) + b"\x00"


def encode(msg: Message, seq: int) -> bytes:
    """Build the wire frame for a message."""
    return encode_frame(msg.MSG_ID, seq, msg.pack())


class Packet(NamedTuple):
    """A frame whose COBS and CRC checked out, before its payload is interpreted.

    Immutable like a frozen dataclass, and a third of the cost to build (one per frame).
    """

    version: int
    msg_id: int
    seq: int
    payload: bytes


class FrameError(ProtocolError):
    """A frame was dropped. ``kind`` names the counter; ``packet`` is set when the CRC was good."""

    def __init__(self, kind: str, detail: str, packet: Packet | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.packet = packet


def decode_frame(encoded: bytes) -> Packet:
    """Check one COBS-encoded frame (no delimiter); raises FrameError."""
    try:
        body = _cobs_decode(encoded)
    except cobs.DecodeError as exc:
        raise FrameError("cobs", str(exc)) from exc
    n = len(body)
    if n < _MIN_BODY:
        raise FrameError("cobs", f"frame of {n} bytes is shorter than header+crc")
    # the CRC over the whole body against the residue of its last two bytes (see RESIDUE_LO):
    # crc16 and residue_ok inlined, and no copy of the body without its CRC
    if (_crc_hqx(body, 0xFFFF) if n < CRC_SHORT else _crc(body)) != RESIDUE_LO[body[-2]] ^ RESIDUE_HI[body[-1]]:
        raise FrameError("crc", "checksum mismatch")
    # a longer frame than the protocol allows still gets its CRC checked and is classified later
    split = _HEADER_PAYLOAD[n] if n <= MAX_FRAME else struct.Struct(f"<BBH{n - _MIN_BODY}s").unpack_from
    return _tuple_new(Packet, split(body))  # type: ignore[misc]


#: Message id -> (payload size, layout unpack, builder): decode_message's table.
_PARSERS: dict[int, tuple[int, Callable[[bytes], tuple], Callable[[tuple], Message]]] = {
    msg_id: (cls.LAYOUT.size, cls.LAYOUT.unpack, cls._build) for msg_id, cls in MESSAGES.items()
}


def decode_message(packet: Packet, version: int = PROTOCOL_VERSION) -> Message:
    """Interpret a checked packet's payload; raises FrameError (version, unknown_id, bad_length)."""
    if packet.version != version:
        raise FrameError("version", f"version {packet.version}, expected {version}", packet)
    parser = _PARSERS.get(packet.msg_id)
    if parser is None:
        raise FrameError("unknown_id", f"message id 0x{packet.msg_id:02x}", packet)
    size, unpack, build = parser
    if len(packet.payload) != size:
        name = MESSAGES[packet.msg_id].__name__
        raise FrameError("bad_length", f"{name} payload {len(packet.payload)} != {size}", packet)
    return build(unpack(packet.payload))


@dataclass(slots=True)
class DecoderCounters:
    """What a FrameDecoder has seen: good frames and each kind of dropped one."""

    frames: int = 0
    bytes: int = 0
    cobs: int = 0
    crc: int = 0
    version: int = 0
    unknown_id: int = 0
    bad_length: int = 0
    oversize: int = 0

    @property
    def dropped(self) -> int:
        return (self.cobs + self.crc + self.version + self.unknown_id + self.bad_length
                + self.oversize)


class Decoded(NamedTuple):
    """One received message with the sender's sequence number (a named tuple, like Packet)."""

    seq: int
    msg: Message


class FrameDecoder:
    """Turns byte chunks from a port (any split) into messages; counts and drops bad frames.

    The buffer is bounded: bytes past ``max_encoded`` without a zero delimiter are discarded up
    to the next zero, so line noise never grows memory. ``feed`` never raises for any input.
    ``on_reject(kind, packet)`` is told of frames with a good CRC that could not be used (so an
    MCU can NACK them).
    """

    def __init__(
        self,
        version: int = PROTOCOL_VERSION,
        max_encoded: int = MAX_ENCODED,
        on_reject: Callable[[str, Packet], None] | None = None,
    ) -> None:
        self.version = version
        self.max_encoded = max_encoded
        self.on_reject = on_reject
        self.counters = DecoderCounters()
        self._buf = bytearray()
        self._discarding = False

    def reset(self) -> None:
        """Forget a partial frame (after a reconnect)."""
        self._buf.clear()
        self._discarding = False

    def feed(self, data: bytes | bytearray) -> list[Decoded]:
        out: list[Decoded] = []
        counters = self.counters
        counters.bytes += len(data)
        pieces = data.split(b"\x00")
        tail = pieces.pop()  # after the last delimiter: the start of a frame still to come
        buf = self._buf
        for piece in pieces:
            if self._discarding:  # the end of an oversize run
                self._discarding = False
                continue
            if buf:
                buf += piece
                frame = bytes(buf)
                buf.clear()
            else:
                frame = piece
            if not frame:
                continue  # back-to-back delimiters are idle line, not an error
            if len(frame) > self.max_encoded:
                counters.oversize += 1
                continue
            item = self._one(frame)
            if item is not None:
                out.append(item)
        if not self._discarding:
            if len(buf) + len(tail) > self.max_encoded:
                counters.oversize += 1
                buf.clear()
                self._discarding = True
            else:
                buf += tail
        return out

    def _one(self, frame: bytes | bytearray) -> Decoded | None:
        # A good frame in one pass: decode_frame and decode_message fused, without their calls.
        # Anything else takes the checked path below, which names the fault and counts it.
        try:
            body = _cobs_decode(frame)
        except cobs.DecodeError:
            body = b""
        n = len(body)
        if _MIN_BODY <= n <= MAX_FRAME:
            version, msg_id, seq, payload = _HEADER_PAYLOAD[n](body)  # type: ignore[misc]
            parser = _PARSERS.get(msg_id)
            if (parser is not None and version == self.version and len(payload) == parser[0]
                    and (_crc_hqx(body, 0xFFFF) if n < CRC_SHORT else _crc(body))
                    == RESIDUE_LO[body[-2]] ^ RESIDUE_HI[body[-1]]):
                self.counters.frames += 1
                return _tuple_new(Decoded, (seq, parser[2](parser[1](payload))))
        return self._checked(frame)

    def _checked(self, frame: bytes | bytearray) -> Decoded | None:
        packet = None
        try:
            packet = decode_frame(frame)
            msg = decode_message(packet, self.version)
        except FrameError as exc:
            setattr(self.counters, exc.kind, getattr(self.counters, exc.kind) + 1)
            if exc.packet is not None and self.on_reject is not None:
                try:
                    self.on_reject(exc.kind, exc.packet)
                except Exception:  # a listener's bug must not break the stream
                    log.exception("on_reject listener failed")
            return None
        except Exception:  # defensive: no input may raise out of the decoder
            log.debug("undecodable frame dropped", exc_info=True)
            self.counters.cobs += 1
            return None
        self.counters.frames += 1
        return _tuple_new(Decoded, (packet.seq, msg))
