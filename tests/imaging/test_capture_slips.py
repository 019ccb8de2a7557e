"""Imaging never slips the 50 Hz group: the frame is made in the worker, not the control loop.

On the simulated clock a capture costs no time by itself, so the executive's measured-time hook
is given the simulated devices' modelled blocking time (:mod:`sim_hw.blocking`: a real camera
holds its caller about 0.3 s for a 1280x960 frame). Whatever the control thread would have
waited for moves the simulated clock, and slips show where they would on the vehicle. The
figures are modelled, so the outcome is the same on any machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flight.clock import NS, SimClock
from flight.config import load as load_config
from flight.imaging.catalogue import READY
from flight.vehicle import Vehicle
from sim_hw import blocking
from tests.imaging.helpers import Collect, camera, rock_field, run_until

pytestmark = pytest.mark.timeout(120)

TOML = """
[vehicle]
name = "sliptest"
spacecraft_id = 67
state_dir = "state"

[devices]
navcam = "sim://camera?name=navcam"  # handed in by the test

[components.img]
type = "imaging"
devices = { camera = "navcam" }
encode_cost_s = 0.4

[[rate_groups]]
name = "control"
hz = 50
members = ["cmd"]

[[rate_groups]]
name = "imaging"
hz = 10
members = ["img"]

[[rate_groups]]
name = "hk"
hz = 1
members = ["sys", "tlm"]
"""


@pytest.fixture()
def rig(tmp_path: Path):
    world, _ = rock_field(4, n=4)
    cam = camera(world, 1280, 960)
    path = tmp_path / "sliptest.toml"
    path.write_text(TOML, encoding="utf-8")
    clock = SimClock(start_s=world.time_s)
    clock.on_advance(lambda t_ns: world.step_to(t_ns / NS))
    vehicle = Vehicle(load_config(path), clock, devices={"navcam": cam})
    vehicle.executive.measured_ns = blocking.thread_ns
    sink = Collect()
    vehicle.add_sink(sink)
    yield vehicle, clock, sink
    vehicle.shutdown()


def _group(vehicle: Vehicle, name: str):
    return next(g for g in vehicle.executive.groups if g.name == name)


def _done(sink: Collect, name: str, n: int = 1):
    return lambda: len([r for r in sink.responses(name) if r.stage in ("COMPLETED", "FAILED")]) >= n


def test_captures_cause_no_cycle_slips(rig) -> None:
    vehicle, clock, sink = rig
    control = _group(vehicle, "control")
    before = blocking.thread_ns()
    vehicle.fw.cmd.submit("IMG_CAPTURE", {"format": "JPEG", "quality": 75, "priority": 1})
    vehicle.fw.cmd.submit("IMG_BURST", {"count": 3, "format": "JPEG", "quality": 75, "priority": 1})
    run_until(vehicle, clock, _done(sink, "IMG_BURST"), max_s=30.0)
    assert [r.stage for r in sink.responses("IMG_CAPTURE")][-1] == "COMPLETED"
    assert [r.stage for r in sink.responses("IMG_BURST")][-1] == "COMPLETED"
    products = vehicle.by_name["img"].catalogue.list()
    assert len(products) == 4 and all(p.state == READY for p in products)
    assert all(p.width == 1280 and p.height == 960 for p in products)
    assert sink.events("ExposureSet")  # metering ran (in the worker) and its exposure was locked
    # every frame was made on the worker's thread: the control thread was charged nothing
    assert blocking.thread_ns() == before
    assert control.cycles >= 50  # the run spans the captures: 4 frames, 0.4 s each in the worker
    assert control.slips == 0
    assert not [e for e in sink.events("CycleSlip")]


def test_a_capture_in_the_control_loop_would_slip(rig) -> None:
    """The hook has teeth: the survey command still captures synchronously in its handler (in
    the 50 Hz group here), and that frame's readout makes the group slip."""
    vehicle, clock, sink = rig
    control = _group(vehicle, "control")
    vehicle.fw.cmd.submit("IMG_SURVEY", {"pan_deg": 0.0, "tilt_deg": -25.0})
    run_until(vehicle, clock, _done(sink, "IMG_SURVEY"), max_s=10.0)
    assert control.slips >= 1
    assert any("control" in e.text for e in sink.events("CycleSlip"))
