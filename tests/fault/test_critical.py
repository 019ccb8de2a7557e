"""Critical sequences in fault protection: handled faults to the contingency, deferred ones held,
survival ones to SAFE; a vehicle kind's own mode table."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.clock import NS, SimClock
from flight.commands import CommandFailed
from flight.component import Component
from flight.config import parse
from flight.fault.modes import build_table
from flight.model import Arg, Channel, command
from flight.vehicle import Vehicle
from tests.recorder import Recorder

pytestmark = pytest.mark.timeout(60)

LANDER_MODES = {"keep": [], "SURFACE": {"to": ["SAMPLING"]}, "SAMPLING": {"to": ["SURFACE", "ASCENT_PREP"]},
                "ASCENT_PREP": {"to": ["SURFACE"]}}
MONITORS = {
    "drill_jam": {"channel": "probe.jam", "condition": "> 0", "response": "safe", "critical": "sequence"},
    "hot": {"channel": "probe.temp_c", "condition": "> 60", "response": "safe", "critical": "survival"},
    "slips": {"channel": "probe.slips", "condition": "> 0", "response": "safe", "critical": "defer"},
}
SAMPLING = ("critical\ndeadline +100 contingency scoop\n+0 MODE_SET mode=SAMPLING\n"
            "+0 until probe.depth >= 2 within 60s\n+0 CMD_PING key=1\n+0 MODE_SET mode=SURFACE\n")
SCOOP = "critical\n+0 CMD_PING key=9\n+5 CMD_PING key=10\n+0 MODE_SET mode=SURFACE\n"


class Probe(Component):
    """Levels the test sets by command, for monitors and sequences to read."""

    CHANNELS = tuple(Channel(n, "f32", update="on_change") for n in ("depth", "jam", "temp_c", "slips"))

    def setup(self) -> None:
        for ch in self.CHANNELS:
            self.tlm(ch.name, 0.0)

    @command("PROBE_SET", Arg("channel", "str"), Arg("value", "f32"))
    def probe_set(self, channel: str, value: float) -> None:
        """Set one level."""
        if channel not in {c.name for c in self.CHANNELS}:
            raise CommandFailed(f"no level {channel}")
        self.tlm(channel, value)


@pytest.fixture
def lander(tmp_path: Path):
    made: list[Vehicle] = []

    def factory(mode_table: dict | None = None) -> tuple[Vehicle, Recorder]:
        doc = {
            "vehicle": {"state_dir": str(tmp_path / "state"), "sequences": ["sampling", "comm"]},
            "components": {"fault": {"type": "fault", "builtins": False, "monitors": MONITORS,
                                     "mode_table": LANDER_MODES if mode_table is None else mode_table,
                                     "boot_mode": "SURFACE" if mode_table is None else "STANDBY"}},
            "rate_groups": [{"name": "control", "hz": 10, "members": ["probe", "cmd", "seq"]},
                            {"name": "hk", "hz": 1, "members": ["fault", "sys", "health", "tlm"]}],
        }
        v = Vehicle(parse(doc), SimClock(), extra_components=[Probe("probe")])
        rec = Recorder()
        v.add_sink(rec)
        made.append(v)
        d = v.fw.state_dir / "sequences"
        d.mkdir(parents=True, exist_ok=True)
        (d / "sampling.seq").write_text(SAMPLING)
        (d / "scoop.seq").write_text(SCOOP)
        return v, rec

    yield factory
    for v in made:
        v.executive.stop_workers()


def go(v: Vehicle, rec: Recorder, until_s: float, *cmds: tuple[str, dict]) -> None:
    for name, args in cmds:
        v.dispatcher.submit(name, args, source="test")
    v.run(until_s=until_s)
    v.flush()


def mode(v: Vehicle) -> str:
    return str(v.fw.tlm.get("fault.mode_name"))


def test_a_handled_fault_in_a_critical_sequence_goes_to_its_contingency_not_safe(lander):
    v, rec = lander()
    go(v, rec, 3, ("SEQ_START", {"engine": "sampling", "file": "sampling.seq"}))
    assert mode(v) == "SAMPLING" and v.fw.store["seq.critical"] == ["sampling"]
    go(v, rec, 12, ("PROBE_SET", {"channel": "jam", "value": 1}))
    assert rec.texts("FaultToContingency") == [
        "monitor drill_jam (safe) handled by the contingency of critical sequence(s) on sampling"]
    (switch,) = rec.events("SeqContingency")
    assert "fault: drill_jam" in switch.text
    assert [e.text for e in rec.events("Pong")] == ["ping 9", "ping 10"]
    assert mode(v) == "SURFACE" and not [e for e in rec.events("ModeChanged") if "SAFE" in e.text]
    assert v.fw.tlm.get("fault.to_contingency") == 1


def test_the_same_fault_without_a_critical_sequence_goes_safe(lander):
    v, rec = lander()
    go(v, rec, 4, ("PROBE_SET", {"channel": "jam", "value": 1}))
    assert mode(v) == "SAFE" and not rec.events("FaultToContingency")


def test_a_survival_fault_still_goes_safe_and_stops_the_critical_sequence(lander):
    v, rec = lander()
    go(v, rec, 3, ("SEQ_START", {"engine": "sampling", "file": "sampling.seq"}))
    go(v, rec, 6, ("PROBE_SET", {"channel": "temp_c", "value": 75}))
    assert mode(v) == "SAFE"
    assert "hot" in rec.texts("CriticalStopped")[0]
    assert [e.args[-1] for e in rec.events("SeqCancelled")] == ["sampling"]
    assert not rec.events("SeqContingency") and not rec.events("Pong")


def test_a_deferrable_fault_waits_for_the_sequence_to_end(lander):
    v, rec = lander()
    go(v, rec, 3, ("SEQ_START", {"engine": "sampling", "file": "sampling.seq"}))
    go(v, rec, 6, ("PROBE_SET", {"channel": "slips", "value": 1}))
    assert mode(v) == "SAMPLING" and rec.texts("FaultDeferred")
    assert v.fw.tlm.get("fault.deferred") == 1
    go(v, rec, 12, ("PROBE_SET", {"channel": "depth", "value": 2.2}))
    done = rec.events("SeqCompleted")[0].time_ns / NS
    assert mode(v) == "SAFE" and "acting now" in rec.texts("FaultReleased")[0]
    safe = next(e for e in rec.events("ModeChanged") if "-> SAFE" in e.text).time_ns / NS
    assert done <= safe <= done + 1.5 and v.fw.tlm.get("fault.deferred") == 0


def test_the_lander_mode_table(lander):
    v, rec = lander()
    (mode_set,) = [c for c in v.dictionary["commands"] if c["name"] == "MODE_SET"]
    assert set(mode_set["args"][0]["enum"]) == {"BOOT", "SAFE", "STANDBY", "HIBERNATE", "SURFACE", "SAMPLING",
                                                "ASCENT_PREP"}
    go(v, rec, 2, ("MODE_SET", {"mode": "ASCENT_PREP"}), ("MODE_SET", {"mode": "SAMPLING"}),
       ("MODE_SET", {"mode": "ASCENT_PREP"}))
    assert rec.stages("MODE_SET") == ["ACCEPTED", "FAILED", "ACCEPTED", "COMPLETED", "ACCEPTED", "COMPLETED"]
    assert mode(v) == "ASCENT_PREP"
    assert "SURFACE -> ASCENT_PREP is not allowed" in rec.texts("ModeRejected")[0]


def test_the_rover_keeps_its_modes_by_default(lander):
    v, _ = lander(mode_table={})
    (mode_set,) = [c for c in v.dictionary["commands"] if c["name"] == "MODE_SET"]
    assert set(mode_set["args"][0]["enum"]) == {"BOOT", "SAFE", "STANDBY", "DRIVE", "SCIENCE", "HIBERNATE"}


@pytest.mark.parametrize(("table", "key"), [
    ({"SAFE": {}}, "mode_table.SAFE"), ({"lower": {}}, "mode_table.lower"),
    ({"SURFACE": {"to": ["NOWHERE"]}}, "mode_table.SURFACE.to"),
    ({"SURFACE": {"safety": 3}}, "mode_table.SURFACE.safety"), ({"keep": ["FLY"]}, "mode_table.keep"),
    ({"SURFACE": {"colour": 1}}, "mode_table.SURFACE.colour"),
])
def test_a_bad_mode_table_names_the_key(table, key):
    with pytest.raises(ValueError) as info:
        build_table(table)
    assert str(info.value).startswith(key)


_names = st.sampled_from(["SURFACE", "SAMPLING", "ASCENT_PREP", "SAFE", "DRIVE", "x", "", "BOOT", "keep"])
_bodies = st.one_of(st.none(), st.integers(), st.text(max_size=5),
                    st.dictionaries(st.sampled_from(["to", "safety", "doc", "x"]),
                                    st.one_of(st.integers(-2, 3), st.lists(_names, max_size=3), st.text(max_size=4)),
                                    max_size=3))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_names, _bodies, max_size=4))
def test_any_mode_table_builds_or_names_its_key(spec):
    try:
        table = build_table(spec)
    except ValueError as exc:
        assert str(exc).startswith("mode_table")
        return
    names = set(table.modes.__members__)
    assert {"BOOT", "SAFE", "STANDBY", "HIBERNATE"} <= names
    for mode, allowed in table.transitions.items():
        assert table.modes["BOOT"] not in allowed and (mode.name == "HIBERNATE" or table.modes["SAFE"] in allowed
                                                      or mode.name == "SAFE")


def test_a_sequence_starting_in_fast_idle_runs_on_time(tmp_path: Path):
    doc = {"vehicle": {"state_dir": str(tmp_path / "state")},
           "components": {"fault": {"type": "fault", "builtins": False, "fast": True, "idle_period_s": 30.0,
                                    "boot_mode": "STANDBY"}},
           # fault protection steps before the dispatcher: it cannot see the sequence start until its next
           # (idle, 30 s away) cycle, unless the sequencer tells it
           "rate_groups": [{"name": "hk", "hz": 10, "members": ["fault", "cmd", "seq", "sys", "health", "tlm"]}]}
    v = Vehicle(parse(doc), SimClock())
    rec = Recorder()
    v.add_sink(rec)
    try:
        (v.fw.state_dir / "sequences").mkdir(parents=True, exist_ok=True)
        (v.fw.state_dir / "sequences" / "s.seq").write_text("+1..2 CMD_PING key=1\n")
        v.run(until_s=40)
        assert v.fw.tlm.get("fault.fast_idle")
        v.dispatcher.submit("SEQ_RUN", {"file": "s.seq"})
        v.run(until_s=100)
        v.flush()
        started = rec.events("SeqStarted")[0].time_ns / NS
        (pong,) = rec.events("Pong")
        assert 1.0 <= pong.time_ns / NS - started <= 1.3 and not rec.events("SeqLate")
        assert [e.text for e in rec.events("FastIdle")][:2] == ["fast idle on", "fast idle off"]
    finally:
        v.executive.stop_workers()
