"""Products through the lossy relay to the ground archive, reassembled and exported.

A lockstep mission (vehicle, moon-farside relay with 10 % frame loss and bit errors, ground
station) flies the imaging rover over a rock field. Lossless products must arrive bit-identical
to the files on board, thumbnails must be whole before their full frames, exported files carry
a JSON sidecar, and segments the ground lost are filled by ``IMG_RESEND``.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pytest

from flight.config import load as load_config
from flight.link.auth import load_key
from flight.link.frames import Deframer
from flight.link.packets import Apid, decode_packet
from flight.link.sdls import LinkSecurity
from ground.images import LiveProducts, collect, export, resend_commands
from magpie.mission import LockstepMission
from mission.lockstep import KEY_ID
from tests.imaging.helpers import rock_field

pytestmark = pytest.mark.timeout(120)

LOSSY = {"loss": 0.10, "ber": 1e-5}


def mission(tmp: Path) -> LockstepMission:
    cfg = load_config(Path(str(resources.files("magpie.configs").joinpath("sim_imaging.toml"))))
    devices = dict(cfg.devices) | {"navcam": "sim://camera?name=navcam&width=320&height=240&stereo=0&tilt=-25"}
    comps = tuple(dataclasses.replace(c, options={**c.options, "downlink_bytes_per_s": 8000.0})
                  if c.type == "comm" else c for c in cfg.components)
    cfg = dataclasses.replace(cfg, devices=devices, components=comps)
    world, _ = rock_field(4, n=8)
    from flight.clock import NS, SimClock

    clock = SimClock(start_s=world.time_s)
    clock.on_advance(lambda t_ns: world.step_to(t_ns / NS))
    return LockstepMission(cfg, tmp, preset="moon-farside", relay_overrides=LOSSY, seed=4,
                           device_context={"world": world}, clock=clock)


def test_products_arrive_whole_thumbnails_first_and_gaps_are_refilled(tmp_path: Path) -> None:
    m = mission(tmp_path)
    live = LiveProducts(m.clock.now)
    m.station.listeners.append(live)
    scid = m.config.spacecraft_id
    first_sent: dict[tuple[int, int, int], float] = {}  # (apid, pid, idx) -> first time on the radio
    radio, radio_send = m.comm.endpoint.radio, m.comm.endpoint.radio.send
    key, down_key = load_key(m.key_path, KEY_ID), load_key(m.downlink_key_path, KEY_ID)
    deframer = Deframer([scid], security={scid: LinkSecurity.for_ground(key, down_key, None).rx})  # the test's eyes

    def watch(frame: bytes) -> None:
        fr = deframer.accept_frame(frame)
        for raw in fr.packets if fr is not None else ():
            pkt = decode_packet(raw)
            if pkt.apid in (Apid.THUMBNAIL, Apid.PRODUCT):
                chunk = pkt.value()
                first_sent.setdefault((pkt.apid, chunk["pid"], chunk["idx"]), m.clock.now())
        radio_send(frame)

    radio.send = watch
    try:
        t0 = m.clock.now()
        m.send("PRM_SET", {"name": "img.auto_thumbs", "value": "false"})
        m.advance(t0 + 5.0)
        m.send("IMG_CAPTURE", {"format": "PNG", "quality": 90, "priority": 9})
        m.send("IMG_BURST", {"count": 2, "format": "JPEG", "quality": 75, "priority": 3})
        m.advance(t0 + 30.0)
        img = m.vehicle.by_name["img"]
        pids = [p.pid for p in img.catalogue.list(states=("ready",))]
        while len(pids) < 3 and m.clock.now() < t0 + 300.0:  # a command lost on the way up: retried
            m.advance(m.clock.now() + 10.0)
            pids = [p.pid for p in img.catalogue.list(states=("ready",))]
        assert len(pids) == 3
        # one request queues the full frames first, thumbnails after: the recorder sends thumbnails first
        request = m.send("IMG_DOWNLINK_PRIO", {"min_priority": 0, "max_products": 10, "what": "BOTH"})
        m.advance(t0 + 60.0)
        while request.stage != "COMPLETED" and m.clock.now() < t0 + 600.0:  # lost on the way up: retried
            m.advance(m.clock.now() + 10.0)
        assert request.stage == "COMPLETED", request
        assert m.drain(1800.0), m.summary().lines()
        assert m.relay.stats["down"].lost > 0

        views = {(v.pid, v.kind): v for v in collect(m.archive, scid)}
        assert set(views) == {(p, k) for p in pids for k in ("thumb", "full")}
        assert all(v.status == "complete" for v in views.values())
        for pid in pids:
            assert views[(pid, "full")].data == img.catalogue.read(pid, "full")  # bit-identical
            assert views[(pid, "thumb")].data == img.catalogue.read(pid, "thumb")
        png = views[(pids[0], "full")]
        assert png.meta["format"] == "png" and png.ext == "png"
        assert cv2.imdecode(np.frombuffer(png.data, np.uint8), cv2.IMREAD_UNCHANGED).shape == (240, 320)
        # every product completed in the live view; thumbnails went down first (what the recorder
        # decides; with 10 % of frames lost, one lost thumbnail frame may still complete later)
        done = {(pid, kind): t for t, _, pid, kind in live.completed}
        assert set(done) == set(views), live.completed
        thumbs = [t for (apid, *_), t in first_sent.items() if apid == Apid.THUMBNAIL]
        fulls = [t for (apid, *_), t in first_sent.items() if apid == Apid.PRODUCT]
        assert len(thumbs) == len(pids) and max(thumbs) <= min(fulls)

        paths = export(list(views.values()), tmp_path / "export")
        side = json.loads((tmp_path / "export" / f"{scid}-{pids[0]:08d}-full.json").read_text())
        assert side["status"] == "complete" and side["file"].endswith(".png")
        assert side["meta"]["camera"] == "navcam" and "exposure_ms" in side["meta"] and "model" in side["meta"]
        assert len(paths) == 12

        # the ground loses two segments of a full frame after the link released them
        victim = pids[1]
        n = views[(victim, "full")].assembly.n
        assert n >= 3
        with sqlite3.connect(m.archive_path) as db:
            db.execute("DELETE FROM product_chunks WHERE pid = ? AND apid = ? AND idx IN (1, 2)",
                       (victim, int(Apid.PRODUCT)))
        partial = [v for v in collect(m.archive, scid) if v.status == "partial"]
        assert [(v.pid, v.kind, v.missing) for v in partial] == [(victim, "full", [1, 2])]
        [(name, args)] = resend_commands(partial)
        assert args == {"pid": victim, "what": "FULL", "segments": "1-2"}
        m.send(name, args)
        m.advance(m.clock.now() + 20.0)
        assert m.drain(1800.0)
        again = {(v.pid, v.kind): v for v in collect(m.archive, scid, victim)}
        assert again[(victim, "full")].status == "complete"
        assert again[(victim, "full")].data == img.catalogue.read(victim, "full")
    finally:
        m.close()
