"""``magpie payloads``: hosted payloads' data products in a ground archive, listed or exported.

Payload products travel on the payloads' own APIDs (``0x040 + slot``, see
``flight/payload/PAYLOADS.md``); this reassembles them from the archive's product chunks and
checks each against the size and CRC-32 its first chunk announces. ``export`` writes each whole
product as ``OUT/<payload>/<file>`` with a ``.json`` sidecar of its metadata.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flight.link.packets import PAYLOAD_APIDS
from flight.link.products import ProductError, Reassembly


@dataclass
class PayloadProduct:
    scid: int
    apid: int
    pid: int
    assembly: Reassembly
    time: float

    @property
    def meta(self) -> dict[str, Any]:
        return self.assembly.meta or {}

    def data(self) -> bytes | None:
        try:
            return self.assembly.data()
        except ProductError:
            return None


def collect(archive: Path) -> list[PayloadProduct]:
    """Every payload product in the archive, whole or not, by spacecraft, APID and id."""
    db = sqlite3.connect(f"file:{archive}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT scid, apid, pid, idx, n, data, meta, time FROM product_chunks "
            "WHERE apid BETWEEN ? AND ? ORDER BY scid, apid, pid, idx",
            (PAYLOAD_APIDS.start, PAYLOAD_APIDS.stop - 1)).fetchall()
    finally:
        db.close()
    out: dict[tuple[int, int, int], PayloadProduct] = {}
    for scid, apid, pid, idx, n, data, meta, t in rows:
        key = (scid, apid, pid)
        prod = out.get(key)
        if prod is None:
            try:
                prod = out[key] = PayloadProduct(scid, apid, pid, Reassembly(n), t)
            except ProductError:
                continue
        try:
            parsed = json.loads(meta) if meta else None
        except json.JSONDecodeError:
            parsed = None
        prod.assembly.add(idx, n, bytes(data), parsed if isinstance(parsed, dict) else None)
    return list(out.values())


def _products(args: argparse.Namespace) -> list[PayloadProduct] | None:
    path = Path(args.archive)
    if not path.exists():
        print(f"magpie payloads: no archive at {path}", file=sys.stderr)
        return None
    try:
        return collect(path)
    except sqlite3.Error as exc:
        print(f"magpie payloads: {path}: {exc}", file=sys.stderr)
        return None


def cmd_list(args: argparse.Namespace) -> int:
    prods = _products(args)
    if prods is None:
        return 2
    if not prods:
        print("no payload products in the archive")
        return 0
    print(f"{'scid':>5} {'apid':>5} {'payload':<12} {'pid':>6} {'status':<8} {'segments':>9}  file")
    for p in prods:
        a = p.assembly
        status = "whole" if p.data() is not None else ("bad" if a.complete else "partial")
        print(f"{p.scid:>5} 0x{p.apid:03x} {str(p.meta.get('payload', '?')):<12} {p.pid:>6} {status:<8} "
              f"{len(a.parts):>4}/{a.n:<4}  {p.meta.get('file', '?')}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    prods = _products(args)
    if prods is None:
        return 2
    out = Path(args.out)
    written = 0
    for p in prods:
        data = p.data()
        if data is None:
            continue
        payload = str(p.meta.get("payload", f"apid{p.apid:03x}"))
        name = Path(str(p.meta.get("file", f"product-{p.pid}.bin"))).name or f"product-{p.pid}.bin"
        target = out / Path(payload).name / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.with_name(target.name + ".json").write_text(
            json.dumps(p.meta | {"scid": p.scid, "apid": p.apid, "pid": p.pid}, indent=1, sort_keys=True) + "\n",
            encoding="utf-8")
        written += 1
    print(f"{written} payload product(s) written under {out}/")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("payloads", help="hosted payloads' data products in a ground archive",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    psub = p.add_subparsers(dest="payloads_command", metavar="ACTION", required=True)
    lp = psub.add_parser("list", help="every payload product, whole or partial")
    lp.add_argument("--archive", required=True, help="ground archive (SQLite), e.g. magpie-run/archive.db")
    lp.set_defaults(func=cmd_list)
    ep = psub.add_parser("export", help="write the whole products as files with JSON sidecars")
    ep.add_argument("--archive", required=True, help="ground archive (SQLite)")
    ep.add_argument("--out", required=True, help="directory to write OUT/<payload>/<file>")
    ep.set_defaults(func=cmd_export)
