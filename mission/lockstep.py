"""A whole mission on one machine: vehicle, relay link and ground station together.

Lockstep (the default): everything runs in this process on the flight :class:`SimClock`. The
vehicle's radio is a ``radio+loop://`` device whose frames pass through the
:class:`~sim_hw.relay.RelayLink` model (light time, hop, rate, loss, bit errors, windows); the
ground :class:`~ground.station.Station` and :class:`~ground.commander.Commander` are stepped
between short chunks of the executive (``tick_s``), so a run is deterministic for a seed and
goes as fast as the CPU allows. After the planned duration the executive stops and the link
alone keeps running (``drain``) until the onboard recorder is empty, so the archive ends up
holding everything the vehicle produced.

Real time (:func:`run_realtime_mission`): relay, ground and flight as separate processes
(``magpie relay``, ``magpie ground``, ``magpie flight``) on 127.0.0.1 with free ports, each
stopping by itself at the end of the duration.

Keys: one shared HMAC key for the demo, ``<out>/keys/uplink.key`` (mode 0600), written once and
reused by later runs over the same output directory.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flight.clock import NS, SimClock
from flight.components.comm import Comm, attach
from flight.config import ComponentConfig, ConfigError, VehicleConfig
from flight.config import load as load_config
from flight.link.auth import load_key, write_key_file
from flight.link.cfdp import CfdpConfig
from flight.link.packets import Apid, apid_of
from flight.vehicle import Vehicle
from ground.archive import Archive
from ground.commander import Commander, CommandRecord
from ground.dictionary import Dictionary
from ground.files import GroundFiles
from ground.station import Station
from ground.station import Vehicle as GroundVehicle
from hal.radio import open_loop_radio
from sim_hw.relay import RelayLink, RelayParams

log = logging.getLogger(__name__)

PRESET_DEFAULT = "moon-farside"
KEY_ID = 1

#: (seconds after the mission start, command name, arguments)
PlannedCommand = tuple[float, str, Mapping[str, Any]]
DEFAULT_PLAN: tuple[PlannedCommand, ...] = (
    (20.0, "CMD_NOOP", {}),
    (40.0, "CMD_PING", {"key": 4242}),
    (60.0, "COMM_REPORT", {}),
)


def ensure_key(path: Path) -> Path:
    """Create a demo key file (32 random bytes, hex, mode 0600) unless it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if not path.exists():
        write_key_file(path)
        log.info("wrote a new key %s", path)
    return path


def comm_config(config: VehicleConfig) -> ComponentConfig:
    """The configuration's comm component (exactly one is needed for a mission)."""
    comms = [c for c in config.components if c.type == "comm"]
    if len(comms) != 1:
        raise ConfigError(f"{config.source}: a mission needs exactly one component of type 'comm' "
                          f"(found {len(comms)})")
    return comms[0]


def radio_url(config: VehicleConfig) -> str:
    cc = comm_config(config)
    dname = cc.devices.get("radio", "radio")
    try:
        return config.devices[dname]
    except KeyError:
        raise ConfigError(f"components.{cc.name}.devices.radio: no device named {dname!r}") from None


def round_trip_s(params: RelayParams) -> float:
    return 2.0 * (params.light_time_s + params.hop_delay_s)


@dataclass
class MissionSummary:
    """What a mission run did, for people (``lines``) and for tests."""

    preset: str
    seed: int
    sim_s: float = 0.0
    wall_s: float = 0.0
    drained: bool = False
    drain_s: float = 0.0
    boots: int = 0
    carried_over: int = 0  # packets on board from a previous run, downlinked in this one
    stored: Counter[int] = field(default_factory=Counter)  # packets the vehicle stored, by APID
    archived: Counter[int] = field(default_factory=Counter)  # distinct packets archived, by APID
    duplicates: int = 0
    held_on_board: int = 0
    recorder_drops: dict[int, int] = field(default_factory=dict)
    acks_sent: int = 0
    naks_sent: int = 0
    nak_seqs: int = 0
    gaps_given_up: int = 0
    ground_crc_errors: int = 0
    vehicle_crc_errors: int = 0
    resent: int = 0
    uplink_rejected: int = 0
    link: dict[str, dict[str, int]] = field(default_factory=dict)
    commands: list[dict[str, Any]] = field(default_factory=list)
    responses_archived: int = 0
    events_archived: int = 0
    samples_archived: int = 0
    archive_path: str = ""

    @property
    def packets_archived(self) -> int:
        return sum(self.archived.values())

    def lines(self) -> list[str]:
        apids = sorted(set(self.stored) | set(self.archived))
        names = {int(a): a.name.lower() for a in Apid}
        by_apid = ", ".join(f"{names.get(a, hex(a))} {self.archived[a]}/{self.stored[a]}" for a in apids)
        down, up = self.link.get("down", {}), self.link.get("up", {})
        stages = Counter(c["stage"] for c in self.commands)
        out = [
            f"Mission       {self.preset}, seed {self.seed}: {self.sim_s:.0f} s simulated in {self.wall_s:.1f} s "
            f"wall ({self.sim_s / max(self.wall_s, 1e-9):.0f}x), {self.boots} boot(s)",
            f"Downlink      {self.packets_archived} packets archived of {sum(self.stored.values())} stored "
            f"+ {self.carried_over} from a previous run ({by_apid}); {self.duplicates} duplicates discarded",
            f"Recorder      {self.held_on_board} held on board, {self.resent} resent, drops "
            f"{sum(self.recorder_drops.values())}; "
            + (f"drained in {self.drain_s:.0f} s after the run" if self.drained else "not drained"),
            f"Gaps          {self.naks_sent} NAKs for {self.nak_seqs} packets, {self.gaps_given_up} given up; "
            f"{self.acks_sent} ACKs",
            f"Relay down    sent {down.get('sent', 0)}, delivered {down.get('delivered', 0)}, lost "
            f"{down.get('lost', 0)}, corrupted {down.get('corrupted', 0)} (ground CRC errors "
            f"{self.ground_crc_errors}), blocked {down.get('blocked', 0)}, dropped {down.get('dropped', 0)}",
            f"Relay up      sent {up.get('sent', 0)}, delivered {up.get('delivered', 0)}, lost {up.get('lost', 0)}, "
            f"corrupted {up.get('corrupted', 0)}, blocked {up.get('blocked', 0)}; uplink rejected "
            f"{self.uplink_rejected}",
            f"Commands      {len(self.commands)} sent ("
            + (", ".join(f"{k} {v}" for k, v in sorted(stages.items())) or "none")
            + f"); {self.responses_archived} responses, {self.events_archived} events, "
            f"{self.samples_archived} samples archived",
            f"Archive       {self.archive_path}",
        ]
        return out


class LockstepMission:
    """Vehicle + relay model + station + commander on one simulated clock. See the module docstring.

    ``config`` must hold one comm component whose radio is a ``radio+loop://`` device. The
    comm's key file is replaced by the mission's shared key, its resend timeout raised above
    the link's round trip, and the state directory moved to ``<out>/state``.
    """

    def __init__(
        self,
        config: VehicleConfig,
        out_dir: Path,
        *,
        preset: str = PRESET_DEFAULT,
        relay_overrides: Mapping[str, Any] | None = None,
        seed: int = 1,
        device_context: Mapping[str, Any] | None = None,
        clock: SimClock | None = None,
        tick_s: float = 0.1,
        flush_every_s: float = 1.0,
        ack_interval_s: float = 1.0,
        commit_every_s: float = 10.0,
        plan: Iterable[PlannedCommand] = (),
        archive_path: Path | None = None,
    ) -> None:
        self.out = Path(out_dir).resolve()
        self.archive_path = Path(archive_path) if archive_path is not None else self.out / "archive.db"
        self.out.mkdir(parents=True, exist_ok=True)
        self.preset = preset
        self.seed = seed
        self.tick_s = tick_s
        self.flush_every_s = flush_every_s
        self.params = RelayParams.preset(preset, **dict(relay_overrides or {}))
        self.relay = RelayLink(self.params, seed=seed)
        self.clock = clock or SimClock()
        self.key_path = ensure_key(self.out / "keys" / "uplink.key")
        rtt = round_trip_s(self.params)
        url = radio_url(config)
        if not url.startswith("radio+loop://"):
            raise ConfigError(f"{config.source}: the lockstep mission needs a radio+loop:// radio, not {url!r}")
        cc = comm_config(config)
        resend = max(float(cc.options.get("resend_timeout_s", Comm.OPTIONS["resend_timeout_s"])),
                     rtt + 2 * ack_interval_s + commit_every_s + 5.0)
        # a key per direction: the uplink key (commands, link control, uplink frames) and the
        # downlink frame key, both in the run directory
        self.downlink_key_path = ensure_key(self.out / "keys" / "downlink.key")
        options = {**cc.options, "key_file": str(self.key_path), "key_id": KEY_ID, "resend_timeout_s": resend,
                   "downlink_key_file": str(self.downlink_key_path), "downlink_key_id": KEY_ID}
        comps = tuple(dataclasses.replace(c, options=options) if c is cc else c for c in config.components)
        self.config = dataclasses.replace(config, state_dir=self.out / "state", components=comps)
        self.device_context = {**dict(device_context or {}), "relay": self.relay, "clock": self.clock.now}
        self.boots = 0
        self.stored: Counter[int] = Counter()
        self.stored_packets: list[bytes] = []  # every packet the vehicle stored, in order
        self.vehicle: Vehicle = self._boot()
        assert self.comm.recorder is not None
        #: packets a previous run left on board (its shutdown events, or an undrained pass)
        self.carried_over = self.comm.recorder.stats().packets

        self.ground_radio = open_loop_radio(url.replace("side=vehicle", "side=ground"), relay=self.relay,
                                            clock=self.clock.now)
        self.archive = Archive(self.archive_path)
        ground_state = self.out / "ground-state"
        ground_state.mkdir(parents=True, exist_ok=True)
        from flight.link.auth import Signer

        scid = self.config.spacecraft_id
        signer = Signer(load_key(self.key_path, KEY_ID), ground_state / f"uplink-{scid}.json")
        self.station = Station(
            self.archive,
            [GroundVehicle(scid, Dictionary.from_obj(self.vehicle.dictionary), signer, self.config.name,
                           downlink_key=load_key(self.downlink_key_path, KEY_ID))],
            uplink=lambda _scid, frame: self.ground_radio.send(frame),
            ack_interval_s=ack_interval_s,
            link_timeout_s=max(10.0, rtt + 5.0),
            nak_retry_s=max(10.0, rtt + 2 * ack_interval_s + 3.0),
            commit_every_s=commit_every_s,
        )
        self.commander = Commander(self.station, retry_interval_s=max(60.0, 2 * rtt + 30.0),
                                   default_timeout_s=max(3600.0, 4 * rtt))
        #: the ground's CFDP entity for this vehicle (products by CFDP into the archive, files up)
        self.files = GroundFiles(self.station, self.archive, ground_state / "cfdp", ground_state,
                                 config=CfdpConfig(ack_interval_s=max(60.0, 2 * rtt + 10.0),
                                                   nak_interval_s=max(60.0, 2 * rtt + 10.0),
                                                   holdoff_s=max(5.0, rtt + 2.0)))
        self._archived_before: Counter[int] = Counter(row[1] for row in self.archive.packets(scid))
        self.start_s = self.clock.now()
        self.plan = sorted(((self.start_s + t, n, dict(a)) for t, n, a in plan), key=lambda p: p[0])
        self.sent: list[CommandRecord] = []
        self._next_flush = self.start_s + flush_every_s
        self.drained = False
        self.drain_s = 0.0
        self.wall_s = 0.0

    # -- the vehicle ------------------------------------------------------------------------------

    def _boot(self) -> Vehicle:
        vehicle = Vehicle(self.config, self.clock, device_context=self.device_context)
        comms = attach(vehicle)
        self.comm = comms[0]
        self.comm.store_listeners.append(self._stored)
        self.boots += 1
        return vehicle

    def _stored(self, packets: list[bytes]) -> None:
        stored = self.stored
        for p in packets:  # the comm's own packets
            stored[apid_of(p)] += 1
        self.stored_packets.extend(packets)

    def crash_vehicle(self) -> None:
        """Lose the vehicle as a kill -9 would: no shutdown, no flush; what is on disk stays."""
        for c in self.vehicle.components:
            if isinstance(c, Comm) and c.recorder is not None:
                c.recorder.close()  # the process is gone; its files are closed by the kernel
                c.recorder = None
        self.vehicle.close_devices()
        del self.vehicle

    def restart_vehicle(self) -> Vehicle:
        """Boot a new vehicle over the same state directory, on the same clock and link."""
        self.vehicle = self._boot()
        return self.vehicle

    def reboot_vehicle(self) -> Vehicle:
        """Restart the flight process as fault protection asked: a clean stop, then a boot from
        the persisted state; sinks other than the comm recorder are handed to the new vehicle."""
        old = self.vehicle
        keep = [s for s in old.sinks if not isinstance(s, Comm)]
        old.shutdown(close_sinks=False)
        for sink in old.sinks:
            if isinstance(sink, Comm):
                sink.close()
        vehicle = self.restart_vehicle()
        for sink in keep:
            vehicle.add_sink(sink)
        return vehicle

    # -- stepping ----------------------------------------------------------------------------------

    def ground_step(self, now_s: float) -> None:
        while (frame := self.ground_radio.recv()) is not None:
            self.station.receive(frame, now_s)
        self.station.poll(now_s)
        self.commander.poll(now_s)

    def send(self, name: str, args: Mapping[str, Any] | None = None) -> CommandRecord:
        """Send a command from the ground now (through the relay)."""
        rec = self.commander.send(self.config.spacecraft_id, name, dict(args or {}), self.clock.now())
        self.sent.append(rec)
        return rec

    def advance(self, until_s: float, progress: Callable[[float], None] | None = None) -> None:
        """Run vehicle, link and ground in lockstep to spacecraft time ``until_s``."""
        wall0 = time.monotonic()
        ex = self.vehicle.executive
        clock = self.clock
        while clock.now() < until_s - 1e-9 and not ex.stopping:
            now = clock.now()
            while self.plan and self.plan[0][0] <= now:
                _, name, args = self.plan.pop(0)
                self.send(name, args)
            t_next = min(until_s, now + self.tick_s)
            ex.run(until_s=t_next)
            if ex.stopping and self.vehicle.restart_requested:
                self.vehicle.flush()
                ex = self.reboot_vehicle().executive
            if clock.now() >= self._next_flush - 1e-9:
                self.vehicle.flush()
                self._next_flush = clock.now() + self.flush_every_s
            self.ground_step(clock.now())
            if progress is not None:
                progress(clock.now())
        self.vehicle.flush()
        self.station.flush(clock.now())  # the archive holds all the ground received when we stop
        self.wall_s += time.monotonic() - wall0

    def idle(self, seconds: float) -> None:
        """Step the clock, relay and ground only (the vehicle is down, e.g. after a crash)."""
        until = self.clock.now() + seconds
        while self.clock.now() < until - 1e-9:
            self.clock.advance_to(int(round(min(until, self.clock.now() + self.tick_s) * NS)))
            self.ground_step(self.clock.now())

    def drain(self, max_s: float = 3600.0) -> bool:
        """With the executive stopped, run only the link until the recorder is empty (or ``max_s``)."""
        wall0 = time.monotonic()
        t0 = self.clock.now()
        self.drained = False
        rec = self.comm.recorder
        assert rec is not None, "the vehicle is down"
        while self.clock.now() - t0 < max_s:
            self.vehicle.flush()
            if rec.stats().packets == 0 and len(self.vehicle.fw.outbound) == 0:
                self.drained = True
                break
            self.clock.advance(self.tick_s)
            now = self.clock.now()
            self.comm.pump(now)
            self.ground_step(now)
        self.station.flush(self.clock.now())
        self.drain_s = self.clock.now() - t0
        self.wall_s += time.monotonic() - wall0
        return self.drained

    # -- results -------------------------------------------------------------------------------------

    def summary(self) -> MissionSummary:
        st = self.station.stats
        scid = self.config.spacecraft_id
        archived: Counter[int] = Counter(row[1] for row in self.archive.packets(scid))
        archived.subtract(self._archived_before)
        archived = +archived  # this run's packets only, when the archive file is reused
        rec = self.comm.recorder
        rstats = rec.stats() if rec is not None else None
        return MissionSummary(
            preset=self.preset,
            seed=self.seed,
            sim_s=self.clock.now() - self.start_s,
            wall_s=self.wall_s,
            drained=self.drained,
            drain_s=self.drain_s,
            boots=self.boots,
            carried_over=self.carried_over,
            stored=Counter(self.stored),
            archived=archived,
            duplicates=st.duplicates,
            held_on_board=rstats.packets if rstats else 0,
            recorder_drops=dict(rstats.dropped) if rstats else {},
            acks_sent=st.acks_sent,
            naks_sent=st.naks_sent,
            nak_seqs=st.nak_seqs,
            gaps_given_up=st.gaps_given_up,
            ground_crc_errors=self.station.deframer.stats.crc_errors,
            vehicle_crc_errors=self.comm.endpoint.deframer.stats.crc_errors if self.comm.endpoint else 0,
            resent=rstats.resent if rstats else 0,
            uplink_rejected=self.comm.rejected_total() if self.comm.verifier else 0,
            link=self.relay.stats_dict(),
            commands=[r.as_dict() for r in self.commander.commands.values()],
            responses_archived=self.archive.count("responses"),
            events_archived=self.archive.count("events"),
            samples_archived=self.archive.count("samples"),
            archive_path=str(self.archive_path),
        )

    def close(self) -> None:
        """Clean stop: the vehicle persists and closes, then the ground side."""
        if hasattr(self, "vehicle"):
            self.vehicle.shutdown()
        self.ground_radio.close()
        self.station.close()
        self.archive.close()


def run_mission(
    config: VehicleConfig | str | Path,
    out_dir: str | Path,
    *,
    duration_s: float = 600.0,
    preset: str = PRESET_DEFAULT,
    seed: int = 1,
    relay_overrides: Mapping[str, Any] | None = None,
    device_context: Mapping[str, Any] | None = None,
    clock: SimClock | None = None,
    plan: Iterable[PlannedCommand] = DEFAULT_PLAN,
    drain_max_s: float = 3600.0,
    progress: Callable[[float], None] | None = None,
) -> MissionSummary:
    """Run a lockstep mission for ``duration_s`` of spacecraft time, drain the link, summarise.

    ``device_context`` carries the simulated world for ``sim://`` devices (``{"world": w}``); a
    world stepped by the clock is the caller's (pass the same ``clock``).
    """
    cfg = config if isinstance(config, VehicleConfig) else load_config(config)
    mission = LockstepMission(cfg, Path(out_dir), preset=preset, relay_overrides=relay_overrides, seed=seed,
                              device_context=device_context, clock=clock, plan=plan)
    try:
        mission.advance(mission.start_s + duration_s, progress)
        mission.drain(drain_max_s)
        summary = mission.summary()
    finally:
        mission.close()
    return summary


def sim_mission(config: VehicleConfig, seed: int, duration_s: float, out_dir: Path,
                preset: str = PRESET_DEFAULT, report: Callable[[str], None] | None = None) -> list[str]:
    """For ``magpie sim``: fly ``config`` (with the simulated world when it has sim:// devices)
    through the relay to the ground archive; prints progress through ``report`` (default: stderr)
    and returns the summary lines."""
    say = report or (lambda text: print(text, file=sys.stderr, flush=True))  # CLI-facing helper
    clock = SimClock()
    context: dict[str, Any] = {}
    if any(url.startswith("sim://") for url in config.devices.values()):
        from sim_hw.world import World

        world = World.for_mission(seed=seed)
        clock = SimClock(start_s=world.time_s)
        clock.on_advance(lambda t_ns: world.step_to(t_ns / NS))
        context["world"] = world
    wall0 = time.monotonic()
    last = [wall0]
    t_start = clock.now()

    def progress(now_s: float) -> None:
        wall = time.monotonic()
        if wall - last[0] >= 2.0:
            last[0] = wall
            done = now_s - t_start
            say(f"  mission {done:.0f} s / {duration_s:.0f} s ({100 * done / duration_s:3.0f}%), "
                f"{done / max(wall - wall0, 1e-9):.0f}x real time")

    # the demo plan goes up from the ground like any command: SEQ_RUN of the stored sequence
    from importlib import resources

    seq_dir = Path(out_dir) / "state" / "sequences"
    seq_dir.mkdir(parents=True, exist_ok=True)
    demo = resources.files("magpie.configs").joinpath("demo.seq")
    (seq_dir / "demo.seq").write_text(demo.read_text(encoding="utf-8"), encoding="utf-8")
    plan = ((5.0, "SEQ_RUN", {"file": "demo.seq"}), *DEFAULT_PLAN)
    say(f"magpie mission: {duration_s:.0f} s through {preset}, seed {seed}, output {out_dir}/")
    summary = run_mission(config, out_dir, duration_s=duration_s, preset=preset, seed=seed,
                          device_context=context, clock=clock, plan=plan, progress=progress)
    return summary.lines()


# ----------------------------------------------------------------------------------------------------
# Real time: three processes.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RealtimeResult:
    """Exit codes, logs and the archive's content after a real-time mission."""

    returncodes: dict[str, int | None]
    archived: Counter[int]
    duplicates_in_archive: int
    stored_last_seq: dict[int, int]
    held_on_board: int
    out_dir: Path
    logs: dict[str, Path]

    def lines(self) -> list[str]:
        return [
            f"Processes     {', '.join(f'{k} exit {v}' for k, v in self.returncodes.items())}",
            f"Archive       {sum(self.archived.values())} packets ({dict(self.archived)}), "
            f"{self.duplicates_in_archive} duplicate keys",
            f"On board      {self.held_on_board} packets held; last sequence counts {self.stored_last_seq}",
            f"Logs          {', '.join(str(p) for p in self.logs.values())}",
        ]


def _python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def realtime_dictionary(config_path: Path, out: Path) -> Path:
    """Assemble the vehicle once (radio on a loop, state in a scratch dir) to write its dictionary."""
    import tempfile

    from flight.dictionary import to_json

    cfg = load_config(config_path)
    dname = comm_config(cfg).devices.get("radio", "radio")
    with tempfile.TemporaryDirectory(prefix="magpie-dict-") as tmp:
        key = ensure_key(Path(tmp) / "keys" / "uplink.key")
        cc = comm_config(cfg)
        comps = tuple(dataclasses.replace(c, options={**c.options, "key_file": str(key)}) if c is cc else c
                      for c in cfg.components)
        cfg = dataclasses.replace(cfg, state_dir=Path(tmp) / "state", components=comps,
                                  devices={**cfg.devices, dname: "radio+loop://dictionary-only?side=vehicle"})
        vehicle = Vehicle(cfg, SimClock())
        try:
            doc = vehicle.dictionary
        finally:
            for c in vehicle.components:
                if isinstance(c, Comm):
                    c.close()
            vehicle.close_devices()
    path = out / "dictionary.json"
    path.write_text(to_json(doc), encoding="utf-8")
    return path


def wait_started(proc: subprocess.Popen[bytes], what: str, ready: Callable[[], bool], waiting_for: str,
                 log_path: Path, timeout_s: float) -> None:
    """Poll (bounded) until ``ready()`` says the process ``proc`` is up; RuntimeError, with the
    tail of its log, if it exits first or is not up within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None:
            tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:] if log_path.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was up; see {log_path}:\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not {waiting_for} within {timeout_s:.0f} s; see {log_path}")
        time.sleep(0.05)  # polling another process's start-up, not waiting for time to pass


class RealtimeMission:
    """Relay, ground and flight processes on 127.0.0.1 (see the module docstring)."""

    def __init__(self, config_path: str | Path, out_dir: str | Path, *, preset: str = "ideal", seed: int = 1,
                 ack_interval_s: float = 0.2) -> None:
        self.config_path = Path(config_path).resolve()
        self.out = Path(out_dir).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.preset = preset
        self.seed = seed
        cfg = load_config(self.config_path)
        if any(url.startswith("sim://") for url in cfg.devices.values()):
            raise ConfigError(f"{self.config_path}: sim:// devices need the lockstep mission")
        self.scid = cfg.spacecraft_id
        self.radio_device = comm_config(cfg).devices.get("radio", "radio")
        self.key_path = ensure_key(self.out / "keys" / "uplink.key")
        self.ports = {k: free_port() for k in ("vehicle", "ground", "pub", "commands")}
        self.dictionary = realtime_dictionary(self.config_path, self.out)
        self.ground_toml = self.out / "ground.toml"
        self.ground_toml.write_text(
            f'archive = "archive.db"\nrelay = "tcp://127.0.0.1:{self.ports["ground"]}"\n'
            f'pub = "tcp://127.0.0.1:{self.ports["pub"]}"\ncommands = "tcp://127.0.0.1:{self.ports["commands"]}"\n'
            f'state_dir = "ground-state"\nack_interval_s = {ack_interval_s}\nretry_interval_s = 10.0\n'
            f'[[vehicle]]\nscid = {self.scid}\nname = "{cfg.name}"\ndictionary = "dictionary.json"\n'
            f'key_file = "keys/uplink.key"\nkey_id = {KEY_ID}\n',
            encoding="utf-8",
        )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self._log_mark: dict[str, int] = {}

    @property
    def vehicle_radio(self) -> str:
        return f"radio+zmq://tcp://127.0.0.1:{self.ports['vehicle']}?scid={self.scid}"

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log_path = self.out / f"{name}.log"
        mode = "ab" if name in self.logs else "wb"
        # a restart appends to the log: its ready line is looked for after what is there
        self._log_mark[name] = log_path.stat().st_size if mode == "ab" else 0
        self.logs[name] = log_path
        with open(log_path, mode) as fh:
            proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=self.out)
        self.procs[name] = proc
        return proc

    #: the line each process prints once it serves (its ``--duration`` counts from there)
    READY = {"relay": "relay: vehicles at ", "ground": "ground: telemetry on ", "flight": " up at spacecraft time "}

    def wait_ready(self, name: str, timeout_s: float = 60.0) -> None:
        """Until ``name``'s log says it serves: a loaded machine can take seconds to start a
        Python process, and a flight started before its link is up would spend its run talking
        to nobody. RuntimeError if it ends first or does not get there."""
        log_path, marker = self.logs[name], self.READY[name].encode()
        skip = self._log_mark.get(name, 0)
        wait_started(self.procs[name], name, lambda: marker in log_path.read_bytes()[skip:],
                     f"print {self.READY[name].strip()!r}", log_path, timeout_s)

    def start_link(self, duration_s: float) -> None:
        """Start the relay and the ground station, each stopping ``duration_s`` after it is up;
        returns once both are up."""
        self._spawn("relay", _python_module(
            "magpie.cli", "relay", "--vehicle-endpoint", f"tcp://127.0.0.1:{self.ports['vehicle']}",
            "--ground-endpoint", f"tcp://127.0.0.1:{self.ports['ground']}", "--preset", self.preset,
            "--seed", str(self.seed), "--stats-interval", "0", "--duration", f"{duration_s:.3f}"))
        self.start_ground(duration_s)
        self.wait_ready("relay")

    def start_ground(self, duration_s: float) -> subprocess.Popen[bytes]:
        """Start (or restart, after a crash) the ground station process over the same archive;
        returns once it serves."""
        proc = self._spawn("ground", _python_module(
            "magpie.cli", "ground", "--config", str(self.ground_toml), "--duration", f"{duration_s:.3f}"))
        self.wait_ready("ground")
        return proc

    def start_flight(self, duration_s: float) -> subprocess.Popen[bytes]:
        """Start (or restart) the flight process; returns once it is up."""
        proc = self._spawn("flight", _python_module(
            "magpie.flightrun", "--config", str(self.config_path), "--state-dir", str(self.out / "state"),
            "--device", f"{self.radio_device}={self.vehicle_radio}", "--duration", f"{duration_s:.3f}"))
        self.wait_ready("flight")
        return proc

    def wait(self, timeout_s: float) -> dict[str, int | None]:
        deadline = time.monotonic() + timeout_s
        codes: dict[str, int | None] = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait(5)
                log.warning("%s did not stop by itself; killed", name)
        return codes

    def result(self, codes: dict[str, int | None]) -> RealtimeResult:
        from flight.link.recorder import Recorder

        with Archive(self.out / "archive.db", readonly=True) as archive:
            rows = archive.packets(self.scid)
        archived = Counter(int(r[1]) for r in rows)
        dups = len(rows) - len({(r[1], r[2]) for r in rows})
        rec = Recorder(self.out / "state" / "recorder.db")
        try:
            last, held = rec.last_seqs(), rec.stats().packets
        finally:
            rec.close()
        return RealtimeResult(codes, archived, dups, last, held, self.out, dict(self.logs))

    def terminate(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def run_realtime_mission(config_path: str | Path, out_dir: str | Path, *, duration_s: float = 10.0,
                         preset: str = "ideal", seed: int = 1, settle_s: float = 3.0) -> RealtimeResult:
    """Relay, ground and flight processes for ``duration_s`` of real time; all stop by themselves.

    The link processes run ``settle_s`` longer than the flight so its last packets are archived.
    """
    m = RealtimeMission(config_path, out_dir, preset=preset, seed=seed)
    try:
        m.start_link(duration_s + settle_s)
        m.start_flight(duration_s)
        codes = m.wait(duration_s + settle_s + 30.0)
    finally:
        m.terminate()
    return m.result(codes)


def summary_json(summary: MissionSummary) -> str:
    doc = dataclasses.asdict(summary)
    doc["stored"] = {str(k): v for k, v in summary.stored.items()}
    doc["archived"] = {str(k): v for k, v in summary.archived.items()}
    return json.dumps(doc, indent=1, default=str)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m magpie.mission``: a lockstep mission, or ``--realtime`` with three processes."""
    import argparse
    from importlib import resources

    p = argparse.ArgumentParser(prog="python -m magpie.mission", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=None,
                   help="vehicle TOML with a comm component (default: sim_mission.toml)")
    p.add_argument("--duration", type=float, default=600.0, help="seconds to fly (default %(default)s)")
    p.add_argument("--preset", default=None, help="relay preset: moon-farside (lockstep default), "
                   "mars-relay, ideal (real-time default)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("magpie-mission"), help="output directory")
    p.add_argument("--realtime", action="store_true", help="relay, ground and flight as processes on real time")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("flight.events").setLevel(logging.ERROR)
    default = "core_mission.toml" if args.realtime else "sim_mission.toml"
    config = args.config or Path(str(resources.files("magpie.configs").joinpath(default)))
    try:
        if args.realtime:
            result = run_realtime_mission(config, args.out, duration_s=args.duration,
                                          preset=args.preset or "ideal", seed=args.seed)
            lines = result.lines()
        else:
            lines = sim_mission(load_config(config), args.seed, args.duration, args.out,
                                args.preset or PRESET_DEFAULT)
    except ConfigError as exc:
        print(f"magpie mission: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__: Sequence[str] = (
    "DEFAULT_PLAN", "LockstepMission", "MissionSummary", "RealtimeMission", "RealtimeResult", "ensure_key",
    "run_mission", "run_realtime_mission", "sim_mission",
)
