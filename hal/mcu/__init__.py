"""The microcontroller link: the wire protocol and the serial driver that speaks it."""

from hal.mcu.protocol import (
    PROTOCOL_VERSION,
    Decoded,
    DecoderCounters,
    FaultFlags,
    FrameDecoder,
    NackReason,
    SamplingFlags,
    SamplingReport,
    SensorReport,
    crc16,
    decode_frame,
    decode_message,
    encode,
)

__all__ = [
    "PROTOCOL_VERSION", "Decoded", "DecoderCounters", "FaultFlags", "FrameDecoder",
    "NackReason", "SamplingFlags", "SamplingReport", "SensorReport", "crc16", "decode_frame",
    "decode_message", "encode",
]
