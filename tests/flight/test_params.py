"""Parameters: set, save atomically, load at boot; corrupt files give defaults and a warning."""

import json

import pytest

from flight.component import Component
from flight.model import Param, Severity

pytestmark = pytest.mark.timeout(30)


class Heater(Component):
    PARAMS = (Param("setpoint_c", "f32", 20.0, "degC", min=-40, max=60),
              Param("enabled", "bool", True))

    def setup(self):
        self.changes = []

    def on_param(self, name, value):
        self.changes.append((name, value))


def boot(make_vehicle, state):
    h = Heater("heater")
    v, rec = make_vehicle([h], state_dir=state)
    return v, rec, h


def test_set_save_and_reload(make_vehicle, tmp_path):
    state = tmp_path / "st"
    v, rec, h = boot(make_vehicle, state)
    v.dispatcher.submit("PRM_SET", {"name": "heater.setpoint_c", "value": "35.5"})
    v.dispatcher.submit("PRM_SET", {"name": "heater.setpoint_c", "value": "99"})
    v.dispatcher.submit("PRM_SET", {"name": "heater.nothing", "value": "1"})
    v.dispatcher.submit("PRM_SAVE")
    v.run(until_s=0.3)
    v.flush()
    assert rec.stages("PRM_SET") == ["ACCEPTED", "COMPLETED", "ACCEPTED", "FAILED", "ACCEPTED", "FAILED"]
    assert h.changes == [("setpoint_c", 35.5)]
    assert rec.stages("PRM_SAVE") == ["ACCEPTED", "COMPLETED"]
    stored = json.loads((state / "params.json").read_text())
    assert stored["body"]["values"] == {"heater.setpoint_c": 35.5}
    assert not list(state.glob(".*tmp*"))  # no temporary left behind
    v2, rec2, h2 = boot(make_vehicle, state)
    assert v2.fw.params.get("heater.setpoint_c") == 35.5
    assert v2.fw.tlm.get("sys.boot_count") == 2
    v2.flush()
    assert not rec2.events("ParamFileProblem")


@pytest.mark.parametrize("content", [
    b"",  # empty
    b'{"format": "magpie-params/1", "crc32": 1, "bo',  # truncated
    b"\xff\xfe garbage",
    b'{"format": "magpie-params/1", "crc32": 0, "body": {"values": {"heater.setpoint_c": 1}}}',  # bad crc
])
def test_corrupt_file_gives_defaults_and_warning(make_vehicle, tmp_path, content):
    state = tmp_path / "st"
    state.mkdir()
    (state / "params.json").write_bytes(content)
    v, rec, h = boot(make_vehicle, state)
    assert v.fw.params.get("heater.setpoint_c") == 20.0
    v.flush()
    problems = rec.events("ParamFileProblem")
    assert len(problems) == 1 and problems[0].severity == Severity.WARNING_HI


def test_stored_value_out_of_range_keeps_default(make_vehicle, tmp_path):
    from flight.persist import write_checked_json

    state = tmp_path / "st"
    write_checked_json(state / "params.json", "magpie-params/1",
                       {"values": {"heater.setpoint_c": 500, "heater.enabled": False, "gone.x": 1}})
    v, rec, h = boot(make_vehicle, state)
    assert v.fw.params.get("heater.setpoint_c") == 20.0
    assert v.fw.params.get("heater.enabled") is False
    v.flush()
    texts = [e.text for e in rec.events("ParamFileProblem")]
    assert any("setpoint_c" in t and "maximum" in t for t in texts)
    assert any("gone.x" in t for t in texts)


def test_boot_event_carries_version_and_dictionary_hash(make_vehicle):
    v, rec, _ = boot(make_vehicle, None)
    v.flush()
    (ev,) = rec.events("Boot")
    assert "0.1.0" in ev.text and v.dictionary["hash"] in ev.text and "boot 1" in ev.text


def test_corrupt_boot_record_restarts_count_with_warning(make_vehicle, tmp_path):
    state = tmp_path / "st"
    state.mkdir()
    (state / "boot.json").write_text("{not json")
    v, rec, _ = boot(make_vehicle, state)
    v.flush()
    assert rec.events("BootRecordProblem")
    assert v.fw.tlm.get("sys.boot_count") == 1
