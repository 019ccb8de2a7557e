"""Named link geometries for the relay model.

``moon-farside``: a far-side lander seen through a relay on a halo orbit about Earth-Moon L2
(the Queqiao arrangement). One-way Earth-Moon light time about 1.28 s, plus the hop from the
surface to the relay (about 65,000-80,000 km, ~0.25 s) and the relay's turnaround. The relay is in
view of the far side continuously except for station-keeping manoeuvres: here a 20-minute gap
every 6 hours.

``mars-relay``: a lander relayed by an orbiter. Earth-Mars one-way light time is 3 to 22 minutes
depending on the planets' geometry (``light_time_s``, default 12 min). The orbiter passes over
the lander a few times a sol (a sol is 88,775 s): here 4 passes of 9 minutes, spaced evenly,
at 128 kbit/s up to the orbiter (UHF) and the same into the ground station.
"""

from __future__ import annotations

from typing import Any

SOL_S = 88_775.0

PRESETS: dict[str, dict[str, Any]] = {
    "moon-farside": {
        "light_time_s": 1.28,
        "hop_delay_s": 0.27,
        "rate_bps": {"down": 256_000.0, "up": 64_000.0},
        "queue_limit_bytes": 2_000_000,
        "loss": 0.001,
        "ber": 1e-7,
        # visible except a 20-minute station-keeping gap starting every 6 hours
        "windows": {"period_s": 6 * 3600.0, "up_s": 6 * 3600.0 - 1200.0, "phase_s": 0.0},
    },
    "mars-relay": {
        "light_time_s": 12 * 60.0,
        "hop_delay_s": 0.5,
        "rate_bps": {"down": 128_000.0, "up": 32_000.0},
        "queue_limit_bytes": 8_000_000,
        "loss": 0.005,
        "ber": 1e-6,
        # 4 passes a sol, each 9 minutes long
        "windows": {"period_s": SOL_S / 4, "up_s": 540.0, "phase_s": 0.0},
    },
    # for benchmarks and tests: no delay, no loss, unlimited rate
    "ideal": {
        "light_time_s": 0.0,
        "hop_delay_s": 0.0,
        "rate_bps": {"down": 0.0, "up": 0.0},
        "queue_limit_bytes": 0,
        "loss": 0.0,
        "ber": 0.0,
        "windows": None,
    },
}
