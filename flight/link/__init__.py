"""The Magpie space link: packets, frames and their security, uplink authentication, the recorder.

See LINK.md beside this file for the link written down.
"""

from flight.link.auth import Key, KeyFileError, Reject, Signer, Verified, Verifier, load_key
from flight.link.frames import VC, Deframer, Frame, FrameError, Framer, decode_frame, encode_frame
from flight.link.packets import (
    Apid,
    Packet,
    PacketError,
    Packetizer,
    SequenceCounter,
    decode_packet,
)
from flight.link.recorder import Priority, Recorder
from flight.link.sdls import LinkSecurity, RxSA, SecurityError, TxSA

__all__ = [
    "VC",
    "Apid",
    "Deframer",
    "Frame",
    "FrameError",
    "Framer",
    "Key",
    "KeyFileError",
    "LinkSecurity",
    "Packet",
    "PacketError",
    "Packetizer",
    "Priority",
    "Recorder",
    "Reject",
    "RxSA",
    "SecurityError",
    "SequenceCounter",
    "Signer",
    "TxSA",
    "Verified",
    "Verifier",
    "decode_frame",
    "decode_packet",
    "encode_frame",
    "load_key",
]
