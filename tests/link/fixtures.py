"""Shared pieces for link and ground tests: a tiny dictionary and a lockstep vehicle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flight.link.auth import Key, Signer, Verifier
from flight.link.endpoint import LinkEndpoint
from flight.link.frames import Deframer, Framer
from flight.link.packets import Packetizer
from flight.link.recorder import Recorder
from flight.link.sdls import LinkSecurity
from ground.dictionary import Dictionary
from hal.radio import open_loop_radio

SECRET = bytes(range(100, 132))
SCID = 66

DICT: dict[str, Any] = {
    "format": "magpie-dict/1",
    "software_version": "test",
    "hash": "sha256:00",
    "spacecraft": {"name": "magpie-test", "id": SCID},
    "commands": [
        {"opcode": 0x0101, "name": "NAV_GOTO", "component": "nav", "doc": "Drive to a point.",
         "args": [
             {"name": "x_m", "type": "f32", "units": "m", "min": -100, "max": 100, "enum": None,
              "doc": ""},
             {"name": "y_m", "type": "f32", "units": "m", "min": -100, "max": 100, "enum": None,
              "doc": ""},
         ]},
        {"opcode": 0x0102, "name": "NAV_STOP", "component": "nav", "doc": "Stop.", "args": []},
        {"opcode": 0x0201, "name": "CAM_MODE", "component": "cam", "doc": "Camera mode.",
         "args": [{"name": "mode", "type": "enum", "units": "", "min": None, "max": None,
                   "enum": {"OFF": 0, "MONO": 1, "STEREO": 2}, "doc": ""}]},
    ],
    "channels": [
        {"id": 1, "name": "power.bus_v", "type": "f32", "units": "V", "doc": "",
         "limits": {"yellow": [11, 15], "red": [10, 16]}, "update": "always"},
        {"id": 2, "name": "nav.heading_deg", "type": "f32", "units": "deg", "doc": "",
         "limits": {"yellow": None, "red": None}, "update": "always"},
        {"id": 3, "name": "exec.cycle_slips", "type": "u32", "units": "", "doc": "",
         "limits": {"yellow": None, "red": None}, "update": "on_change"},
    ],
    "events": [
        {"id": 10, "name": "CycleSlip", "severity": "WARNING_LO", "format": "slip {}",
         "args": [{"name": "n", "type": "u32"}], "doc": ""},
        {"id": 11, "name": "LinkDown", "severity": "WARNING_HI", "format": "link down",
         "args": [], "doc": ""},
    ],
    "params": [],
}


def dictionary() -> Dictionary:
    return Dictionary.from_obj(DICT)


class LockstepVehicle:
    """Recorder + verifier + loop radio through a relay model: the flight link, minus the core."""

    def __init__(self, tmp: Path, relay: Any, clock: Any, name: str, scid: int = SCID,
                 rate: float = 50_000.0, resend_timeout_s: float = 5.0) -> None:
        self.key = Key(1, SECRET)
        self.recorder = Recorder(tmp / f"rec-{scid}.db", capacity_bytes=50_000_000, clock=clock,
                                 resend_timeout_s=resend_timeout_s)
        self.verifier = Verifier([self.key], tmp / f"uplink-{scid}.json")
        self.radio = open_loop_radio(f"radio+loop://{name}?side=vehicle", relay=relay, clock=clock)
        self.endpoint = LinkEndpoint(scid, self.recorder, self.verifier, self.radio,
                                     downlink_bytes_per_s=rate, max_burst_bytes=int(rate))
        self.packetizer = Packetizer()
        self.produced: dict[tuple[int, int, float], bytes] = {}

    def emit(self, kind: str, time_s: float, *args: Any) -> None:
        seq, data = getattr(self.packetizer, kind)(time_s, *args)
        from flight.link.packets import peek

        apid = peek(data)[0]
        self.recorder.put(data, apid, seq, time_s=time_s)
        self.produced[(apid, seq, time_s)] = data


def vehicle_link() -> LinkSecurity:
    """The vehicle's frame SAs for the test key (nothing persisted): what a real vehicle holds."""
    return LinkSecurity.for_vehicle(Key(1, SECRET), None, None)


def vehicle_framer(scid: int = SCID, link: LinkSecurity | None = None) -> Framer:
    """Downlink frames as the vehicle sends them (authenticated). Use one per test vehicle: a
    second one starts its sequence numbers again and the station refuses its frames as replays."""
    return Framer(scid, security=(link or vehicle_link()).tx)


def vehicle_deframer(scid: int = SCID, link: LinkSecurity | None = None) -> Deframer:
    """Reads uplink frames as the vehicle does (checks their authentication)."""
    return Deframer([scid], security={scid: (link or vehicle_link()).rx})


def ground_signer(tmp: Path, scid: int = SCID) -> Signer:
    return Signer(Key(1, SECRET), tmp / f"ground-signer-{scid}.json")


def link_controls(frames: list[bytes], verify_state: Path) -> list[tuple[list[Any], list[Any]]]:
    """The (acks, naks) of every link-control telecommand in uplinked ``frames``, each checked
    as the vehicle would (frame security, then the command's signature)."""
    from flight.link.auth import Key
    from flight.link.packets import Apid, decode_link_control

    verifier = Verifier([Key(1, SECRET)], verify_state)
    deframer = vehicle_deframer()
    out = []
    for frame in frames:
        for raw in deframer.accept_frame(frame).packets:
            ok = verifier.verify(raw)
            assert ok is not None and ok.apid == Apid.TC_LINK
            out.append(decode_link_control(ok.body))
    return out

