"""The sampling messages of the MCU protocol: SI conversions and their ranges, property-tested."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hal.mcu import protocol as p

pytestmark = pytest.mark.timeout(60)


@given(st.floats(0.0, 65.535), st.floats(0.0, 65.535))
def test_drill_start_carries_metres_and_mm_s_to_the_micrometre(target_m: float, rate_mm_s: float) -> None:
    msg = p.DrillStart.from_si(target_m, rate_mm_s)
    back = p.decode_message(p.decode_frame(p.encode(msg, 7)[:-1]))
    assert isinstance(back, p.DrillStart) and back == msg
    assert abs(back.target_mm / 1000.0 - target_m) <= 0.0005 + 1e-12
    assert abs(back.rate_um_s / 1000.0 - rate_mm_s) <= 0.0005 + 1e-12


@given(st.floats(-327.67, 327.67), st.floats(-327.67, 327.67))
def test_arm_move_carries_degrees_to_a_hundredth(shoulder: float, elbow: float) -> None:
    msg = p.ArmMove.from_deg(shoulder, elbow)
    back = p.ArmMove.unpack(msg.pack())
    assert back == msg
    assert abs(back.shoulder_cdeg / 100.0 - shoulder) <= 0.005 + 1e-9
    assert abs(back.elbow_cdeg / 100.0 - elbow) <= 0.005 + 1e-9


@given(st.one_of(st.floats(65.536, 1e9), st.floats(-1e9, -0.001), st.just(math.nan)))
def test_out_of_range_drill_values_are_refused_before_the_wire(bad: float) -> None:
    with pytest.raises(ValueError, match="drill"):
        p.DrillStart.from_si(bad, 10.0)
    with pytest.raises(ValueError, match="drill"):
        p.DrillStart.from_si(1.0, bad)


@given(st.one_of(st.floats(327.68, 1e9), st.floats(-1e9, -327.69), st.just(math.nan)))
def test_out_of_range_arm_angles_are_refused_before_the_wire(bad: float) -> None:
    with pytest.raises(ValueError, match="deg"):
        p.ArmMove.from_deg(bad, 0.0)


def test_sampling_commands_are_acknowledged_and_need_their_capability() -> None:
    assert set(p.SAMPLING_COMMANDS) <= p.ACKED
    assert p.SamplingReport.MSG_ID not in p.ACKED
    assert {c for c in p.SAMPLING_COMMANDS.values()} == set(p.Capability.sampling())
    assert p.NackReason.UNSUPPORTED == 8 and p.NackReason.REFUSED == 9
