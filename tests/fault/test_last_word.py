"""The last word: a vehicle that goes silent by itself says why first, and the ground hears it.

A rover in the simulated world on the simulated clock, with its real comm component on an
in-process radio pair; the far end feeds a real ground station and commander (SQLite archive in
the test's directory). Nothing sleeps: the vehicle runs on the simulated clock and the ground
reads whatever frames the radio holds.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from flight.components.comm import attach
from flight.link.auth import Signer, load_key
from ground.archive import Archive
from ground.commander import Commander, Stage
from ground.dictionary import Dictionary
from ground.station import Station, Vehicle
from hal.radio import open_loop_radio
from magpie.mission import ensure_key
from tests.fault.conftest import RigFactory

pytestmark = pytest.mark.timeout(60)
_names = itertools.count()


class Ground:
    """A station and commander at the far end of the rig's radio."""

    def __init__(self, tmp_path: Path, rig, radio_name: str, key: Path) -> None:
        self.radio = open_loop_radio(f"radio+loop://{radio_name}?side=ground")
        d = Dictionary.from_obj(rig.vehicle.dictionary)
        self.scid = int(d.spacecraft_id or 0)
        signer = Signer(load_key(key, 1), tmp_path / "ground-uplink.json")
        self.archive = Archive(tmp_path / "ground.db")
        self.held: list[bytes] | None = None  # a list: uplink frames are held there (not delivered)
        self.station = Station(self.archive, [Vehicle(self.scid, d, signer, "rover")],
                               uplink=self._uplink, ack_interval_s=1.0)
        self.commander = Commander(self.station, retry_interval_s=30.0)
        self.heard: list[tuple[str, str]] = []  # (event name, text) in arrival order
        self.station.listeners.append(lambda kind, scid, item: self.heard.append((item["name"], item["text"]))
                                      if kind == "evt" else None)
        self.silences: list[str] = []
        self.commander.on_silence.append(lambda scid, text: self.silences.append(text))

    def _uplink(self, scid: int, frame: bytes) -> None:
        if self.held is not None:
            self.held.append(frame)
        else:
            self.radio.send(frame)

    def pump(self, now_s: float) -> int:
        n = 0
        while (frame := self.radio.recv()) is not None:
            self.station.receive(frame, now_s)
            n += 1
        self.station.poll(now_s)
        self.commander.poll(now_s)
        return n

    def close(self) -> None:
        self.station.close()
        self.archive.close()


def rig_with_link(make_rig: RigFactory, tmp_path: Path, monitor: dict) -> tuple[object, Ground]:
    key = ensure_key(tmp_path / "keys" / "uplink.key")
    name = f"lastword-{next(_names)}-{tmp_path.name}"
    rig = make_rig(fault={"boot_mode": "STANDBY", "monitors": {"dusk": {"enabled": False}, "goodnight": monitor}},
                   devices={"radio": f"radio+loop://{name}?side=vehicle"},
                   components={"comm": {"type": "comm", "devices": {"radio": "radio"}, "key_file": str(key)}},
                   nav_members=["comm"])
    attach(rig.vehicle)
    return rig, Ground(tmp_path, rig, name, key)


def test_hibernation_sends_its_reason_before_the_link_stops(make_rig: RigFactory, tmp_path: Path) -> None:
    rig, ground = rig_with_link(make_rig, tmp_path, {"channel": "sys.uptime_s", "condition": "> 5",
                                                     "response": "hibernate"})
    try:
        rec = None
        for _ in range(20):  # a second at a time, the ground listening as it goes
            rig.run(1.0)
            ground.pump(rig.clock.now())
            if rec is None:
                rec = ground.commander.send(ground.scid, "CMD_NOOP", {}, rig.clock.now(), timeout_s=3600)
                rec_first = rec
            if rig.mode == "HIBERNATE":
                break
        assert rig.mode == "HIBERNATE"
        assert rec_first.stage == Stage.COMPLETED  # answered while the rover listened
        waiting = ground.commander.send(ground.scid, "CMD_PING", {"key": 1}, rig.clock.now(), timeout_s=3600)
        names = [n for n, _ in ground.heard]
        assert "GoingSilent" in names, names
        said = dict(ground.heard)["GoingSilent"]
        assert said.startswith("hibernating until solar input reaches 12 W") and "goodnight" in said
        assert names.index("Hibernating") < names.index("GoingSilent")
        assert ground.silences and ground.silences[0].startswith("rover (")
        assert waiting.stage == Stage.UNREACHABLE and "hibernating until" in waiting.reason
        # and then silence: hibernation sends nothing more until its first wake check (600 s)
        rig.run(3.0)
        ground.pump(rig.clock.now())
        heard = len(ground.heard)
        rig.run(500.0)
        assert ground.pump(rig.clock.now()) == 0 and len(ground.heard) == heard
        assert ground.commander.silent  # still known silent
        # the sun is up: the first wake check (600 s in) wakes it into SAFE, and the command
        # sent while it slept, which waited in its radio, runs then
        rig.run(130.0)
        ground.pump(rig.clock.now())
        rig.run(5.0)
        ground.pump(rig.clock.now())
        assert rig.mode == "SAFE"
        assert not ground.commander.silent and ground.silences[-1] == ""
        assert waiting.stage == Stage.COMPLETED
    finally:
        ground.close()
        rig.vehicle.shutdown()


def test_a_command_waiting_when_the_vehicle_goes_silent_ends_with_the_reason(make_rig: RigFactory,
                                                                            tmp_path: Path) -> None:
    rig, ground = rig_with_link(make_rig, tmp_path, {"channel": "sys.uptime_s", "condition": "> 3",
                                                     "response": "hibernate"})
    try:
        rig.run(1.0)
        ground.pump(rig.clock.now())
        # the command's frame is still on its way (held here) when the rover falls asleep
        ground.held = []
        rec = ground.commander.send(ground.scid, "CMD_NOOP", {}, rig.clock.now(), timeout_s=3600)
        assert ground.held and rec.stage == Stage.SENT
        for _ in range(10):
            rig.run(1.0)
            ground.pump(rig.clock.now())
            if rec.done:
                break
        assert rig.mode == "HIBERNATE"
        assert rec.stage == Stage.UNREACHABLE and rec.reason.startswith("rover (")
        assert "hibernating until solar input reaches 12 W" in rec.reason and "goodnight" in rec.reason
        # the archive's command history says the same
        rows = ground.archive.commands(ground.scid)
        assert any("UNREACHABLE" in str(r) and "hibernating until" in str(r) for r in rows), rows
    finally:
        ground.close()
        rig.vehicle.shutdown()


def test_a_restart_says_so_before_the_process_stops(make_rig: RigFactory, tmp_path: Path) -> None:
    rig, ground = rig_with_link(make_rig, tmp_path, {"channel": "sys.uptime_s", "condition": "> 3",
                                                     "response": "restart"})
    try:
        v = rig.vehicle
        v.run(until_s=rig.clock.now() + 10.0, flush_every_s=1.0)
        assert v.executive.stopping and v.restart_requested
        ground.pump(rig.clock.now())  # before the restart: what the stopping process sent
        said = [t for n, t in ground.heard if n == "GoingSilent"]
        assert said and said[0].startswith("restarting until the flight process is started again")
        assert "goodnight" in said[0]
        assert ground.commander.silent
    finally:
        ground.close()
        rig.vehicle.shutdown()


def test_the_ground_tells_old_news_from_new(make_rig: RigFactory, tmp_path: Path) -> None:
    """The station's listener contract, fed in the orders a link can deliver: a last word that
    arrives again (resent) after the vehicle is back does not make it silent again."""
    rig, ground = rig_with_link(make_rig, tmp_path, {"channel": "sys.uptime_s", "condition": "> 1e9",
                                                     "response": "hibernate"})
    try:
        def hear(name: str, t: float, text: str = "") -> None:
            for listener in ground.station.listeners:
                listener("evt", ground.scid, {"name": name, "time": t, "text": text})

        hear("ModeChanged", 100.0, "mode STANDBY -> HIBERNATE: dusk")
        hear("GoingSilent", 100.0, "hibernating until solar input reaches 12 W: dusk")
        assert ground.commander.silent
        hear("ModeChanged", 90.0, "an older mode change, resent")
        assert ground.commander.silent
        hear("ModeChanged", 5000.0, "mode HIBERNATE -> SAFE: woke")
        assert not ground.commander.silent
        hear("GoingSilent", 100.0, "hibernating until ...: the same last word, resent")
        assert not ground.commander.silent
        rec = ground.commander.send(ground.scid, "CMD_NOOP", {}, 5001.0)
        assert rec.stage == Stage.SENT
        assert ground.silences == ["rover (66) hibernating until solar input reaches 12 W: dusk", ""]
    finally:
        ground.close()
        rig.vehicle.shutdown()
