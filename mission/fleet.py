"""Several vehicles on one site, one relay and one ground station, on the simulated clock.

:class:`FleetMission` flies a :class:`~mission.scenario.MissionScenario`: a
:class:`~sim_hw.site.Site` (one terrain, one world per vehicle), one
:class:`~sim_hw.relay.SharedRelay` (per-vehicle hops, one transponder), a flight
:class:`~flight.vehicle.Vehicle` per spacecraft, and one :class:`~ground.station.Station` with
its :class:`~ground.commander.Commander` over one archive.

**Time.** Each vehicle runs on its own :class:`~flight.clock.SimClock`, which steps its own
world; all of them and the ground advance together in ticks (``tick_s``): every vehicle's
executive runs to the end of the tick, then the ground takes what arrived and answers. A run is
deterministic for a scenario and seed.

**Fast mode** (``fast=True``): the world moves power and heat in 60 s steps, fault protection
slows the rate groups while a vehicle is idle, and the mission skips idle spans: when no vehicle
is driving, no frame is in flight, nothing waits on board or on the ground, and no command is
due, every clock jumps to the next event (a plan's command, the next pass, a sequence's time
tag, a monitor or link deadline), stepping the vehicles in long cycles on the way.

**Output** (``out_dir``): ``archive.db`` (the ground archive), ``ground.toml`` (for ``magpie
tlm/events/images --config``), one ``<vehicle>/`` directory per vehicle with its state and
``dictionary.json``, and ``keys/uplink.key`` shared by the vehicles of the demo.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flight.clock import NS, SimClock
from flight.components.comm import Comm, attach
from flight.config import ConfigError, VehicleConfig
from flight.link.auth import Signer, load_key
from flight.link.packets import PAYLOAD_APIDS, Apid, peek
from flight.vehicle import Vehicle
from ground.archive import Archive
from ground.commander import Commander, CommandRecord
from ground.dictionary import Dictionary
from ground.station import Station
from ground.station import Vehicle as GroundVehicle
from hal.radio import LoopRadio, open_loop_radio
from mission.lockstep import KEY_ID, comm_config, ensure_key, radio_url
from mission.scenario import MissionScenario, VehiclePlan
from mission.solo import fast_config
from sim_hw.relay import RelayPort, SharedRelay
from sim_hw.site import Site
from sim_hw.world import World

log = logging.getLogger(__name__)

#: world overrides of fast mode: power and heat are slow processes, a minute is a fine step
FAST_WORLD = {"slow_dt_s": 60.0}
#: the longest idle span fast mode crosses in one step of the mission loop
MAX_SKIP_S = 1800.0
#: events of a sample-return lander the run's summary lists
SAMPLING_MILESTONES = ("DrillDepthReached", "DrillJammed", "DrillOverheat", "SeqContingency", "ContainerSealed",
                       "AscentArmed")


@dataclass
class Craft:
    """One spacecraft of the fleet: its plan, world, clock, flight vehicle and link ends."""

    plan: VehiclePlan
    world: World
    clock: SimClock
    port: RelayPort
    config: VehicleConfig
    context: dict[str, Any]
    vehicle: Vehicle
    comm: Comm
    ground_radio: LoopRadio
    boots: int = 1
    stored: Counter[int] = field(default_factory=Counter)

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def scid(self) -> int:
        return self.plan.scid


@dataclass
class VehicleSummary:
    """What one vehicle did in a fleet run, from the ground archive and the relay."""

    name: str
    scid: int
    kind: str
    stored: int
    archived: int
    archived_by_apid: dict[str, int]
    held_on_board: int
    boots: int
    mode: str
    commands: Counter[str]
    events: int
    goal_reached: int
    products_complete: int
    products_partial: int
    link: dict[str, dict[str, int]]
    truth: str
    #: hosted payloads' products on the ground: (payload, APID) -> (complete, partial)
    payload_products: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    #: a sample-return lander's milestones as the ground archived them: (event name, time s, text)
    sampling: list[tuple[str, float, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        cmds = ", ".join(f"{k} {v}" for k, v in sorted(self.commands.items())) or "none"
        d, u = self.link.get("down", {}), self.link.get("up", {})
        out = [
            f"{self.name} (scid {self.scid}, {self.kind})",
            f"  downlink    {self.archived} packets archived of {self.stored} stored "
            f"({', '.join(f'{k} {v}' for k, v in sorted(self.archived_by_apid.items()))}); "
            f"{self.held_on_board} held on board; {self.boots} boot(s); mode {self.mode}",
            f"  commands    {cmds}; {self.events} events archived"
            + (f"; GoalReached {self.goal_reached}" if self.kind == "rover" else ""),
            f"  images      {self.products_complete} complete, {self.products_partial} partial on the ground",
            *(f"  payload     {name} (APID {apid:#05x}): {whole} products complete, {part} partial on the ground"
              for (name, apid), (whole, part) in sorted(self.payload_products.items())),
            f"  relay       down sent {d.get('sent', 0)} delivered {d.get('delivered', 0)} blocked "
            f"{d.get('blocked', 0)} lost {d.get('lost', 0)}; up sent {u.get('sent', 0)} delivered "
            f"{u.get('delivered', 0)} held at the relay {u.get('stored', 0)}",
            *(f"  sampling    t={t:.1f} s {name}: {text}" for name, t, text in self.sampling),
            f"  truth       {self.truth}",
        ]
        return out


@dataclass
class FleetSummary:
    scenario: str
    seed: int
    sim_s: float
    wall_s: float
    drained: bool
    vehicles: list[VehicleSummary]
    relay_lines: list[str]
    archive_path: str
    skipped_s: float = 0.0

    def lines(self) -> list[str]:
        rate = self.sim_s / max(self.wall_s, 1e-9)
        out = [f"Scenario      {self.scenario}, seed {self.seed}: {self.sim_s:.0f} s simulated in {self.wall_s:.1f} s "
               f"wall ({rate:.0f}x)" + (f", {self.skipped_s:.0f} s of idle skipped" if self.skipped_s else "")
               + ("; link drained" if self.drained else "; link not drained")]
        for v in self.vehicles:
            out += v.lines()
        out += ["Relay         " + line for line in self.relay_lines]
        out.append(f"Archive       {self.archive_path}")
        return out


def _has_sampling(plan: VehiclePlan) -> bool:
    """Whether a vehicle carries sampling mechanisms (a sampling table or a sim://sampling device)."""
    return plan.sampling is not None or any(url.startswith("sim://sampling") for url in plan.config.devices.values())


def _payload_name(meta: Any) -> str | None:
    """The ``payload`` named in a product chunk's archived metadata (None if absent or unreadable)."""
    try:
        body = json.loads(meta) if meta else None
    except (TypeError, ValueError):
        return None
    name = body.get("payload") if isinstance(body, dict) else None
    return str(name) if name else None


class FleetMission:
    """A scenario's vehicles, relay and ground in lockstep (see the module docstring)."""

    def __init__(self, scenario: MissionScenario, out_dir: Path, *, seed: int | None = None, fast: bool = False,
                 tick_s: float | None = None, ack_interval_s: float = 1.0, archive_path: Path | None = None,
                 skip_idle: bool = True, faults: tuple[str, ...] = ()) -> None:
        self.scenario = scenario
        self.faults = tuple(faults)
        self._check_faults(scenario, self.faults)
        self.seed = scenario.world.seed if seed is None else int(seed)
        self.fast = fast
        self.skip_idle = skip_idle
        self.tick_s = tick_s if tick_s is not None else (5.0 if fast else 0.1)
        self.flush_every_s = 5.0 if fast else 1.0
        self.out = Path(out_dir).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.archive_path = Path(archive_path) if archive_path is not None else self.out / "archive.db"
        self.key_path = ensure_key(self.out / "keys" / "uplink.key")
        self.downlink_key_path = ensure_key(self.out / "keys" / "downlink.key")  # a key per direction
        self.site = Site(scenario.world, [v.site_vehicle() for v in scenario.vehicles], seed=self.seed,
                         **(FAST_WORLD if fast else {}))
        self.relay = SharedRelay(scenario.relay, seed=self.seed)
        p = scenario.relay
        self.rtt_s = 2.0 * (p.light_time_s + max([p.hop_delay_s] + [v.hop_delay_s or 0.0 for v in scenario.vehicles]))
        self.crafts: dict[int, Craft] = {}
        start = self.site.time_s
        for plan in scenario.vehicles:
            self.relay.add_vehicle(plan.scid, plan.hop_delay_s, plan.windows)
            self.crafts[plan.scid] = self._build(plan, start, ack_interval_s)
        self._inject(self.faults)
        self.archive = Archive(self.archive_path)
        state = self.out / "ground-state"
        state.mkdir(parents=True, exist_ok=True)
        ground = []
        for c in self.crafts.values():
            signer = Signer(load_key(self.key_path, KEY_ID), state / f"uplink-{c.scid}.json")
            ground.append(GroundVehicle(c.scid, Dictionary.from_obj(c.vehicle.dictionary), signer, c.name,
                                        downlink_key=load_key(self.downlink_key_path, KEY_ID)))
        period = max((sched.period_s for sched in [p.windows, *(v.windows for v in scenario.vehicles if v.windows)]),
                     default=0.0)
        self.station = Station(self.archive, ground, uplink=self._uplink, ack_interval_s=ack_interval_s,
                               link_timeout_s=max(10.0, self.rtt_s + 5.0),
                               nak_retry_s=max(10.0, self.rtt_s + 2 * ack_interval_s + 3.0, period),
                               received_on_clock=True, ack_repeats=3 if period else 1)
        self.commander = Commander(self.station, retry_interval_s=max(60.0, 2 * self.rtt_s + 30.0, period),
                                   default_timeout_s=max(3600.0, 4 * self.rtt_s, 3 * period))
        self.now = start
        self.start_s = start
        self.plan: list[tuple[float, int, str, dict[str, Any]]] = sorted(
            ((start + v.plan_at_s, v.scid, "SEQ_RUN", {"file": v.plan.name}) for v in scenario.vehicles if v.plan),
            key=lambda e: (e[0], e[1]))
        self.sent: list[CommandRecord] = []
        #: (ground time, scid, bytes) of every frame the ground antenna took in
        self.received: list[tuple[float, int, int]] = []
        #: (ground time, scid, frame) of the last uplink frames the ground antenna sent (TCs and
        #: link control), so a run can tell when each one reached its vehicle
        self.uplinked: deque[tuple[float, int, bytes]] = deque(maxlen=100_000)
        self.wall_s = 0.0
        self.skipped_s = 0.0
        self.drained = False
        self._next_flush = start + self.flush_every_s
        self._write_ground_toml()

    # -- building ---------------------------------------------------------------------------------

    def _build(self, plan: VehiclePlan, start: float, ack_interval_s: float) -> Craft:
        cfg = plan.config
        try:
            url = radio_url(cfg)
            cc = comm_config(cfg)
        except ConfigError as exc:
            raise ConfigError(f"vehicle {plan.name}: {exc}") from None
        if not url.startswith("radio+loop://"):
            raise ConfigError(f"vehicle {plan.name}: the mission needs a radio+loop:// radio, not {url!r}")
        dname = cc.devices.get("radio", "radio")
        link = f"radio+loop://{self.scenario.name}-{plan.scid}-{id(self)}?side=vehicle&carrier=1"
        resend = max(float(cc.options.get("resend_timeout_s", Comm.OPTIONS["resend_timeout_s"])),
                     self.rtt_s + 2 * ack_interval_s + 5.0)
        options = {**cc.options, "key_file": str(self.key_path), "key_id": KEY_ID, "resend_timeout_s": resend,
                   "downlink_key_file": str(self.downlink_key_path), "downlink_key_id": KEY_ID}
        comps = tuple(dataclasses.replace(c, options=options) if c is cc else c for c in cfg.components)
        home = self.out / plan.name
        cfg = dataclasses.replace(cfg, state_dir=home / "state", components=comps, devices={**cfg.devices, dname: link})
        if self.fast:
            cfg = fast_config(cfg)
        for stored in ([plan.plan] if plan.plan is not None else []) + list(plan.sequences):
            seqs = home / "state" / "sequences"
            seqs.mkdir(parents=True, exist_ok=True)
            (seqs / stored.name).write_text(stored.read_text(encoding="utf-8"), encoding="utf-8")
        world = self.site[plan.name]
        clock = SimClock(start_s=start)
        clock.on_advance(lambda t_ns, w=world: w.step_to(t_ns / NS))
        port = self.relay.port(plan.scid)
        context = {"world": world, "relay": port, "clock": clock.now}
        craft = Craft(plan, world, clock, port, cfg, context, *self._boot(cfg, clock, context),
                      ground_radio=open_loop_radio(link.replace("side=vehicle&carrier=1", "side=ground"), relay=port,
                                                   clock=clock.now))
        craft.comm.store_listeners.append(lambda pkts, c=craft: self._stored(c, pkts))
        from flight.dictionary import to_json

        (home / "dictionary.json").write_text(to_json(craft.vehicle.dictionary), encoding="utf-8")
        return craft

    @staticmethod
    def _check_faults(scenario: MissionScenario, faults: tuple[str, ...]) -> None:
        """Refuse (ValueError, one line) a fault that is unknown or hits nothing in this scenario."""
        from sim_hw.sampling import FAULTS

        for fault in faults:
            if fault not in FAULTS:
                raise ValueError(f"unknown fault {fault!r}; faults: {', '.join(FAULTS)}")
            if not any(_has_sampling(v) for v in scenario.vehicles):
                raise ValueError(f"fault {fault}: no vehicle of {scenario.name} has a drill")

    def _inject(self, faults: tuple[str, ...]) -> None:
        """Seed world faults (``--fault``) into every vehicle that has the mechanism they hit."""
        for fault in faults:
            for c in self.crafts.values():
                if c.world.sampling is not None:
                    c.world.sampling.inject(fault)
                    log.warning("%s: fault %s seeded", c.name, fault)

    @staticmethod
    def _boot(cfg: VehicleConfig, clock: SimClock, context: dict[str, Any]) -> tuple[Vehicle, Comm]:
        vehicle = Vehicle(cfg, clock, device_context=context)
        return vehicle, attach(vehicle)[0]

    @staticmethod
    def _stored(craft: Craft, packets: list[bytes]) -> None:
        for p in packets:
            craft.stored[peek(p)[0]] += 1

    def _uplink(self, scid: int, frame: bytes) -> None:
        self.uplinked.append((self.now, scid, bytes(frame)))
        self.crafts[scid].ground_radio.send(frame)

    def _write_ground_toml(self) -> None:
        lines = ["# Written by magpie sim --scenario: the ground side of this run, for magpie tlm / events / images.",
                 f'archive = "{self.archive_path}"', 'state_dir = "ground-state"']
        for c in self.crafts.values():
            lines += ["[[vehicle]]", f"scid = {c.scid}", f'name = "{c.name}"',
                      f'dictionary = "{c.name}/dictionary.json"', 'key_file = "keys/uplink.key"', f"key_id = {KEY_ID}",
                      'downlink_key_file = "keys/downlink.key"', f"downlink_key_id = {KEY_ID}"]
        (self.out / "ground.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _reboot(self, craft: Craft) -> None:
        """Restart a vehicle's flight process as its fault protection asked, over the same state."""
        old = craft.vehicle
        log.warning("%s: restarting the flight process: %s", craft.name, old.restart_requested)
        keep = [s for s in old.sinks if not isinstance(s, Comm)]
        old.flush()
        old.shutdown(close_sinks=False)
        craft.comm.close()
        craft.vehicle, craft.comm = self._boot(craft.config, craft.clock, craft.context)
        craft.comm.store_listeners.append(lambda pkts, c=craft: self._stored(c, pkts))
        for sink in keep:
            craft.vehicle.add_sink(sink)
        craft.boots += 1

    # -- stepping ---------------------------------------------------------------------------------

    def send(self, scid: int, name: str, args: dict[str, Any] | None = None) -> CommandRecord:
        """Send a command to one vehicle from the ground now (through the relay)."""
        if scid not in self.crafts:
            raise KeyError(f"no spacecraft {scid}; vehicles: {self.scenario.roster()}")
        rec = self.commander.send(scid, name, dict(args or {}), self.now)
        self.sent.append(rec)
        return rec

    def ground_step(self) -> None:
        for c in self.crafts.values():
            while (frame := c.ground_radio.recv()) is not None:
                self.received.append((self.now, c.scid, len(frame)))
                self.station.receive(frame, self.now)
        self.station.poll(self.now)
        self.commander.poll(self.now)

    def _idle_until(self, until_s: float) -> float | None:
        """In fast mode, how far every clock may jump at once (None: step one tick).

        Idle means: no vehicle's wheels turn and no vehicle has a sequence running, and no
        vehicle holds packets it could send now (its hop is down, or its recorder is empty).
        The jump ends at the first of: the run's end, the next planned command, the next frame
        arriving anywhere, the next pass of a vehicle holding packets, and :data:`MAX_SKIP_S`.
        Inside the jump each executive still runs its (slowed) rate groups, so time tags and
        monitors act on time; only the ground is stepped less often.
        """
        if not (self.fast and self.skip_idle):
            return None
        nxt = [until_s, self.now + MAX_SKIP_S]
        if self.plan:
            nxt.append(self.plan[0][0])
        due = self.relay.next_due()
        if due is not None:
            nxt.append(due)
        for c in self.crafts.values():
            rec = c.comm.recorder
            if not c.world.vehicle.quiescent or rec is None:
                return None
            if c.vehicle.fw.tlm.get("seq.state"):
                return None
            if rec.stats().packets:
                if self.relay.visible(self.now, c.scid):
                    return None  # something to send and the link is up
                t_pass = self.relay.next_pass(self.now, c.scid)
                if t_pass is not None:
                    nxt.append(t_pass)
        target = min(nxt)
        return target if target > self.now + 2 * self.tick_s else None

    def advance(self, until_s: float, progress: Callable[[float], None] | None = None) -> None:
        """Fly every vehicle, the relay and the ground to spacecraft time ``until_s``."""
        wall0 = time.monotonic()
        while self.now < until_s - 1e-9:
            while self.plan and self.plan[0][0] <= self.now + 1e-9:
                _, scid, name, args = self.plan.pop(0)
                self.send(scid, name, args)
            t_next = min(until_s, self.now + self.tick_s)
            jump = self._idle_until(until_s)
            if jump is not None:
                for c in self.crafts.values():
                    c.vehicle.flush()
                self.skipped_s += jump - t_next
                t_next = jump
            for c in self.crafts.values():
                ex = c.vehicle.executive
                ex.run(until_s=t_next)
                if ex.stopping and c.vehicle.restart_requested:
                    self._reboot(c)
                    c.vehicle.executive.run(until_s=t_next)
            self.now = t_next
            if self.now >= self._next_flush - 1e-9:
                for c in self.crafts.values():
                    c.vehicle.flush()
                self._next_flush = self.now + self.flush_every_s
            self.ground_step()
            if progress is not None:
                progress(self.now)
        for c in self.crafts.values():
            c.vehicle.flush()
        self.wall_s += time.monotonic() - wall0

    def drain(self, max_s: float = 3600.0) -> bool:
        """Vehicles stopped, run only the link until every recorder is empty (or ``max_s``)."""
        wall0 = time.monotonic()
        t0 = self.now
        self.drained = False
        while self.now - t0 < max_s:
            busy = False
            for c in self.crafts.values():
                c.vehicle.flush()
                rec = c.comm.recorder
                if rec is not None and (rec.stats().packets or len(c.vehicle.fw.outbound)):
                    busy = True
            if not busy:
                self.drained = True
                break
            self.now += self.tick_s
            for c in self.crafts.values():
                c.clock.advance_to(int(round(self.now * NS)))
                c.comm.pump(self.now)
            self.ground_step()
        self.wall_s += time.monotonic() - wall0
        return self.drained

    # -- results ----------------------------------------------------------------------------------

    def vehicle_summary(self, craft: Craft) -> VehicleSummary:
        names = {int(a): a.name.lower() for a in Apid}
        rows = self.archive.packets(craft.scid)
        by_apid = Counter(names.get(int(r[1]), hex(int(r[1]))) for r in rows)
        commands = Counter(str(c["stage"]) for c in self.archive.commands(craft.scid))
        events = self.archive.events(craft.scid)
        mode_channel = self.archive.channel_id(craft.scid, "fault.mode_name")
        latest = self.archive.latest(craft.scid, mode_channel) if mode_channel is not None else None
        chunks = self.archive.product_chunks(craft.scid)
        seen: dict[tuple[int, int], tuple[int, set[int]]] = {}
        owner: dict[int, str] = {}
        for _, apid, pid, idx, n, _data, meta, *_rest in chunks:
            total, got = seen.setdefault((pid, apid), (n, set()))
            got.add(idx)
            if apid in PAYLOAD_APIDS and apid not in owner and (name := _payload_name(meta)):
                owner[apid] = name
        payload_products: dict[tuple[str, int], tuple[int, int]] = {}
        for (_pid, apid), (n, got) in seen.items():
            if apid in PAYLOAD_APIDS:
                key = (owner.get(apid, "?"), int(apid))
                whole, part = payload_products.get(key, (0, 0))
                payload_products[key] = (whole + 1, part) if len(got) == n else (whole, part + 1)
        full = {pid for (pid, apid), (n, got) in seen.items() if apid == int(Apid.PRODUCT) and len(got) == n}
        partial = {pid for (pid, apid), (n, got) in seen.items() if apid == int(Apid.PRODUCT) and len(got) < n}
        rec = craft.comm.recorder
        return VehicleSummary(
            name=craft.name, scid=craft.scid, kind=craft.plan.kind, stored=sum(craft.stored.values()),
            archived=len(rows), archived_by_apid=dict(by_apid),
            held_on_board=rec.stats().packets if rec is not None else 0, boots=craft.boots,
            mode=str(latest[1]) if latest else "?", commands=commands, events=len(events),
            goal_reached=sum(1 for e in events if e.name == "GoalReached"),
            products_complete=len(full), products_partial=len(partial),
            link=self.relay.stats_dict(craft.scid), truth=craft.world.summary(), payload_products=payload_products,
            sampling=[(e.name, float(e.time), e.text) for e in events if e.name in SAMPLING_MILESTONES])

    def summary(self) -> FleetSummary:
        return FleetSummary(self.scenario.name, self.seed, self.now - self.start_s, self.wall_s, self.drained,
                            [self.vehicle_summary(c) for c in self.crafts.values()], self.relay.report_lines(),
                            str(self.archive_path), self.skipped_s)

    def close(self) -> None:
        for c in self.crafts.values():
            c.vehicle.shutdown()
            c.ground_radio.close()
        self.station.close()
        self.archive.close()


def fly_scenario(scenario: MissionScenario, out_dir: Path, duration_s: float, *, seed: int | None = None,
                 fast: bool = False, drain_max_s: float = 1800.0,
                 progress: Callable[[float], None] | None = None, faults: tuple[str, ...] = ()) -> FleetSummary:
    """Fly ``scenario`` for ``duration_s``, drain the link, close, and return the summary."""
    mission = FleetMission(scenario, out_dir, seed=seed, fast=fast or scenario.fast, faults=faults)
    try:
        mission.advance(mission.start_s + duration_s, progress)
        mission.drain(drain_max_s)
        return mission.summary()
    finally:
        mission.close()
