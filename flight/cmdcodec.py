"""Command wire codec shared by the vehicle and the ground.

A command on the wire is ``opcode (u16, big-endian)`` followed by its arguments packed in
declaration order, each big-endian per its type (``str`` is a length byte then UTF-8). The
codec works on dictionary entries (the JSON dicts of ``magpie dict``), so the ground and the
vehicle encode and check commands from the same data, and a range or enumeration check happens
before anything is sent or executed.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any

from flight import types


class CommandCodecError(ValueError):
    """A command cannot be encoded or decoded; the message is the reason an operator reads."""


def check_arg(arg: Mapping[str, Any], value: Any) -> Any:
    """Coerce one argument value and check its range or enumeration. Returns the typed value."""
    name = arg["name"]
    enum = arg.get("enum")
    if arg["type"] == "enum":
        if isinstance(value, str) and enum and value in enum:
            return enum[value]
        try:
            value = types.coerce("enum", value)
        except ValueError as exc:
            raise CommandCodecError(f"argument {name!r}: {exc}") from None
        if enum is not None and value not in enum.values():
            raise CommandCodecError(
                f"argument {name!r}: {value!r} is not one of {', '.join(enum)}"
            )
        return value
    try:
        value = types.coerce(arg["type"], value)
    except ValueError as exc:
        raise CommandCodecError(f"argument {name!r}: {exc}") from None
    lo, hi = arg.get("min"), arg.get("max")
    if lo is not None and value < lo:
        raise CommandCodecError(f"argument {name!r}: {value} is below the minimum {lo}")
    if hi is not None and value > hi:
        raise CommandCodecError(f"argument {name!r}: {value} is above the maximum {hi}")
    return value


def check_args(entry: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Check a full set of named arguments against a command entry; unknown or missing ones fail."""
    spec_args = entry.get("args", [])
    names = [a["name"] for a in spec_args]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise CommandCodecError(
            f"{entry['name']}: unknown argument(s) {', '.join(unknown)}; takes {', '.join(names) or 'none'}"
        )
    out: dict[str, Any] = {}
    for arg in spec_args:
        if arg["name"] not in values:
            raise CommandCodecError(f"{entry['name']}: missing argument {arg['name']!r}")
        out[arg["name"]] = check_arg(arg, values[arg["name"]])
    return out


def encode_command(entry: Mapping[str, Any], values: Mapping[str, Any]) -> bytes:
    """Check and pack a command. Raises CommandCodecError with the reason."""
    checked = check_args(entry, values)
    parts = [struct.pack(">H", entry["opcode"])]
    for arg in entry.get("args", []):
        parts.append(types.pack(arg["type"], checked[arg["name"]]))
    return b"".join(parts)


def decode_command(
    by_opcode: Mapping[int, Mapping[str, Any]], data: bytes
) -> tuple[Mapping[str, Any], dict[str, Any]]:
    """Unpack and check a command; returns (dictionary entry, typed argument values).

    Any malformed input raises CommandCodecError (never another exception): unknown opcode,
    truncated or trailing bytes, a value out of range, a NaN.
    """
    if len(data) < 2:
        raise CommandCodecError("command shorter than its opcode")
    (opcode,) = struct.unpack_from(">H", data, 0)
    entry = by_opcode.get(opcode)
    if entry is None:
        raise CommandCodecError(f"unknown opcode 0x{opcode:04x}")
    offset = 2
    values: dict[str, Any] = {}
    for arg in entry.get("args", []):
        try:
            raw, offset = types.unpack(arg["type"], data, offset)
        except ValueError as exc:
            raise CommandCodecError(f"{entry['name']}: argument {arg['name']!r}: {exc}") from None
        if isinstance(raw, float) and (math.isnan(raw) or math.isinf(raw)):
            raise CommandCodecError(f"{entry['name']}: argument {arg['name']!r} is not finite")
        values[arg["name"]] = check_arg(arg, raw)
    if offset != len(data):
        raise CommandCodecError(f"{entry['name']}: {len(data) - offset} trailing byte(s)")
    return entry, values
