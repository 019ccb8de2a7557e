"""Commanding and the client API in lockstep: two vehicles, one station, a lossy relay."""

from __future__ import annotations

from pathlib import Path

import pytest

from flight.cmdcodec import CommandCodecError, decode_command
from flight.link.auth import Key, Signer
from flight.link.frames import VC, Framer
from flight.link.packets import Apid, encode_link_control
from flight.link.sdls import LinkSecurity
from ground.archive import Archive
from ground.client import ClientTimeout, LocalClient
from ground.commander import Commander, Stage
from ground.station import Station, Vehicle
from hal.radio import open_loop_radio
from sim_hw.relay import RelayLink, RelayParams
from tests.link.fixtures import LockstepVehicle, dictionary, ground_signer

pytestmark = pytest.mark.timeout(60)


class World:
    """Two vehicles (scid 66 and 67), each on its own relay model, and one ground station."""

    def __init__(self, tmp: Path, loss: float = 0.1, execute: bool = True) -> None:
        self.t = 0.0
        self.execute = execute
        self.vehicles: dict[int, LockstepVehicle] = {}
        self.ground_radios = {}
        for scid in (66, 67):
            relay = RelayLink(RelayParams(light_time_s=1.0, loss=loss), seed=scid)
            self.vehicles[scid] = LockstepVehicle(
                tmp, relay, self.clock, f"cmd-{tmp.name}-{scid}", scid=scid, resend_timeout_s=6.0
            )
            self.ground_radios[scid] = open_loop_radio(f"radio+loop://cmd-{tmp.name}-{scid}?side=ground")
        self.archive = Archive(tmp / "ground.db")
        vehicles = [Vehicle(s, dictionary(), ground_signer(tmp, s)) for s in (66, 67)]
        self.station = Station(
            self.archive,
            vehicles,
            uplink=lambda scid, f: self.ground_radios[scid].send(f),
            ack_interval_s=1.0,
            link_timeout_s=5.0,
        )
        self.commander = Commander(self.station, retry_interval_s=8.0)
        self.by_opcode = {c["opcode"]: c for c in dictionary().raw["commands"]}
        self.executed: list[tuple[int, str, dict]] = []

    def clock(self) -> float:
        return self.t

    def step(self) -> float:
        self.t = round(self.t + 0.1, 6)
        for scid, veh in self.vehicles.items():
            if int(self.t * 10) % 10 == 0:
                veh.emit("housekeeping", self.t, [(1, 12.5), (2, self.t % 360)])
            for cmd in veh.endpoint.step(self.t):
                self.dispatch(scid, veh, cmd)
            while (frame := self.ground_radios[scid].recv()) is not None:
                self.station.receive(frame, self.t)
        self.station.poll(self.t)
        self.commander.poll(self.t)
        return self.t

    def dispatch(self, scid: int, veh: LockstepVehicle, cmd) -> None:
        """What the flight dispatcher does: decode, answer ACCEPTED/REJECTED, then COMPLETED."""
        try:
            entry, values = decode_command(self.by_opcode, cmd.body)
        except CommandCodecError as exc:
            veh.emit(
                "response",
                self.t,
                int.from_bytes(cmd.body[:2], "big"),
                "?",
                cmd.counter,
                "REJECTED",
                str(exc),
            )
            return
        veh.emit("response", self.t, entry["opcode"], entry["name"], cmd.counter, "ACCEPTED", "")
        if self.execute:
            self.executed.append((scid, entry["name"], values))
            veh.emit("response", self.t, entry["opcode"], entry["name"], cmd.counter, "COMPLETED", "")
            veh.emit("event", self.t, 11, "WARNING_HI", f"did {entry['name']}", [])


def test_command_round_trip_through_lossy_link(tmp_path: Path) -> None:
    w = World(tmp_path)
    client = LocalClient(w.station, w.commander, w.step)
    rec = client.run_command(66, "NAV_GOTO", {"x_m": 3.5, "y_m": -2}, timeout_s=120)
    assert rec.stage == Stage.COMPLETED
    rec2 = client.run_command(67, "CAM_MODE", {"mode": "STEREO"}, timeout_s=120)
    assert rec2.stage == Stage.COMPLETED
    assert (66, "NAV_GOTO", {"x_m": 3.5, "y_m": -2.0}) in w.executed
    assert (67, "CAM_MODE", {"mode": 2}) in w.executed
    ev = client.wait_event(67, name="LinkDown", predicate=lambda r: "CAM_MODE" in r["text"], timeout_s=60)
    assert ev["severity"] == "WARNING_HI"
    sample = client.wait_channel(66, "power.bus_v", lambda v: v > 12, timeout_s=30)
    assert sample["value"] == pytest.approx(12.5)
    assert client.channel(66, "power.bus_v")
    assert any(e.name == "LinkDown" for e in client.events(67))
    history = w.archive.commands()
    assert [(h["scid"], h["name"], h["stage"]) for h in history] == [
        (66, "NAV_GOTO", "COMPLETED"),
        (67, "CAM_MODE", "COMPLETED"),
    ]
    with pytest.raises(CommandCodecError):
        client.send_command(66, "NAV_GOTO", {"x_m": 1000, "y_m": 0})
    with pytest.raises(CommandCodecError):
        client.send_command(66, "NO_SUCH", {})
    with pytest.raises(ClientTimeout):
        client.wait_channel(66, "nav.heading_deg", lambda v: v > 1e9, timeout_s=2)


def test_retry_until_response_then_timeout(tmp_path: Path) -> None:
    w = World(tmp_path, loss=0.0, execute=False)
    client = LocalClient(w.station, w.commander, w.step)
    # the uplink to 66 is cut for the first 20 s: the command is retried until one gets through
    veh = w.vehicles[66]
    real_recv = veh.radio.recv

    def recv_after_outage(timeout_s: float = 0.0) -> bytes | None:
        frame = real_recv(timeout_s)
        return frame if w.t > 20 else None  # uplink frames before t=20 s are lost

    veh.radio.recv = recv_after_outage
    rec = client.send_command(66, "NAV_STOP", {}, timeout_s=60)
    client.wait_command(rec, timeout_s=60, stages={"ACCEPTED"})
    assert rec.attempts >= 3 and len(rec.counters) == 1  # every retry is the same signed TC
    # never completes (execute=False): times out at its deadline
    client.wait_command(rec, timeout_s=100)
    assert rec.stage == Stage.TIMED_OUT
    assert w.archive.commands(66)[0]["stage"] == "TIMED_OUT"


def test_forged_ack_cannot_release_recorder_data(tmp_path: Path) -> None:
    w = World(tmp_path, loss=0.0)
    for _ in range(30):
        w.step()
    veh = w.vehicles[66]
    veh.recorder.next_to_send(10**6, now_s=w.t)  # everything in flight
    before = veh.recorder.stats().packets
    assert before > 0
    forger = Signer(Key(1, b"guessed key material!!"), tmp_path / "forger.json")
    body = encode_link_control([(Apid.HOUSEKEEPING, 0, 16383), (Apid.EVENT, 0, 16383)])
    tc = forger.sign(Apid.TC_LINK, body)
    guessed = LinkSecurity.for_ground(Key(1, b"guessed key material!!"), None, None)
    frames = [Framer(66, uplink=True).pack(VC.UPLINK, [tc])[0],  # no frame authentication
              Framer(66, uplink=True, security=guessed.tx).pack(VC.UPLINK, [tc])[0]]  # a guessed frame key
    # and, deeper, a forged TC inside a frame the ground really protected: the packet HMAC refuses it
    frames.append(w.station.vehicles[66].framer.pack(VC.UPLINK, [tc])[0])
    df = veh.endpoint.deframer.stats
    bad_before, ok_before = df.malformed + df.rejected_security, df.frames_ok
    veh.radio.channel.inbox["vehicle"].extend(frames)
    veh.endpoint.receive()
    assert veh.recorder.stats().packets == before
    assert (df.malformed + df.rejected_security - bad_before, df.frames_ok - ok_before) == (2, 1)
    assert veh.verifier.rejected[next(r for r in veh.verifier.rejected if r.value == "bad_tag")] == 1
