"""Stored sequences: parsing with line numbers, checking, timing, failure, cancel."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.clock import NS
from flight.sequencer import SequenceError, check, parse

pytestmark = pytest.mark.timeout(30)


def write_seq(v, name, text):
    d = v.fw.state_dir / "sequences"
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(text)


def test_parse_tags_and_arguments():
    from datetime import UTC, datetime

    lines = parse(
        "# header\n"
        "+0 CMD_NOOP\n"
        "\n"
        "+00:01:30.5 CMD_PING key=7   # trailing comment\n"
        "@3600 PRM_SET name=a.b value=\"two words\"\n"
        "@2026-01-01T02:00:00Z CMD_NOOP\n",
        epoch=datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert [(ln.line, ln.relative, ln.time_s, ln.name) for ln in lines] == [
        (2, True, 0.0, "CMD_NOOP"), (4, True, 90.5, "CMD_PING"), (5, False, 3600.0, "PRM_SET"),
        (6, False, 7200.0, "CMD_NOOP")]
    assert lines[2].args == {"name": "a.b", "value": "two words"}


def test_every_error_is_reported_with_its_line():
    text = "+0 CMD_NOOP\nsoon CMD_NOOP\n+1 lower_case\n+1 CMD_PING key\n@10 CMD_NOOP\n@5 CMD_NOOP\n+1:75 CMD_NOOP\n"
    with pytest.raises(SequenceError) as info:
        parse(text)
    assert [n for n, _ in info.value.errors] == [2, 3, 4, 6, 7]
    assert "bad time tag" in info.value.errors[0][1]


def test_check_against_dictionary(make_vehicle):
    v, _ = make_vehicle([])
    lines = parse("+0 CMD_PING key=5\n+1 CMD_PING key=-1\n+1 CMD_PING\n+1 CMD_FLY\n+1 CMD_NOOP extra=1\n")
    errors = check(lines, v.dispatcher.entry)
    assert [n for n, _ in errors] == [2, 3, 4, 5]
    assert "unknown command CMD_FLY" in errors[2][1]


def test_sequence_runs_with_relative_and_absolute_timing(make_vehicle):
    v, rec = make_vehicle([])
    write_seq(v, "s.seq", "+2 CMD_PING key=1\n+3 CMD_PING key=2\n@20 CMD_PING key=3\n")
    v.dispatcher.submit("SEQ_RUN", {"file": "s.seq"})
    v.run(until_s=30)
    v.flush()
    pongs = [(e.time_ns, e.text) for e in rec.events("Pong")]
    assert [t for _, t in pongs] == ["ping 1", "ping 2", "ping 3"]
    t1, t2, t3 = (t / NS for t, _ in pongs)
    assert 2.0 <= t1 <= 2.3
    assert 3.0 <= t2 - t1 <= 3.4  # relative to the completion of the previous command
    assert 20.0 <= t3 <= 20.2
    assert rec.events("SeqCompleted")
    assert v.fw.tlm.get("seq.state") == 0 and v.fw.tlm.get("seq.runs") == 1


def test_failed_command_stops_the_sequence(make_vehicle):
    v, rec = make_vehicle([])
    write_seq(v, "f.seq", "+0 CMD_NOOP\n+1 EXEC_DISABLE member=cmd\n+1 CMD_PING key=9\n")
    v.dispatcher.submit("SEQ_RUN", {"file": "f.seq"})
    v.run(until_s=10)
    v.flush()
    (failed,) = rec.events("SeqFailed")
    assert "line 2" in failed.text and "essential" in failed.text
    assert not rec.events("Pong")
    assert v.fw.tlm.get("seq.failures") == 1


def test_invalid_sequence_never_starts(make_vehicle):
    v, rec = make_vehicle([])
    write_seq(v, "bad.seq", "+0 CMD_NOOP\n+1 CMD_PING key=x\n+1 NOT_A_CMD\n")
    v.dispatcher.submit("SEQ_RUN", {"file": "bad.seq"})
    v.dispatcher.submit("SEQ_RUN", {"file": "../escape.seq"})
    v.dispatcher.submit("SEQ_RUN", {"file": "missing.seq"})
    v.run(until_s=2)
    v.flush()
    reasons = [r.reason for r in rec.responses("SEQ_RUN") if r.stage == "FAILED"]
    assert "2 error(s)" in reasons[0] and "line 2" in reasons[0] and "line 3" in reasons[0]
    assert "relative path" in reasons[1]
    assert "cannot read" in reasons[2]
    assert [e.text for e in rec.events("SeqLineError")][:2] == [
        "bad.seq line 2: argument 'key': expected an integer, got 'x'",
        "bad.seq line 3: unknown command NOT_A_CMD"]
    assert not rec.events("NoOp")


def test_cancel_and_status(make_vehicle):
    v, rec = make_vehicle([])
    write_seq(v, "long.seq", "+0 CMD_NOOP\n+100 CMD_PING key=1\n")
    v.dispatcher.submit("SEQ_RUN", {"file": "long.seq"})
    v.run(until_s=1)
    v.dispatcher.submit("SEQ_STATUS")
    v.dispatcher.submit("SEQ_CANCEL")
    v.run(until_s=2)
    v.dispatcher.submit("SEQ_CANCEL")
    v.run(until_s=3)
    v.flush()
    assert "long.seq: command 2/2 (CMD_PING, line 2) waiting" in rec.events("SeqStatus")[0].text
    assert rec.events("SeqCancelled")
    assert rec.stages("SEQ_CANCEL") == ["ACCEPTED", "COMPLETED", "ACCEPTED", "FAILED"]
    assert not rec.events("Pong")


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300))
def test_parser_never_raises_anything_but_sequence_error(text):
    try:
        lines = parse(text)
    except SequenceError as exc:
        assert all(n >= 1 for n, _ in exc.errors)
        return
    for ln in lines:
        assert ln.name and ln.time_s >= 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(["CMD_NOOP", "CMD_PING key=3"])),
                max_size=20))
def test_generated_valid_sequences_parse_line_for_line(items):
    text = "".join(f"+{t} {c}\n" for t, c in items)
    lines = parse(text)
    assert [(ln.time_s, ln.line) for ln in lines] == [(float(t), i + 1) for i, (t, _) in enumerate(items)]
