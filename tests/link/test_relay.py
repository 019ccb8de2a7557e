"""Relay model on explicit simulated times; the relay process and the ZeroMQ radio on loopback."""

from __future__ import annotations

import threading

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.link.frames import Deframer, Framer
from flight.link.packets import Apid, encode_tm
from hal.errors import DeviceClosedError, DeviceUrlError
from hal.radio import open_loop_radio, open_zmq_radio
from hal.registry import open_device
from sim_hw.relay import RelayLink, RelayParams, RelayServer, Schedule, SharedRelay, _next_visible, main

pytestmark = pytest.mark.timeout(60)


def frames(n: int, size: int = 200) -> list[bytes]:
    f = Framer(66)
    return [f.pack(0, [encode_tm(Apid.EVENT, i, 0.0, bytes(size))])[0] for i in range(n)]


def test_light_time_hop_and_rate() -> None:
    p = RelayParams(light_time_s=1.28, hop_delay_s=0.27, rate_bps={"down": 8000.0, "up": 0.0})
    link = RelayLink(p, seed=1)
    fr = frames(2, size=986)  # 1000 + 14 bytes each
    link.submit("down", fr[0], 0.0)
    link.submit("down", fr[1], 0.0)
    t1 = len(fr[0]) * 8 / 8000
    assert link.deliver_due(t1 + 1.55 - 1e-6) == []
    assert link.deliver_due(t1 + 1.55) == [("down", fr[0])]
    assert link.next_due() == pytest.approx(2 * t1 + 1.55)
    assert link.deliver_due(100.0) == [("down", fr[1])]
    link.submit("up", fr[0], 200.0)
    assert link.deliver_due(201.55) == [("up", fr[0])]
    assert link.stats["down"].delivered == 2 and link.stats["up"].delivered == 1


def test_tail_drop_loss_and_bit_errors_are_counted() -> None:
    fr20 = frames(20)
    limit = 5 * len(fr20[0])
    p = RelayParams(light_time_s=0.0, rate_bps={"down": 1000.0, "up": 0.0}, queue_limit_bytes=limit)
    link = RelayLink(p)
    for fr in fr20:
        link.submit("down", fr, 0.0)
    assert link.stats["down"].dropped == 15  # five frames fit the queue
    p = RelayParams(light_time_s=0.0, loss=0.1, ber=1e-4)
    link = RelayLink(p, seed=3)
    sent = frames(2000)
    for fr in sent:
        link.submit("down", fr, 0.0)
    out = link.deliver_due(0.0)
    st = link.stats["down"]
    assert 150 < st.lost < 250
    assert st.delivered == len(out) == 2000 - st.lost
    d = Deframer()
    good = [f for _, f in out if d.accept_frame(f)]
    assert d.stats.crc_errors == st.corrupted > 100
    assert all(f in sent for f in good)


def test_visibility_windows_block_and_reopen() -> None:
    sched = Schedule(period_s=100.0, up_s=60.0)
    assert sched.visible(10) and not sched.visible(70) and sched.visible(101)
    assert sched.next_change(10) == 60 and sched.next_change(70) == 100
    link = RelayLink(RelayParams(light_time_s=0.5, windows=sched))
    fr = frames(1)[0]
    assert not link.submit("down", fr, 75.0)
    assert link.stats["down"].blocked == 1
    assert link.submit("down", fr, 100.0)
    assert Schedule(intervals=((5, 10),)).visible(7) and not Schedule(intervals=((5, 10),)).visible(
        10
    )


def test_presets() -> None:
    moon = RelayParams.preset("moon-farside")
    assert moon.light_time_s == pytest.approx(1.28) and moon.hop_delay_s > 0
    assert not moon.windows.visible(6 * 3600 - 600) and moon.windows.visible(10)
    mars = RelayParams.preset("mars-relay", light_time_s=22 * 60)
    assert mars.light_time_s == 1320 and mars.windows.up_s == 540
    passes = sum(mars.windows.visible(t) != mars.windows.visible(t + 1) for t in range(88_775))
    assert passes // 2 in (3, 4, 5)
    with pytest.raises(ValueError):
        RelayParams.preset("venus")


def test_loop_radio_in_lockstep_with_the_model() -> None:
    now = [0.0]
    link = RelayLink(RelayParams(light_time_s=2.0), seed=0)
    veh = open_device("radio+loop://lockstep?side=vehicle", relay=link, clock=lambda: now[0])
    gnd = open_loop_radio("radio+loop://lockstep?side=ground")
    veh.send(b"down-frame")
    gnd.send(b"up-frame")
    assert gnd.recv() is None and veh.recv() is None
    now[0] = 2.0
    assert gnd.recv() == b"down-frame" and veh.recv() == b"up-frame"
    plain = (
        open_loop_radio("radio+loop://plain?side=vehicle"),
        open_loop_radio("radio+loop://plain?side=ground"),
    )
    plain[0].send(b"x")
    assert plain[1].recv(0.1) == b"x"
    veh.close()
    veh.close()
    with pytest.raises(DeviceClosedError):
        veh.send(b"x")
    with pytest.raises(DeviceUrlError):
        open_loop_radio("radio+loop://x?side=moon")


def test_zmq_radio_url_validation() -> None:
    with pytest.raises(DeviceUrlError, match="scid"):
        open_zmq_radio("radio+zmq://tcp://127.0.0.1:5557")
    with pytest.raises(DeviceUrlError, match="unknown option"):
        open_zmq_radio("radio+zmq://tcp://127.0.0.1:5557?scid=1&baud=9")
    with pytest.raises(DeviceUrlError):
        open_zmq_radio("radio+zmq://tcp://127.0.0.1:5557?scid=x")


def _recv(sock: zmq.Socket, timeout_s: float = 5.0) -> list[bytes] | None:
    if sock.poll(int(timeout_s * 1000)):
        return sock.recv_multipart()
    return None


def test_relay_process_round_trip_on_loopback() -> None:
    server = RelayServer(
        "tcp://127.0.0.1:*", "tcp://127.0.0.1:*", RelayParams(light_time_s=0.05), stats_interval_s=0
    )
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    thread.start()
    assert server.ready.wait(5)
    ctx = zmq.Context.instance()
    ground = ctx.socket(zmq.DEALER)
    ground.setsockopt(zmq.LINGER, 0)
    ground.connect(server.ground_endpoint)
    ground.send_multipart([b"", b""])  # hello
    radios = [open_device(f"radio+zmq://{server.vehicle_endpoint}?scid={s}") for s in (66, 67)]
    try:
        got: list[list[bytes]] = []
        # the hello may race the first frames; resend until the relay knows the ground
        for _ in range(50):
            radios[0].send(b"from-66")
            radios[1].send(b"from-67")
            msg = _recv(ground, 0.2)
            if msg:
                got.append(msg)
                break
        while (msg := _recv(ground, 0.5)) is not None:
            got.append(msg)
        assert {(m[0], m[1]) for m in got} >= {(b"66", b"from-66"), (b"67", b"from-67")}
        ground.send_multipart([b"67", b"to-67"])
        assert radios[1].recv(5.0) == b"to-67"
        assert radios[0].recv(0.2) is None
        assert server.relay.vehicle_stats[67]["up"].delivered == 1
        assert server.relay.stats["up"].delivered == 1  # one transponder serves both
    finally:
        stop.set()
        thread.join(5)
        for r in radios:
            r.close()
        ground.close()
    assert not thread.is_alive()


def test_relay_main_runs_for_a_duration(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "--vehicle-endpoint",
            "tcp://127.0.0.1:*",
            "--ground-endpoint",
            "tcp://127.0.0.1:*",
            "--duration",
            "0.2",
            "--stats-interval",
            "0.1",
            "--preset",
            "mars-relay",
            "--light-time",
            "180",
        ]
    )
    assert rc == 0
    assert "relay: vehicles at tcp://127.0.0.1:" in capsys.readouterr().out


def test_uplink_meets_the_hop_after_the_light_time_and_waits_at_the_relay_for_the_pass() -> None:
    # a Mars-like geometry: 600 s light time, a 500 s pass every 2000 s starting at 1000
    p = RelayParams(light_time_s=600.0, hop_delay_s=0.5,
                    windows=Schedule(period_s=2000.0, up_s=500.0, phase_s=1000.0))
    link = SharedRelay(p, seed=1)
    link.add_vehicle(7)
    fr = frames(3)
    # sent while the hop is down: reaches the orbiter at 700, held there until the pass at 1000
    assert link.submit("up", fr[0], 100.0, scid=7)
    assert link.next_due(7) == pytest.approx(1000.5)
    # sent during a pass but reaching the relay after it closed (1300 + 600 > 1500): next pass
    assert link.submit("up", fr[1], 1300.0, scid=7)
    assert link.deliver_due(1000.5, scid=7) == [("up", fr[0])]
    assert link.deliver_due(2999.0, scid=7) == []
    assert link.deliver_due(3000.5, scid=7) == [("up", fr[1])]
    st = link.vehicle_stats[7]["up"]
    assert st.stored == 2 and st.delivered == 2 and st.blocked == 0
    # downlink meets the hop when sent: out of the pass it is blocked (the recorder resends)
    assert not link.submit("down", fr[2], 2000.0, scid=7)
    assert link.submit("down", fr[2], 3100.0, scid=7)
    assert link.deliver_due(3100.0 + 0.5 + 600.0, scid=7) == [("down", fr[2])]
    assert link.stats["down"].blocked == 1


def test_the_relay_store_is_bounded_and_counted() -> None:
    fr = frames(10)
    p = RelayParams(light_time_s=10.0, windows=Schedule(intervals=((100.0, 200.0),)),
                    store_limit_bytes=3 * len(fr[0]))
    link = RelayLink(p)
    results = [link.submit("up", f, 0.0) for f in fr]
    assert results.count(True) == 3
    st = link.stats["up"]
    assert st.stored == 3 and st.store_dropped == 7
    assert link.store_peak_bytes == 3 * len(fr[0])
    assert len(link.deliver_due(150.0)) == 3


def test_vehicles_share_one_transponder_rate() -> None:
    rate = 8000.0
    p = RelayParams(light_time_s=1.0, rate_bps={"down": rate, "up": 0.0})
    link = SharedRelay(p, seed=2)
    fr = frames(30, size=986)
    for i, f in enumerate(fr):
        link.port(70 + i % 3).submit("down", f, 0.01 * i)
    intervals = sorted((a, b) for a, b, _, d, _ in link.tx_log if d == "down")
    assert all(b1 <= a2 + 1e-9 for (_, b1), (a2, _) in zip(intervals, intervals[1:], strict=False))
    total = sum(len(f) for f in fr)
    # the three vehicles' frames went one after another: the last lands after all the bits at one rate
    assert max(b for _, b in intervals) == pytest.approx(total * 8 / rate, rel=1e-6)
    assert link.next_due() == pytest.approx(1.0 + len(fr[0]) * 8 / rate)
    out = link.deliver_due(1000.0)
    assert len(out) == 30 and {s for s in link.vehicle_stats} == {70, 71, 72}


@settings(max_examples=300, deadline=None)
@given(period=st.floats(100.0, 1e5), frac=st.floats(0.01, 0.9), phase=st.floats(-1e5, 1e5),
       k=st.integers(-50, 500), into=st.floats(0.0, 1.0))
def test_window_edges_read_back_as_what_they_are(period: float, frac: float, phase: float, k: int,
                                                 into: float) -> None:
    # every opening the schedule hands out is in view and every close is out of view, whatever
    # the rounding of phase + k * period (a pass must never be found at its last instant)
    s = Schedule(period_s=period, up_s=frac * period, phase_s=phase)
    t = phase + k * period + into * period
    opening = _next_visible(s, t)
    assert opening is not None and s.visible(opening)
    close = s.next_change(opening)
    assert close is not None and not s.visible(close) and close - opening <= s.up_s * (1 + 1e-9)
    if opening > t:  # it waited for a pass: the whole pass is ahead
        assert close - opening == pytest.approx(s.up_s)
    assert s.window_end(opening) == close and s.window_end(close) is None


def test_uplink_held_for_a_pass_goes_out_at_its_opening_in_every_pass() -> None:
    # the zhurong-utopia geometry: three 10-minute passes a sol, 288 s light time. Each sol's
    # ACKs reach the orbiter after its pass has closed and wait for the next one; they must go
    # out when that pass opens, never at its close (which pushed every later frame passes ahead)
    w = Schedule(period_s=29591.67, up_s=600.0, phase_s=1800.0)
    link = SharedRelay(RelayParams(light_time_s=288.0, hop_delay_s=0.01, rate_bps={"down": 0.0, "up": 32000.0},
                                   windows=w), seed=1)
    link.add_vehicle(80)
    fr = frames(1)[0]
    for k in range(40):
        opening = w.phase_s + k * w.period_s
        for j in range(3):
            assert link.submit("up", fr, opening + 400.0 + j, scid=80)
        arrivals = []
        while (due := link.next_due(80)) is not None:
            arrivals.append(due)
            link.deliver_due(due, scid=80)
        assert len(arrivals) == 3
        nxt = opening + w.period_s
        assert all(nxt <= a < nxt + 1.0 for a in arrivals), (k, arrivals)


def test_a_frame_that_would_run_past_the_close_waits_for_the_next_pass() -> None:
    # 1000 bytes at 800 B/s take 1.25 s: starting 1 s before the close, it cannot be sent whole
    p = RelayParams(light_time_s=10.0, rate_bps={"down": 0.0, "up": 6400.0},
                    windows=Schedule(period_s=1000.0, up_s=100.0, phase_s=0.0))
    link = SharedRelay(p)
    link.add_vehicle(3)
    assert link.submit("up", bytes(1000), 89.0, scid=3)
    assert link.next_due(3) == pytest.approx(1000.0 + 1.25)
