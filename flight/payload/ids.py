"""Identifier allocation for hosted payloads.

Every payload instance gets a *slot* (from the vehicle configuration, or the next free one in
order). The slot fixes everything the payload puts in the dictionary and on the link, so two
partners' payloads can never collide with each other or with the vehicle's own components:

* ids ``0x8000 + slot * 0x100`` to ``+ 0xFF`` for its commands, channels, events and parameters
  (vehicle components are allocated from ``0x1000`` upwards in steps of ``0x100``; the range
  ``0x8000..0x9FFF`` is reserved for payloads);
* APID ``0x040 + slot`` for its data products (``flight.link.packets.PAYLOAD_APIDS``);
* command names prefixed with the instance name in capitals (``SPEC_READ``).
"""

from __future__ import annotations

from dataclasses import dataclass

ID_BASE = 0x8000
ID_STRIDE = 0x100
APID_BASE = 0x040
MAX_SLOTS = 32


@dataclass(frozen=True, slots=True)
class Allocation:
    slot: int
    id_base: int
    apid: int
    prefix: str


def allocate(name: str, slot: int) -> Allocation:
    if not 0 <= slot < MAX_SLOTS:
        raise ValueError(f"payload {name!r}: slot {slot} is outside 0..{MAX_SLOTS - 1}")
    return Allocation(slot, ID_BASE + slot * ID_STRIDE, APID_BASE + slot, name.upper() + "_")


def assign_slots(requested: dict[str, int | None]) -> dict[str, int]:
    """Slots for payload names in order: the requested ones, then the lowest free for the rest."""
    taken: dict[int, str] = {}
    for name, slot in requested.items():
        if slot is None:
            continue
        if slot in taken:
            raise ValueError(f"payload {name!r}: slot {slot} is already {taken[slot]!r}'s")
        allocate(name, slot)
        taken[slot] = name
    out: dict[str, int] = {}
    free = (s for s in range(MAX_SLOTS) if s not in taken)
    for name, slot in requested.items():
        if slot is None:
            try:
                slot = next(free)
            except StopIteration:
                raise ValueError(f"payload {name!r}: no free slot (at most {MAX_SLOTS})") from None
        out[name] = slot
    return out
