"""The timeline language and its engines: windows, late policies, deadlines, waits, several engines."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.clock import NS
from flight.component import Component
from flight.model import Arg, Channel, command
from flight.timeline import SequenceError, load, parse

pytestmark = pytest.mark.timeout(30)


class Probe(Component):
    """A level the test sets by command, for sequences to wait on."""

    CHANNELS = (Channel("level", "f32", update="on_change"),)

    def setup(self) -> None:
        self.tlm("level", 0.0)

    @command("PROBE_SET", Arg("value", "f32"))
    def probe_set(self, value: float) -> None:
        """Set the level."""
        self.tlm("level", value)


def vehicle(make_vehicle, files: dict[str, str], **kw):
    v, rec = make_vehicle([Probe("probe")], **kw)
    d = v.fw.state_dir / "sequences"
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return v, rec


def run(v, rec, until_s, *cmds):
    for name, args in cmds:
        v.dispatcher.submit(name, args)
    v.run(until_s=until_s)
    v.flush()


def pongs(rec):
    return [(e.text, e.time_ns / NS) for e in rec.events("Pong")]


def step_events(rec):
    return [dict(zip(("engine", "name", "line", "step", "planned_s", "latest_s", "start_s", "end_s", "outcome"),
                     e.args, strict=True)) for e in rec.events("SeqStep")]


# -- parsing -------------------------------------------------------------------------------------

def test_parse_windows_policies_waits_and_directives():
    tl = parse("critical\n"
               "deadline @100 contingency rescue\n"
               "@2..4 CMD_PING key=1\n"
               "+0..10 CMD_NOOP late=abort\n"
               "again:\n"
               "+0 until probe.level >= 2.5 within 10m else goto again\n"
               "+1 until probe.level < 1 within 00:00:30 else contingency rescue\n"
               "@50 CMD_NOOP late=skip\n")
    assert tl.critical and tl.deadline == (False, 100.0) and tl.contingency == "rescue"
    a, b, c, d, e = tl.steps
    assert (a.relative, a.time_s, a.latest_s, a.late, a.args) == (False, 2.0, 4.0, "skip", {"key": "1"})
    assert (b.relative, b.latest_s, b.late, b.args) == (True, 10.0, "abort", {})
    assert c.kind == "until" and str(c.cond) == "probe.level >= 2.5" and c.within_s == 600.0
    assert (c.on_timeout, c.target) == ("goto", "again") and tl.labels == {"again": 2}
    assert (d.on_timeout, d.target, d.within_s) == ("contingency", "rescue", 30.0)
    assert (e.late, e.latest_s) == ("skip", None)
    assert tl.contingencies() == [(2, "rescue"), (7, "rescue")]


@pytest.mark.parametrize(("text", "line", "message"), [
    ("+0 CMD_NOOP\n@5..3 CMD_NOOP\n", 2, "ends before it starts"),
    ("+0 CMD_NOOP\n+0 until probe.level > 1 within 5 else goto nowhere\n", 2, "unknown label 'nowhere'"),
    ("deadline @10 contingency r\n@20 CMD_NOOP\n", 1, "before line 2 may start"),
    ("deadline +10 contingency r\n+6 CMD_NOOP\n+6 CMD_NOOP\n", 1, "cannot be met"),
    ("+0 CMD_NOOP late=maybe\n", 1, "late=run, late=skip or late=abort"),
    ("+0 until probe.level > 1\n", 1, "within"),
    ("x:\nx:\n+0 CMD_NOOP\n", 2, "defined twice"),
    ("deadline @1..2 contingency r\n", 1, "not a window"),
    ("contingency ../up\n", 1, "not a sequence name"),
])
def test_bad_statements_are_refused_with_their_line(text, line, message):
    with pytest.raises(SequenceError) as info:
        parse(text)
    assert any(n == line and message in m for n, m in info.value.errors), info.value.errors


def test_check_names_unknown_channels_commands_and_contingencies(make_vehicle):
    v, _ = make_vehicle([Probe("probe")])
    text = ("contingency rescue\n+0 until probe.depth > 1 within 5\n+0 until probe.level > 1 within 5\n"
            "+0 CMD_FLY\n")
    with pytest.raises(SequenceError) as info:
        load(text, v.dispatcher.entry, set(v.fw.tlm.names()),
             contingency=lambda name: None if name == "ok" else "no such file")
    assert info.value.errors == [(1, "contingency rescue: no such file"), (2, "unknown channel probe.depth"),
                                 (4, "unknown command CMD_FLY")]


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("+@.:0123456789 \n#=\"'abcdefgilnortuwxyzCDEMNOP_<>!"))
               | st.characters(), max_size=300))
def test_timeline_parser_never_raises_anything_but_sequence_error(text):
    try:
        tl = parse(text)
    except SequenceError as exc:
        assert exc.errors and all(isinstance(n, int) and n >= 1 for n, _ in exc.errors)
        return
    for s in tl.steps:
        assert s.time_s >= 0 and (s.latest_s is None or s.latest_s >= s.time_s)
        assert (s.kind == "cmd" and s.name) or (s.kind == "until" and s.cond is not None)


_stmt = st.one_of(
    st.tuples(st.sampled_from("+@"), st.integers(0, 1000), st.integers(0, 100), st.sampled_from(
        ["CMD_NOOP", "CMD_PING key=3", "CMD_NOOP late=skip", "CMD_NOOP late=abort"])).map(
        lambda t: f"{t[0]}{t[1]}..{t[1] + t[2]} {t[3]}" if t[0] == "+" else f"+{t[1]} {t[3]}"),
    st.tuples(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), st.floats(-1e6, 1e6), st.integers(0, 3600)).map(
        lambda t: f"+0 until probe.level {t[0]} {t[1]!r} within {t[2]}s"),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_stmt, max_size=15))
def test_generated_timelines_parse_statement_for_statement(stmts):
    tl = parse("".join(s + "\n" for s in stmts))
    assert [s.line for s in tl.steps] == list(range(1, len(stmts) + 1))
    assert [s.kind for s in tl.steps] == ["until" if " until " in s else "cmd" for s in stmts]


# -- running -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("policy", "pinged", "failed"), [("run", ["ping 2", "ping 3"], False),
                                                          ("skip", ["ping 3"], False),
                                                          ("abort", [], True)])
def test_a_late_command_follows_its_policy_and_says_so(make_vehicle, policy, pinged, failed):
    v, rec = vehicle(make_vehicle, {"s.seq": f"+5 CMD_NOOP\n@2..3 CMD_PING key=2 late={policy}\n+1 CMD_PING key=3\n"})
    run(v, rec, 10, ("SEQ_RUN", {"file": "s.seq"}))
    assert [t for t, _ in pongs(rec)] == pinged
    (late,) = rec.events("SeqLate")
    assert "s.seq:2 CMD_PING late by" in late.text and policy[:3] in late.text
    outcomes = [s["outcome"] for s in step_events(rec) if s["line"] == 2]
    assert outcomes and outcomes[0].startswith({"run": "late by", "skip": "skipped", "abort": "aborted"}[policy])
    assert bool(rec.events("SeqFailed")) == failed and v.fw.tlm.get("seq.late") == 1


def test_a_plain_absolute_tag_that_runs_late_says_so_and_one_on_time_does_not(make_vehicle):
    v, rec = vehicle(make_vehicle, {"s.seq": "+5 CMD_NOOP\n@2 CMD_PING key=2\n@9 CMD_PING key=3\n"})
    run(v, rec, 12, ("SEQ_RUN", {"file": "s.seq"}))
    assert [t for t, _ in pongs(rec)] == ["ping 2", "ping 3"]
    (late,) = rec.events("SeqLate")
    assert "s.seq:2" in late.text and "running it" in late.text
    steps = {s["line"]: s for s in step_events(rec)}
    assert steps[2]["planned_s"] == 2.0 and steps[2]["start_s"] > 5.0
    assert steps[3]["planned_s"] == 9.0 and 9.0 <= steps[3]["start_s"] <= 9.2
    assert steps[3]["outcome"] == "completed"


def test_a_missed_deadline_switches_to_the_contingency(make_vehicle):
    v, rec = vehicle(make_vehicle, {
        "main.seq": "deadline +5 contingency rescue\n+0 until probe.level >= 1 within 100s\n+0 CMD_PING key=1\n",
        "rescue.seq": "+0 CMD_PING key=9\n"})
    run(v, rec, 10, ("SEQ_RUN", {"file": "main.seq"}))
    (switch,) = rec.events("SeqContingency")
    assert "main.seq -> contingency rescue" in switch.text and "missed" in switch.text
    assert 5.0 <= switch.time_ns / NS <= 5.3
    assert [t for t, _ in pongs(rec)] == ["ping 9"]
    assert [e.args[0] for e in rec.events("SeqCompleted")] == ["rescue.seq"]
    assert v.fw.tlm.get("seq.contingencies") == 1


def test_a_deadline_that_cannot_be_met_switches_at_once(make_vehicle):
    v, rec = vehicle(make_vehicle, {
        "main.seq": "deadline @30 contingency rescue\n+0 CMD_NOOP\n+40 CMD_PING key=1\n",
        "late.seq": "deadline @2 contingency rescue\n+0 CMD_PING key=2\n",
        "rescue.seq": "+0 CMD_PING key=9\n"})
    run(v, rec, 3, ("SEQ_RUN", {"file": "main.seq"}))
    (switch,) = rec.events("SeqContingency")
    assert "cannot be met" in switch.text and switch.time_ns / NS < 1.0  # seen long before t=30
    run(v, rec, 8, ("SEQ_RUN", {"file": "late.seq"}))  # started after its deadline
    assert "cannot be met" in rec.events("SeqContingency")[1].text
    assert [t for t, _ in pongs(rec)] == ["ping 9", "ping 9"]


def test_until_met_and_timed_out_with_goto_and_contingency(make_vehicle):
    v, rec = vehicle(make_vehicle, {
        "wait.seq": ("+0 until probe.level >= 2 within 10s else goto give_up\n+0 CMD_PING key=1\n"
                     "+0 until probe.level >= 5 within 3s else goto give_up\n+0 CMD_PING key=2\n"
                     "give_up:\n+0 CMD_PING key=3\n"
                     "+0 until probe.level >= 9 within 2s else contingency rescue\n"),
        "rescue.seq": "+0 CMD_PING key=9\n"})
    v.dispatcher.submit("SEQ_RUN", {"file": "wait.seq"})
    v.run(until_s=4)
    v.dispatcher.submit("PROBE_SET", {"value": 2.5})
    run(v, rec, 20)
    assert [t for t, _ in pongs(rec)] == ["ping 1", "ping 3", "ping 9"]
    t1 = pongs(rec)[0][1]
    assert 4.0 <= t1 <= 4.4  # right after the level was met
    timeouts = rec.texts("SeqWaitTimeout")
    assert "probe.level >= 5 timed out after 3" in timeouts[0] and "goto give_up" in timeouts[0]
    assert "contingency rescue" in timeouts[1]
    met = [s for s in step_events(rec) if s["outcome"].startswith("met")]
    assert met[0]["line"] == 1 and "2.5" in met[0]["outcome"]


def test_a_wait_without_else_fails_the_sequence(make_vehicle):
    v, rec = vehicle(make_vehicle, {"w.seq": "+0 until probe.level > 1 within 2\n+0 CMD_PING key=1\n"})
    run(v, rec, 5, ("SEQ_RUN", {"file": "w.seq"}))
    (failed,) = rec.texts("SeqFailed")
    assert "timed out after 2 s" in failed and not pongs(rec)


def test_two_engines_run_side_by_side(make_vehicle):
    v, rec = vehicle(make_vehicle, {"a.seq": "+1 CMD_PING key=1\n+3 CMD_PING key=3\n",
                                    "b.seq": "+2 CMD_PING key=2\n+3 CMD_PING key=4\n"},
                     sequences=["sampling", "comm"])
    v.dispatcher.submit("SEQ_START", {"engine": "sampling", "file": "a.seq"})
    v.dispatcher.submit("SEQ_START", {"engine": "comm", "file": "b.seq"})
    v.run(until_s=1.5)
    assert v.fw.tlm.get("seq.active") == 2
    assert v.fw.tlm.get("seq.sampling.state") and v.fw.tlm.get("seq.comm.state")
    run(v, rec, 8, ("SEQ_START", {"engine": "thermal", "file": "a.seq"}))
    assert [t for t, _ in pongs(rec)] == ["ping 1", "ping 2", "ping 3", "ping 4"]
    assert sorted(e.args[1] for e in rec.events("SeqCompleted")) == ["comm", "sampling"]
    assert {s["engine"] for s in step_events(rec)} == {"sampling", "comm"}
    assert rec.stages("SEQ_START")[-1] == "FAILED"
    assert v.fw.tlm.get("seq.sampling.runs") == 1 and v.fw.tlm.get("seq.active") == 0


def test_stop_and_commanded_contingency_per_engine(make_vehicle):
    v, rec = vehicle(make_vehicle, {"a.seq": "contingency rescue\n+50 CMD_PING key=1\n",
                                    "rescue.seq": "+0 CMD_PING key=9\n"}, sequences=["sampling", "comm"])
    v.dispatcher.submit("SEQ_START", {"engine": "sampling", "file": "a.seq"})
    v.dispatcher.submit("SEQ_START", {"engine": "comm", "file": "a.seq"})
    v.run(until_s=1)
    run(v, rec, 3, ("SEQ_STOP", {"engine": "comm"}), ("SEQ_CONTINGENCY", {"engine": "sampling"}))
    assert [t for t, _ in pongs(rec)] == ["ping 9"]
    assert "commanded" in rec.texts("SeqContingency")[0]
    assert [e.args[-1] for e in rec.events("SeqCancelled")] == ["comm"]
    run(v, rec, 4, ("SEQ_CONTINGENCY", {"engine": "comm"}))
    assert rec.stages("SEQ_CONTINGENCY")[-1] == "FAILED"


def test_a_missing_contingency_refuses_the_start(make_vehicle):
    v, rec = vehicle(make_vehicle, {"a.seq": "deadline +60 contingency nowhere\n+0 CMD_NOOP\n",
                                    "b.seq": "contingency bad\n+0 CMD_NOOP\n", "bad.seq": "+0 CMD_FLY\n"})
    run(v, rec, 2, ("SEQ_RUN", {"file": "a.seq"}), ("SEQ_RUN", {"file": "b.seq"}))
    reasons = [r.reason for r in rec.responses("SEQ_RUN") if r.stage == "FAILED"]
    assert "line 1: contingency nowhere: no file nowhere.seq or nowhere" in reasons[0]
    assert "contingency bad" in reasons[1] and "unknown command CMD_FLY" in reasons[1]
    assert not rec.events("SeqStarted")


def test_plan_files_bring_the_contingencies_along(tmp_path):
    from flight.timeline import plan_files

    (tmp_path / "main.seq").write_text("deadline +60 contingency a\n+0 CMD_NOOP\n")
    (tmp_path / "a.seq").write_text("+0 until probe.level > 1 within 5 else contingency b\n")
    (tmp_path / "b").write_text("contingency main\n+0 CMD_NOOP\n")
    (tmp_path / "unrelated.seq").write_text("+0 CMD_NOOP\n")
    assert [p.name for p in plan_files(tmp_path / "main.seq")] == ["main.seq", "a.seq", "b"]
    assert [p.name for p in plan_files(tmp_path / "missing.seq")] == ["missing.seq"]


def test_engines_never_take_each_others_responses(make_vehicle):
    # the first command of each engine is in flight at once; one fails, the other must not see it
    v, rec = vehicle(make_vehicle, {"a.seq": "+0 CMD_PING key=1\n+1 CMD_PING key=2\n",
                                    "b.seq": "+0 EXEC_DISABLE member=cmd\n"}, sequences=["one", "two"])
    run(v, rec, 4, ("SEQ_START", {"engine": "one", "file": "a.seq"}), ("SEQ_START", {"engine": "two", "file": "b.seq"}))
    assert [e.args[-1] for e in rec.events("SeqFailed")] == ["two"]
    assert [e.text for e in rec.events("Pong")] == ["ping 1", "ping 2"]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("0123456789:.smhx-+ ")), max_size=30))
def test_durations_and_tags_parse_or_say_why(text):
    from flight.timeline import parse_duration, parse_tag

    for fn, arg in ((parse_duration, text), (parse_tag, "+" + text), (parse_tag, "@" + text)):
        try:
            value = fn(arg)
        except ValueError as exc:
            assert str(exc)
            continue
        assert value is not None
