"""The executive: rate groups, member isolation, cycle slips, workers and health.

Rate groups (say 50 Hz control, 10 Hz navigation, 1 Hz housekeeping) are released at absolute
times ``start + k * period``. When several fall due at once the fastest runs first. Members of
a group are called in their configured order on the executive's one thread; anything longer
than a cycle belongs in a :class:`~flight.worker.Worker`.

* Each member's execution time (last and max) is telemetry; a member that exceeds its budget
  is counted and reported (throttled).
* A cycle slip is a group whose work ends after its next release: it is counted, reported in a
  throttled WARNING_HI event, and the missed releases are skipped (phase is kept).
* A member that raises is isolated: marked faulted, reported, fault listeners are told, and the
  others keep running. ``EXEC_ENABLE`` puts it back.
* Worker results are delivered before each group runs; dead worker threads are restarted.
* ``request_stop()`` (SIGINT/SIGTERM) ends the loop after the current cycle.
* A group's rate can be changed, or the group suspended, at run time (:meth:`Executive.set_rate`):
  fault protection slows the vehicle while it hibernates. The change is applied between cycles;
  the group's next release is one new period after the change, and ``restore_rates`` puts every
  group back to its configured rate.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flight.clock import NS, Clock
from flight.commands import CommandFailed
from flight.component import Component
from flight.model import Arg, Channel, Event, Severity, command
from flight.worker import JobResult, Worker

log = logging.getLogger(__name__)

STATE_OK, STATE_DISABLED, STATE_FAULTED = 0, 1, 2


class Member:
    """One rate-group member: its bound ``step``, its state and its execution statistics.

    ``live`` (enabled and not faulted) is what the executive checks before each call; it is kept
    up to date by the ``enabled`` and ``faulted`` setters, so the hot loop reads one flag.
    ``watch_ns`` is the smaller of the budget and the worst time so far: a step that took no
    longer than it needs no further bookkeeping.
    """

    __slots__ = ("component", "step", "live", "last_ns", "max_ns", "overruns", "watch_ns",
                 "_budget_ns", "_enabled", "_faulted")

    def __init__(self, component: Component, budget_ns: int,
                 step: Callable[[], None] | None = None) -> None:
        self.component = component
        #: the component's bound ``step``, looked up once when the group is built
        self.step: Callable[[], None] = component.step if step is None else step
        self._enabled = True
        self._faulted = False
        self.live = True
        self.last_ns = 0
        self.max_ns = 0
        self.overruns = 0
        self.budget_ns = budget_ns

    @property
    def budget_ns(self) -> int:
        return self._budget_ns

    @budget_ns.setter
    def budget_ns(self, value: int) -> None:
        self._budget_ns = int(value)
        self.watch_ns = min(self.max_ns, self._budget_ns)

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = bool(value)
        self.live = self._enabled and not self._faulted

    @property
    def faulted(self) -> bool:
        return self._faulted

    @faulted.setter
    def faulted(self, value: bool) -> None:
        self._faulted = bool(value)
        self.live = self._enabled and not self._faulted

    @property
    def state(self) -> int:
        return STATE_FAULTED if self._faulted else STATE_OK if self._enabled else STATE_DISABLED

    def __repr__(self) -> str:
        return (f"Member({self.component.name!r}, state={self.state}, last_ns={self.last_ns}, "
                f"max_ns={self.max_ns}, overruns={self.overruns})")


@dataclass(slots=True)
class RateGroup:
    name: str
    hz: float
    members: list[Member]
    period_ns: int = 0
    cycles: int = 0
    slips: int = 0
    late_ns: int = 0
    late_max_ns: int = 0
    last_release_ns: int = -1
    #: when a list, every cycle's release lateness (ns) is appended (benchmarks, diagnostics)
    lateness_log: list[int] | None = None
    #: the rate in force (``hz`` is the configured one); 0 while suspended
    current_hz: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.hz <= 1000:
            raise ValueError(f"rate group {self.name!r}: rate {self.hz} Hz is outside (0, 1000]")
        self.period_ns = int(round(NS / self.hz))
        self.current_hz = self.hz

    @property
    def suspended(self) -> bool:
        return self.current_hz == 0.0


FaultListener = Callable[[str, str, str], None]


class Executive(Component):
    """Runs the rate groups (instance name ``exec``)."""

    #: Members that must never be disabled: without them nobody could re-enable anything.
    ESSENTIAL = frozenset({"cmd"})

    EVENTS = (
        Event("CycleSlip", Severity.WARNING_HI,
              "rate group {group} overran its {period_ms} ms cycle by {over_ms} ms ({skipped} release(s) skipped)",
              (Arg("group", "str"), Arg("period_ms", "f32"), Arg("over_ms", "f32"), Arg("skipped", "u32")),
              throttle=5, throttle_window_s=60.0),
        Event("MemberFaulted", Severity.WARNING_HI, "{member} raised {error}; isolated",
              (Arg("member", "str"), Arg("error", "str")), throttle=10, throttle_window_s=60.0),
        Event("MemberOverrun", Severity.WARNING_LO, "{member} ran {took_us} us, budget {budget_us} us",
              (Arg("member", "str"), Arg("took_us", "u32"), Arg("budget_us", "u32")),
              throttle=5, throttle_window_s=60.0),
        Event("MemberEnabled", Severity.ACTIVITY_HI, "{member} enabled", (Arg("member", "str"),)),
        Event("MemberDisabled", Severity.ACTIVITY_HI, "{member} disabled", (Arg("member", "str"),)),
        Event("WorkerJobFailed", Severity.WARNING_LO, "worker {worker} job failed: {error}",
              (Arg("worker", "str"), Arg("error", "str")), throttle=10, throttle_window_s=60.0),
        Event("WorkerDied", Severity.WARNING_HI, "worker {worker}: {detail}",
              (Arg("worker", "str"), Arg("detail", "str"))),
        Event("ExecStarted", Severity.ACTIVITY_HI, "executive running {groups}", (Arg("groups", "str"),)),
        Event("ExecStopped", Severity.ACTIVITY_HI, "executive stopped after {cycles} cycles",
              (Arg("cycles", "u64"),)),
    )

    def __init__(self, name: str = "exec", **options: Any) -> None:
        super().__init__(name)
        self.groups: list[RateGroup] = []
        self.workers: list[Worker] = []
        self.fault_listeners: list[FaultListener] = []
        self._stop = False
        self._started = False
        self._heap: list[tuple[int, float, int]] | None = None
        self._total_cycles = 0
        self._rate_changes: dict[int, float] = {}
        #: Measured-time hook for the simulated clock: a nanosecond counter (say
        #: :func:`sim_hw.blocking.thread_ns`, or ``time.thread_time_ns``) read around each member's
        #: step; what it advanced is consumed on the simulated clock, so blocking work in the
        #: control thread makes groups late and slip there as it would on the vehicle.
        self.measured_ns: Callable[[], int] | None = None

    # -- configuration ------------------------------------------------------------------------

    def add_group(self, name: str, hz: float, members: list[Component], budget_frac: float = 0.5) -> RateGroup:
        group = RateGroup(name, hz, [])
        budget = int(group.period_ns * budget_frac)
        group.members = [Member(c, budget) for c in members]
        if any(g.name == name for g in self.groups):
            raise ValueError(f"rate group {name!r} defined twice")
        self.groups.append(group)
        return group

    def member(self, name: str) -> Member:
        for g in self.groups:
            for m in g.members:
                if m.component.name == name:
                    return m
        raise KeyError(name)

    def channels(self) -> tuple[Channel, ...]:
        out: list[Channel] = [Channel("cycles", "u64", doc="rate group cycles run, all groups")]
        for g in self.groups:
            out += [
                Channel(f"{g.name}.slips", "u32", doc=f"cycle slips of the {g.hz:g} Hz group",
                        update="on_change"),
                Channel(f"{g.name}.late_us", "u32", "us", doc="release lateness of the last cycle"),
                Channel(f"{g.name}.late_max_us", "u32", "us", doc="worst release lateness",
                        update="on_change"),
                Channel(f"{g.name}.rate_hz", "f32", "Hz", doc="rate in force (0: suspended)",
                        update="on_change"),
            ]
            for m in g.members:
                n = m.component.name
                out += [
                    Channel(f"{n}.time_us", "u32", "us", doc=f"last execution time of {n}"),
                    Channel(f"{n}.time_max_us", "u32", "us", doc=f"worst execution time of {n}",
                            update="on_change"),
                    Channel(f"{n}.state", "u8", doc="0 ok, 1 disabled, 2 faulted", update="on_change"),
                ]
        for w in self.workers:
            out += [
                Channel(f"worker.{w.name}.depth", "u16", doc="jobs queued or running"),
                Channel(f"worker.{w.name}.failures", "u32", doc="failed jobs", update="on_change"),
                Channel(f"worker.{w.name}.restarts", "u32", doc="thread restarts", update="on_change"),
            ]
        return tuple(out)

    def add_worker(self, name: str, handler: Callable[[Any], Any], on_result: Callable[[JobResult], None],
                   queue_size: int = 4, sim_cost_s: float = 0.0,
                   finish: Callable[[Any], Any] | None = None) -> Worker:
        """Create a worker (``finish``: its second stage, see :mod:`flight.worker`); call before
        the dictionary is built (in a component's __init__/bind)."""
        if self._started:
            raise RuntimeError("workers must be added before the executive starts")
        worker = Worker(name, handler, on_result, queue_size, sim_cost_s, finish=finish)
        self.workers.append(worker)
        return worker

    def group(self, name: str) -> RateGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"no rate group {name!r}; groups: {', '.join(g.name for g in self.groups)}")

    def set_rate(self, name: str, hz: float) -> None:
        """Run group ``name`` at ``hz`` from its next release (0 suspends it); applied between cycles.

        The configured rate stays the group's identity (its priority when releases coincide).
        Raises KeyError for an unknown group, ValueError for a rate outside [0, 1000].
        """
        if not 0 <= hz <= 1000:
            raise ValueError(f"rate group {name!r}: rate {hz} Hz is outside [0, 1000]")
        g = self.group(name)
        self._rate_changes[self.groups.index(g)] = float(hz)
        if self._heap is None:
            self._apply_rate_changes(self.fw.clock.now_ns() if self._fw else 0)

    def restore_rates(self) -> None:
        """Put every group back to its configured rate."""
        for g in self.groups:
            if g.current_hz != g.hz:
                self.set_rate(g.name, g.hz)

    def _apply_rate_changes(self, now_ns: int) -> None:
        changes, self._rate_changes = self._rate_changes, {}
        for gi, hz in changes.items():
            g = self.groups[gi]
            if hz == g.current_hz:
                continue
            g.current_hz = hz
            if hz > 0:
                g.period_ns = int(round(NS / hz))
            heap = self._heap
            if heap is None:
                continue
            heap[:] = [e for e in heap if e[2] != gi]
            if hz > 0:
                heap.append((now_ns + g.period_ns, -g.hz, gi))
            heapq.heapify(heap)
            log.info("rate group %s now %s", g.name, f"{hz:g} Hz" if hz else "suspended")

    # -- running ------------------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        return self.fw.clock

    @property
    def stopping(self) -> bool:
        return self._stop

    def request_stop(self) -> None:
        self._stop = True
        interrupt = getattr(self.fw.clock, "interrupt", None)
        if interrupt is not None:
            interrupt()

    def start(self) -> None:
        for w in self.workers:
            w.start()
        self._started = True
        self.event("ExecStarted", groups=", ".join(f"{g.name}@{g.hz:g}Hz" for g in self.groups))

    def run(self, until_s: float | None = None, max_cycles: int | None = None) -> None:
        """Run rate groups until stopped, until spacecraft time ``until_s``, or ``max_cycles``."""
        if not self._started:
            self.start()
        clock = self.fw.clock
        if self._heap is None:
            start = clock.now_ns()
            self._heap = [(start, -g.hz, i) for i, g in enumerate(self.groups) if not g.suspended]
            heapq.heapify(self._heap)
        heap = self._heap
        groups = self.groups
        lockstep = clock.simulated
        until_ns = None if until_s is None else int(round(until_s * NS))
        # the loop's two limits as numbers that are simply never reached when not given
        limit_ns: float = math.inf if until_ns is None else until_ns
        limit_cycles: float = math.inf if max_cycles is None else max_cycles
        sleep_until, now_ns, run_group = clock.sleep_until, clock.now_ns, self._run_group
        replace = heapq.heapreplace
        cycles = 0
        if self._rate_changes:
            self._apply_rate_changes(now_ns())
        while heap and not self._stop:
            release, prio, gi = heap[0]
            if release >= limit_ns:
                sleep_until(until_ns)
                break
            if cycles >= limit_cycles:
                break
            sleep_until(release)
            if self._stop:
                break
            group = groups[gi]
            run_group(group, release, clock, lockstep)
            cycles += 1
            period = group.period_ns
            next_release = release + period
            end = now_ns()
            if end > next_release:
                skipped = (end - release) // period
                next_release = release + (skipped + 1) * period
                group.slips += 1
                self.event("CycleSlip", group=group.name, period_ms=period / 1e6,
                           over_ms=round((end - release - period) / 1e6, 3), skipped=skipped)
                self._notify_fault("slip", group.name, f"{skipped} release(s) skipped")
            replace(heap, (next_release, prio, gi))
            if self._rate_changes:
                self._apply_rate_changes(end)
        if not heap and until_ns is not None and not self._stop:
            sleep_until(until_ns)  # every group suspended: time still passes

    def _run_group(self, group: RateGroup, release: int, clock: Clock, lockstep: bool) -> None:
        now = clock.now_ns()
        late = now - release
        group.late_ns = late
        if late > group.late_max_ns:
            group.late_max_ns = late
        if group.lateness_log is not None:
            group.lateness_log.append(late)
        group.cycles += 1
        group.last_release_ns = release
        self._total_cycles += 1
        if self.workers:
            self._deliver_workers(now, lockstep)
        cpu_ns = clock.cpu_ns
        if lockstep and self.measured_ns is not None:
            self._run_measured(group, clock, cpu_ns, self.measured_ns)
            return
        # one clock reading per member: the end of one step is the start of the next
        t0 = cpu_ns()
        for m in group.members:
            if not m.live:
                continue
            try:
                m.step()
            except Exception as exc:
                self._isolate(m, exc)
            t1 = cpu_ns()
            took = m.last_ns = t1 - t0
            t0 = t1
            if took > m.watch_ns:
                self._took_long(m, took)
                t0 = cpu_ns()  # reporting is the executive's time, not the next member's

    def _run_measured(self, group: RateGroup, clock: Clock, cpu_ns: Callable[[], int],
                      hook: Callable[[], int]) -> None:
        """The member loop with :attr:`measured_ns`: what a step cost moves the simulated clock."""
        for m in group.members:
            if not m.live:
                continue
            t0 = cpu_ns()
            h0 = hook()
            try:
                m.step()
            except Exception as exc:
                self._isolate(m, exc)
            spent = hook() - h0
            if spent > 0:
                clock.sleep_until(clock.now_ns() + spent)  # the simulated clock moves by what it cost
            took = cpu_ns() - t0
            m.last_ns = took
            if took > m.watch_ns:
                self._took_long(m, took)

    def _took_long(self, m: Member, took: int) -> None:
        """A step took longer than the member's worst so far or than its budget."""
        if took > m.max_ns:
            m.max_ns = took
        if took > m.budget_ns:
            m.overruns += 1
            self.event("MemberOverrun", member=m.component.name, took_us=took // 1000,
                       budget_us=m.budget_ns // 1000)
        m.watch_ns = min(m.max_ns, m.budget_ns)

    def _deliver_workers(self, now: int, lockstep: bool) -> None:
        for w in self.workers:
            w.check_alive()
            results = w.deliver(now, lockstep)
            for died in w.take_deaths():
                self.event("WorkerDied", worker=w.name, detail=died)
                self._notify_fault("worker", w.name, died)
            for result in results:
                if not result.ok:
                    self.event("WorkerJobFailed", worker=w.name, error=result.error)

    def _isolate(self, m: Member, exc: Exception) -> None:
        m.faulted = True
        err = f"{type(exc).__name__}: {exc}"
        log.exception("member %s faulted", m.component.name)
        self.event("MemberFaulted", member=m.component.name, error=err)
        self._notify_fault("member", m.component.name, err)

    def setup(self) -> None:
        """Execution statistics are provided to telemetry, read only when sampled."""
        tlm = self.fw.tlm
        p = self.name + "."
        tlm.provide(p + "cycles", lambda: self._total_cycles)
        for g in self.groups:
            tlm.provide(f"{p}{g.name}.late_us", lambda g=g: g.late_ns // 1000)
            tlm.provide(f"{p}{g.name}.late_max_us", lambda g=g: g.late_max_ns // 1000)
            tlm.provide(f"{p}{g.name}.slips", lambda g=g: g.slips)
            tlm.provide(f"{p}{g.name}.rate_hz", lambda g=g: g.current_hz)
            for m in g.members:
                n = m.component.name
                tlm.provide(f"{p}{n}.time_us", lambda m=m: m.last_ns // 1000)
                tlm.provide(f"{p}{n}.time_max_us", lambda m=m: m.max_ns // 1000)
                tlm.provide(f"{p}{n}.state", lambda m=m: m.state)
        for w in self.workers:
            tlm.provide(f"{p}worker.{w.name}.depth", lambda w=w: w.depth)
            tlm.provide(f"{p}worker.{w.name}.failures", lambda w=w: w.failures)
            tlm.provide(f"{p}worker.{w.name}.restarts", lambda w=w: w.restarts)

    def _notify_fault(self, kind: str, name: str, detail: str) -> None:
        for listener in self.fault_listeners:
            try:
                listener(kind, name, detail)
            except Exception:
                log.exception("fault listener failed")

    def stop_workers(self) -> None:
        for w in self.workers:
            w.stop()
            for result in w.deliver(self.fw.clock.now_ns() + 10**18, lockstep=False):
                if not result.ok:
                    log.warning("worker %s: job failed at shutdown: %s", w.name, result.error)

    def shutdown(self) -> None:
        self.event("ExecStopped", cycles=self._total_cycles)

    # -- commands -----------------------------------------------------------------------------

    @command("EXEC_ENABLE", Arg("member", "str", doc="component instance name"))
    def exec_enable(self, member: str) -> None:
        """Enable a rate-group member, clearing a fault."""
        m = self._find(member)
        m.enabled, m.faulted = True, False
        self.event("MemberEnabled", member=member)

    @command("EXEC_DISABLE", Arg("member", "str", doc="component instance name"))
    def exec_disable(self, member: str) -> None:
        """Stop calling a rate-group member until EXEC_ENABLE."""
        if member in self.ESSENTIAL:
            raise CommandFailed(f"{member} is essential and cannot be disabled")
        m = self._find(member)
        m.enabled = False
        self.event("MemberDisabled", member=member)

    def _find(self, member: str) -> Member:
        try:
            return self.member(member)
        except KeyError:
            names = [m.component.name for g in self.groups for m in g.members]
            raise CommandFailed(f"no member {member!r}; members: {', '.join(names)}") from None
