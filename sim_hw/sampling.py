"""A sample-return lander's mechanisms: a drill, a scoop arm, a sample container, an ascent interface.

The models are small and honest enough to test autonomy against, in the spirit of Chang'e-5's
surface operations (a rotary-percussive drill that cored about a metre, a scoop on an arm, a
sealed container handed to the ascender):

* **Regolith** (:class:`Regolith`): the resistance the drill meets at each depth, from the site:
  the body's regolith strength, compaction that grows with depth, seeded layering (0.1 m layers,
  a few tens of percent apart) and buried rocks, drawn from the site's rock abundance and
  position, or injected (``inject("drill-jam")`` buries a rock the bit cannot pass).
* **Drill** (:class:`DrillModel`): the bit feeds at the commanded rate; torque is the free torque
  plus the regolith's resistance at the bit (more at a faster feed). At the stall torque the bit
  stops: JAMMED, until it is retracted. The motor heats with the torque it delivers and cools
  toward ambient; past its cut-out temperature it trips (OVERHEATED) until it has cooled to its
  restart temperature. The core fills the sample tube as the bit goes down; a full retract
  hands it to the container.
* **Arm** (:class:`ArmModel`): two joints moving at a fixed rate; the scoop's height and reach
  follow from the link lengths. Pushing the scoop into the ground raises a contact force and
  the arm stops at its force limit. A scoop at the surface collects regolith (less in stronger
  ground); a deposit from the stow pose empties it into the container.
* **Container** (:class:`ContainerModel`): mass held; sealing takes ``seal_s`` and is final.
* **Ascent** (:class:`AscentModel`): ready when the container is sealed and holds a sample, the
  drill is up and still and the arm stowed; it can be armed only when ready.

A command the mechanism cannot carry out now raises :class:`SamplingRefused` with a reason and
a kind (``"range"`` or ``"state"``); the devices turn it into their own errors (an MCU's NACK).
Time moves only through :meth:`SamplingSystem.step_to`, in sub-steps of at most ``max_dt_s``, so
a run on the simulated clock is deterministic.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from hal.contracts import ArmStatus, AscentStatus, ContainerStatus, DrillState, DrillStatus

log = logging.getLogger(__name__)

#: Regolith strength per body: how hard it is to drill at the surface, relative to the Moon's mare.
BODY_STRENGTH = {"moon": 1.0, "mars": 0.8}
FAULTS = ("drill-jam",)


class SamplingRefused(ValueError):
    """A sampling command the mechanism cannot carry out; ``kind`` is "range" or "state"."""

    def __init__(self, reason: str, kind: str = "state") -> None:
        super().__init__(reason)
        self.kind = kind


@dataclass
class Regolith:
    """Resistance to drilling against depth at one site (see the module docstring)."""

    strength: float = 1.0
    compaction_per_m: float = 0.8
    layers: tuple[float, ...] = ()  # factor per 0.1 m layer from the surface
    rocks: list[tuple[float, float, float]] = field(default_factory=list)  # (top m, bottom m, resistance)
    layer_m: float = 0.1

    @classmethod
    def for_site(cls, body: str, seed: int, x: float = 0.0, y: float = 0.0, rock_abundance: float = 0.01,
                 depth_m: float = 3.0) -> Regolith:
        """The column under (x, y) on a body's site, seeded by the world seed and the position."""
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(round(x * 100)) & 0xFFFFFFFF,
                                     int(round(y * 100)) & 0xFFFFFFFF, 0x5A3])
        n = int(math.ceil(depth_m / 0.1)) + 1
        layers = tuple(float(v) for v in np.clip(rng.normal(1.0, 0.12, n), 0.7, 1.4))
        rocks: list[tuple[float, float, float]] = []
        # a buried rock in the column: likelier where the surface is rockier (Golombek k)
        if rng.random() < min(0.5, 5.0 * max(0.0, rock_abundance)):
            top = float(rng.uniform(0.3, depth_m))
            rocks.append((top, top + float(rng.uniform(0.05, 0.3)), float(rng.uniform(3.0, 8.0))))
        return cls(BODY_STRENGTH.get(body, 1.0), 0.8, layers, rocks)

    def resistance(self, depth_m: float) -> float:
        d = max(0.0, depth_m)
        base = self.strength * (1.0 + self.compaction_per_m * d)
        if self.layers:
            base *= self.layers[min(len(self.layers) - 1, int(d / self.layer_m))]
        for top, bottom, r in self.rocks:
            if top <= d <= bottom:
                base = max(base, r)
        return base

    def bury_rock(self, top_m: float, thickness_m: float = 0.3, resistance: float = 50.0) -> None:
        self.rocks.append((float(top_m), float(top_m + thickness_m), float(resistance)))


@dataclass(frozen=True)
class DrillConfig:
    max_depth_m: float = 2.5
    max_rate_mm_s: float = 20.0
    ref_rate_mm_s: float = 10.0  # the feed the regolith resistance is quoted at
    free_torque_nm: float = 4.0
    resist_torque_nm: float = 10.0  # torque per unit of regolith resistance at the reference feed
    stall_torque_nm: float = 60.0
    retract_rate_mm_s: float = 25.0
    motor_w_at_stall: float = 150.0
    heat_c_per_nm_s: float = 0.012
    cool_tau_s: float = 400.0
    cutout_c: float = 120.0
    restart_c: float = 80.0
    core_kg_per_m: float = 0.13
    ambient_c: float = 10.0

    def __post_init__(self) -> None:
        for name in ("max_depth_m", "max_rate_mm_s", "ref_rate_mm_s", "stall_torque_nm", "retract_rate_mm_s",
                     "cool_tau_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"drill.{name} must be positive, got {getattr(self, name)}")
        if self.restart_c >= self.cutout_c:
            raise ValueError("drill.restart_c must be below drill.cutout_c")


class DrillModel:
    """The drill's mechanics and heat (see the module docstring)."""

    def __init__(self, config: DrillConfig, regolith: Regolith) -> None:
        self.config = config
        self.regolith = regolith
        self.depth_m = 0.0
        self.deepest_m = 0.0
        self.target_m = 0.0
        self.cmd_rate_mm_s = 0.0
        self.rate_mm_s = 0.0
        self.torque_nm = 0.0
        self.temp_c = config.ambient_c
        self.state = DrillState.IDLE
        self.motor_on = False
        self.core_kg = 0.0
        self.jams = 0
        self.overheats = 0
        self.energy_j = 0.0

    def start(self, target_m: float, rate_mm_s: float) -> None:
        c = self.config
        if not (math.isfinite(target_m) and 0.0 < target_m <= c.max_depth_m):
            raise SamplingRefused(f"target depth {target_m} m outside 0..{c.max_depth_m} m", "range")
        if not (math.isfinite(rate_mm_s) and 0.0 < rate_mm_s <= c.max_rate_mm_s):
            raise SamplingRefused(f"rate {rate_mm_s} mm/s outside 0..{c.max_rate_mm_s} mm/s", "range")
        if self.state == DrillState.JAMMED:
            raise SamplingRefused("the bit is jammed: retract it first")
        if self.state == DrillState.OVERHEATED:
            raise SamplingRefused(f"the motor is over temperature ({self.temp_c:.0f} C); wait until it cools")
        self.target_m = float(target_m)
        self.cmd_rate_mm_s = float(rate_mm_s)
        self.state = DrillState.DRILLING if self.depth_m < self.target_m else DrillState.IDLE

    def stop(self) -> None:
        if self.state in (DrillState.DRILLING, DrillState.RETRACTING):
            self.state = DrillState.IDLE
        self.motor_on = False  # a jammed bit stays held, but the motor no longer presses on it

    def retract(self) -> None:
        if self.state == DrillState.OVERHEATED:
            raise SamplingRefused(f"the motor is over temperature ({self.temp_c:.0f} C); wait until it cools")
        if self.depth_m > 0.0:
            self.state = DrillState.RETRACTING

    def _torque(self, rate_mm_s: float, depth_m: float | None = None) -> float:
        c = self.config
        r = self.regolith.resistance(self.depth_m if depth_m is None else depth_m)
        return c.free_torque_nm + c.resist_torque_nm * r * (0.5 + 0.5 * rate_mm_s / c.ref_rate_mm_s)

    def step(self, dt: float) -> float:
        """Advance ``dt`` seconds; returns the core delivered to the container (kg) on reaching the top."""
        c = self.config
        delivered = 0.0
        if self.state == DrillState.DRILLING:
            # the resistance where the bit would be after this step: a step never carries it into rock
            ahead_m = min(self.target_m, self.depth_m + self.cmd_rate_mm_s * dt / 1000.0)
            torque = self._torque(self.cmd_rate_mm_s, ahead_m)
            if torque >= c.stall_torque_nm:
                self.state = DrillState.JAMMED
                self.motor_on = True  # the motor keeps pressing at its current limit until told
                self.jams += 1
                log.info("drill jammed at %.3f m (resistance %.1f)", self.depth_m,
                         self.regolith.resistance(self.depth_m))
            else:
                self.torque_nm, self.rate_mm_s = torque, self.cmd_rate_mm_s
                self.depth_m = ahead_m
                if self.depth_m > self.deepest_m:
                    self.core_kg += (self.depth_m - self.deepest_m) * c.core_kg_per_m
                    self.deepest_m = self.depth_m
                if self.depth_m >= self.target_m - 1e-9:
                    self.state = DrillState.IDLE
        if self.state == DrillState.JAMMED:
            self.torque_nm, self.rate_mm_s = (c.stall_torque_nm if self.motor_on else 0.0), 0.0
        elif self.state == DrillState.RETRACTING:
            self.torque_nm, self.rate_mm_s = c.free_torque_nm, -c.retract_rate_mm_s
            self.depth_m = max(0.0, self.depth_m - c.retract_rate_mm_s * dt / 1000.0)
            if self.depth_m <= 0.0:
                self.state = DrillState.IDLE
                self.deepest_m = 0.0
                delivered, self.core_kg = self.core_kg, 0.0
        elif self.state != DrillState.DRILLING:
            self.torque_nm, self.rate_mm_s = 0.0, 0.0
        spinning = self.torque_nm > 0.0
        heat = c.heat_c_per_nm_s * self.torque_nm if spinning else 0.0
        self.temp_c += (heat - (self.temp_c - c.ambient_c) / c.cool_tau_s) * dt
        if spinning:
            self.energy_j += c.motor_w_at_stall * self.torque_nm / c.stall_torque_nm * dt
        if self.state != DrillState.OVERHEATED and self.temp_c >= c.cutout_c:
            self.state = DrillState.OVERHEATED
            self.motor_on = False
            self.overheats += 1
            self.torque_nm, self.rate_mm_s = 0.0, 0.0
            log.info("drill motor cut out at %.1f C, depth %.3f m", self.temp_c, self.depth_m)
        elif self.state == DrillState.OVERHEATED and self.temp_c <= c.restart_c:
            self.state = DrillState.IDLE
        return delivered

    @property
    def active(self) -> bool:
        return self.state in (DrillState.DRILLING, DrillState.RETRACTING, DrillState.JAMMED)

    def status(self, t: float) -> DrillStatus:
        return DrillStatus(t, self.depth_m, self.rate_mm_s, self.torque_nm, self.temp_c, int(self.state),
                           self.core_kg, self.target_m)


@dataclass(frozen=True)
class ArmConfig:
    shoulder_height_m: float = 1.0  # the shoulder joint above the ground
    upper_m: float = 1.2
    fore_m: float = 1.0
    rate_deg_s: float = 10.0
    shoulder_limits_deg: tuple[float, float] = (-60.0, 90.0)
    elbow_limits_deg: tuple[float, float] = (-160.0, 0.0)
    stow_deg: tuple[float, float] = (60.0, -150.0)
    stow_tolerance_deg: float = 2.0
    contact_n_per_m: float = 3000.0
    max_force_n: float = 200.0
    scoop_s: float = 15.0
    scoop_kg: float = 0.4  # a full scoop in regolith of unit strength
    scoop_force_n: float = 60.0
    surface_tolerance_m: float = 0.05
    moving_w: float = 25.0


class ArmModel:
    """Two joints and a scoop (see the module docstring)."""

    def __init__(self, config: ArmConfig, regolith: Regolith) -> None:
        self.config = config
        self.regolith = regolith
        self.shoulder_deg, self.elbow_deg = config.stow_deg
        self.target = config.stow_deg
        self.force_n = 0.0
        self.scoop_left_s = 0.0
        self.holding_kg = 0.0
        self.blocked = False
        self.energy_j = 0.0

    def tip(self, shoulder_deg: float | None = None, elbow_deg: float | None = None) -> tuple[float, float]:
        """(reach, height) of the scoop for these joint angles (default: where the arm is)."""
        c = self.config
        s = math.radians(self.shoulder_deg if shoulder_deg is None else shoulder_deg)
        e = math.radians(self.elbow_deg if elbow_deg is None else elbow_deg)
        reach = c.upper_m * math.cos(s) + c.fore_m * math.cos(s + e)
        height = c.shoulder_height_m + c.upper_m * math.sin(s) + c.fore_m * math.sin(s + e)
        return reach, height

    @property
    def moving(self) -> bool:
        return (self.shoulder_deg, self.elbow_deg) != tuple(self.target) and not self.blocked

    @property
    def stowed(self) -> bool:
        tol = self.config.stow_tolerance_deg
        s0, e0 = self.config.stow_deg
        return abs(self.shoulder_deg - s0) <= tol and abs(self.elbow_deg - e0) <= tol and not self.moving

    def move(self, shoulder_deg: float, elbow_deg: float) -> None:
        c = self.config
        (slo, shi), (elo, ehi) = c.shoulder_limits_deg, c.elbow_limits_deg
        if not (math.isfinite(shoulder_deg) and math.isfinite(elbow_deg)
                and slo <= shoulder_deg <= shi and elo <= elbow_deg <= ehi):
            raise SamplingRefused(f"joints ({shoulder_deg}, {elbow_deg}) deg outside shoulder {slo:g}..{shi:g}, "
                                  f"elbow {elo:g}..{ehi:g}", "range")
        if self.scoop_left_s > 0:
            raise SamplingRefused("the scoop is closing; wait until it is done")
        self.target = (float(shoulder_deg), float(elbow_deg))
        self.blocked = False

    def scoop(self) -> None:
        if self.scoop_left_s > 0:
            return  # already closing: a repeated command (a retry) changes nothing
        _, height = self.tip()
        if self.moving:
            raise SamplingRefused("the arm is moving")
        if height > self.config.surface_tolerance_m:
            raise SamplingRefused(f"the scoop is {height:.2f} m above the surface")
        if self.holding_kg > 0:
            raise SamplingRefused("the scoop is full: deposit it first")
        self.scoop_left_s = self.config.scoop_s

    def deposit(self) -> float:
        if not self.stowed:
            raise SamplingRefused("deposit from the stow pose only (the scoop must be over the container)")
        kg, self.holding_kg = self.holding_kg, 0.0
        return kg

    def step(self, dt: float) -> None:
        c = self.config
        if self.scoop_left_s > 0:
            self.scoop_left_s = max(0.0, self.scoop_left_s - dt)
            strength = self.regolith.resistance(0.0)
            self.force_n = c.scoop_force_n * strength
            if self.scoop_left_s == 0.0:
                self.holding_kg = c.scoop_kg * min(1.0, 1.0 / max(strength, 1e-6))
                self.force_n = 0.0
            self.energy_j += c.moving_w * dt
            return
        if self.moving:
            # both joints arrive together: a straight line in joint space, led by the longer move
            ds, de = self.target[0] - self.shoulder_deg, self.target[1] - self.elbow_deg
            frac = min(1.0, c.rate_deg_s * dt / max(abs(ds), abs(de)))
            s = self.target[0] if frac == 1.0 else self.shoulder_deg + ds * frac
            e = self.target[1] if frac == 1.0 else self.elbow_deg + de * frac
            _, h = self.tip(s, e)
            force = max(0.0, -h) * c.contact_n_per_m
            if force > c.max_force_n:
                self.blocked = True  # the scoop is pressed into the ground: stop where it is
            else:
                self.shoulder_deg, self.elbow_deg = s, e
            self.energy_j += c.moving_w * dt
        _, h = self.tip()
        self.force_n = max(0.0, -h) * c.contact_n_per_m

    def status(self, t: float) -> ArmStatus:
        reach, _ = self.tip()
        return ArmStatus(t, self.shoulder_deg, self.elbow_deg, self.force_n, reach, self.moving,
                         self.scoop_left_s > 0, self.holding_kg)


@dataclass(frozen=True)
class ContainerConfig:
    seal_s: float = 20.0
    capacity_kg: float = 2.0


class ContainerModel:
    def __init__(self, config: ContainerConfig) -> None:
        self.config = config
        self.mass_kg = 0.0
        self.sealed = False
        self.seal_left_s = 0.0

    def add(self, kg: float) -> float:
        """Put regolith in; returns what did not fit (or all of it, once sealed)."""
        if self.sealed or self.seal_left_s > 0:
            return kg
        room = max(0.0, self.config.capacity_kg - self.mass_kg)
        taken = min(room, kg)
        self.mass_kg += taken
        return kg - taken

    def seal(self) -> None:
        if not self.sealed and self.seal_left_s == 0.0:
            self.seal_left_s = self.config.seal_s

    def step(self, dt: float) -> None:
        if self.seal_left_s > 0:
            self.seal_left_s = max(0.0, self.seal_left_s - dt)
            if self.seal_left_s == 0.0:
                self.sealed = True

    def status(self, t: float) -> ContainerStatus:
        return ContainerStatus(t, self.mass_kg, self.sealed, self.seal_left_s > 0)


@dataclass(frozen=True)
class SamplingConfig:
    """The whole sampling payload of a lander."""

    drill: DrillConfig = field(default_factory=DrillConfig)
    arm: ArmConfig = field(default_factory=ArmConfig)
    container: ContainerConfig = field(default_factory=ContainerConfig)
    max_dt_s: float = 0.1


class SamplingSystem:
    """Drill, arm, container and ascent interface of one lander, stepped on simulated time."""

    def __init__(self, config: SamplingConfig | None = None, regolith: Regolith | None = None,
                 start_s: float = 0.0) -> None:
        self.config = config or SamplingConfig()
        self.regolith = regolith or Regolith()
        self.drill = DrillModel(self.config.drill, self.regolith)
        self.arm = ArmModel(self.config.arm, self.regolith)
        self.container = ContainerModel(self.config.container)
        self.ascent_armed = False
        self.time_s = float(start_s)
        self.faults: list[str] = []
        self._energy_taken_j = 0.0

    # -- faults ----------------------------------------------------------------------------------

    def inject(self, fault: str, depth_m: float = 0.9) -> None:
        """Seed a fault: ``drill-jam`` buries a rock at ``depth_m`` that the bit cannot pass."""
        if fault not in FAULTS:
            raise ValueError(f"unknown sampling fault {fault!r}; faults: {', '.join(FAULTS)}")
        if fault == "drill-jam":
            self.regolith.bury_rock(depth_m)
        self.faults.append(fault)

    # -- time ------------------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return (self.drill.active or self.arm.moving or self.arm.scoop_left_s > 0
                or self.container.seal_left_s > 0)

    def step_to(self, t_s: float) -> None:
        """Advance to ``t_s`` in sub-steps of at most ``max_dt_s``; nothing happens for t <= now."""
        dt_max = self.config.max_dt_s
        while self.time_s < t_s - 1e-12:
            dt = min(dt_max, t_s - self.time_s)
            delivered = self.drill.step(dt)
            if delivered > 0:
                # what the container cannot take (sealed, full) stays in the drill's tube
                self.drill.core_kg += self.container.add(delivered)
            self.arm.step(dt)
            self.container.step(dt)
            self.time_s += dt
        if self.ascent_armed and not self.ready:
            self.ascent_armed = False

    def take_energy_j(self) -> float:
        """Electrical energy the mechanisms drew since the last call (the world's power model)."""
        total = self.drill.energy_j + self.arm.energy_j
        out = total - self._energy_taken_j
        self._energy_taken_j = total
        return out

    # -- commands (one flat face, so an MCU emulator or a lock can wrap every call) ----------------

    def start_drill(self, target_m: float, rate_mm_s: float) -> None:
        self.drill.start(target_m, rate_mm_s)

    def stop_drill(self) -> None:
        self.drill.stop()

    def retract_drill(self) -> None:
        self.drill.retract()

    def move_arm(self, shoulder_deg: float, elbow_deg: float) -> None:
        self.arm.move(shoulder_deg, elbow_deg)

    def scoop(self) -> None:
        self.arm.scoop()

    def deposit(self) -> None:
        if self.container.sealed or self.container.seal_left_s > 0:
            raise SamplingRefused("the container is sealed")
        kg = self.arm.deposit()
        left = self.container.add(kg)
        self.arm.holding_kg = left

    def seal(self) -> None:
        if self.container.mass_kg <= 0.0:
            raise SamplingRefused("the container is empty")
        self.container.seal()

    @property
    def ready(self) -> bool:
        d = self.drill
        return (self.container.sealed and self.container.mass_kg > 0 and d.depth_m == 0.0
                and not d.active and self.arm.stowed)

    def arm_ascent(self, armed: bool) -> None:
        if armed and not self.ready:
            raise SamplingRefused("not ready for ascent: the container must be sealed with a sample, the drill up "
                                  "and the arm stowed")
        self.ascent_armed = bool(armed)

    # -- readings --------------------------------------------------------------------------------

    def read_drill(self) -> DrillStatus:
        return self.drill.status(self.time_s)

    def read_arm(self) -> ArmStatus:
        return self.arm.status(self.time_s)

    def read_container(self) -> ContainerStatus:
        return self.container.status(self.time_s)

    def read_ascent(self) -> AscentStatus:
        ready = self.ready
        return AscentStatus(self.time_s, ready, self.ascent_armed and ready)  # interlock: armed only while ready
