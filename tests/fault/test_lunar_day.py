"""A full lunar day and night at the far-side site, in fast mode on the simulated clock."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from flight.clock import NS, SimClock
from flight.config import load
from flight.vehicle import Vehicle
from magpie.simrun import FAST_WORLD, fast_config, fly
from sim_hw.world import World
from tests.fault.conftest import Sink

# about 10 s on a quiet machine; the limit leaves room for a loaded shared runner
pytestmark = pytest.mark.timeout(180)

DAY_S = 29.530589 * 86400.0


def test_lunar_day_and_night(tmp_path: Path) -> None:
    cfg = load(Path(str(resources.files("magpie.configs").joinpath("sim_lunar_day.toml"))))
    cfg = fast_config(cfg)
    cfg = type(cfg)(**{**cfg.__dict__, "state_dir": tmp_path / "state"})
    world = World.for_mission(seed=1, **FAST_WORLD)
    clock = SimClock(start_s=world.time_s)
    clock.on_advance(lambda t: world.step_to(t / NS))
    v = Vehicle(cfg, clock, device_context={"world": world})
    sink = Sink()
    v.add_sink(sink)
    env = world.env
    sunset = env.next_sunset(world.env_time_s, horizon_days=1.0)
    sunrise = env.next_sunrise(sunset, horizon_days=1.0)
    assert sunset is not None and sunrise is not None
    soc_min, powered = 1.0, True
    t_end = world.time_s + DAY_S + 0.05 * DAY_S
    while clock.now() < t_end:
        v = fly(v, min(t_end, clock.now() + 6 * 3600.0), {"world": world}, chunk_s=600.0, flush_every_s=600.0)
        soc_min = min(soc_min, world.power.battery.soc)
        powered = powered and world.powered
    v.shutdown()

    hib = sink.events("Hibernating")
    woke = sink.events("Woke")
    assert len(hib) == 1 and "dusk" in hib[0].text
    t_hib = world.start_time_s + hib[0].time_ns / NS
    assert 0 < t_hib - sunset < 3 * 3600  # within hours of sunset
    assert len(woke) == 1
    t_wake = world.start_time_s + woke[0].time_ns / NS
    assert 0 < t_wake - sunrise < 2 * 86400  # at dawn, once the panel gives enough
    # within its energy budget: never browned out, heaters shed at the floor, reserve left
    assert powered and world.power.unmet_wh == 0.0
    assert soc_min > 0.2
    assert [e.name for e in sink.events() if e.name == "HeatersShed"] == ["HeatersShed"]
    # it reports at dawn: mode change to SAFE with its cause, and housekeeping after the wake
    modes = [(e.time_ns, e.args[1], e.args[2]) for e in sink.events("ModeChanged")]
    assert ("HIBERNATE" in [m for _, m, _ in modes]) and modes[-1][1] == "SAFE"
    assert modes[-1][2].startswith("woke: solar input")
    after = [i for i in sink.items if type(i).__name__ == "TlmPacket" and i.time_ns > woke[0].time_ns]
    assert after
    # the watchdog never bit: kicked while awake, suspended while idle in fast mode or asleep
    assert v.devices["watchdog"].bites() == []
