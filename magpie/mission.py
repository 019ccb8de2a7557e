"""``python -m magpie.mission``: the lockstep and real-time missions of :mod:`mission.lockstep`.

The orchestration lives in the :mod:`mission` package; this module keeps the launcher's old
import path and command line.
"""

from __future__ import annotations

from mission.lockstep import (
    DEFAULT_PLAN,
    KEY_ID,
    PRESET_DEFAULT,
    LockstepMission,
    MissionSummary,
    PlannedCommand,
    RealtimeMission,
    RealtimeResult,
    comm_config,
    ensure_key,
    free_port,
    main,
    radio_url,
    realtime_dictionary,
    round_trip_s,
    run_mission,
    run_realtime_mission,
    sim_mission,
    summary_json,
)

__all__ = [
    "DEFAULT_PLAN", "KEY_ID", "PRESET_DEFAULT", "LockstepMission", "MissionSummary", "PlannedCommand",
    "RealtimeMission", "RealtimeResult", "comm_config", "ensure_key", "free_port", "main", "radio_url",
    "realtime_dictionary", "round_trip_s", "run_mission", "run_realtime_mission", "sim_mission", "summary_json",
]

if __name__ == "__main__":
    raise SystemExit(main())
