"""Modes, conditions, monitor configuration and arbitration, without a vehicle."""

from __future__ import annotations

import operator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flight.fault import (
    TRANSITIONS,
    ConditionError,
    Mode,
    Response,
    arbitrate,
    parse_condition,
    parse_monitors,
    transition_problem,
)
from flight.fault.modes import SAFETY, parse_mode

pytestmark = pytest.mark.timeout(60)

modes = st.sampled_from(list(Mode))


@given(modes, modes)
def test_transition_table_is_the_only_judge(current: Mode, target: Mode) -> None:
    problem = transition_problem(current, target)
    assert (problem is None) == (target in TRANSITIONS[current] and target != current)
    if problem is not None:
        assert current.name in problem


def test_table_shape() -> None:
    assert all(Mode.BOOT not in allowed for allowed in TRANSITIONS.values())
    assert TRANSITIONS[Mode.HIBERNATE] == {Mode.SAFE}
    assert Mode.DRIVE not in TRANSITIONS[Mode.SAFE]  # out of SAFE only through STANDBY
    # every mode is reachable from BOOT and SAFE is reachable from every mode but BOOT's successors
    seen, todo = {Mode.BOOT}, [Mode.BOOT]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(Mode)
    assert all(Mode.SAFE in TRANSITIONS[m] for m in Mode if m not in (Mode.SAFE,))


@given(st.one_of(st.text(max_size=12), st.integers(-5, 10)))
def test_parse_mode_never_crashes(text: str | int) -> None:
    try:
        m = parse_mode(text)
    except ValueError as exc:
        assert "unknown mode" in str(exc)
    else:
        assert isinstance(m, Mode)


OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
       "!=": operator.ne}
finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(st.sampled_from(list(OPS)), finite, finite, st.booleans())
def test_comparison_conditions_match_python(op: str, threshold: float, value: float, spaced: bool) -> None:
    cond = parse_condition(f"{op} {threshold!r}" if spaced else f"{op}{threshold!r}")
    assert cond.holds(value) == OPS[op](value, threshold)


@given(finite, finite, finite)
def test_range_and_delta_conditions(a: float, b: float, v: float) -> None:
    lo, hi = min(a, b), max(a, b)
    assert parse_condition(f"outside {lo!r} {hi!r}").holds(v) == (v < lo or v > hi)
    assert parse_condition(f"inside {lo!r} {hi!r}").holds(v) == (lo <= v <= hi)
    d = parse_condition(f"delta > {lo!r}")
    assert not d.holds(v)  # no previous sample yet
    prev = v - hi
    assert d.holds(v, prev) == (v - prev > lo)


@given(st.text(max_size=30))
def test_any_text_parses_or_says_why(text: str) -> None:
    try:
        parse_condition(text)
    except ConditionError as exc:
        assert str(exc)


@pytest.mark.parametrize("table, key", [
    ({"tilt": {"persistence": 0}}, "monitors.tilt.persistence"),
    ({"tilt": {"persistence": True}}, "monitors.tilt.persistence"),
    ({"tilt": {"condition": "about 3"}}, "monitors.tilt.condition"),
    ({"tilt": {"response": "panic"}}, "monitors.tilt.response"),
    ({"tilt": {"modes": ["NAPPING"]}}, "monitors.tilt.modes"),
    ({"tilt": {"modes": ["HIBERNATE"]}}, "monitors.tilt.modes"),
    ({"tilt": {"colour": "red"}}, "monitors.tilt.colour"),
    ({"new_one": {"channel": "power.soc", "condition": "< 1"}}, "monitors.new_one.response"),
    ({"Bad-Name": {}}, "monitors.Bad-Name"),
    ({"x": {"channel": "a b", "condition": "< 1", "response": "safe"}}, "monitors.x.channel"),
])
def test_bad_monitor_config_names_the_key(table: dict, key: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_monitors(table)
    assert str(err.value).startswith(key)


names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
conds = st.sampled_from(["< 1", "> 2", "outside -1 1", "delta > 0", "== true", ">= 0.5"])
responses = st.sampled_from([r.name.lower() for r in Response])


@given(st.dictionaries(names, st.fixed_dictionaries(
    {"channel": st.sampled_from(["power.soc", "thermal.*_c", "event:drive.WheelStall"]), "condition": conds,
     "response": responses}, optional={"persistence": st.integers(1, 100), "enabled": st.booleans()}),
    max_size=5))
def test_valid_monitor_tables_parse(table: dict) -> None:
    specs = {s.name: s for s in parse_monitors(table)}
    for name, body in table.items():
        s = specs[name]
        assert s.channel == body["channel"] and s.response.name.lower() == body["response"]
        assert s.persistence == body.get("persistence", s.persistence)


@given(st.lists(st.tuples(st.sampled_from(list(Response)), st.text(max_size=5)), max_size=6), modes, st.booleans())
def test_arbitration_picks_the_most_severe_and_never_demotes(requests: list, mode: Mode, restart_ok: bool) -> None:
    d = arbitrate(requests, mode, restart_ok)
    if not requests:
        assert d.response is None
        return
    top = max(r for r, _ in requests)
    assert len(d.subsumed) == len(requests) - 1
    if mode == Mode.HIBERNATE:
        assert d.mode is None and not d.restart and not d.stop_drive
        return
    if top == Response.RESTART and not restart_ok:
        assert d.response == Response.SAFE and not d.restart
    else:
        assert d.response == top
    if d.mode is not None:
        assert SAFETY[d.mode] > SAFETY[mode]
    assert d.restart == (d.response == Response.RESTART)


def test_standby_in_safe_is_only_a_drive_stop() -> None:
    d = arbitrate([(Response.STANDBY, "recorder")], Mode.SAFE)
    assert d.mode is None and d.stop_drive
    d = arbitrate([(Response.SAFE, "tilt"), (Response.HIBERNATE, "battery")], Mode.DRIVE)
    assert d.mode == Mode.HIBERNATE and d.subsumed == ("safe (tilt)",)
