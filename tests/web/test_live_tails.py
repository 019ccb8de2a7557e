"""``magpie tlm`` and ``magpie events`` live tails against a real ground on 127.0.0.1.

Before: ``magpie events --count 3`` died with KeyError 'severity' (the client subscribed to
everything, so housekeeping samples reached the event formatter) and ``magpie tlm CHANNEL``
printed every channel. The tails now subscribe narrowly and match each topic exactly.
"""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ground.cli import main as cli_main
from ground.client import GroundClient
from ground.web.filters import SEVERITIES, ChannelFilter, EventFilter, FilterError, parse_severities

pytestmark = pytest.mark.timeout(60)


class Commander(threading.Thread):
    """Keeps sending commands (each makes the vehicle raise a WARNING_HI event) until stopped."""

    def __init__(self, ground, names: list[str]) -> None:
        super().__init__(daemon=True)
        self.ground, self.names, self.stop = ground, names, threading.Event()

    def run(self) -> None:
        with GroundClient(command_endpoint=self.ground.command_endpoint, token=self.ground.token) as client:
            i = 0
            while not self.stop.is_set():
                name = self.names[i % len(self.names)]
                args = {"x_m": 1, "y_m": 2} if name == "NAV_GOTO" else {"mode": "MONO"}
                client.send_command(66, name, args, timeout_s=10)
                i += 1
                self.stop.wait(0.2)  # pace of an operator's commands, not a wait for time to pass


def test_events_tail_shows_events_only(live_ground, capsys: pytest.CaptureFixture[str]) -> None:
    tmp, ground = live_ground
    sender = Commander(ground, ["NAV_GOTO", "CAM_MODE"])
    sender.start()
    try:
        assert cli_main(["events", "--count", "3", "--config", str(tmp / "ground.toml")]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 3 and all("WARNING_HI" in ln and "LinkDown: ran " in ln for ln in lines), lines
        assert cli_main(["events", "--count", "2", "--search", "cam_mode", "--severity", ">=WARNING_HI",
                         "--config", str(tmp / "ground.toml")]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert len(lines) == 2 and all("ran CAM_MODE" in ln for ln in lines), lines
    finally:
        sender.stop.set()
        sender.join(5)
    assert cli_main(["events", "--since", "0", "--severity", "FATAL", "--config", str(tmp / "ground.toml")]) == 0
    assert capsys.readouterr().out == ""
    assert cli_main(["events", "--since", "0", "--search", "NAV_GOTO", "--config", str(tmp / "ground.toml")]) == 0
    archived = capsys.readouterr().out.splitlines()
    assert archived and all("ran NAV_GOTO" in ln for ln in archived)
    assert cli_main(["events", "--severity", "LOUD", "--config", str(tmp / "ground.toml")]) == 2
    assert "severity 'LOUD'" in capsys.readouterr().err


def test_tlm_tail_honours_its_channel_filter(live_ground, capsys: pytest.CaptureFixture[str]) -> None:
    tmp, _ = live_ground
    cfg = str(tmp / "ground.toml")
    assert cli_main(["tlm", "power.bus_v", "--count", "5", "--config", cfg]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and all(ln.split()[1] == "power.bus_v" for ln in lines), lines
    assert cli_main(["tlm", "nav.*", "--count", "3", "--config", cfg]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(ln.split()[1] == "nav.heading_deg" for ln in lines), lines
    assert cli_main(["tlm", "nav.*", "--since", "0", "--config", cfg]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(ln.split()[1] == "nav.heading_deg" for ln in lines)


def test_channel_filter_matches_names_not_prefixes() -> None:
    f = ChannelFilter(("power.soc",))
    assert f.match("power.soc") and not f.match("power.soc_min")
    assert f.topics(66) == ["tlm.66.power.soc"]
    g = ChannelFilter(("nav.*", "power.bus_?"))
    assert g.match("nav.x_m") and g.match("power.bus_v") and not g.match("power.soc")
    assert g.topics(6) == ["tlm.6.nav.", "tlm.6.power.bus_"]
    assert ChannelFilter().match("anything") and ChannelFilter().topics(1) == ["tlm.1."]


def test_event_filter() -> None:
    rec = {"severity": "WARNING_LO", "name": "CycleSlip", "text": "slip 3 in control"}
    assert EventFilter().match(rec)
    assert EventFilter(parse_severities([">=WARNING_LO"])).match(rec)
    assert not EventFilter(parse_severities([">=WARNING_HI"])).match(rec)
    assert EventFilter(search="CONTROL").match(rec) and not EventFilter(search="nav").match(rec)
    assert not EventFilter(name="LinkDown").match(rec)
    assert parse_severities(["fatal, warning_hi"]) == {"FATAL", "WARNING_HI"}
    with pytest.raises(FilterError, match="expected one of"):
        parse_severities(["LOUD"])


@given(st.lists(st.text(max_size=12), max_size=4))
def test_parse_severities_never_raises_anything_but_filter_error(values: list[str]) -> None:
    try:
        out = parse_severities(values)
    except FilterError:
        return
    assert out <= set(SEVERITIES)


@given(st.text(max_size=20), st.text(max_size=20))
def test_channel_filter_total(pattern: str, name: str) -> None:
    f = ChannelFilter((pattern,))
    assert isinstance(f.match(name), bool)
    assert all(t.startswith("tlm.1.") for t in f.topics(1))
