"""Images on the ground: products reassembled from archived chunks, exported with a JSON sidecar.

The archive keeps every product chunk exactly once (``product_chunks``, keyed by spacecraft,
APID, product id and index), so reassembly is a query: :func:`collect` groups the chunks of each
product (a thumbnail on APID 0x030 and a full frame on 0x031 share the product id) and says
which segments are still missing. A product is ``complete`` when every segment is present and the
whole passes the size and CRC-32 announced in chunk 0, ``partial`` while segments are missing,
and ``corrupt`` when the pieces disagree with what chunk 0 announced.

:func:`export` writes ``<scid>-<pid>-<kind>.<jpg|png>`` for complete products and, for every
product, a sidecar ``.json`` with its metadata, status and missing segments. :func:`resend_commands`
lists the ``IMG_RESEND`` commands that would fill the gaps the link itself did not recover.

:class:`LiveProducts` is a station listener that reassembles as chunks arrive and records when
each product became whole (tests use it to check thumbnails come in ahead of full frames).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flight.link.packets import Apid
from flight.link.products import ProductError, Reassembly, format_segments
from ground.archive import Archive

log = logging.getLogger(__name__)

KIND_FOR_APID = {int(Apid.THUMBNAIL): "thumb", int(Apid.PRODUCT): "full"}


@dataclass
class ProductView:
    """One product (thumbnail or full frame) as the ground holds it."""

    scid: int
    pid: int
    kind: str
    assembly: Reassembly
    first_time: float = 0.0
    error: str = ""
    _data: bytes | None = field(default=None, repr=False)

    @property
    def meta(self) -> dict[str, Any]:
        return self.assembly.meta or {}

    @property
    def missing(self) -> list[int]:
        return self.assembly.missing

    @property
    def status(self) -> str:
        if not self.assembly.complete:
            return "partial"
        return "corrupt" if self.data is None else "complete"

    @property
    def data(self) -> bytes | None:
        """The product's bytes when complete and intact, else None (``error`` says why)."""
        if self._data is None and self.assembly.complete and not self.error:
            try:
                self._data = self.assembly.data()
            except ProductError as exc:
                self.error = str(exc)
        return self._data

    @property
    def ext(self) -> str:
        fmt = str(self.meta.get("format", ""))
        if fmt == "jpeg":
            return "jpg"
        if fmt == "png":
            return "png"
        return "bin"

    @property
    def name(self) -> str:
        return f"{self.scid}-{self.pid:08d}-{self.kind}"

    def summary(self) -> dict[str, Any]:
        return {
            "scid": self.scid, "pid": self.pid, "kind": self.kind, "status": self.status,
            "segments": self.assembly.n, "received": len(self.assembly.parts),
            "missing": format_segments(self.missing), "error": self.error, "first_time": self.first_time,
            "meta": self.meta,
        }


def _decode_meta(text: Any) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        meta = json.loads(text)
    except (TypeError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def collect(archive: Archive, scid: int | None = None, pid: int | None = None) -> list[ProductView]:
    """Every product in the archive (optionally one spacecraft or one product), by id then kind."""
    views: dict[tuple[int, int, int], ProductView] = {}
    for s, apid, p, idx, n, data, meta, t in archive.product_chunks(scid, pid):
        kind = KIND_FOR_APID.get(int(apid))
        if kind is None:
            continue
        key = (s, p, apid)
        view = views.get(key)
        if view is None:
            try:
                view = views[key] = ProductView(s, p, kind, Reassembly(int(n)), float(t))
            except ProductError as exc:
                log.warning("product %d/%d: %s", s, p, exc)
                continue
        if not view.assembly.add(int(idx), int(n), bytes(data or b""), _decode_meta(meta)):
            view.error = f"{view.assembly.conflicts} chunk(s) disagree with the segment count"
        view.first_time = min(view.first_time, float(t))
    return sorted(views.values(), key=lambda v: (v.scid, v.pid, v.kind != "thumb"))


def export(views: list[ProductView], out_dir: str | Path) -> list[Path]:
    """Write complete products as image files and every product's JSON sidecar; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for v in views:
        doc = v.summary()
        data = v.data
        if data is not None:
            img = out / f"{v.name}.{v.ext}"
            img.write_bytes(data)
            written.append(img)
            doc["file"] = img.name
        else:
            doc["file"] = None
        side = out / f"{v.name}.json"
        side.write_text(json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n", encoding="utf-8")
        written.append(side)
    return written


def resend_commands(views: list[ProductView]) -> list[tuple[str, dict[str, Any]]]:
    """``IMG_RESEND`` commands (name, arguments) for the segments partial products lack."""
    out = []
    for v in views:
        if v.status == "partial":
            segs = format_segments(v.missing)
            # a command's string argument holds at most 255 bytes: split long lists
            while segs:
                cut = segs[:240].rsplit(",", 1)[0] if len(segs) > 240 else segs
                out.append(("IMG_RESEND", {"pid": v.pid, "what": v.kind.upper(), "segments": cut}))
                segs = segs[len(cut) + 1 :]
    return out


class LiveProducts:
    """A station listener reassembling products as their chunks arrive (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.clock = clock
        self.products: dict[tuple[int, int, str], Reassembly] = {}
        self.completed: list[tuple[float, int, int, str]] = []  # (time, scid, pid, kind) in order
        self.rejected = 0

    def __call__(self, kind: str, scid: int, rec: Any) -> None:
        if kind != "chunk":
            return
        pkind = KIND_FOR_APID.get(int(rec.get("apid", -1)))
        if pkind is None:
            self.rejected += 1
            return
        key = (scid, int(rec["pid"]), pkind)
        asm = self.products.get(key)
        try:
            if asm is None:
                asm = self.products[key] = Reassembly(int(rec["n"]))
        except ProductError:
            self.rejected += 1
            return
        was = asm.complete
        if not asm.add(int(rec["idx"]), int(rec["n"]), rec["data"], rec.get("meta")):
            self.rejected += 1
        if asm.complete and not was:
            self.completed.append((self.clock() if self.clock else 0.0, scid, key[1], pkind))
