"""Housekeeping packets with fixed layouts, generated from the component declarations.

The dictionary lists housekeeping *packet definitions* (``"packets"``), built by
:func:`packet_definitions` from the channels and the rate groups:

- one packet per rate group holding the ``update="always"`` channels of that group's members
  (components in no rate group join the housekeeping member's group), and
- packets per component holding its ``update="on_change"`` channels, at most
  :data:`MAX_CHANGES` each, a packet sent only in a cycle in which one of its channels changed
  (so counters that stand still cost next to nothing, as before).

A definition whose worst case does not fit :data:`MAX_PAYLOAD` bytes is cut into parts.

Each definition travels on its own APID, ``0x100 + packet id`` (:data:`HK_APIDS`), so each has its
own sequence count space and the recorder's bound on packets in flight per APID applies to each
alone (a cycle sends several of them). Payload, after the CUC time header::

    packet id u16 | fresh bits, ceil(n/8) bytes | field 1 | field 2 | ... | field n

Bit ``i`` (most significant bit of the first byte first) says field ``i`` holds a new sample.
A clear bit means the channel was not written yet, or (an on_change channel) did not change
since its last sample: the field then repeats the last value sent, or zero. Fields are
big-endian by channel type (:mod:`flight.types`): ``bool`` one byte 0/1, integers and floats
their natural width, ``str`` a length byte and at most 255 bytes of UTF-8. So every packet id
has one layout that an XTCE document (:mod:`ground.xtce`) can describe field by field.

Events (APID 0x010) have a fixed layout per event id, from the event's declared arguments::

    event id u16 | valid bits, ceil(n/8) bytes | arg 1 | ... | arg n | text length u16 | text

An argument that was missing or did not fit its declared type goes as zero with its valid bit
clear (the ground reads it as null); the text is the one formatted on board, at most
:data:`MAX_EVENT_TEXT` octets of UTF-8. The severity is the event's, from the dictionary.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flight import types
from flight.link.packets import PacketError

#: APIDs of the fixed housekeeping packets: 0x100 + packet id (APID 0x020 keeps msgpack sample lists)
HK_APIDS = range(0x101, 0x200)
MAX_PAYLOAD = 2048  # worst-case payload bytes of one definition (a frame holds about 4 KB)
#: on_change channels per packet: a counter that moves sends its part only, not all its component's
MAX_CHANGES = 12
PACKET_ID_LEN = 2
MAX_EVENT_TEXT = 2048  # octets of an event's text on the link (u16 length before it)
_ILLEGAL = re.compile(r"[^A-Za-z0-9_\-]")
_ZERO = {"bool": False, "int": 0, "float": 0.0, "str": ""}
_PID = struct.Struct(">H")
#: value types the one-call packing takes as they are (anything else goes field by field)
_WHOLE_TYPES = frozenset({int, float, bool})


def legal_name(name: str) -> str:
    """A name XTCE accepts (no dots, slashes, colons, brackets or spaces): those become ``_``."""
    return _ILLEGAL.sub("_", name) or "_"


def field_size(type_name: str) -> int:
    """Worst-case bytes of one field of ``type_name`` (a string: its length byte and 255)."""
    ts = types.spec(type_name)
    return 1 + types.STR_MAX_BYTES if ts.kind == "str" else struct.calcsize(ts.fmt)


@dataclass(frozen=True, slots=True)
class Group:
    """A rate group as the dictionary generator sees it: name, rate and member component names."""

    name: str
    hz: float | None
    members: tuple[str, ...]


def packet_definitions(channels: Sequence[Mapping[str, Any]], groups: Sequence[Group] = (),
                       hk_member: str = "tlm") -> list[dict[str, Any]]:
    """Housekeeping packet definitions for dictionary channels (see the module docstring)."""
    group_of: dict[str, Group] = {}
    for g in groups:
        for m in g.members:
            group_of.setdefault(m, g)
    fallback = group_of.get(hk_member) or Group("housekeeping", None, ())
    always: dict[str, list[Mapping[str, Any]]] = {}
    changes: dict[str, list[Mapping[str, Any]]] = {}
    rates: dict[str, float | None] = {}
    for ch in channels:
        comp = str(ch["name"]).split(".", 1)[0]
        g = group_of.get(comp, fallback)
        rates[g.name] = g.hz
        if ch.get("update") == "on_change":
            changes.setdefault(comp, []).append(ch)
        else:
            always.setdefault(g.name, []).append(ch)
    ordered = [g.name for g in groups if g.name in always] + [n for n in always if n not in
                                                                {g.name for g in groups}]
    out: list[dict[str, Any]] = []
    for name in ordered:
        out += _parts(name, always[name], "always", name, rates.get(name))
    for comp, chans in changes.items():
        g = group_of.get(comp, fallback)
        out += _parts(f"{comp}_changes", chans, "on_change", g.name, g.hz, MAX_CHANGES)
    if len(out) > len(HK_APIDS):
        raise ValueError(f"{len(out)} housekeeping packets; at most {len(HK_APIDS)} have an APID")
    for i, d in enumerate(out, 1):
        d["id"] = i
    return out


def apid_of(packet_id: int) -> int:
    """The APID a housekeeping packet definition travels on."""
    return HK_APIDS.start - 1 + packet_id


def _parts(name: str, chans: list[Mapping[str, Any]], update: str, group: str,
           hz: float | None, max_fields: int = 1 << 16) -> list[dict[str, Any]]:
    parts: list[list[Mapping[str, Any]]] = [[]]
    size = PACKET_ID_LEN
    for ch in chans:
        need = field_size(str(ch["type"])) + 1  # a field and (at worst) a byte of fresh bits
        if parts[-1] and (size + need > MAX_PAYLOAD or len(parts[-1]) >= max_fields):
            parts.append([])
            size = PACKET_ID_LEN
        parts[-1].append(ch)
        size += need
    out = []
    for i, part in enumerate(parts):
        out.append({"id": 0, "name": legal_name(name if i == 0 else f"{name}_{i + 1}"), "update": update,
                    "rate_group": group, "hz": hz, "channels": [int(ch["id"]) for ch in part]})
    return out


@dataclass(frozen=True, slots=True)
class Layout:
    """One packet definition made ready to pack and unpack.

    A layout of fixed-size fields only (no ``str``) also has one precompiled format for all its
    fields (``fields``, bools as unsigned bytes so that a byte other than 0 or 1 is seen), their
    byte spans and which are bools: a packet whose fields are all fresh is packed and read in
    one call. A field that does not pack that way sends the packet field by field."""

    id: int
    name: str
    channels: tuple[int, ...]
    types: tuple[str, ...]
    fields: struct.Struct | None = None
    spans: tuple[tuple[int, int, int], ...] = ()  # (channel id, start, end) within the fields
    bools: tuple[int, ...] = ()  # field indices of the bools
    narrow: tuple[tuple[int, float], ...] = ()  # (field index, largest finite value) of the f32s
    all_fresh: bytes = b""  # the fresh bits with every field's set

    @classmethod
    def make(cls, pid: int, name: str, channels: tuple[int, ...], type_names: tuple[str, ...]) -> Layout:
        specs = [types.spec(t) for t in type_names]
        n = len(channels)
        all_fresh = bytes(0xFF for _ in range(n // 8)) + (bytes([(0xFF << (8 - n % 8)) & 0xFF]) if n % 8 else b"")
        if any(ts.kind == "str" for ts in specs):
            return cls(pid, name, channels, type_names, all_fresh=all_fresh)
        codes = ["B" if ts.kind == "bool" else ts.fmt.lstrip("<>!=@") for ts in specs]
        spans, pos = [], 0
        for cid, code in zip(channels, codes, strict=True):
            size = struct.calcsize(">" + code)
            spans.append((cid, pos, pos + size))
            pos += size
        return cls(pid, name, channels, type_names, struct.Struct(">" + "".join(codes)), tuple(spans),
                   tuple(i for i, ts in enumerate(specs) if ts.kind == "bool"),
                   tuple((i, float(ts.hi)) for i, ts in enumerate(specs) if ts.name == "f32" and ts.hi is not None),
                   all_fresh)

    @property
    def fresh_len(self) -> int:
        return (len(self.channels) + 7) // 8


class Layouts:
    """Encoder and decoder of the fixed housekeeping packets of one dictionary.

    The encoder remembers the last value it sent of each channel, so an on_change channel that
    stands still repeats its value with its fresh bit clear.
    """

    def __init__(self, definitions: Iterable[Mapping[str, Any]], channel_types: Mapping[int, str],
                 events: Iterable[Mapping[str, Any]] | None = None) -> None:
        self.by_id: dict[int, Layout] = {}
        self.packet_of: dict[int, int] = {}  # channel id -> packet id
        for d in definitions:
            pid = int(d["id"])
            if apid_of(pid) not in HK_APIDS or pid in self.by_id:
                raise ValueError(f"housekeeping packet id {pid} is out of range or used twice")
            chans = tuple(int(c) for c in d["channels"])
            for cid in chans:
                if cid not in channel_types:
                    raise ValueError(f"housekeeping packet {d.get('name')!r} lists unknown channel {cid}")
                if cid in self.packet_of:
                    raise ValueError(f"channel {cid} is in two housekeeping packets")
                types.spec(channel_types[cid])
                self.packet_of[cid] = pid
            self.by_id[pid] = Layout.make(pid, str(d.get("name", pid)), chans, tuple(channel_types[c] for c in chans))
        self._last: dict[int, Any] = {}
        #: event id -> (name, argument types), for the fixed event layouts
        self.events: dict[int, tuple[str, tuple[str, ...]]] = {}
        for ev in events or ():
            arg_types = tuple(str(a["type"]) for a in ev.get("args", []))
            for t in arg_types:
                types.spec(t)
            self.events[int(ev["id"])] = (str(ev.get("name", ev["id"])), arg_types)

    @classmethod
    def from_dictionary(cls, doc: Mapping[str, Any] | None) -> Layouts | None:
        """The layouts of a ``magpie-dict/1`` document, or None when it defines no packets."""
        if not doc or not doc.get("packets"):
            return None
        return cls(doc["packets"], {int(c["id"]): str(c["type"]) for c in doc.get("channels", [])},
                   doc.get("events", []))

    # -- vehicle side ----------------------------------------------------------------------------

    def encode(self, samples: Iterable[tuple[int, Any]]) -> tuple[list[tuple[int, bytes]], list[int]]:
        """(APID, payload) for one housekeeping sample (packets in id order), and the channel ids
        of samples that were dropped: unknown to the layouts or not fitting their field's type."""
        due: dict[int, dict[int, Any]] = {}
        dropped: list[int] = []
        for cid, value in samples:
            pid = self.packet_of.get(cid)
            if pid is None:
                dropped.append(cid)
                continue
            due.setdefault(pid, {})[cid] = value
        out = []
        for pid in sorted(due):
            payload, bad = self._pack(self.by_id[pid], due[pid])
            dropped += bad
            out.append((apid_of(pid), payload))
        return out, dropped

    def _pack(self, lay: Layout, fresh: dict[int, Any]) -> tuple[bytes, list[int]]:
        if lay.fields is not None and len(fresh) == len(lay.channels):  # every field fresh: one call
            whole = self._pack_whole(lay, fresh)
            if whole is not None:
                return whole, []
        bits = bytearray(lay.fresh_len)
        fields: list[bytes] = []
        bad: list[int] = []
        for i, (cid, tname) in enumerate(zip(lay.channels, lay.types, strict=True)):
            raw = None
            if cid in fresh:
                raw = _pack_value(tname, fresh[cid])
                if raw is None:
                    bad.append(cid)
                else:
                    bits[i >> 3] |= 0x80 >> (i & 7)
                    self._last[cid] = raw
            if raw is None:
                raw = self._last.get(cid)
                if raw is None:
                    raw = types.pack(tname, _ZERO[types.spec(tname).kind])
            fields.append(raw)
        return _PID.pack(lay.id) + bytes(bits) + b"".join(fields), bad

    def _pack_whole(self, lay: Layout, fresh: dict[int, Any]) -> bytes | None:
        """All fields in one call, or None when one of them does not pack as it is (the field by
        field path converts, or drops, it). What packs here is what each field packs to alone:
        the same formats, a bool as the byte of its truth, an int or a float as it is."""
        fields = lay.fields
        if fields is None:  # a layout with strings: field by field
            return None
        values = [fresh[cid] for cid in lay.channels]
        for i in lay.bools:
            values[i] = 1 if values[i] else 0
        if not set(map(type, values)) <= _WHOLE_TYPES:
            return None
        for i, hi in lay.narrow:  # a finite value beyond f32 is dropped, never rounded into range
            if abs(values[i]) > hi:
                return None  # (or an infinity: the field by field path sends it)
        try:
            data = fields.pack(*values)
        except (struct.error, OverflowError):
            return None
        last = self._last
        for cid, a, b in lay.spans:
            last[cid] = data[a:b]
        return _PID.pack(lay.id) + lay.all_fresh + data

    # -- ground side -----------------------------------------------------------------------------

    def decode(self, payload: bytes, apid: int | None = None) -> tuple[int, list[tuple[int, Any]]]:
        """(packet id, [(channel id, value)] of the fields whose fresh bit is set); raises as
        :meth:`decode_columns` does."""
        pid, chans, values = self.decode_columns(payload, apid)
        return pid, list(zip(chans, values, strict=True))

    def decode_columns(self, payload: bytes, apid: int | None = None) -> tuple[int, tuple[int, ...], tuple[Any, ...]]:
        """(packet id, channel ids, values) of the fields whose fresh bit is set.

        Raises PacketError for an unknown packet id (or one that is not ``apid``'s), a payload of
        the wrong length or a field that is not of its type (a bool byte neither 0 nor 1, a string
        not UTF-8).
        """
        if len(payload) < PACKET_ID_LEN:
            raise PacketError("housekeeping payload shorter than its packet id")
        (pid,) = _PID.unpack_from(payload)
        lay = self.by_id.get(pid)
        if lay is None:
            raise PacketError(f"housekeeping packet id {pid} is not in the dictionary")
        if apid is not None and apid != apid_of(pid):
            raise PacketError(f"housekeeping packet id {pid} arrived on APID 0x{apid:03x}")
        offset = PACKET_ID_LEN + lay.fresh_len
        if len(payload) < offset:
            raise PacketError(f"housekeeping packet {lay.name} truncated in its fresh bits")
        bits = payload[PACKET_ID_LEN:offset]
        if lay.fields is not None and bits == lay.all_fresh:  # every field fresh: one call
            if len(payload) != offset + lay.fields.size:
                raise PacketError(f"housekeeping packet {lay.name}: {len(payload) - offset} bytes of "
                                  f"fields, its layout has {lay.fields.size}")
            values = lay.fields.unpack_from(payload, offset)
            if lay.bools:
                fixed = list(values)
                for i in lay.bools:
                    if fixed[i] > 1:
                        raise PacketError(f"housekeeping packet {lay.name}: bool byte is neither 0 nor 1")
                    fixed[i] = bool(fixed[i])
                values = tuple(fixed)
            return pid, lay.channels, values
        chans: list[int] = []
        got: list[Any] = []
        try:
            for i, (cid, tname) in enumerate(zip(lay.channels, lay.types, strict=True)):
                value, offset = types.unpack(tname, payload, offset)
                if bits[i >> 3] & (0x80 >> (i & 7)):
                    chans.append(cid)
                    got.append(value)
        except ValueError as exc:
            raise PacketError(f"housekeeping packet {lay.name}: {exc}") from None
        if offset != len(payload):
            raise PacketError(f"housekeeping packet {lay.name}: {len(payload) - offset} bytes past its fields")
        return pid, tuple(chans), tuple(got)


    # -- events ----------------------------------------------------------------------------------

    def encode_event(self, eid: int, args: Sequence[Any], text: str) -> bytes:
        """An event's payload: id, valid bits, its declared arguments, then its text.

        An argument that is missing or does not fit its declared type goes as the type's zero
        with its valid bit clear; an event id the dictionary does not know is a PacketError.
        """
        decl = self.events.get(eid)
        if decl is None:
            raise PacketError(f"event id {eid} is not in the dictionary")
        arg_types = decl[1]
        bits = bytearray((len(arg_types) + 7) // 8)
        fields = []
        for i, tname in enumerate(arg_types):
            raw = _pack_value(tname, args[i]) if i < len(args) and args[i] is not None else None
            if raw is None:
                raw = types.pack(tname, _ZERO[types.spec(tname).kind])
            else:
                bits[i >> 3] |= 0x80 >> (i & 7)
            fields.append(raw)
        body = text.encode("utf-8")[:MAX_EVENT_TEXT].decode("utf-8", "ignore").encode("utf-8")
        return struct.pack(">H", eid) + bytes(bits) + b"".join(fields) + struct.pack(">H", len(body)) + body

    def decode_event(self, payload: bytes) -> tuple[int, str, list[Any], str]:
        """(event id, name, arguments (None where not valid), text); PacketError if ill-formed."""
        if len(payload) < 2:
            raise PacketError("event payload shorter than its id")
        (eid,) = struct.unpack_from(">H", payload)
        decl = self.events.get(eid)
        if decl is None:
            raise PacketError(f"event id {eid} is not in the dictionary")
        name, arg_types = decl
        offset = 2 + (len(arg_types) + 7) // 8
        bits = payload[2:offset]
        if len(bits) != offset - 2:
            raise PacketError(f"event {name} truncated in its valid bits")
        args: list[Any] = []
        try:
            for i, tname in enumerate(arg_types):
                value, offset = types.unpack(tname, payload, offset)
                args.append(value if bits[i >> 3] & (0x80 >> (i & 7)) else None)
            (n,) = struct.unpack_from(">H", payload, offset)
            text = payload[offset + 2 : offset + 2 + n].decode("utf-8")
        except (ValueError, struct.error) as exc:  # UnicodeDecodeError is a ValueError
            raise PacketError(f"event {name}: {exc}") from None
        if offset + 2 + n != len(payload):
            raise PacketError(f"event {name}: payload length does not match its layout")
        return eid, name, args, text


def _pack_value(type_name: str, value: Any) -> bytes | None:
    """One field's bytes, or None when the value does not fit the type."""
    ts = types.spec(type_name)
    try:
        if ts.kind == "str":
            raw = str(value).encode("utf-8")[: types.STR_MAX_BYTES]
            raw = raw.decode("utf-8", "ignore").encode("utf-8")  # never cut a character in two
            return bytes([len(raw)]) + raw
        if ts.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                return None
            return struct.pack(ts.fmt, int(value))
        if ts.kind == "bool":
            return struct.pack(ts.fmt, bool(value))
        value = float(value)
        if ts.name == "f32" and math.isfinite(value) and abs(value) > ts.hi:  # type: ignore[operator]
            return None
        return struct.pack(ts.fmt, value)
    except (struct.error, TypeError, ValueError, OverflowError):
        return None
