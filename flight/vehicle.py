"""Assembling a vehicle from its configuration, and running it.

Assembly order: open the configured devices (or take ones handed in), build the core components
(``sys``, ``exec``, ``cmd``, ``prm``, ``tlm``, ``health``, ``seq``) and the configured ones, check
that every component's declared devices exist and implement the right contract, bind them to
the shared framework, generate the dictionary, load parameters, ``setup()`` each component and
announce the boot. Nothing runs until all of that has succeeded.

Two device names with the same URL are one device, opened once (a lander's MCU is also its
sampling board). A component may also name devices it uses when present (``OPTIONAL_DEVICES``: a watchdog, a
power switch); those are bound only when configured. A component with an ``admit(name)`` method
(fault protection's mode manager) joins the dispatcher's admission checks, so a command can be
REJECTED by mode before it runs without the owning component knowing modes exist.
A component that wants the flight process restarted sets :attr:`Vehicle.restart_requested`
(through ``fw.store["vehicle.restart"]``) and stops the executive; whoever runs the vehicle
(the simulation launcher, the mission, a service manager) starts it again from its state.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flight import dictionary, registry
from flight.clock import Clock
from flight.commands import Dispatcher
from flight.component import Component
from flight.config import ComponentConfig, ConfigError, RateGroupConfig, VehicleConfig
from flight.events import EventLog
from flight.executive import Executive
from flight.framework import Framework
from flight.health import Health
from flight.link.layouts import Group
from flight.outbound import OutboundQueue, Sink
from flight.params import Params, ParamStore
from flight.persist import ensure_private_dir
from flight.sequencer import Sequencer
from flight.system import System
from flight.telemetry import Housekeeping, TlmDb

log = logging.getLogger(__name__)

CORE_BASES = {"sys": 0x0100, "exec": 0x0200, "cmd": 0x0300, "prm": 0x0400, "tlm": 0x0500,
              "health": 0x0600, "seq": 0x0700}
USER_BASE = 0x1000
DEFAULT_GROUPS = (
    RateGroupConfig("control", 50.0, ()),
    RateGroupConfig("nav", 10.0, ()),
    RateGroupConfig("hk", 1.0, ()),
)


class Vehicle:
    """One assembled vehicle: components, framework, executive and dictionary."""

    def __init__(self, config: VehicleConfig, clock: Clock, *,
                 devices: Mapping[str, Any] | None = None,
                 device_context: Mapping[str, Any] | None = None,
                 extra_components: list[Component] | None = None) -> None:
        self.config = config
        self.clock = clock
        state_dir = config.state_dir
        ensure_private_dir(state_dir)  # 0700: the downlink and counters are private
        outbound = OutboundQueue(config.outbound_capacity)
        tlm = TlmDb(clock)
        self.fw = Framework(clock=clock, outbound=outbound, tlm=tlm, events=EventLog(clock, outbound),
                            params=ParamStore(state_dir / "params.json"), state_dir=state_dir,
                            epoch=config.epoch, spacecraft=config.name,
                            spacecraft_id=config.spacecraft_id)
        self.sinks: list[Sink] = []
        self._send_after_flush = False
        self.devices: dict[str, Any] = dict(devices or {})
        self._opened: list[Any] = []
        try:
            self._open_devices(device_context or {})
            self._assemble(extra_components or [])
        except BaseException:
            self.close_devices()
            raise

    # -- assembly -----------------------------------------------------------------------------

    def _open_devices(self, context: Mapping[str, Any]) -> None:
        from hal import HalError, open_device  # hal contracts only; drivers load lazily

        by_url: dict[str, Any] = {}
        for name, url in self.config.devices.items():
            if name in self.devices:
                continue
            if url in by_url:  # one device under two names (a lander's MCU is also its sampling board)
                self.devices[name] = by_url[url]
                continue
            try:
                dev = open_device(url, **context)
            except HalError as exc:
                raise ConfigError(f"devices.{name}: {exc}") from exc
            self.devices[name] = dev
            by_url[url] = dev
            self._opened.append(dev)

    def _make(self, cc: ComponentConfig) -> Component:
        try:
            cls = registry.resolve(cc.type)
        except KeyError as exc:
            raise ConfigError(f"components.{cc.name}.type: {exc.args[0]}") from None
        try:
            comp = cls(cc.name, **cc.options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"components.{cc.name}: {exc}") from None
        optional: dict[str, type] = dict(getattr(cls, "OPTIONAL_DEVICES", {}))
        # required roles default to a device of the same name; optional ones bind only if named
        wanted = [(role, contract, cc.devices[role]) for role, contract in optional.items() if role in cc.devices]
        wanted += [(role, contract, cc.devices.get(role, role)) for role, contract in cls.DEVICES.items()]
        for role, contract, dname in wanted:
            dev = self.devices.get(dname)
            if dev is None:
                need = "" if role in optional else f"needs a {contract.__name__}; "
                raise ConfigError(f"components.{cc.name}.devices.{role}: {need}no device named {dname!r} "
                                  f"(have: {', '.join(self.devices) or 'none'})")
            if not isinstance(dev, contract):
                raise ConfigError(f"components.{cc.name}.devices.{role}: device {dname!r} "
                                  f"({type(dev).__name__}) is not a {contract.__name__}")
            comp.devices[role] = dev
        roles = {**cls.DEVICES, **optional}
        unknown_roles = set(cc.devices) - set(roles)
        if unknown_roles:
            raise ConfigError(f"components.{cc.name}.devices.{sorted(unknown_roles)[0]}: "
                              f"{cls.__name__} takes no such device role (roles: {', '.join(roles) or 'none'})")
        return comp

    def _assemble(self, extra: list[Component]) -> None:
        fw = self.fw
        self.system = System("sys")
        self.executive = Executive("exec")
        self.dispatcher = Dispatcher("cmd")
        core: list[Component] = [self.system, self.executive, self.dispatcher, Params("prm"),
                                 Housekeeping("tlm"), Health("health"),
                                 Sequencer("seq", engines=list(self.config.sequences))]
        for c in core:
            c.id_base = CORE_BASES[c.name]
        user = [self._make(cc) for cc in self.config.components]
        for i, (cc, comp) in enumerate(zip(self.config.components, user, strict=True)):
            comp.id_base = cc.id_base if cc.id_base is not None else USER_BASE + i * 0x100
        for i, comp in enumerate(extra):
            if comp.id_base is None:
                comp.id_base = USER_BASE + (len(user) + i) * 0x100
        # a component may bring dictionary-only children with their own ids (hosted payloads)
        children = [ch for comp in user + extra for ch in getattr(comp, "children", list)()]
        self.components: list[Component] = core + user + extra + children
        by_name: dict[str, Component] = {}
        for c in self.components:
            if c.name in by_name:
                raise ConfigError(f"components.{c.name}: the name is already taken"
                                  f"{' by a core component' if c.name in CORE_BASES else ''}")
            by_name[c.name] = c
        self.by_name = by_name
        fw.cmd = self.dispatcher
        fw.executive = self.executive
        fw.store["vehicle.downlink_now"] = self.downlink_now  # fault protection's last word

        groups = self.config.rate_groups or DEFAULT_GROUPS
        placed = {m for g in groups for m in g.members}
        for m in placed:
            if m not in by_name:
                raise ConfigError(f"rate_groups: member {m!r} is not a component "
                                  f"(have: {', '.join(by_name)})")
        ordered = sorted(groups, key=lambda g: -g.hz)
        mid = min(ordered, key=lambda g: abs(g.hz - 10.0))
        slow = ordered[-1]
        auto = {"cmd": mid, "seq": mid, "tlm": slow, "health": slow, "sys": slow}
        members: dict[str, list[str]] = {g.name: list(g.members) for g in groups}
        for name, group in auto.items():
            if name not in placed:
                members[group.name].append(name)
        unplaced = [c.name for c in user + extra if c.name not in placed]
        for name in unplaced:
            log.info("component %s is in no rate group; it will not be stepped", name)

        for c in self.components:
            c.bind(fw)
        for g in groups:
            self.executive.add_group(g.name, g.hz, [by_name[m] for m in members[g.name]], g.budget_frac)

        try:
            placing = [Group(g.name, g.hz, tuple(members[g.name])) for g in groups]
            self.dictionary = dictionary.build(self.components, self.config.name, self.config.spacecraft_id,
                                               placing)
        except ValueError as exc:
            raise ConfigError(f"{self.config.source}: {exc}") from None
        ids = iter(self.dictionary["channels"])
        evs = iter(self.dictionary["events"])
        prms = iter(self.dictionary["params"])
        cmds = iter(self.dictionary["commands"])
        for c in self.components:
            for ch in c.channels():
                fw.tlm.declare(next(ids)["id"], f"{c.name}.{ch.name}", ch)
            for ev in c.events():
                fw.events.declare(next(evs)["id"], c.name, ev)
            for p in c.params():
                fw.params.declare(next(prms)["id"], f"{c.name}.{p.name}", p, c.on_param)
            for _, handler in c.commands():
                self.dispatcher.register(next(cmds), handler, c.name)
            admit = getattr(c, "admit", None)
            if callable(admit):
                self.dispatcher.admission.append(admit)
        fw.params.load()
        fw.store["vehicle.dictionary"] = self.dictionary  # Comm packs housekeeping by its layouts
        for c in self.components:
            c.setup()
        self.system.announce(self.dictionary["hash"])

    # -- running ------------------------------------------------------------------------------

    @property
    def restart_requested(self) -> str | None:
        """The reason fault protection asked for the flight process to be restarted, or None."""
        reason = self.fw.store.get("vehicle.restart")
        return str(reason) if reason else None

    def add_sink(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def flush(self) -> int:
        """Move everything queued for downlink to the sinks; returns the item count."""
        items = self.fw.outbound.drain()
        if items:
            for sink in self.sinks:
                sink.write(items)
        if self._send_after_flush:
            self._send_after_flush = False
            self._send_links()
        return len(items)

    def downlink_now(self) -> int:
        """The last word of a vehicle about to go silent (fault protection calls it through
        ``fw.store["vehicle.downlink_now"]``): flush into the recorder and have every link send
        at once; the next flush sends again, for what the present cycle still adds (the final
        response of the command that put the vehicle to sleep). Returns the packets sent."""
        self.flush()
        sent = self._send_links()
        self._send_after_flush = True
        return sent

    def _send_links(self) -> int:
        sent = 0
        for c in self.components:
            send_now = getattr(c, "send_now", None)
            if callable(send_now):
                sent += int(send_now())
        return sent

    def run(self, until_s: float | None = None, flush_every_s: float = 1.0) -> None:
        """Run the executive, flushing outbound items to the sinks every ``flush_every_s``."""
        ex = self.executive
        if until_s is None:
            while True:
                ex.run(until_s=self.clock.now() + flush_every_s)
                self.flush()
                if ex.stopping:
                    return
        # Compare on the nanosecond grid the executive uses: a float such as 1.0 + 0.2 lies just
        # above 1.2 s and would otherwise never be reached.
        until_ns = int(round(until_s * 1e9))
        while self.clock.now_ns() < until_ns and not ex.stopping:
            ex.run(until_s=min(until_ns, self.clock.now_ns() + int(round(flush_every_s * 1e9))) / 1e9)
            self.flush()

    def shutdown(self, close_sinks: bool = True) -> None:
        """Clean stop: finish workers, let components persist, flush, close sinks and devices.

        ``close_sinks=False`` leaves the sinks open for the vehicle that restarts after this one.
        """
        self.executive.stop_workers()
        for c in reversed(self.components):
            try:
                c.shutdown()
            except Exception:
                log.exception("shutdown of %s failed", c.name)
        self.flush()
        if close_sinks:
            for sink in self.sinks:
                sink.close()
        self.close_devices()

    def close_devices(self) -> None:
        for dev in self._opened:
            try:
                dev.close()
            except Exception:
                log.exception("closing %r failed", dev)
        self._opened.clear()
