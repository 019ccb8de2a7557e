"""The dictionary as an XTCE 1.2 document, so another ground system can decode a Magpie vehicle.

``to_xtce(doc)`` turns a ``magpie-dict/1`` dictionary into one XTCE ``SpaceSystem`` (written with
``yamcs-pymdb``) describing the space packets byte for byte (:mod:`flight.link.packets`):

- ``space_packet``: the abstract root, the CCSDS primary header and the CUC time header
  (``time_coarse`` u32 seconds and ``time_fine`` u16 in 2^-16 s since the mission epoch);
- one container per housekeeping packet definition (:mod:`flight.link.layouts`), chosen by its
  APID: the packet id, one fresh bit per channel (``<channel>_fresh``), spare bits to the next
  byte, then every channel as a parameter of its type, big-endian (a string: its length octet
  ``<channel>_length``, then that many octets of UTF-8), with its yellow and red limits as
  warning and critical alarm ranges;
- one container per event id (``event_<component>_<Event>``), below ``event`` (APID 0x010): the
  event id, a valid bit per argument, the declared arguments, then the text as formatted on board;
- command responses and product chunks, which stay msgpack maps, and CFDP PDUs (APID 0x032), as
  opaque octets to the end of the packet;
- one command per dictionary command: opcode and arguments, big-endian, inside the
  authenticated telecommand (key id, counter, and the HMAC-SHA256 tag after the arguments).

XTCE names may not hold ``.``, ``/``, ``:``, ``[``, ``]`` or spaces, and 73 of our channel names
hold a second dot, so every name is mapped (:func:`flight.link.layouts.legal_name`: such
characters become ``_``; a clash gets the channel id appended) and the original name is kept as
an alias in the ``magpie`` namespace.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from yamcs.pymdb import (
    ArgumentEntry,
    BinaryArgument,
    BinaryEncoding,
    BinaryParameter,
    BooleanArgument,
    BooleanParameter,
    Charset,
    Command,
    Container,
    EnumeratedArgument,
    FixedValueEntry,
    FloatArgument,
    FloatEncoding,
    FloatParameter,
    IntegerArgument,
    IntegerEncoding,
    IntegerEncodingScheme,
    IntegerParameter,
    ParameterEntry,
    StringArgument,
    StringEncoding,
    StringParameter,
    System,
    ThresholdAlarm,
    all_of,
    eq,
    gte,
    lte,
)

from flight import types
from flight.link.auth import AUTH_HEADER, TAG_LEN
from flight.link.cfdp import APID_CFDP
from flight.link.layouts import apid_of, legal_name
from flight.link.packets import PAYLOAD_APIDS, Apid

XTCE_NS = "http://www.omg.org/spec/XTCE/20180204"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
NAMESPACE = "magpie"
ROOT = "space_packet"
_DOC_MAX = 250  # XTCE short descriptions are one line


class XtceError(ValueError):
    """The dictionary cannot be written as XTCE (the message says which entry and why)."""


def _int_encoding(bits: int, signed: bool) -> IntegerEncoding:
    scheme = IntegerEncodingScheme.TWOS_COMPLEMENT if signed else IntegerEncodingScheme.UNSIGNED
    return IntegerEncoding(bits=bits, scheme=scheme)


def _uint(system: System, name: str, bits: int, **kw: Any) -> IntegerParameter:
    """An unsigned field of ``bits`` bits on the wire."""
    return IntegerParameter(system, name, signed=False, bits=bits, encoding=_int_encoding(bits, False), **kw)


def _str_encoding(max_bytes: int = types.STR_MAX_BYTES) -> StringEncoding:
    return StringEncoding(length_bits=8, max_bits=8 * max_bytes, charset=Charset.UTF_8, termination=None)


def _one_line(text: Any) -> str | None:
    line = " ".join(str(text or "").split())
    return line[:_DOC_MAX] or None


def _int_bits(type_name: str) -> tuple[int, bool]:
    ts = types.spec(type_name)
    bits = 8 * {"B": 1, "H": 2, "I": 4, "Q": 8}[ts.fmt[-1].upper()]
    return bits, ts.fmt[-1].islower()


def _parameter(system: System, name: str, type_name: str, **kw: Any) -> Any:
    ts = types.spec(type_name)
    if ts.kind == "bool":
        return BooleanParameter(system, name, encoding=_int_encoding(8, False), **kw)
    if ts.kind == "int":
        bits, signed = _int_bits(type_name)
        return IntegerParameter(system, name, signed=signed, bits=bits, encoding=_int_encoding(bits, signed), **kw)
    if ts.kind == "float":
        bits = 32 if type_name == "f32" else 64
        return FloatParameter(system, name, bits=bits, encoding=FloatEncoding(bits=bits), **kw)
    return StringParameter(system, name, encoding=_str_encoding(), **kw)


def _argument(arg: Mapping[str, Any]) -> Any:
    name, type_name = legal_name(str(arg["name"])), str(arg["type"])
    kw: dict[str, Any] = {"short_description": _one_line(arg.get("doc"))}
    if arg.get("units"):
        kw["units"] = str(arg["units"])
    ts = types.spec(type_name)
    if type_name == "enum":
        choices = [(int(v), str(k)) for k, v in (arg.get("enum") or {}).items()]
        if not choices:
            return IntegerArgument(name, signed=False, bits=8, encoding=_int_encoding(8, False), **kw)
        return EnumeratedArgument(name, choices=choices, encoding=_int_encoding(8, False), **kw)
    if ts.kind == "bool":
        return BooleanArgument(name, encoding=_int_encoding(8, False), **kw)
    lo, hi = arg.get("min"), arg.get("max")
    if ts.kind == "int":
        bits, signed = _int_bits(type_name)
        return IntegerArgument(name, signed=signed, bits=bits, encoding=_int_encoding(bits, signed),
                               minimum=None if lo is None else int(lo), maximum=None if hi is None else int(hi), **kw)
    if ts.kind == "float":
        bits = 32 if type_name == "f32" else 64
        return FloatArgument(name, bits=bits, encoding=FloatEncoding(bits=bits),
                             minimum=None if lo is None else float(lo), maximum=None if hi is None else float(hi),
                             **kw)
    return StringArgument(name, max_length=types.STR_MAX_BYTES, encoding=_str_encoding(), **kw)


def _alarm(limits: Mapping[str, Any]) -> ThresholdAlarm | None:
    """A channel's yellow and red limits (inside them is nominal) as XTCE warning and critical ranges."""
    yellow, red = limits.get("yellow"), limits.get("red")
    if not yellow and not red:
        return None
    kw: dict[str, float] = {}
    if yellow:
        kw["warning_low"], kw["warning_high"] = float(yellow[0]), float(yellow[1])
    if red:
        kw["critical_low"], kw["critical_high"] = float(red[0]), float(red[1])
    return ThresholdAlarm(**kw)


def _names(channels: list[Mapping[str, Any]]) -> dict[int, str]:
    """Channel id -> its legal, unique XTCE name."""
    taken: set[str] = set()
    out: dict[int, str] = {}
    for ch in channels:
        name = legal_name(str(ch["name"]))
        if name in taken:
            name = f"{name}_{int(ch['id']):x}"
        taken.add(name)
        out[int(ch["id"])] = name
    return out


def build_system(doc: Mapping[str, Any]) -> System:
    """The XTCE SpaceSystem of a ``magpie-dict/1`` dictionary (see the module docstring)."""
    try:
        return _build(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise XtceError(f"dictionary cannot be written as XTCE: {exc}") from exc


def _build(doc: Mapping[str, Any]) -> System:
    sc = doc.get("spacecraft") or {}
    sc_name = str(sc.get("name") or "vehicle")
    system = System(legal_name(sc_name), aliases={NAMESPACE: sc_name},
                    short_description=f"Magpie vehicle {sc_name}, spacecraft id {sc.get('id')}",
                    long_description=f"Generated from dictionary {doc.get('hash', '')} "
                                     f"(software {doc.get('software_version', '')}).")
    header = [
        _uint(system, "ccsds_version", 3),
        _uint(system, "ccsds_type", 1, short_description="0 telemetry, 1 telecommand"),
        _uint(system, "ccsds_secondary_header", 1),
        _uint(system, "ccsds_apid", 11),
        _uint(system, "ccsds_sequence_flags", 2),
        _uint(system, "ccsds_sequence_count", 14),
        _uint(system, "ccsds_packet_length", 16, short_description="octets after the primary header, minus one"),
        _uint(system, "time_coarse", 32, units="s",
                         short_description="whole seconds since the mission epoch (CUC, 4 octets)"),
        _uint(system, "time_fine", 16, short_description="fraction of a second in units of 2^-16 s (CUC, 2 octets)"),
    ]
    apid = header[3]
    root = Container(system, ROOT, abstract=True, entries=[ParameterEntry(p) for p in header],
                     short_description="CCSDS 133.0-B space packet with the Magpie CUC time header")
    _housekeeping(system, doc, root, apid)
    _events(system, doc, root, apid)
    for kind, a, what in (("command_response", Apid.CMD_RESPONSE, "a msgpack map (LINK.md)"),
                          ("thumbnail_chunk", Apid.THUMBNAIL, "a msgpack map (LINK.md)"),
                          ("product_chunk", Apid.PRODUCT, "a msgpack map (LINK.md)"),
                          ("cfdp", APID_CFDP, "one CFDP PDU (CCSDS 727.0-B)")):
        payload = BinaryParameter(system, f"{kind}_payload", encoding=BinaryEncoding(bits=8),
                                  short_description=f"{what}: the octets after the time header")
        Container(system, kind, base=root, condition=eq(apid, int(a)), entries=[ParameterEntry(payload)],
                  short_description=f"APID 0x{int(a):03x}: {what}, described as opaque octets")
    payload = BinaryParameter(system, "payload_chunk_payload", encoding=BinaryEncoding(bits=8),
                              short_description="a msgpack map (LINK.md): the octets after the time header")
    Container(system, "payload_chunk", base=root, entries=[ParameterEntry(payload)],
              condition=all_of(gte(apid, PAYLOAD_APIDS.start), lte(apid, PAYLOAD_APIDS.stop - 1)),
              short_description="APIDs 0x040-0x05F: a hosted payload's product chunk, described as opaque octets")
    _commands(system, doc)
    return system


def _events(system: System, doc: Mapping[str, Any], root: Container, apid: Any) -> None:
    event_id = _uint(system, "event_id", 16, short_description="the event's id in the dictionary (one layout each)")
    text_length = _uint(system, "event_text_length", 16, short_description="octets of text")
    text = StringParameter(system, "event_text", encoding=_str_encoding(2048),
                           short_description="the event's text as formatted on board")
    base = Container(system, "event", base=root, abstract=True, condition=eq(apid, int(Apid.EVENT)),
                     entries=[ParameterEntry(event_id)], short_description="APID 0x010: an event")
    for ev in doc.get("events", []):
        name = legal_name(f"{ev['component']}_{ev['name']}")
        entries: list[Any] = []
        args = list(ev.get("args", []))
        for a in args:
            entries.append(ParameterEntry(_uint(system, f"{name}__{legal_name(a['name'])}_valid", 1,
                short_description=f"1: argument {a['name']} is valid")))
        spare = -len(args) % 8
        if spare:
            entries.append(ParameterEntry(_uint(system, f"{name}__spare", spare,
                short_description="zero bits to the next octet")))
        for a in args:
            pname = f"{name}__{legal_name(a['name'])}"
            if types.spec(str(a["type"])).kind == "str":
                entries.append(ParameterEntry(_uint(system, f"{pname}_length", 8,
                    short_description=f"octets of argument {a['name']} that follow")))
            entries.append(ParameterEntry(_parameter(system, pname, str(a["type"]),
                                                     aliases={NAMESPACE: f"{ev['component']}.{ev['name']}.{a['name']}"},
                                                     short_description=f"argument {a['name']} of {ev['name']}")))
        entries += [ParameterEntry(text_length), ParameterEntry(text)]
        Container(system, f"event_{name}", base=base, condition=eq(event_id, int(ev["id"])), entries=entries,
                  aliases={NAMESPACE: f"{ev['component']}.{ev['name']}", "severity": str(ev.get("severity"))},
                  short_description=_one_line(f"{ev.get('severity')}: {ev.get('format')}"),
                  long_description=ev.get("doc") or None)


def _housekeeping(system: System, doc: Mapping[str, Any], root: Container, apid: Any) -> None:
    channels = list(doc.get("channels", []))
    by_id = {int(ch["id"]): ch for ch in channels}
    names = _names(channels)
    params: dict[int, Any] = {}
    lengths: dict[int, Any] = {}  # string channels: their length byte, a parameter of its own
    for cid, ch in by_id.items():
        kw: dict[str, Any] = {"aliases": {NAMESPACE: str(ch["name"]), "id": str(cid)},
                              "short_description": _one_line(ch.get("doc"))}
        if ch.get("units"):
            kw["units"] = str(ch["units"])
        alarm = _alarm(ch.get("limits") or {})
        if alarm is not None and types.spec(str(ch["type"])).kind in ("int", "float"):
            kw["alarm"] = alarm
        params[cid] = _parameter(system, names[cid], str(ch["type"]), **kw)
        if types.spec(str(ch["type"])).kind == "str":
            lengths[cid] = _uint(system, f"{names[cid]}_length", 8,
                short_description=f"octets of {ch['name']} that follow")
    packet_id = _uint(system, "hk_packet_id", 16, short_description="housekeeping packet definition (one layout each)")
    for d in doc.get("packets", []):
        pid = int(d["id"])
        chans = [int(c) for c in d["channels"]]
        entries = [ParameterEntry(packet_id)]
        for cid in chans:
            fresh = _uint(system, f"{names[cid]}_fresh", 1,
                short_description=f"1: {by_id[cid]['name']} holds a new sample")
            entries.append(ParameterEntry(fresh))
        spare = -len(chans) % 8
        if spare:
            entries.append(ParameterEntry(_uint(system, f"{d['name']}_spare", spare,
                short_description="zero bits to the next octet")))
        for cid in chans:
            if cid in lengths:
                entries.append(ParameterEntry(lengths[cid]))
            entries.append(ParameterEntry(params[cid]))
        rate = f" at {d['hz']} Hz" if d.get("hz") else ""
        Container(system, f"hk_{d['name']}", base=root, condition=eq(apid, apid_of(pid)), entries=entries,
                  short_description=f"housekeeping packet {pid}: {d.get('update', 'always')} channels of "
                                    f"rate group {d.get('rate_group')}{rate}",
                  aliases={NAMESPACE: str(d["name"])})


def _commands(system: System, doc: Mapping[str, Any]) -> None:
    key_bits = 8 * AUTH_HEADER.size
    base = Command(
        system, "magpie_tc", abstract=True,
        short_description="authenticated telecommand: primary header, CUC time, key id u16, counter u64",
        entries=[
            FixedValueEntry(f"{0x1800 | int(Apid.TC_COMMAND):04x}", "ccsds_packet_id", bits=16,
                            short_description="version 0, type TC, secondary header, APID 0x080"),
            FixedValueEntry("c000", "ccsds_sequence", bits=16,
                            short_description="unsegmented; the count is the counter's low 14 bits"),
            FixedValueEntry("0000", "ccsds_packet_length", bits=16, short_description="set when signed"),
            FixedValueEntry("000000000000", "time", bits=48, short_description="set when signed"),
            FixedValueEntry("00" * AUTH_HEADER.size, "auth_key_counter", bits=key_bits,
                            short_description="key id u16 and counter u64, set when signed"),
        ])
    for c in doc.get("commands", []):
        args = [_argument(a) for a in c.get("args", [])]
        tag = BinaryArgument("auth_tag", encoding=BinaryEncoding(bits=8 * TAG_LEN),
                             short_description="HMAC-SHA256 over every byte before it")
        entries: list[Any] = [FixedValueEntry(f"{int(c['opcode']):04x}", "opcode", bits=16)]
        entries += [ArgumentEntry(a) for a in args] + [ArgumentEntry(tag)]
        Command(system, legal_name(str(c["name"])), base=base, arguments=[*args, tag], entries=entries,
                aliases={NAMESPACE: str(c["name"]), "opcode": str(int(c["opcode"]))},
                short_description=_one_line(c.get("doc")))


def to_xtce(doc: Mapping[str, Any]) -> str:
    """The XTCE 1.2 document of a dictionary, as text."""
    text = build_system(doc).dumps(format="xtce-1.2", top_comment=False)
    return _sized_strings(text)


def _sized_strings(text: str) -> str:
    """Give every string parameter its length from the ``<name>_length`` parameter before it.

    ``yamcs-pymdb`` writes a leading-size string as a ``LeadingSize`` with a placeholder
    reference that only Yamcs understands; XTCE 1.2 says it plainly with a ``DynamicValue``
    referring to the length parameter (in octets, so a linear adjustment of 8 to bits).
    """
    ET.register_namespace("", XTCE_NS)
    ET.register_namespace("xsi", XSI_NS)
    root = ET.fromstring(text)
    q = f"{{{XTCE_NS}}}"
    for ptype in root.iter(f"{q}StringParameterType"):
        var = ptype.find(f"{q}StringDataEncoding/{q}Variable")
        if var is None:
            continue
        for child in list(var):
            var.remove(child)
        dyn = ET.SubElement(var, f"{q}DynamicValue")
        ET.SubElement(dyn, f"{q}ParameterInstanceRef", {"parameterRef": f"{ptype.get('name')}_length"})
        ET.SubElement(dyn, f"{q}LinearAdjustment", {"slope": "8"})
    # the opaque payloads run to the end of the packet: 8 * (packet length field + 1 - 6) bits
    for ptype in root.iter(f"{q}BinaryParameterType"):
        size = ptype.find(f"{q}BinaryDataEncoding/{q}SizeInBits")
        if size is None or not str(ptype.get("name", "")).endswith("_payload"):
            continue
        for child in list(size):
            size.remove(child)
        dyn = ET.SubElement(size, f"{q}DynamicValue")
        ET.SubElement(dyn, f"{q}ParameterInstanceRef", {"parameterRef": "ccsds_packet_length"})
        ET.SubElement(dyn, f"{q}LinearAdjustment", {"slope": "8", "intercept": "-40"})
    # one order whatever the process: sets of named items sorted by name (their order means nothing)
    for tag in ("ParameterTypeSet", "ParameterSet", "ContainerSet", "ArgumentTypeSet", "MetaCommandSet"):
        for group in root.iter(f"{q}{tag}"):
            items = sorted(group, key=lambda el: (el.get("name") or "", el.tag))
            group[:] = items
    ET.indent(root, "  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
