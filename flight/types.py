"""The value types that commands, channels, events and parameters are declared with.

One table says, for each type name used in the dictionary, how it packs on the wire (big-endian,
as CCSDS telecommands are), its natural range, and how a value is checked and coerced.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TypeSpec:
    name: str
    fmt: str  # struct format (big-endian) for fixed-size types; "" for str
    lo: float | None
    hi: float | None
    kind: str  # "int", "float", "bool", "str"


def _int(name: str, fmt: str, bits: int, signed: bool) -> TypeSpec:
    lo = -(2 ** (bits - 1)) if signed else 0
    hi = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    return TypeSpec(name, fmt, lo, hi, "int")


TYPES: dict[str, TypeSpec] = {
    "bool": TypeSpec("bool", ">?", 0, 1, "bool"),
    "u8": _int("u8", ">B", 8, False),
    "u16": _int("u16", ">H", 16, False),
    "u32": _int("u32", ">I", 32, False),
    "u64": _int("u64", ">Q", 64, False),
    "i8": _int("i8", ">b", 8, True),
    "i16": _int("i16", ">h", 16, True),
    "i32": _int("i32", ">i", 32, True),
    "i64": _int("i64", ">q", 64, True),
    "f32": TypeSpec("f32", ">f", -3.4028234663852886e38, 3.4028234663852886e38, "float"),
    "f64": TypeSpec("f64", ">d", None, None, "float"),
    "str": TypeSpec("str", "", None, None, "str"),
    "enum": TypeSpec("enum", ">B", 0, 255, "int"),
}

STR_MAX_BYTES = 255


def spec(type_name: str) -> TypeSpec:
    try:
        return TYPES[type_name]
    except KeyError:
        raise ValueError(f"unknown type {type_name!r}; known: {', '.join(TYPES)}") from None


def coerce(type_name: str, value: Any) -> Any:
    """Convert a value to the declared type or raise ValueError saying why.

    Strings are accepted for every type (as typed by an operator or read from a sequence file).
    """
    ts = spec(type_name)
    if ts.kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "on", "off"):
            return value.lower() in ("true", "1", "on")
        raise ValueError(f"expected a bool, got {value!r}")
    if ts.kind == "int":
        if isinstance(value, bool):
            raise ValueError(f"expected an integer, got {value!r}")
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"expected an integer, got {value!r}")
            value = int(value)
        if isinstance(value, str):
            try:
                value = int(value, 0)
            except ValueError:
                raise ValueError(f"expected an integer, got {value!r}") from None
        if not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        if not ts.lo <= value <= ts.hi:  # type: ignore[operator]
            raise ValueError(f"{value} does not fit {type_name} [{ts.lo}, {ts.hi}]")
        return value
    if ts.kind == "float":
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"expected a number, got {value!r}") from None
        if not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {value!r}")
        value = float(value)
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"{value} is not a finite number")
        if ts.lo is not None and not ts.lo <= value <= ts.hi:  # type: ignore[operator]
            raise ValueError(f"{value} does not fit {type_name}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    if len(value.encode("utf-8")) > STR_MAX_BYTES:
        raise ValueError(f"string longer than {STR_MAX_BYTES} bytes")
    return value


def pack(type_name: str, value: Any) -> bytes:
    ts = spec(type_name)
    if ts.kind == "str":
        raw = value.encode("utf-8")
        return bytes([len(raw)]) + raw
    return struct.pack(ts.fmt, value)


def unpack(type_name: str, data: bytes, offset: int) -> tuple[Any, int]:
    """Read one value at offset; return it and the new offset. Raises ValueError when short."""
    ts = spec(type_name)
    if ts.kind == "str":
        if offset >= len(data):
            raise ValueError("truncated string length")
        n = data[offset]
        end = offset + 1 + n
        if end > len(data):
            raise ValueError("truncated string")
        try:
            return data[offset + 1 : end].decode("utf-8"), end
        except UnicodeDecodeError:
            raise ValueError("string is not valid UTF-8") from None
    size = struct.calcsize(ts.fmt)
    if offset + size > len(data):
        raise ValueError(f"truncated {type_name}")
    (value,) = struct.unpack_from(ts.fmt, data, offset)
    if ts.kind == "bool" and data[offset] not in (0, 1):
        raise ValueError("bool byte is neither 0 nor 1")
    return value, offset + size
