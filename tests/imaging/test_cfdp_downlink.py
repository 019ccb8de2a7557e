"""Products by CFDP class 2 through the lossy relay into the ground archive, and a file up.

The imaging rover with ``downlink = "cfdp"``: each product goes as one CFDP transaction (Comm's
entity, cfdp-py's handlers) through the moon-farside relay with 10 % frame loss and bit errors,
to the ground's entity (:mod:`ground.files`), which puts it in the archive where the image tools
find it. A file goes the other way, into the vehicle's ``uplink/`` directory.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path

import pytest

from flight.config import load as load_config
from flight.link.cfdp import APID_CFDP
from ground.images import collect, export
from ground.images_cli import register
from magpie.mission import LockstepMission
from tests.imaging.helpers import rock_field

pytestmark = pytest.mark.timeout(120)


def mission(tmp: Path, comm: dict | None = None) -> LockstepMission:
    cfg = load_config(Path(str(resources.files("magpie.configs").joinpath("sim_imaging.toml"))))
    devices = dict(cfg.devices) | {"navcam": "sim://camera?name=navcam&width=320&height=240&stereo=0&tilt=-25"}
    comps = tuple(
        dataclasses.replace(c, options={**c.options, "downlink_bytes_per_s": 8000.0, **(comm or {})})
        if c.type == "comm"
        else dataclasses.replace(c, options={**c.options, "downlink": "cfdp"}) if c.type == "imaging"
        else c for c in cfg.components)
    cfg = dataclasses.replace(cfg, devices=devices, components=comps)
    world, _ = rock_field(4, n=8)
    from flight.clock import NS, SimClock

    clock = SimClock(start_s=world.time_s)
    clock.on_advance(lambda t_ns: world.step_to(t_ns / NS))
    return LockstepMission(cfg, tmp, preset="moon-farside", relay_overrides={"loss": 0.10, "ber": 1e-5}, seed=5,
                           device_context={"world": world}, clock=clock)


def test_products_by_cfdp_arrive_whole_in_the_archive_and_a_file_goes_up(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    m = mission(tmp_path)
    scid = m.config.spacecraft_id
    try:
        t0 = m.clock.now()
        m.send("PRM_SET", {"name": "img.auto_thumbs", "value": "false"})
        m.advance(t0 + 5.0)
        m.send("IMG_CAPTURE", {"format": "PNG", "quality": 90, "priority": 9})
        m.send("IMG_CAPTURE", {"format": "JPEG", "quality": 80, "priority": 3})
        m.advance(t0 + 30.0)
        img = m.vehicle.by_name["img"]
        pids = [p.pid for p in img.catalogue.list(states=("ready",))]
        assert len(pids) == 2
        m.send("IMG_DOWNLINK_PRIO", {"min_priority": 0, "max_products": 10, "what": "BOTH"})
        plan = tmp_path / "plan.seq"
        plan.write_bytes(b"R00:00:01 NAV_STOP\n" * 400)
        m.files.send_file(scid, plan)
        want = {(p, k) for p in pids for k in ("thumb", "full")}
        received = m.comm.fw.state_dir / "uplink" / "plan.seq"
        for _ in range(60):  # 30 s steps, at most half an hour of mission time
            m.advance(m.clock.now() + 30.0)
            views = {(v.pid, v.kind): v for v in collect(m.archive, scid) if v.status == "complete"}
            if set(views) == want and received.exists() and not m.comm.cfdp.entity.busy:
                break
        assert set(views) == want, m.files.summary()
        with capsys.disabled():  # figures, shown with -s
            print(f"\nCFDP: 4 products and a file in {m.clock.now() - t0:.0f} s of mission time; vehicle "
                  f"{m.comm.cfdp.entity.summary()}; ground {m.files.summary()[scid]}")
        for pid in pids:
            assert views[(pid, "full")].data == img.catalogue.read(pid, "full")  # bit-identical
            assert views[(pid, "thumb")].data == img.catalogue.read(pid, "thumb")
        assert views[(pids[0], "full")].meta["format"] == "png"
        assert m.relay.stats["down"].lost > 0
        assert any(r[1] == APID_CFDP for r in m.archive.packets(scid))  # PDUs on their own APID
        assert not any(r[1] in (0x030, 0x031) for r in m.archive.packets(scid))  # no chunk transfer
        assert m.comm.cfdp.entity.stats.sent_ok == 4
        assert received.read_bytes() == plan.read_bytes()
        names = [e.args for e in m.archive.events(scid) if e.name == "FileReceived"]
        assert names, "the vehicle reported the file it received"

        # the image tools: export writes the files and sidecars; `magpie images list` shows them
        paths = export(list(views.values()), tmp_path / "export")
        side = json.loads((tmp_path / "export" / f"{scid}-{pids[0]:08d}-full.json").read_text())
        assert side["status"] == "complete" and side["file"].endswith(".png")
        assert len(paths) == 8
        import argparse

        parser = argparse.ArgumentParser()
        register(parser.add_subparsers(dest="cmd"))
        args = parser.parse_args(["images", "list", "--archive", str(m.archive_path)])
        assert args.func(args) == 0
        out = capsys.readouterr().out
        for pid in pids:
            assert str(pid) in out
    finally:
        m.close()


def test_a_product_by_cfdp_survives_a_ground_restart_and_a_vehicle_kill(tmp_path: Path) -> None:
    from ground.files import GroundFiles

    m = mission(tmp_path)
    scid = m.config.spacecraft_id
    try:
        t0 = m.clock.now()
        m.send("PRM_SET", {"name": "img.auto_thumbs", "value": "false"})
        m.advance(t0 + 5.0)
        m.send("IMG_CAPTURE", {"format": "PNG", "quality": 90, "priority": 9})
        m.advance(t0 + 25.0)
        img = m.vehicle.by_name["img"]
        [pid] = [p.pid for p in img.catalogue.list(states=("ready",))]
        full = img.catalogue.read(pid, "full")
        m.send("IMG_DOWNLINK", {"pid": pid, "what": "FULL"})
        ground = m.files.entities[scid]
        for _ in range(200):
            m.advance(m.clock.now() + 0.5)
            if ground.rx and next(iter(ground.rx.values())).handler.progress > len(full) // 4:
                break
        assert ground.rx, "the transfer is under way"
        # the ground stops and starts again: its entity comes back from its state file
        old = m.files
        old.close()
        m.files = GroundFiles(m.station, m.archive, old.root, old.state_dir, config=ground.config)
        m.advance(m.clock.now() + 5.0)
        # the vehicle is killed (no shutdown) and boots again over the same state directory
        m.crash_vehicle()
        m.restart_vehicle()
        assert len(m.comm.cfdp.entity.queue) == 1  # the product is still to be sent
        for _ in range(60):
            m.advance(m.clock.now() + 30.0)
            views = {(v.pid, v.kind): v for v in collect(m.archive, scid) if v.status == "complete"}
            if (pid, "full") in views and not m.comm.cfdp.entity.busy:
                break
        assert views[(pid, "full")].data == full
        assert m.comm.cfdp.entity.stats.sent_ok == 1
        assert len([1 for s, d in m.files.delivered if d.meta and d.meta.get("pid") == pid]) >= 1
    finally:
        m.close()


def test_a_product_by_cfdp_waits_out_a_blackout_in_the_same_transaction(tmp_path: Path) -> None:
    """A 5-minute gap in the relay's view in mid-transfer, longer than every CFDP timer's limit on
    either side (20 s x 10 here): the timers run on link time, so nothing expires, nothing is
    sent again as a new transaction, and the product arrives after the gap."""
    from flight.link.cfdp import CfdpConfig
    from ground.files import GroundFiles

    m = mission(tmp_path, comm={"cfdp_timer_s": 20.0, "cfdp_bytes_per_s": 1500.0})
    scid = m.config.spacecraft_id
    try:
        m.files.close()
        m.files = GroundFiles(m.station, m.archive, m.files.root, m.files.state_dir,
                              config=CfdpConfig(ack_interval_s=20.0, nak_interval_s=20.0))
        t0 = m.clock.now()
        m.send("PRM_SET", {"name": "img.auto_thumbs", "value": "false"})
        m.advance(t0 + 5.0)
        m.send("IMG_CAPTURE", {"format": "PNG", "quality": 90, "priority": 9})
        m.advance(t0 + 25.0)
        img = m.vehicle.by_name["img"]
        [pid] = [p.pid for p in img.catalogue.list(states=("ready",))]
        m.send("IMG_DOWNLINK", {"pid": pid, "what": "FULL"})
        ground = m.files.entities[scid]
        for _ in range(200):
            m.advance(m.clock.now() + 0.5)
            if ground.rx:
                break
        assert ground.rx, "the transfer is under way"
        assert len(img.catalogue.read(pid, "full")) > 20 * 1500  # more than 20 s of PDUs at this rate
        gap = (m.clock.now() + 2.0, m.clock.now() + 302.0)
        for hop in list(m.relay.hops):  # the lockstep mission's loop radio is the relay's hop 0
            m.relay.add_vehicle(hop, windows=[(0.0, gap[0]), (gap[1], 1e12)])
        m.advance(gap[1])
        assert not collect(m.archive, scid)  # nothing came through the gap
        assert m.relay.stats["down"].blocked > 0
        for _ in range(40):
            m.advance(m.clock.now() + 15.0)
            views = {(v.pid, v.kind): v for v in collect(m.archive, scid) if v.status == "complete"}
            if (pid, "full") in views and not m.comm.cfdp.entity.busy:
                break
        assert views[(pid, "full")].data == img.catalogue.read(pid, "full")
        vehicle = m.comm.cfdp.entity
        assert vehicle.stats.sent_ok == 1 and vehicle.stats.retries == 0, vehicle.summary()
        assert not vehicle.faults and not ground.faults, (vehicle.summary(), ground.summary())
        assert vehicle.link_time() < m.clock.now() - t0 - 250.0  # the gap did not count
    finally:
        m.close()
