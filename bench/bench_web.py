"""Web ground station under load: 1,000 channels at 10 Hz, latency from the archive to the page.

A ground station in this process archives 1,000 channel samples (four housekeeping packets) every
100 ms (real frames into :class:`ground.station.Station`, a real SQLite archive, its live PUB
socket on 127.0.0.1); ``magpie web`` runs as its own process; the page is the real page in
headless Chromium. Each sample's spacecraft time is the wall time it was made, so the page's
``window.magpieStats.latSc`` is the time from packet to page (archive commit, PUB, the web
ground's coalescing, one push per ``flush_s`` = 50 ms, the websocket and parsing) and
``latShown`` to the moment a visible row shows the value (the page redraws the rows on screen
at most every 100 ms, in an animation frame). Beside it:
how late the page's own timers run (responsiveness: a page busy with the updates runs them
late), and, as the baseline measured in the same run, raw pyzmq PUB/SUB carrying the same
1,000 msgpack samples per 100 ms over 127.0.0.1 (and, for the timers, an empty page in the same
browser).

Without Chromium (Debian ``chromium`` and ``chromium-driver``) a Python websocket client stands
in for the page, and the rows say so.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import msgpack
import numpy as np
import zmq

from bench.common import Row
from flight.link.frames import Framer
from flight.link.packets import Packetizer
from ground.archive import Archive
from ground.dictionary import Dictionary
from ground.station import Station, Vehicle

SCID = 66
N_CHANNELS = 1000
RATE_HZ = 10.0


def _dictionary() -> dict:
    return {
        "format": "magpie-dict/1", "software_version": "bench", "hash": "sha256:00",
        "spacecraft": {"name": "bench", "id": SCID}, "commands": [], "events": [], "params": [],
        "channels": [{"id": i, "name": f"load.ch{i:04d}", "type": "f64", "units": "V", "doc": "",
                      "limits": {"yellow": [-0.8, 0.8], "red": [-0.95, 0.95]}, "update": "always"}
                     for i in range(N_CHANNELS)],
    }


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Producer(threading.Thread):
    """1,000 samples every 100 ms through frames, the station and its archive, on the wall clock."""

    def __init__(self, tmp: Path, pub: str) -> None:
        super().__init__(daemon=True)
        self.archive = Archive(tmp / "archive.db")
        self.station = Station(self.archive, [Vehicle(SCID, Dictionary.from_obj(_dictionary()), None, "bench")],
                               pub_endpoint=pub)
        self.framer = Framer(SCID)
        self.pk = Packetizer()
        self.stop = threading.Event()
        self.packets = 0

    def run(self) -> None:
        period = 1.0 / RATE_HZ
        next_t = time.monotonic()
        while not self.stop.is_set():
            t = time.time()
            samples = [(c, math.sin(t + c)) for c in range(N_CHANNELS)]
            # a frame holds about 4 kB: 250 samples a packet, as the flight telemetry splits them
            packets = [self.pk.housekeeping(t, samples[i : i + 250])[1] for i in range(0, N_CHANNELS, 250)]
            for frame in self.framer.pack_by_apid(packets):
                self.station.receive(frame, t)
            self.station.flush(t)
            self.packets += 1
            next_t += period
            self.stop.wait(max(0.0, next_t - time.monotonic()))  # the 10 Hz telemetry period

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        self.station.close()
        self.archive.close()


def _raw_zmq_latency_ms(duration_s: float) -> np.ndarray:
    """Send-to-receive latency of the same load over raw pyzmq PUB/SUB on 127.0.0.1 (ms)."""
    ctx = zmq.Context.instance()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    for s in (pub, sub):
        s.setsockopt(zmq.LINGER, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    sub.connect(f"tcp://127.0.0.1:{port}")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    while True:  # slow-joiner handshake, bounded by polls
        pub.send_multipart([b"hello", b""])
        if sub.poll(20):
            sub.recv_multipart()
            break
    lat: list[float] = []
    done = threading.Event()

    def receive() -> None:
        while not done.is_set() or sub.poll(0):
            if sub.poll(50):
                _, body = sub.recv_multipart()
                rec = msgpack.unpackb(body)
                lat.append((time.time() - rec["time"]) * 1000.0)

    th = threading.Thread(target=receive, daemon=True)
    th.start()
    end = time.monotonic() + duration_s
    next_t = time.monotonic()
    while time.monotonic() < end:
        t = time.time()
        for c in range(N_CHANNELS):
            pub.send_multipart([f"tlm.{SCID}.load.ch{c:04d}".encode(),
                                msgpack.packb({"scid": SCID, "id": c, "name": f"load.ch{c:04d}", "time": t,
                                               "value": math.sin(t + c)})])
        next_t += 1.0 / RATE_HZ
        time.sleep(max(0.0, next_t - time.monotonic()))  # the 10 Hz telemetry period
    done.set()
    th.join(5)
    pub.close(0)
    sub.close(0)
    return np.asarray(lat)


LAG_PROBE = """
window.magpieLag = [];
let last = performance.now();
setInterval(() => { const now = performance.now(); window.magpieLag.push(now - last - 100); last = now; }, 100);
"""


def _page_chromium(url: str, duration_s: float) -> tuple[np.ndarray, ...] | None:
    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_bin is None:
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="magpie-bench-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_bin), options=opts)
    try:
        driver.set_page_load_timeout(30)
        # baseline: the same timer probe on an empty page in the same browser
        driver.get("data:text/html,<title>idle</title>")
        driver.execute_script(LAG_PROBE)
        time.sleep(min(duration_s, 5.0))  # the baseline's measurement window
        idle_lag = np.asarray(driver.execute_script("return window.magpieLag"), dtype=float)
        driver.get(url)
        deadline = time.monotonic() + 30
        while driver.execute_script("return window.magpieStats.samples") == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the page received no samples")
            time.sleep(0.2)  # polling the browser
        time.sleep(1.0)  # warm-up: first layout of 1,000 rows
        driver.execute_script("const s = window.magpieStats; s.latSc = []; s.latWeb = []; s.latShown = [];"
                              + LAG_PROBE)
        time.sleep(duration_s)  # the measurement window, real time by nature
        lat = driver.execute_script("return window.magpieStats.latSc")
        web_to_page = np.asarray(driver.execute_script("return window.magpieStats.latWeb"), dtype=float)
        if web_to_page.size:
            print(f"(web ground -> page alone: p50 {np.percentile(web_to_page, 50):.1f} ms, "
                  f"p99 {np.percentile(web_to_page, 99):.1f} ms)", file=sys.stderr)
        shown = driver.execute_script("return window.magpieStats.latShown")
        lag = driver.execute_script("return window.magpieLag")
        n = int(driver.execute_script("return window.magpieStats.samples"))
        return (np.asarray(lat, dtype=float), np.asarray(shown, dtype=float), np.asarray(lag, dtype=float),
                idle_lag, n)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _page_websocket(url: str, duration_s: float) -> tuple[np.ndarray, ...]:
    import websockets

    async def go() -> tuple[list[float], int]:
        lat: list[float] = []
        n = 0
        async with websockets.connect(url.replace("http", "ws") + "ws", max_size=None) as ws:
            end = time.monotonic() + duration_s + 1.0
            while time.monotonic() < end:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                now = time.time()
                for s in msg.get("tlm", []):
                    lat.append((now - s[2]) * 1000.0)
                    n += 1
        return lat, n

    lat, n = asyncio.run(go())
    return np.asarray(lat), np.asarray([]), np.asarray([]), np.asarray([]), n


def _pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if a.size else float("nan")


def run(quick: bool = False) -> list[Row]:
    duration = 5.0 if quick else 15.0
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="magpie-bench-web-") as d:
        tmp = Path(d)
        pub, web_port = f"tcp://127.0.0.1:{_port()}", _port()
        (tmp / "dictionary.json").write_text(json.dumps(_dictionary()))
        (tmp / "ground.toml").write_text(
            f'archive = "archive.db"\npub = "{pub}"\ncommands = "tcp://127.0.0.1:{_port()}"\n'
            f'[[vehicle]]\nscid = {SCID}\nname = "bench"\ndictionary = "dictionary.json"\n')
        producer = Producer(tmp, pub)
        producer.start()
        web = subprocess.Popen([sys.executable, "-m", "magpie.cli", "web", "--config", str(tmp / "ground.toml"),
                                "--port", str(web_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{web_port}/"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(url + "api/config", timeout=2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or web.poll() is not None:
                        raise RuntimeError("magpie web did not start") from None
                    time.sleep(0.2)  # polling the web ground's start-up
            page = _page_chromium(url, duration)
            who = "Chromium page"
            if page is None:
                page = _page_websocket(url, duration)
                who = "websocket client (no Chromium)"
            lat, shown, lag, idle_lag, n = page
        finally:
            web.terminate()
            web.wait(10)
            producer.close()
    raw = _raw_zmq_latency_ms(duration)
    base50, base99 = _pct(raw, 50), _pct(raw, 99)
    rows.append(Row(f"web: archive -> {who} latency p50, {N_CHANNELS} ch @ {RATE_HZ:g} Hz", _pct(lat, 50), "ms",
                    base50, "raw pyzmq PUB/SUB p50", target="well under a second"))
    rows.append(Row(f"web: archive -> {who} latency p99", _pct(lat, 99), "ms", base99, "raw pyzmq PUB/SUB p99"))
    if shown.size:
        rows.append(Row("web: archive -> shown in a visible row, p50", _pct(shown, 50), "ms", base50,
                        "raw pyzmq PUB/SUB p50"))
        rows.append(Row("web: archive -> shown in a visible row, p99", _pct(shown, 99), "ms", base99,
                        "raw pyzmq PUB/SUB p99"))
    if lag.size:
        rows.append(Row("web: page timer lateness p99 (responsiveness)", _pct(lag, 99), "ms",
                        _pct(idle_lag, 99), "an empty page's p99", target="< 100 ms (a 100 ms timer)"))
    rows.append(Row("web: samples shown on the page", float(n), "samples", better="higher"))
    return rows


if __name__ == "__main__":
    from bench.__main__ import _fmt

    for r in run(quick="--quick" in sys.argv):
        ratio = "" if r.ratio is None else f"  (baseline {_fmt(r.baseline)} {r.unit} {r.baseline_name}; " \
            f"x{_fmt(r.ratio)})"
        print(f"{r.name}: {_fmt(r.value)} {r.unit}{ratio}")
