"""A point spectrometer, as a partner would fly it on a Magpie lander.

Each reading integrates a reflectance spectrum of the target under the lander (400 to 1000 nm,
``bins`` bins): a regolith continuum with the pyroxene and olivine absorption bands, scaled by
the integration time, with shot noise from a seeded generator so a simulated mission is
reproducible. A dark frame (commanded) is subtracted from later readings. Every
``readings_per_product`` readings the spectra are written to a product file in the directory
the host gives the payload, and handed to the host for downlink.

The product format (:func:`encode_product`, :func:`decode_product`): one JSON header line, then
``readings`` rows of ``bins`` little-endian u16 counts.
"""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

from flight.payload.sdk import Arg, Channel, CommandFailed, Event, Limits, Param, Payload, Severity, command

FORMAT = "magpie-spectrum/1"
WL_START_NM = 400.0
WL_END_NM = 1000.0
FULL_SCALE = 65535


def encode_product(header: dict[str, Any], rows: list[list[int]]) -> bytes:
    bins = header["bins"]
    head = dict(header) | {"format": FORMAT, "readings": len(rows)}
    body = b"".join(struct.pack(f"<{bins}H", *row) for row in rows)
    return json.dumps(head, sort_keys=True, separators=(",", ":")).encode() + b"\n" + body


def decode_product(data: bytes) -> tuple[dict[str, Any], list[list[int]]]:
    """(header, rows) of a spectrum product; raises ValueError when it is not one."""
    head_raw, sep, body = data.partition(b"\n")
    if not sep:
        raise ValueError("no header line")
    try:
        head = json.loads(head_raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"header is not JSON: {exc}") from None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} product")
    bins, n = int(head["bins"]), int(head["readings"])
    if len(body) != bins * n * 2:
        raise ValueError(f"{len(body)} bytes of spectra for {n} readings of {bins} bins")
    row = struct.Struct(f"<{bins}H")
    return head, [list(row.unpack_from(body, i * row.size)) for i in range(n)]


def reflectance(wl_nm: float) -> float:
    """Mature lunar regolith: a red-sloped continuum with absorptions near 950 and 1050 nm."""
    continuum = 0.08 + 0.12 * (wl_nm - WL_START_NM) / (WL_END_NM - WL_START_NM)
    pyroxene = 0.30 * math.exp(-(((wl_nm - 950.0) / 60.0) ** 2))
    olivine = 0.08 * math.exp(-(((wl_nm - 1050.0) / 90.0) ** 2))
    return continuum * (1.0 - pyroxene - olivine)


class Spectrometer(Payload):
    """Point spectrometer: readings, dark frames and spectrum products."""

    OPTIONS = {"bins": 128, "readings_per_product": 10, "cadence_steps": 1, "seed": 7, "min_soc": 0.2}
    CHANNELS = (
        Channel("readings", "u32", doc="readings taken since start"),
        Channel("products", "u32", doc="products handed to the host", update="on_change"),
        Channel("peak_counts", "u16", doc="brightest bin of the last reading",
                limits=Limits(yellow=(0, 60000), red=(0, 65000))),
        Channel("band_depth", "f32", doc="950 nm band depth of the last reading, 0..1"),
        Channel("dark_counts", "f32", doc="mean of the dark frame in use"),
        Channel("paused", "bool", doc="readings paused for a low battery", update="on_change"),
    )
    EVENTS = (
        Event("ProductWritten", Severity.ACTIVITY_LO, "spectrum product {file}: {readings} readings",
              (Arg("file", "str"), Arg("readings", "u32"))),
        Event("DarkTaken", Severity.ACTIVITY_HI, "dark frame: mean {mean} counts", (Arg("mean", "f32"),)),
        Event("LowPowerPause", Severity.WARNING_LO, "readings paused: battery at {soc}", (Arg("soc", "f32"),),
              throttle=2, throttle_window_s=600.0),
    )
    PARAMS = (Param("integration_ms", "f32", 200.0, "ms", min=1.0, max=5000.0, doc="integration time"),)

    def setup(self) -> None:
        self._bins = int(self.options["bins"])
        self._per_product = int(self.options["readings_per_product"])
        self._cadence = int(self.options["cadence_steps"])
        self._rng = random.Random(int(self.options["seed"]))
        step = (WL_END_NM - WL_START_NM) / self._bins
        self._wl = [WL_START_NM + (i + 0.5) * step for i in range(self._bins)]
        self._signal = [reflectance(w) for w in self._wl]
        self._dark = [0] * self._bins
        self._rows: list[list[int]] = []
        self._times: list[float] = []
        self._count = self._products = self._steps = 0
        self._extra = 0
        self._paused = False

    def step(self) -> None:
        self._steps += 1
        if "power.soc" in self.grants:
            soc = self.channel("power.soc")
            paused = soc is not None and soc < float(self.options["min_soc"])
            if paused and not self._paused:
                self.event("LowPowerPause", soc=round(soc, 3))
            self._paused = paused
            self.tlm("paused", paused)
            if paused:
                return
        if self._steps % self._cadence == 0:
            self._reading()
        if self._extra:
            self._extra -= 1
            self._reading()

    def _integrate(self, lit: bool) -> list[int]:
        scale = 250.0 * self.param("integration_ms")
        rng = self._rng
        out = []
        for s in self._signal:
            mean = 40.0 + (scale * s if lit else 0.0)
            counts = mean + rng.gauss(0.0, math.sqrt(mean))
            out.append(min(FULL_SCALE, max(0, int(counts))))
        return out

    def _reading(self) -> None:
        raw = self._integrate(lit=True)
        row = [max(0, r - d) for r, d in zip(raw, self._dark, strict=True)]
        self._rows.append(row)
        self._times.append(self.now())
        self._count += 1
        band = self._band_depth(row)
        self.tlm("readings", self._count)
        self.tlm("peak_counts", max(raw))
        self.tlm("band_depth", band)
        if len(self._rows) >= self._per_product:
            self._write()

    def _band_depth(self, row: list[int]) -> float:
        def at(nm: float) -> float:
            i = min(self._bins - 1, max(0, int((nm - WL_START_NM) / (WL_END_NM - WL_START_NM) * self._bins)))
            return float(row[i])

        shoulder = 0.5 * (at(750.0) + at(995.0))
        return 0.0 if shoulder <= 0 else max(0.0, min(1.0, 1.0 - at(950.0) / shoulder))

    def _write(self) -> None:
        if not self._rows:
            return
        self._products += 1
        name = f"spectrum-{self._products:05d}.bin"
        header = {"bins": self._bins, "wl_start_nm": WL_START_NM, "wl_end_nm": WL_END_NM,
                  "integration_ms": self.param("integration_ms"), "times": self._times,
                  "dark_mean": sum(self._dark) / self._bins}
        (self.product_dir / name).write_bytes(encode_product(header, self._rows))
        self.product(name, {"readings": len(self._rows), "bins": self._bins})
        self.event("ProductWritten", file=name, readings=len(self._rows))
        self.tlm("products", self._products)
        self._rows, self._times = [], []

    @command("TAKE", Arg("count", "u16", min=1, max=100, doc="readings to add to the schedule"))
    def take(self, count: int) -> None:
        """Take extra readings on the coming steps, beyond the cadence."""
        if self._paused:
            raise CommandFailed("paused for a low battery")
        self._extra += count

    @command("DARK")
    def dark(self) -> None:
        """Take a dark frame (shutter closed) and subtract it from later readings."""
        self._dark = self._integrate(lit=False)
        mean = sum(self._dark) / self._bins
        self.tlm("dark_counts", mean)
        self.event("DarkTaken", mean=round(mean, 2))

    @command("FLUSH")
    def flush(self) -> None:
        """Write the readings held so far as a product now."""
        if not self._rows:
            raise CommandFailed("no readings held")
        self._write()
