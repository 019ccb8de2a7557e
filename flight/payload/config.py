"""A payload's entry in the vehicle configuration, with its budgets, validated once.

In the vehicle TOML, payloads are tables under the host component::

    [components.payloads]
    type = "payload_host"

    [components.payloads.payload.spec]
    kind = "spectrometer"          # a name in the magpie.payloads entry-point group
    grants = ["power.soc"]         # vehicle channels the payload may read
    power_w = 2.5                  # its switched rail's draw while on
    energy_wh_per_sol = 20.0       # budgets: see flight/payload/PAYLOADS.md
    cpu_ms_per_step = 20.0
    data_bytes_per_sol = 2000000
    events_per_min = 30

Every error names its key (``components.payloads.payload.spec.cpu_ms_per_step: ...``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flight.payload.ids import assign_slots

_NUMBERS: dict[str, tuple[type, Any, float, float]] = {
    # key: (type, default, min, max)
    "power_w": (float, 0.0, 0.0, 1000.0),
    "energy_wh_per_sol": (float, 0.0, 0.0, 1e6),
    "sol_s": (float, 86400.0, 1.0, 1e8),
    "cpu_ms_per_step": (float, 50.0, 0.01, 60000.0),
    "data_bytes_per_sol": (int, 10_000_000, 0, 10**12),
    "events_per_min": (int, 60, 0, 100000),
    "max_product_bytes": (int, 262_144, 1, 1 << 24),
    "chunk_bytes": (int, 2048, 64, 3000),
    "restarts_per_hour": (int, 3, 0, 1000),
    "backoff_s": (float, 2.0, 0.0, 86400.0),
    "backoff_max_s": (float, 300.0, 0.0, 86400.0),
    "strikes": (int, 3, 1, 1000),
    "recover_steps": (int, 20, 1, 100000),
    "throttle_div": (int, 4, 2, 1000),
    "max_violations": (int, 10, 1, 100000),
    "divider": (int, 1, 1, 1000),
}


@dataclass(frozen=True)
class PayloadConfig:
    name: str
    kind: str
    slot: int
    grants: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    power_w: float = 0.0
    energy_wh_per_sol: float = 0.0  # 0: no energy budget
    sol_s: float = 86400.0
    cpu_ms_per_step: float = 50.0
    data_bytes_per_sol: int = 10_000_000
    events_per_min: int = 60
    max_product_bytes: int = 262_144
    chunk_bytes: int = 2048
    restarts_per_hour: int = 3
    backoff_s: float = 2.0
    backoff_max_s: float = 300.0
    strikes: int = 3
    recover_steps: int = 20
    throttle_div: int = 4
    max_violations: int = 10
    divider: int = 1


def parse_payloads(table: Any, where: str = "payload.") -> list[PayloadConfig]:
    """Validate the host's ``payload`` option (a table of tables); raises ValueError naming the key."""
    if not isinstance(table, dict):
        raise ValueError(f"{where.rstrip('.')}: expected a table of payloads")
    slots: dict[str, int | None] = {}
    for name, entry in table.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{where}{name}: expected a table")
        if not name.isidentifier() or not name.islower():
            raise ValueError(f"{where}{name}: a payload name is lower-case letters, digits and _")
        slot = entry.get("slot")
        if slot is not None and (not isinstance(slot, int) or isinstance(slot, bool)):
            raise ValueError(f"{where}{name}.slot: expected an integer")
        slots[name] = slot
    try:
        assigned = assign_slots(slots)
    except ValueError as exc:
        raise ValueError(f"{where.rstrip('.')}: {exc}") from None
    return [_one(name, entry, assigned[name], f"{where}{name}.") for name, entry in table.items()]


def _one(name: str, entry: dict[str, Any], slot: int, where: str) -> PayloadConfig:
    allowed = {"kind", "slot", "grants", "options", *_NUMBERS}
    extra = sorted(set(entry) - allowed)
    if extra:
        raise ValueError(f"{where}{extra[0]}: unknown key; accepted: {', '.join(sorted(allowed))}")
    kind = entry.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"{where}kind: required, the payload's entry-point name")
    grants = entry.get("grants", [])
    if not isinstance(grants, list) or not all(isinstance(g, str) for g in grants):
        raise ValueError(f"{where}grants: expected a list of channel names")
    options = entry.get("options", {})
    if not isinstance(options, dict):
        raise ValueError(f"{where}options: expected a table")
    values: dict[str, Any] = {}
    for key, (kind_t, default, lo, hi) in _NUMBERS.items():
        v = entry.get(key, default)
        ok = isinstance(v, int | float) and not isinstance(v, bool) and (kind_t is float or isinstance(v, int))
        if not ok:
            raise ValueError(f"{where}{key}: expected {'an integer' if kind_t is int else 'a number'}, got {v!r}")
        if not lo <= v <= hi:
            raise ValueError(f"{where}{key}: {v} is outside {lo:g}..{hi:g}")
        values[key] = kind_t(v)
    return PayloadConfig(name, kind, slot, tuple(grants), dict(options), **values)
