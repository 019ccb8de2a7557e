"""Magpie MCU firmware, protocol core: framing, CRC, commands, sensor stream and motor watchdog.

This file runs unchanged on a Raspberry Pi Pico under MicroPython and on a PC under CPython (the
test suite drives it with the real host driver over a pseudo-terminal). It therefore uses only
what MicroPython has: ``struct``, plain classes, lists and bytearrays; no dataclasses, no typing
at run time, no ``cobs`` package. ``PROTOCOL.md`` (hal/mcu) is the specification it implements.

Binding: construct :class:`Firmware` with a *board* and a *write* function, then call
``feed(data, now_ms)`` with whatever bytes arrived and ``tick(now_ms)`` often (every 1 to 5 ms).
``now_ms`` is a monotonic millisecond count that never wraps within a run (``main.py`` unwraps
MicroPython's ``ticks_ms``). The board provides:

- ``set_wheels(left_mm_s, right_mm_s)``, ``stop()``, ``reset_encoders()``
- ``sensors()``: a 20-tuple in SENSOR_REPORT order without the time and with the board's own
  fault bits last: left_ticks, right_ticks, left_a, right_a, ax, ay, az, gx, gy, gz, imu_temp_c,
  bus_v, current_a, soc, solar_w, t_motor_left, t_motor_right, t_battery, t_board, fault_bits
- ``max_speed_mm_s`` (int) and ``capabilities`` (VERSION capability bits)
"""

try:
    import ustruct as struct  # MicroPython
except ImportError:  # CPython
    import struct

PROTOCOL_VERSION = 1
FW_VERSION = (1, 0, 0)
BOARD_ID = 0x5049  # "PI": Raspberry Pi Pico reference board

MAX_PAYLOAD = 250
MAX_FRAME = 4 + MAX_PAYLOAD + 2
MAX_ENCODED = MAX_FRAME + MAX_FRAME // 254 + 1

HELLO = 0x01
VERSION = 0x02
ACK = 0x03
NACK = 0x04
SET_WHEELS = 0x10
STOP = 0x11
SET_STREAM_RATE = 0x12
RESET_ENCODERS = 0x13
SET_WATCHDOG = 0x14
HEARTBEAT = 0x20
SENSOR_REPORT = 0x30

# NACK reasons
UNKNOWN_MESSAGE = 1
BAD_LENGTH = 2
OUT_OF_RANGE = 3
BAD_VERSION = 5
NOT_READY = 6
UNSUPPORTED = 8

# Sampling commands (a lander's drill, arm, container, ascent): this board has none
SAMPLING_FIRST = 0x40
SAMPLING_LAST = 0x47

WATCHDOG_STOP = 1

# Payload layouts the firmware accepts (host -> MCU) and sends (MCU -> host).
LAYOUTS = {
    HELLO: "<BI",
    VERSION: "<BBBBHI",
    ACK: "<HB",
    NACK: "<HBB",
    SET_WHEELS: "<hh",
    STOP: "<",
    SET_STREAM_RATE: "<H",
    RESET_ENCODERS: "<",
    SET_WATCHDOG: "<H",
    HEARTBEAT: "<I",
    SENSOR_REPORT: "<Iii2f3f3f5f4fI",
}
SIZES = {}
for _mid in LAYOUTS:
    SIZES[_mid] = struct.calcsize(LAYOUTS[_mid])
COMMANDS = (SET_WHEELS, STOP, SET_STREAM_RATE, RESET_ENCODERS, SET_WATCHDOG)

MAX_STREAM_HZ = 1000
WATCHDOG_MIN_MS = 20
WATCHDOG_MAX_MS = 60000


# -- CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor -------------------

def _crc_table():
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


CRC_TABLE = _crc_table()


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE of ``data``; ``crc16(b"123456789") == 0x29B1``."""
    table = CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFF00) ^ table[(crc >> 8) ^ byte]
    return crc


# -- COBS ------------------------------------------------------------------------------------

def cobs_encode(data):
    """Consistent Overhead Byte Stuffing: the result has no zero byte."""
    out = bytearray()
    code_at = 0
    out.append(0)  # placeholder for the first code byte
    code = 1
    for byte in data:
        if byte == 0:
            out[code_at] = code
            code_at = len(out)
            out.append(0)
            code = 1
        else:
            out.append(byte)
            code += 1
            if code == 0xFF:
                out[code_at] = code
                code_at = len(out)
                out.append(0)
                code = 1
    out[code_at] = code
    return bytes(out)


def cobs_decode(data):
    """Undo :func:`cobs_encode`; returns None for input that is not valid COBS."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            return None
        end = i + code
        if end > n:
            return None
        for j in range(i + 1, end):
            byte = data[j]
            if byte == 0:
                return None
            out.append(byte)
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


# -- frames ----------------------------------------------------------------------------------

def encode_frame(msg_id, seq, payload, version=PROTOCOL_VERSION):
    """One wire frame: COBS(version, id, seq, payload, crc) followed by 0x00."""
    body = struct.pack("<BBH", version, msg_id, seq & 0xFFFF) + payload
    return cobs_encode(body + struct.pack("<H", crc16(body))) + b"\x00"


def decode_frame(encoded):
    """(status, version, msg_id, seq, payload) of one delimiter-free frame.

    ``status`` is "ok", "cobs" (not COBS or too short) or "crc" (checksum mismatch).
    """
    body = cobs_decode(encoded)
    if body is None or len(body) < 6:
        return ("cobs", 0, 0, 0, b"")
    end = len(body) - 2
    want = body[end] | (body[end + 1] << 8)
    if crc16(body[:end]) != want:
        return ("crc", 0, 0, 0, b"")
    return ("ok", body[0], body[1], body[2] | (body[3] << 8), body[4:end])


class Firmware:
    """The MCU side of the protocol. Single-threaded: call feed() and tick() from one loop."""

    def __init__(self, board, write, firmware=FW_VERSION, board_id=BOARD_ID):
        self.board = board
        self.write = write
        self.firmware = firmware
        self.board_id = board_id
        self.ready = False
        self.faults = 0
        self.stream_hz = 0
        self.watchdog_ms = 500
        self.seq = 0
        self.armed = False
        self.last_rx_ms = 0
        self.next_report_ms = 0
        self.now_ms = 0
        self.counters = {"frames": 0, "cobs": 0, "crc": 0, "oversize": 0, "version": 0,
                         "unknown_id": 0, "bad_length": 0, "acks": 0, "nacks": 0,
                         "reports": 0, "watchdog_trips": 0, "tx_errors": 0}
        self._buf = bytearray()
        self._discarding = False

    # -- receive -----------------------------------------------------------------------------

    def feed(self, data, now_ms):
        """Bytes from the link, in any split. Never raises for any input."""
        self.now_ms = now_ms
        for byte in data:
            if byte != 0:
                if self._discarding:
                    continue
                if len(self._buf) >= MAX_ENCODED:
                    self.counters["oversize"] += 1
                    self._buf = bytearray()
                    self._discarding = True
                    continue
                self._buf.append(byte)
                continue
            if self._discarding:
                self._discarding = False
                continue
            if self._buf:
                frame = bytes(self._buf)
                self._buf = bytearray()
                self._frame(frame, now_ms)

    def _frame(self, encoded, now_ms):
        status, version, msg_id, seq, payload = decode_frame(encoded)
        if status != "ok":
            self.counters[status] += 1
            return
        # A good CRC: the host is alive, whatever the frame says.
        self.counters["frames"] += 1
        self.last_rx_ms = now_ms
        self.armed = True
        if version != PROTOCOL_VERSION:
            self.counters["version"] += 1
            self._nack(seq, msg_id, BAD_VERSION)
            return
        if SAMPLING_FIRST <= msg_id <= SAMPLING_LAST:
            self.counters["unsupported"] = self.counters.get("unsupported", 0) + 1
            self._nack(seq, msg_id, UNSUPPORTED)
            return
        size = SIZES.get(msg_id)
        if size is None or msg_id in (VERSION, ACK, NACK, SENSOR_REPORT):
            self.counters["unknown_id"] += 1
            self._nack(seq, msg_id, UNKNOWN_MESSAGE)
            return
        if len(payload) != size:
            self.counters["bad_length"] += 1
            self._nack(seq, msg_id, BAD_LENGTH)
            return
        args = struct.unpack(LAYOUTS[msg_id], payload)
        if msg_id == HELLO:
            if args[0] != PROTOCOL_VERSION:
                self._nack(seq, msg_id, BAD_VERSION)
                return
            self.ready = True
            self.faults &= ~WATCHDOG_STOP
            major, minor, patch = self.firmware
            self._send(VERSION, struct.pack(LAYOUTS[VERSION], PROTOCOL_VERSION, major, minor,
                                            patch, self.board_id, self.board.capabilities))
        elif msg_id == HEARTBEAT:
            self._send(HEARTBEAT, struct.pack("<I", now_ms & 0xFFFFFFFF))
        elif not self.ready:
            self._nack(seq, msg_id, NOT_READY)
        else:
            reason = self._command(msg_id, args, now_ms)
            if reason:
                self._nack(seq, msg_id, reason)
            else:
                self.counters["acks"] += 1
                self._send(ACK, struct.pack("<HB", seq, msg_id))

    def _command(self, msg_id, args, now_ms):
        """Apply one command; returns a NACK reason or 0."""
        if msg_id == SET_WHEELS:
            limit = self.board.max_speed_mm_s
            if abs(args[0]) > limit or abs(args[1]) > limit:
                return OUT_OF_RANGE
            self.board.set_wheels(args[0], args[1])
            self.faults &= ~WATCHDOG_STOP
        elif msg_id == STOP:
            self.board.stop()
        elif msg_id == SET_STREAM_RATE:
            if args[0] > MAX_STREAM_HZ:
                return OUT_OF_RANGE
            if self.stream_hz == 0:
                self.next_report_ms = now_ms
            self.stream_hz = args[0]
        elif msg_id == RESET_ENCODERS:
            self.board.reset_encoders()
        elif msg_id == SET_WATCHDOG:
            if not WATCHDOG_MIN_MS <= args[0] <= WATCHDOG_MAX_MS:
                return OUT_OF_RANGE
            self.watchdog_ms = args[0]
        return 0

    # -- periodic work -----------------------------------------------------------------------

    def tick(self, now_ms):
        """Watchdog and sensor stream; call every few milliseconds."""
        self.now_ms = now_ms
        if self.armed and now_ms - self.last_rx_ms > self.watchdog_ms:
            self.armed = False
            self.board.stop()
            self.faults |= WATCHDOG_STOP
            self.counters["watchdog_trips"] += 1
        if self.stream_hz > 0 and now_ms >= self.next_report_ms:
            self._report(now_ms)
            period = 1000.0 / self.stream_hz
            self.next_report_ms = max(self.next_report_ms + period, now_ms - period)

    def _report(self, now_ms):
        s = self.board.sensors()
        values = (now_ms & 0xFFFFFFFF,) + tuple(s[:19]) + ((self.faults | s[19]) & 0xFFFFFFFF,)
        payload = struct.pack(LAYOUTS[SENSOR_REPORT], *values)
        self.counters["reports"] += 1
        self._send(SENSOR_REPORT, payload)

    # -- send --------------------------------------------------------------------------------

    def _nack(self, seq, msg_id, reason):
        self.counters["nacks"] += 1
        self._send(NACK, struct.pack("<HBB", seq, msg_id, reason))

    def _send(self, msg_id, payload):
        self.seq = (self.seq + 1) & 0xFFFF
        try:
            self.write(encode_frame(msg_id, self.seq, payload))
        except Exception:  # a full or vanished port must not stop the motor watchdog
            self.counters["tx_errors"] += 1
