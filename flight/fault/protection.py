"""Fault protection: the mode manager, the monitors, their responses, hibernation and the watchdog.

One component (type ``fault``, instance name usually ``fault``) placed in the slow housekeeping
group. Each cycle it

1. evaluates every enabled monitor that applies in the present mode (:mod:`flight.fault.monitors`),
2. arbitrates the responses requested (:mod:`flight.fault.responses`) and carries out one,
3. kicks the hardware watchdog if the executive is healthy (no critical member isolated, no
   health item silent past its fatal timeout), and
4. writes its telemetry: mode, per-monitor state and trip counts, response and watchdog counters.

**Modes** (:mod:`flight.fault.modes`) change by command (``MODE_SET``), by a response, by
hibernation and waking, and at boot; every change is a ``ModeChanged`` event with its cause and is
persisted at once. Commands named in the ``gated`` option (motion, by default) are refused with a
reason outside the modes listed for them; stop commands are never gated.

**Mode tables.** The modes are the vehicle kind's (the ``mode_table`` option,
:func:`flight.fault.modes.build_table`): the rover's by default; a lander adds SURFACE, SAMPLING
and ASCENT_PREP. ``MODE_SET`` takes the table's modes, and a monitor left to its default modes runs
in every awake mode of the table.

**Critical sequences.** While a sequence marked ``critical`` runs (``seq.critical`` in the data
store lists its engines), a tripped monitor is weighed by its ``critical`` key: ``sequence`` goes
to that sequence's contingency (``FaultToContingency``; ``seq.contingency`` switches it) instead of
its response; ``defer`` is held (``FaultDeferred``) until no critical sequence runs, then carried
out if the monitor is still tripped (``FaultReleased``); ``survival`` (power, thermal, tilt, a
silent executive) is answered at once, and a response that raises the mode also stops the
critical sequences (``CriticalStopped``), whose commands would not run in SAFE. A ``sequence``
fault with no contingency left to switch to is held like ``defer``.

**Boot.** The state file (``fault.json``) says how the last run ended. First boot: the configured
``boot_mode``. After a fault-protection restart or an unclean end (power loss, kill -9, watchdog):
SAFE. After a clean shutdown: the mode it had (hibernation resumes).

**Hibernation** sheds loads through the power device (``switch_load("avionics", False)``),
lowers the survival heater's thermostat, suspends every rate group but this component's, which
runs every ``hibernate_period_s`` as the wake check, and suspends the watchdog. The heater may
spend the battery down to ``hib_heater_floor_soc`` and no further (then it is switched off: the
energy budget); the vehicle wakes into SAFE when the panel gives ``wake_solar_w`` again or at the
commanded time. In simulation the wake check stands in for the power board's wake comparator and
timer, which on hardware run while the flight computer is off.

**The last word.** Before the vehicle goes silent by itself (hibernation, which stops the link's
rate group, or a restart, which ends the process) it says why: a ``GoingSilent`` event
("hibernating until solar input reaches 12 W ...: battery_critical ...") is raised, the outbound
queue is flushed into the onboard recorder and the link is asked to send at once
(``vehicle.downlink_now`` in the data store, which the vehicle assembly provides). Events go
first on the link, so the reason reaches the ground before the silence does; the recorder holds
the packet until the ground acknowledges it, so a reason that did not get through goes again
when the vehicle wakes or comes back. The ground's commander ends the commands it is waiting
on with the reason instead of waiting out their timeouts.

**Fast mode** (``fast = true``, a simulation option): while the vehicle is idle in SAFE or
STANDBY (wheels still, no sequence running) every rate group runs once per ``idle_period_s``,
and the watchdog is suspended; a working mode or a sequence bring the configured rates back (a
sequence at once, through ``fault.busy`` in the data store, so its first steps are on time). It
lets a whole lunar day be simulated in minutes; monitor persistence is then counted in those
slower samples.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from flight.commands import CommandFailed
from flight.component import Component
from flight.fault.modes import Mode, build_table
from flight.fault.monitors import ACTIVE_MODES, Monitor, MonitorSpec, MonitorState, parse_monitors
from flight.fault.responses import TARGET_MODE, Response, arbitrate
from flight.model import Arg, Channel, CommandDef, Event, Param, Severity, command
from flight.persist import CorruptFileError, read_checked_json, write_checked_json
from hal.contracts import PowerMonitor, Watchdog
from hal.errors import HalError

log = logging.getLogger(__name__)

STATE_FORMAT = "magpie-fault/1"
STOP_COMMANDS = ("DRIVE_STOP", "NAV_STOP")
DEFAULT_GATED = {"DRIVE_SET_*": ["DRIVE"], "DRIVE_ARC*": ["DRIVE"], "NAV_GOTO*": ["DRIVE"],
                 "NAV_WAYPOINTS*": ["DRIVE"], "NAV_DRIVE*": ["DRIVE"]}


class FaultProtection(Component):
    OPTIONAL_DEVICES = {"watchdog": Watchdog, "power": PowerMonitor}
    OPTIONS = {
        "boot_mode": "STANDBY",  # the mode of a first boot
        "monitors": {},  # changes to the built-in monitors and new ones (see flight.fault.monitors)
        "builtins": True,  # start from the built-in monitor table
        "gated": DEFAULT_GATED,  # command name pattern -> modes in which it may run
        "critical_members": ["cmd", "tlm", "health"],  # isolated: the watchdog is no longer kicked
        "fast": False,  # simulation: slow every group while idle (see the module docstring)
        "idle_period_s": 60.0,
        "hibernate_period_s": 600.0,
        "mode_table": {},  # this vehicle kind's modes (flight.fault.modes.build_table); {}: the rover's
    }
    PARAMS = (
        Param("max_restarts", "u8", 3, min=0, max=20, doc="restarts allowed within the window"),
        Param("restart_window_s", "f64", 3600.0, "s", min=1.0, max=1e7,
              doc="window of the reboot-loop limit"),
        Param("wake_solar_w", "f32", 12.0, "W", min=0.1, max=1000.0,
              doc="solar input that wakes a hibernating vehicle (above the awake load, so it charges)"),
        Param("wake_min_soc", "f32", 0.35, min=0.0, max=1.0,
              doc="state of charge a hibernating vehicle needs before it wakes on solar input "
                  "(above battery_low, so waking does not trip it)"),
        Param("hib_heater_floor_soc", "f32", 0.6, min=0.0, max=1.0,
              doc="state of charge below which the hibernation heaters are switched off: what is "
                  "left must carry the wake circuit through the night"),
        Param("hib_heater_on_c", "f32", -40.0, "degC", min=-150.0, max=50.0,
              doc="survival heater switches on below this while hibernating"),
        Param("hib_heater_off_c", "f32", -30.0, "degC", min=-150.0, max=60.0,
              doc="survival heater switches off above this while hibernating"),
    )
    EVENTS = (
        Event("ModeChanged", Severity.ACTIVITY_HI, "mode {old} -> {new}: {cause}",
              (Arg("old", "str"), Arg("new", "str"), Arg("cause", "str"))),
        Event("ModeRejected", Severity.WARNING_LO, "mode change to {mode} refused: {reason}",
              (Arg("mode", "str"), Arg("reason", "str")), throttle=5, throttle_window_s=60.0),
        Event("CommandGated", Severity.WARNING_LO, "{name} refused in {mode} (allowed in {allowed})",
              (Arg("name", "str"), Arg("mode", "str"), Arg("allowed", "str")),
              throttle=5, throttle_window_s=60.0),
        Event("MonitorTripped", Severity.WARNING_HI,
              "monitor {monitor} tripped: {channel} = {value} ({condition}) -> {response}",
              (Arg("monitor", "str"), Arg("channel", "str"), Arg("value", "str"), Arg("condition", "str"),
               Arg("response", "str")), throttle=20, throttle_window_s=60.0),
        Event("MonitorCleared", Severity.ACTIVITY_LO, "monitor {monitor} clear",
              (Arg("monitor", "str"),), throttle=20, throttle_window_s=60.0),
        Event("MonitorSet", Severity.ACTIVITY_HI, "monitor {monitor} {state}",
              (Arg("monitor", "str"), Arg("state", "str"))),
        Event("ResponseTaken", Severity.WARNING_HI, "{response}: {cause}{subsumed}",
              (Arg("response", "str"), Arg("cause", "str"), Arg("subsumed", "str")),
              throttle=10, throttle_window_s=60.0),
        Event("RestartRequested", Severity.WARNING_HI, "restarting the flight process ({count} in window): {cause}",
              (Arg("cause", "str"), Arg("count", "u32"))),
        Event("RestartLimited", Severity.WARNING_HI,
              "restart refused: {count} restarts within {window_s} s; SAFE instead",
              (Arg("count", "u32"), Arg("window_s", "f64"))),
        Event("Hibernating", Severity.ACTIVITY_HI,
              "hibernating: {cause}; wake at {wake_solar_w} W solar{wake_at}; heaters down to {floor_soc} SOC",
              (Arg("cause", "str"), Arg("wake_solar_w", "f32"), Arg("wake_at", "str"), Arg("floor_soc", "f32"))),
        Event("GoingSilent", Severity.WARNING_HI, "{state} until {until}: {cause}",
              (Arg("state", "str"), Arg("until", "str"), Arg("cause", "str")),
              doc="the vehicle is about to stop listening and sending by itself (hibernation or a "
                  "restart); the ground ends the commands it waits on with this reason"),
        Event("Woke", Severity.ACTIVITY_HI,
              "awake after {slept_s} s: {reason}; SOC {soc}, solar {solar_w} W",
              (Arg("reason", "str"), Arg("slept_s", "f64"), Arg("soc", "f32"), Arg("solar_w", "f32"))),
        Event("HeatersShed", Severity.WARNING_LO, "hibernation heaters off at SOC {soc} (floor {floor})",
              (Arg("soc", "f32"), Arg("floor", "f32"))),
        Event("LoadSwitchFailed", Severity.WARNING_HI, "power switching: {error}", (Arg("error", "str"),),
              throttle=5, throttle_window_s=3600.0),
        Event("WatchdogWithheld", Severity.WARNING_HI, "watchdog not kicked: {reason}", (Arg("reason", "str"),),
              throttle=3, throttle_window_s=60.0),
        Event("WatchdogError", Severity.WARNING_HI, "watchdog: {error}", (Arg("error", "str"),),
              throttle=3, throttle_window_s=60.0),
        Event("FaultStateProblem", Severity.WARNING_HI, "fault state unusable ({problem}); treated as unclean",
              (Arg("problem", "str"),)),
        Event("FaultReport", Severity.ACTIVITY_HI,
              "mode {mode}; tripped: {tripped}; disabled: {disabled}; restarts in window {restarts}",
              (Arg("mode", "str"), Arg("tripped", "str"), Arg("disabled", "str"), Arg("restarts", "u32"))),
        Event("FastIdle", Severity.ACTIVITY_LO, "fast idle {state}", (Arg("state", "str"),)),
        Event("FaultToContingency", Severity.WARNING_HI,
              "monitor {monitor} ({response}) handled by the contingency of critical sequence(s) on {engines}",
              (Arg("monitor", "str"), Arg("response", "str"), Arg("engines", "str")),
              throttle=10, throttle_window_s=60.0),
        Event("FaultDeferred", Severity.WARNING_LO,
              "monitor {monitor} ({response}) held until the critical sequence(s) on {engines} end",
              (Arg("monitor", "str"), Arg("response", "str"), Arg("engines", "str")),
              throttle=10, throttle_window_s=60.0),
        Event("FaultReleased", Severity.WARNING_LO, "held fault {monitor} ({response}): {outcome}",
              (Arg("monitor", "str"), Arg("response", "str"), Arg("outcome", "str"))),
        Event("CriticalStopped", Severity.WARNING_HI, "critical sequence(s) on {engines} stopped: {cause}",
              (Arg("engines", "str"), Arg("cause", "str"))),
    )

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        opts = self.options
        if not isinstance(opts["builtins"], bool):
            raise ValueError("builtins: expected true or false")
        self.table = build_table(opts["mode_table"])
        specs = parse_monitors(opts["monitors"], opts["builtins"], parse_mode=self.table.parse)
        awake = frozenset(m for m in self.table.modes if m.name not in ("BOOT", "HIBERNATE"))
        # a monitor left to the default modes runs in every awake mode of this vehicle's table
        self.specs: list[MonitorSpec] = [replace(sp, modes=awake) if sp.modes == ACTIVE_MODES else sp
                                         for sp in specs]
        try:
            self.boot_mode = self.table.parse(opts["boot_mode"])
        except ValueError as exc:
            raise ValueError(f"boot_mode: {exc}") from None
        if self.boot_mode == Mode.BOOT:
            raise ValueError("boot_mode: BOOT is where every boot starts, not where it ends")
        gated = opts["gated"]
        if not isinstance(gated, dict):
            raise ValueError("gated: expected a table of command pattern = [modes]")
        self.gated: dict[str, frozenset[Mode]] = {}
        self._gate_cache: dict[str, frozenset[Mode] | None | tuple[()]] = {}
        for pattern, modes in gated.items():
            if not isinstance(modes, list):
                raise ValueError(f"gated.{pattern}: expected a list of modes")
            try:
                if gated is DEFAULT_GATED:  # the rover's gates: a vehicle without DRIVE keeps them shut
                    self.gated[pattern] = frozenset(self.table.modes[m] for m in modes
                                                    if m in self.table.modes.__members__)
                else:
                    self.gated[pattern] = frozenset(self.table.parse(m) for m in modes)
            except ValueError as exc:
                raise ValueError(f"gated.{pattern}: {exc}") from None
        for key in ("idle_period_s", "hibernate_period_s"):
            v = opts[key]
            if not isinstance(v, int | float) or isinstance(v, bool) or not 0.001 <= v <= 86400:
                raise ValueError(f"{key}: expected seconds from 0.001 to 86400, got {v!r}")
        if not isinstance(opts["fast"], bool):
            raise ValueError("fast: expected true or false")
        crit = opts["critical_members"]
        if not isinstance(crit, list) or not all(isinstance(c, str) for c in crit):
            raise ValueError("critical_members: expected a list of member names")
        self.mode = self.table.modes["BOOT"]
        self.monitors: dict[str, Monitor] = {}
        self._deferred: list[tuple[Response, str, str]] = []  # (response, cause, monitor) held for a sequence

    # -- declarations ------------------------------------------------------------------------

    def channels(self) -> tuple[Channel, ...]:
        out = [
            Channel("mode", "u8", doc="vehicle mode: " + ", ".join(f"{v} {k}" for k, v in self.table.labels.items()),
                    update="on_change"),
            Channel("mode_name", "str", doc="vehicle mode", update="on_change"),
            Channel("mode_changes", "u32", doc="mode changes since boot", update="on_change"),
            Channel("rejected", "u32", doc="mode commands and gated commands refused", update="on_change"),
            Channel("trips", "u32", doc="monitor trips since boot", update="on_change"),
            Channel("responses", "u32", doc="responses carried out since boot", update="on_change"),
            Channel("last_response", "u8", doc="0 report, 1 stop_drive, 2 standby, 3 safe, 4 restart, "
                    "5 hibernate; 255 none yet", update="on_change"),
            Channel("restarts", "u32", doc="fault-protection restarts within the window (persisted)",
                    update="on_change"),
            Channel("wdog_kicks", "u32", doc="watchdog kicks since boot", update="on_change"),
            Channel("wdog_withheld", "u32", doc="cycles the watchdog was not kicked", update="on_change"),
            Channel("fast_idle", "bool", doc="simulation fast idle in force", update="on_change"),
            Channel("deferred", "u8", doc="faults held until a critical sequence ends", update="on_change"),
            Channel("to_contingency", "u32", doc="faults sent to a critical sequence's contingency",
                    update="on_change"),
        ]
        for spec in self.specs:
            out.append(Channel(f"mon.{spec.name}", "u8", doc=f"{spec.doc or spec.name}: 0 disabled, 1 ok, "
                               "2 counting, 3 tripped, 4 unavailable, 5 idle in this mode", update="on_change"))
            out.append(Channel(f"mon.{spec.name}.trips", "u32", doc=f"trips of {spec.name} (persisted)",
                               update="on_change"))
        return tuple(out)

    # -- life cycle --------------------------------------------------------------------------

    def setup(self) -> None:
        fw = self.fw
        self._path = fw.state_dir / f"{self.name}.json"
        self._rejected = 0
        self._trips = 0
        self._responses = 0
        self._mode_changes = 0
        self._last_response = 255
        self._kicks = 0
        self._withheld = 0
        self._fast_idle = False
        self._to_contingency = 0
        self._wdog_suspended = False
        self._hib: dict[str, Any] | None = None
        self._event_counts: dict[str, int] = {}
        fw.events.listeners.append(self._count_event)
        fw.store["fault.busy"] = self.busy  # a sequence starting: leave fast idle now
        self._wdog: Watchdog | None = self.devices.get("watchdog")
        self._power: PowerMonitor | None = self.devices.get("power")
        self._group = next((g.name for g in fw.executive.groups
                            for m in g.members if m.component is self), None)
        self._critical = [str(c) for c in self.options["critical_members"]] + [self.name]
        state, problem = self._load_state()
        names = fw.tlm.names()
        events = {f"{m.component.name}.{e.name}" for g in fw.executive.groups for m in g.members
                  for e in m.component.events()}
        disabled = set(state.get("disabled", []))
        trips = state.get("trips", {})
        for spec in self.specs:
            if spec.channel.startswith("event:"):
                pat = spec.channel[len("event:"):]
                chans = sorted("event:" + e for e in events if fnmatch.fnmatchcase(e, pat))
            else:
                chans = [n for n in names if fnmatch.fnmatchcase(n, spec.channel)
                         and not n.startswith(self.name + ".")]
            mon = Monitor(spec, chans)
            if spec.name in disabled:
                mon.enabled = False
                if mon.available:
                    mon.state = MonitorState.DISABLED
            mon.trips = int(trips.get(spec.name, 0)) if isinstance(trips, dict) else 0
            self.monitors[spec.name] = mon
        self._restart_times = [float(t) for t in state.get("restart_times", []) if isinstance(t, int | float)]
        # how did the last run end?
        if problem:
            self.event("FaultStateProblem", problem=problem)
            mode, cause = Mode.SAFE, f"unclean restart (state file unusable: {problem[:80]})"
        elif not state:
            mode, cause = self.boot_mode, "first boot"
        elif state.get("restart_reason"):
            mode, cause = Mode.SAFE, f"restarted by fault protection: {state['restart_reason']}"
        elif not state.get("clean", False):
            mode, cause = Mode.SAFE, f"unclean restart (was {state.get('mode', '?')})"
        else:
            try:
                mode = self.table.parse(state.get("mode", self.boot_mode.name))
            except ValueError:
                mode = Mode.SAFE
            if mode == Mode.BOOT:
                mode = Mode.SAFE
            cause = "clean restart"
        self._clean = False
        self._restart_reason = ""
        self.boot_cause = cause
        self._set_mode(mode, cause, save=False)
        if mode == Mode.HIBERNATE:
            hib = state.get("hibernation") or {}
            self._enter_hibernation(cause, wake_at=hib.get("wake_at_s"), resumed=True)
        self._save()
        self._publish()

    def shutdown(self) -> None:
        self._clean = not self._restart_reason
        self._save()
        try:
            self.fw.events.listeners.remove(self._count_event)
        except ValueError:
            pass

    def _load_state(self) -> tuple[dict[str, Any], str]:
        try:
            return read_checked_json(self._path, STATE_FORMAT) or {}, ""
        except CorruptFileError as exc:
            return {}, str(exc)

    def _save(self) -> None:
        body = {
            "mode": self.mode.name,
            "clean": self._clean,
            "restart_reason": self._restart_reason,
            "restart_times": self._restart_times,
            "disabled": sorted(n for n, m in self.monitors.items() if not m.enabled),
            "trips": {n: m.trips for n, m in self.monitors.items() if m.trips},
            "hibernation": self._hib,
        }
        try:
            write_checked_json(self._path, STATE_FORMAT, body)
        except OSError as exc:
            log.error("fault state %s not written: %s", self._path, exc)

    def _count_event(self, rec: Any) -> None:
        key = f"{rec.component}.{rec.name}"
        self._event_counts[key] = self._event_counts.get(key, 0) + 1

    # -- the cycle ---------------------------------------------------------------------------

    def step(self) -> None:
        if self.mode == Mode.HIBERNATE:
            self._hibernation_step()
            self._publish()
            return
        tripped: list[tuple[Response, str, str]] = []
        tlm = self.fw.tlm
        tripped_any = False
        for mon in self.monitors.values():
            if not mon.enabled or not mon.available:
                continue
            if self.mode not in mon.spec.modes:
                if mon.state != MonitorState.IDLE:
                    mon.reset()
                    mon.state = MonitorState.IDLE
                continue
            values = [(ch, self._event_counts.get(ch[6:], 0) if ch.startswith("event:") else tlm.get(ch))
                      for ch in mon.channels]
            was_tripped = mon.tripped
            if mon.evaluate(values):
                tripped_any = True
                self._trips += 1
                spec = mon.spec
                value = "?" if mon.last_value is None else f"{mon.last_value:.6g}"
                self.event("MonitorTripped", monitor=spec.name, channel=spec.channel, value=value,
                           condition=spec.condition.text, response=spec.response.name.lower())
                tripped.append((spec.response, f"{spec.name}: {spec.channel} {spec.condition.text}", spec.name))
            elif was_tripped and not mon.tripped:
                self.event("MonitorCleared", monitor=mon.spec.name)
        if tripped_any:
            self._save()
        requests = self._triage(tripped)
        if requests:
            self._act(requests)
        if self.options["fast"]:
            self._fast_idle_check()
        self._watchdog()
        self._publish()

    def _critical_engines(self) -> list[str]:
        engines = self.fw.store.get("seq.critical")
        return [str(e) for e in engines] if isinstance(engines, list) else []

    def _triage(self, tripped: list[tuple[Response, str, str]]) -> list[tuple[Response, str]]:
        """What to act on now: everything, unless a critical sequence runs (module docstring)."""
        engines = self._critical_engines()
        if not engines and self._deferred:
            held, self._deferred = self._deferred, []
            for response, cause, name in held:
                mon = self.monitors.get(name)
                still = mon is not None and mon.tripped
                self.event("FaultReleased", monitor=name, response=response.name.lower(),
                           outcome="acting now" if still else "cleared while held, nothing to do")
                if still:
                    tripped.append((response, cause, name))
        if not engines:
            return [(r, c) for r, c, _ in tripped]
        out: list[tuple[Response, str]] = []
        for response, cause, name in tripped:
            spec = self.monitors[name].spec
            if response == Response.REPORT or spec.critical == "survival":
                out.append((response, cause))
                if self.table.safety.get(TARGET_MODE[response] or self.mode, 0) > self.table.safety[self.mode]:
                    self._stop_critical(engines, cause)
                continue
            if spec.critical == "sequence":
                switch = self.fw.store.get("seq.contingency")
                handled = [e for e in engines if callable(switch) and switch(e, cause)]
                if handled:
                    self._to_contingency += 1
                    self.event("FaultToContingency", monitor=name, response=response.name.lower(),
                               engines=", ".join(handled))
                    continue
            if all(n != name for _, _, n in self._deferred):  # held once, however often it trips
                self._deferred.append((response, cause, name))
            self.event("FaultDeferred", monitor=name, response=response.name.lower(), engines=", ".join(engines))
        return out

    def _stop_critical(self, engines: list[str], cause: str) -> None:
        """A survival response ends the critical sequences: their commands would not run in SAFE."""
        self.event("CriticalStopped", engines=", ".join(engines), cause=cause[:200])
        if self.fw.cmd.entry("SEQ_STOP") is not None:
            for e in engines:
                self.fw.cmd.submit("SEQ_STOP", {"engine": e}, source=self.name)

    def _act(self, requests: list[tuple[Response, str]]) -> None:
        window = float(self.param("restart_window_s"))
        now = self.now()
        self._restart_times = [t for t in self._restart_times if now - t < window]
        allowed = len(self._restart_times) < int(self.param("max_restarts"))
        decision = arbitrate(requests, self.mode, allowed, self.table.safety, self.table.modes)
        if decision.response is None:
            return
        self._responses += 1
        self._last_response = int(decision.response)
        subsumed = f" (subsumed: {'; '.join(decision.subsumed)})" if decision.subsumed else ""
        self.event("ResponseTaken", response=decision.response.name.lower(), cause=decision.cause[:200],
                   subsumed=subsumed[:300])
        if any(r == Response.RESTART for r, _ in requests) and not allowed and not decision.restart:
            self.event("RestartLimited", count=len(self._restart_times), window_s=window)
        if decision.stop_drive:
            self._stop_drive()
        if decision.restart:
            self._restart(decision.cause)
            return
        if decision.mode == Mode.HIBERNATE:
            self._enter_hibernation(decision.cause, drain_commands=True)
        elif decision.mode is not None:
            self._set_mode(decision.mode, decision.cause)

    def _stop_drive(self) -> None:
        cmd = self.fw.cmd
        for name in STOP_COMMANDS:
            if cmd.entry(name) is not None:
                cmd.submit(name, {}, source=self.name)

    def _restart(self, cause: str) -> None:
        self._restart_times.append(self.now())
        self._restart_reason = cause[:200]
        self.event("RestartRequested", cause=cause[:200], count=len(self._restart_times))
        self._save()
        self.fw.store["vehicle.restart"] = self._restart_reason
        self._last_word("restarting", "the flight process is started again (seconds)", cause)
        self.fw.executive.request_stop()

    # -- modes -------------------------------------------------------------------------------

    def _set_mode(self, mode: Mode, cause: str, save: bool = True) -> None:
        mode = self.table.modes(int(mode))
        old = self.mode
        if mode == old:
            return
        self.mode = mode
        self._mode_changes += 1
        self.publish("mode", mode.name)
        self.event("ModeChanged", old=old.name, new=mode.name, cause=cause[:200])
        if self.table.working(mode) and self._fast_idle:
            self._leave_fast_idle()
        if mode != Mode.HIBERNATE:
            for mon in self.monitors.values():
                if mon.state == MonitorState.IDLE and mode in mon.spec.modes:
                    mon.state = MonitorState.OK
        if save:
            self._save()
        self._publish()

    def request_mode(self, mode: Mode, cause: str) -> None:
        """Change mode if the table allows it; CommandFailed (counted, reported) if not."""
        problem = self.table.problem(self.mode, mode)
        if problem is not None:
            self._rejected += 1
            self.tlm("rejected", self._rejected)
            self.event("ModeRejected", mode=mode.name, reason=problem)
            raise CommandFailed(problem)
        if mode == Mode.HIBERNATE:
            self._stop_drive()
            self._enter_hibernation(cause)
        elif self.mode == Mode.HIBERNATE:
            self._wake(cause)
        else:
            if self.table.safety[mode] > self.table.safety[self.mode]:
                self._stop_drive()
            self._set_mode(mode, cause)

    def admit(self, name: str) -> str | None:
        """The dispatcher's admission check: None, or why ``name`` may not run in this mode (see
        ``gated``). A refusal is counted and reported; stop commands are always admitted."""
        if name in STOP_COMMANDS:
            return None
        modes = self._gate_cache.get(name, ())
        if modes == ():
            modes = None
            for pattern, allowed in self.gated.items():
                if fnmatch.fnmatchcase(name, pattern):
                    modes = allowed
                    break
            self._gate_cache[name] = modes
        if modes is None or self.mode in modes:
            return None
        names = ", ".join(m.name for m in sorted(modes))
        self._rejected += 1
        if self._fw is not None:
            self.tlm("rejected", self._rejected)
            self.event("CommandGated", name=name, mode=self.mode.name, allowed=names)
        return f"{name} is not allowed in {self.mode.name} (allowed in {names})"

    # -- hibernation -------------------------------------------------------------------------

    def _switch(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except (NotImplementedError, HalError) as exc:
            self.event("LoadSwitchFailed", error=f"{what}: {exc}"[:200])

    def _enter_hibernation(self, cause: str, wake_at: float | None = None, resumed: bool = False,
                           drain_commands: bool = False) -> None:
        """Shed loads and slow down. ``wake_at`` set: wake at that time only (a commanded nap);
        otherwise when the solar input returns. ``drain_commands`` runs the queued drive stop now
        (autonomous entry; a command handler is already inside the dispatcher's loop)."""
        floor = float(self.param("hib_heater_floor_soc"))
        if not resumed or self._hib is None:
            self._hib = {"since_s": self.now(), "wake_at_s": wake_at, "heaters_on": True}
        self._set_mode(Mode.HIBERNATE, cause, save=False)
        power = self._power
        if power is not None:
            on_c, off_c = float(self.param("hib_heater_on_c")), float(self.param("hib_heater_off_c"))
            self._switch("heater setpoint", lambda: power.set_heater_setpoint(on_c, max(on_c, off_c)))
            self._switch("avionics off", lambda: power.switch_load("avionics", False))
        self._suspend_watchdog(True)
        self._fast_idle = False
        if drain_commands:
            # the rate groups stop after this cycle: let the dispatcher carry out the drive stop now
            self.fw.cmd.step()
        ex = self.fw.executive
        for g in ex.groups:
            ex.set_rate(g.name, 1.0 / float(self.options["hibernate_period_s"]) if g.name == self._group else 0.0)
        at = f" (no: at t={wake_at:.0f} s)" if wake_at else ""
        self.event("Hibernating", cause=cause[:200], wake_solar_w=float(self.param("wake_solar_w")),
                   wake_at=at, floor_soc=floor)
        self._save()
        if not resumed:
            self._last_word("hibernating", self._wake_condition(wake_at), cause)

    def _wake_condition(self, wake_at: float | None) -> str:
        """When a hibernating vehicle will listen again, in words for the ground."""
        if wake_at is not None:
            when = f"t={float(wake_at):.0f} s"
            epoch = self.fw.epoch
            if epoch is not None:
                from datetime import timedelta

                when += f" ({(epoch + timedelta(seconds=float(wake_at))).strftime('%Y-%m-%d %H:%M:%S UTC')})"
            return when
        return (f"solar input reaches {float(self.param('wake_solar_w')):g} W with the battery at "
                f"{float(self.param('wake_min_soc')):.0%} or more")

    def _last_word(self, state: str, until: str, cause: str) -> None:
        """Say why the vehicle goes silent and get it onto the link now (module docstring)."""
        self.event("GoingSilent", state=state, until=until[:160], cause=cause[:200])
        downlink_now = self.fw.store.get("vehicle.downlink_now")
        if not callable(downlink_now):
            return  # no link in this assembly: the recorder (if any) sends it later
        try:
            downlink_now()
        except Exception:  # the last word must never stop the response it announces
            log.exception("%s: sending the last word failed", self.name)

    def _read_power(self) -> tuple[float | None, float | None]:
        if self._power is not None:
            try:
                p = self._power.read_power()
                return p.soc, p.solar_w
            except HalError:
                pass
        return self.fw.tlm.get("power.soc"), self.fw.tlm.get("power.solar_w")

    def _hibernation_step(self) -> None:
        hib = self._hib if self._hib is not None else {"since_s": self.now(), "wake_at_s": None, "heaters_on": True}
        self._hib = hib
        soc, solar = self._read_power()
        floor = float(self.param("hib_heater_floor_soc"))
        if hib.get("heaters_on") and soc is not None and soc < floor and self._power is not None:
            power = self._power
            self._switch("heaters off", lambda: power.switch_load("heaters", False))
            hib["heaters_on"] = False
            self.event("HeatersShed", soc=round(float(soc), 4), floor=floor)
            self._save()
        wake_at = hib.get("wake_at_s")
        if (wake_at is None and solar is not None and solar >= float(self.param("wake_solar_w"))
                and (soc is None or soc >= float(self.param("wake_min_soc")))):
            self._wake(f"solar input {solar:.1f} W")
        elif wake_at is not None and self.now() >= float(wake_at):
            self._wake(f"wake time t={float(wake_at):.0f} s")

    def _wake(self, reason: str) -> None:
        power = self._power
        if power is not None:
            self._switch("avionics on", lambda: power.switch_load("avionics", True))
            self._switch("heaters on", lambda: power.switch_load("heaters", True))
            self._switch("heater setpoint", lambda: power.set_heater_setpoint(None, None))
        since = float((self._hib or {}).get("since_s", self.now()))
        self._hib = None
        self.fw.executive.restore_rates()
        self._suspend_watchdog(False)
        soc, solar = self._read_power()
        self._set_mode(Mode.SAFE, f"woke: {reason}")
        self.event("Woke", reason=reason, slept_s=round(self.now() - since, 3),
                   soc=round(float(soc or 0.0), 4), solar_w=round(float(solar or 0.0), 2))

    # -- fast idle (simulation) --------------------------------------------------------------

    def _is_idle(self) -> bool:
        tlm = self.fw.tlm
        if self.mode not in (Mode.SAFE, Mode.STANDBY):
            return False
        for ch in ("drive.left_cmd_mps", "drive.right_cmd_mps"):
            v = tlm.get(ch)
            if v:
                return False
        return not tlm.get("seq.state")

    def _fast_idle_check(self) -> None:
        idle = self._is_idle()
        if idle and not self._fast_idle:
            self._fast_idle = True
            ex = self.fw.executive
            for g in ex.groups:
                ex.set_rate(g.name, min(g.hz, 1.0 / float(self.options["idle_period_s"])))
            self._suspend_watchdog(True)
            self.event("FastIdle", state="on")
        elif not idle and self._fast_idle:
            self._leave_fast_idle()

    def busy(self) -> None:
        """Work is starting (a sequence): leave fast idle at once, so the work's first steps run at
        the configured rates rather than at the next idle cycle, which may be a minute away."""
        if self._fast_idle:
            self._leave_fast_idle()

    def _leave_fast_idle(self) -> None:
        self._fast_idle = False
        self.fw.executive.restore_rates()
        self._suspend_watchdog(False)
        self.event("FastIdle", state="off")

    # -- watchdog ----------------------------------------------------------------------------

    def _suspend_watchdog(self, suspend: bool) -> None:
        wd = self._wdog
        if wd is None or suspend == self._wdog_suspended:
            return
        try:
            wd.suspend() if suspend else wd.resume()
            self._wdog_suspended = suspend
        except (NotImplementedError, HalError) as exc:
            self.event("WatchdogError", error=f"{'suspend' if suspend else 'resume'}: {exc}"[:200])

    def healthy(self) -> str:
        """Empty when the executive is healthy, else why not (the watchdog is kicked only when healthy)."""
        ex = self.fw.executive
        for name in self._critical:
            try:
                if ex.member(name).faulted:
                    return f"critical member {name} isolated"
            except KeyError:
                continue
        fatal = self.fw.store.get("health.fatal_active", 0)
        if fatal:
            return f"{fatal} health item(s) silent past the fatal timeout"
        return ""

    def _watchdog(self) -> None:
        wd = self._wdog
        if wd is None or self._wdog_suspended:
            return
        problem = self.healthy()
        if problem:
            self._withheld += 1
            self.event("WatchdogWithheld", reason=problem)
            return
        try:
            wd.kick()
            self._kicks += 1
        except HalError as exc:
            self.event("WatchdogError", error=str(exc)[:200])

    # -- telemetry ---------------------------------------------------------------------------

    def _publish(self) -> None:
        self.tlm("mode", int(self.mode))
        self.tlm("mode_name", self.mode.name)
        self.tlm("mode_changes", self._mode_changes)
        self.tlm("rejected", self._rejected)
        self.tlm("trips", self._trips)
        self.tlm("responses", self._responses)
        self.tlm("last_response", self._last_response)
        self.tlm("restarts", len(self._restart_times))
        self.tlm("wdog_kicks", self._kicks)
        self.tlm("wdog_withheld", self._withheld)
        self.tlm("fast_idle", self._fast_idle)
        self.tlm("deferred", len(self._deferred))
        self.tlm("to_contingency", self._to_contingency)
        for name, mon in self.monitors.items():
            self.tlm(f"mon.{name}", int(mon.state))
            self.tlm(f"mon.{name}.trips", mon.trips)

    # -- commands ----------------------------------------------------------------------------

    @command("MODE_SET", Arg("mode", "enum", enum={m.name: int(m) for m in Mode}, doc="the mode to enter"))
    def mode_set(self, mode: int) -> None:
        """Change the vehicle mode; refused (with the allowed modes) when the table forbids it."""
        self.request_mode(self.table.modes(mode), "commanded")

    def commands(self) -> list[tuple[CommandDef, Callable[..., Any]]]:
        """MODE_SET takes this vehicle's modes (its mode table), so the dictionary lists them."""
        out = []
        for cdef, handler in super().commands():
            if cdef.name == "MODE_SET":
                cdef = replace(cdef, args=(replace(cdef.args[0], enum=self.table.labels),))
            out.append((cdef, handler))
        return out

    @command("MODE_HIBERNATE", Arg("wake_after_s", "u32", "s", doc="wake after this long (and not before); "
                                   "0: when solar input returns"))
    def mode_hibernate(self, wake_after_s: int) -> None:
        """Hibernate now, waking after the given time, or on solar input when it is 0."""
        problem = self.table.problem(self.mode, self.table.modes["HIBERNATE"])
        if problem is not None:
            self._rejected += 1
            self.event("ModeRejected", mode="HIBERNATE", reason=problem)
            raise CommandFailed(problem)
        self._stop_drive()
        self._enter_hibernation("commanded", wake_at=self.now() + wake_after_s if wake_after_s else None)

    def _monitor(self, name: str) -> Monitor:
        mon = self.monitors.get(name)
        if mon is None:
            self._rejected += 1
            raise CommandFailed(f"no monitor {name!r}; monitors: {', '.join(self.monitors)}")
        return mon

    @command("FP_ENABLE", Arg("monitor", "str", doc="monitor name"))
    def fp_enable(self, monitor: str) -> None:
        """Enable a monitor (persisted); it starts counting afresh."""
        mon = self._monitor(monitor)
        mon.enabled = True
        mon.reset()
        mon.state = MonitorState.OK if mon.available else MonitorState.UNAVAILABLE
        self.event("MonitorSet", monitor=monitor, state="enabled")
        self._save()
        self._publish()

    @command("FP_DISABLE", Arg("monitor", "str", doc="monitor name"))
    def fp_disable(self, monitor: str) -> None:
        """Disable a monitor (persisted across restarts)."""
        mon = self._monitor(monitor)
        mon.enabled = False
        mon.reset()
        if mon.available:
            mon.state = MonitorState.DISABLED
        self.event("MonitorSet", monitor=monitor, state="disabled")
        self._save()
        self._publish()

    @command("FP_RESTART_CLEAR")
    def fp_restart_clear(self) -> None:
        """Forget past restarts: the reboot-loop limit starts again from zero."""
        self._restart_times = []
        self._save()
        self._publish()

    @command("FP_REPORT")
    def fp_report(self) -> None:
        """Report the mode, tripped and disabled monitors in one event."""
        tripped = [n for n, m in self.monitors.items() if m.tripped]
        disabled = [n for n, m in self.monitors.items() if not m.enabled]
        self.event("FaultReport", mode=self.mode.name, tripped=", ".join(tripped) or "none",
                   disabled=", ".join(disabled) or "none", restarts=len(self._restart_times))
