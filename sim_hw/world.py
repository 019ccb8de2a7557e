"""The simulated world: terrain, sun, one vehicle, its sensors, power, heat and cameras.

A ``World`` is one vehicle's view of a site: a rover (``kind="rover"``) or a static lander
(``kind="lander"``, :mod:`sim_hw.lander`). Several vehicles share a site through
:class:`sim_hw.site.Site`, which builds one terrain and one world per vehicle on it; each
world's ``neighbours`` are drawn in its camera images.

**Time.** The world keeps its own simulated clock, ``time_s``, on a fixed grid of physics steps
(``physics_dt_s``, 0.02 s by default). :meth:`World.step_to` integrates up to a time and is
idempotent: asking for a time at or before ``now`` does nothing. Power and heat move on a
coarser grid (``slow_dt_s``, 10 s by default), aligned to multiples of that step, with the motor
energy of the fine steps in between averaged into it. While the vehicle is quiescent (nothing
commanded, wheels still) a fine step changes nothing, so the world jumps straight to the next
slow boundary: a lunar night passes in seconds of wall time, and the result is the same as
stepping it finely. With the same seed and the same sequence of calls, every run is identical.

The world's clock starts at 0; ``env_time_s = start_time_s + time_s`` is the local solar time
the sun model uses (seconds since local midnight of day 0). A world may start at sunrise plus
some hours (``start_hours_after_sunrise``) or at an explicit local time.

**Truth and sensors.** :meth:`World.truth` is what a test harness may look at (pose, speeds,
slip, sun, state of charge, temperatures). Flight software only sees readings: the in-process
devices (:mod:`sim_hw.devices`) and the MCU plant (:meth:`World.mcu_plant`) are built on
:meth:`World.read_drive`, :meth:`World.read_imu`, :meth:`World.read_power`,
:meth:`World.read_thermal` and :meth:`World.capture`. The plant's report is a
:class:`PlantSensors` dict whose values also answer under the MCU emulator's field names, so
``hal.open_device("mcu+pty://", plant=world.mcu_plant())`` puts the world behind the emulated
microcontroller. Fault bits follow the MCU protocol's ``FaultFlags``.
"""

from __future__ import annotations

import logging
import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from hal.contracts import CameraModel, DriveStatus, ImuReading, PowerReading, ThermalReading
from hal.mcu.protocol import FaultFlags
from sim_hw.environment import BodyPreset, Environment
from sim_hw.environment import preset as body_preset
from sim_hw.lander import Lander, LanderConfig
from sim_hw.objects import Box, draw_boxes
from sim_hw.power import Battery, BatteryConfig, PowerConfig, PowerSystem, SolarConfig, SolarPanel
from sim_hw.render import CameraPose, Renderer, camera_model
from sim_hw.sampling import Regolith, SamplingConfig, SamplingSystem
from sim_hw.sensors import EncoderModel, ImuConfig, ImuModel
from sim_hw.terrain import Terrain, TerrainConfig
from sim_hw.thermal import ThermalConfig, ThermalModel
from sim_hw.vehicle import Vehicle, VehicleConfig

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class CameraSpec:
    """A mast camera: image size, field of view, pointing and (optionally) a stereo baseline."""

    name: str = "navcam"
    width: int = 640
    height: int = 480
    fov_deg: float = 60.0
    pan_deg: float = 0.0
    tilt_deg: float = -20.0
    stereo: bool = True
    baseline_m: float = 0.2
    noise_dn: float = 1.0
    bgr: bool = False

    def __post_init__(self) -> None:
        camera_model(self.width, self.height, self.fov_deg)  # raises on bad geometry
        if self.baseline_m < 0 or self.noise_dn < 0:
            raise ValueError("camera baseline_m and noise_dn must not be negative")

    def model(self) -> CameraModel:
        return camera_model(self.width, self.height, self.fov_deg)


class World:
    """Everything physical about one vehicle's site, advanced on a fixed simulated-time grid."""

    def __init__(
        self,
        preset: str | BodyPreset = "moon",
        seed: int = 0,
        *,
        terrain: Terrain | None = None,
        terrain_config: TerrainConfig | None = None,
        latitude_deg: float = 0.0,
        longitude_deg: float = 0.0,
        season_deg: float = 0.0,
        start_time_s: float | None = None,
        start_hours_after_sunrise: float | None = None,
        start_x: float | None = None,
        start_y: float | None = None,
        start_yaw_deg: float = 0.0,
        vehicle: VehicleConfig | None = None,
        imu: ImuConfig | None = None,
        battery: BatteryConfig | None = None,
        solar: SolarConfig | None = None,
        power: PowerConfig | None = None,
        thermal: ThermalConfig | None = None,
        initial_temp_c: float | None = None,
        cameras: dict[str, CameraSpec] | None = None,
        physics_dt_s: float = 0.02,
        slow_dt_s: float = 10.0,
        shadows: bool = True,
        kind: str = "rover",
        lander: LanderConfig | None = None,
        sampling: SamplingConfig | None = None,
        name: str = "vehicle",
    ) -> None:
        self.body = body_preset(preset)
        self.seed = int(seed)
        if physics_dt_s <= 0 or slow_dt_s < physics_dt_s:
            raise ValueError("physics_dt_s must be positive and slow_dt_s at least physics_dt_s")
        self.physics_dt_s = float(physics_dt_s)
        self._slow_k = max(1, int(round(slow_dt_s / physics_dt_s)))
        self.slow_dt_s = self._slow_k * self.physics_dt_s
        ss = np.random.SeedSequence(self.seed)
        s_terrain, s_vehicle, s_imu, s_render = (int(x.generate_state(1)[0]) for x in ss.spawn(4))

        if terrain is None:
            tc = terrain_config or TerrainConfig(
                albedo=self.body.albedo,
                crater_density=self.body.crater_density,
                rock_abundance=self.body.rock_abundance,
                clear_radius_m=2.0,
            )
            terrain = Terrain.generate(tc, seed=s_terrain)
        self.terrain = terrain
        self.env = Environment(self.body, latitude_deg, longitude_deg, season_deg)
        if start_time_s is not None and start_hours_after_sunrise is not None:
            raise ValueError("give start_time_s or start_hours_after_sunrise, not both")
        if start_hours_after_sunrise is not None:
            sunrise = self.env.next_sunrise(0.0, horizon_days=1.5)
            if sunrise is None:
                raise ValueError(
                    f"start_hours_after_sunrise: the sun does not rise at latitude {latitude_deg}"
                )
            start_time_s = sunrise + 3600.0 * start_hours_after_sunrise
        self.start_time_s = float(start_time_s if start_time_s is not None else 0.35 * self.body.day_length_s)

        if kind not in ("rover", "lander"):
            raise ValueError(f"kind must be 'rover' or 'lander', not {kind!r}")
        self.kind = kind
        self.name = name
        self.vehicle: Vehicle
        if kind == "lander":
            self.vehicle = Lander(terrain, lander, start_x, start_y, start_yaw_deg, self.body.gravity_mps2, s_vehicle)
        else:
            self.vehicle = Vehicle(terrain, vehicle, start_x, start_y, start_yaw_deg, self.body.gravity_mps2,
                                   s_vehicle)
        #: the other vehicles on the same site, drawn in this vehicle's camera images
        self.neighbours: list[World] = []
        self.imu = ImuModel(imu, seed=s_imu)
        self.encoders = EncoderModel(self.vehicle.config.ticks_per_rev)
        self.power = PowerSystem(Battery(battery), SolarPanel(solar), power)
        self.thermal = ThermalModel(thermal, initial_c=initial_temp_c)
        self.thermal.update_heaters()
        self.cameras: dict[str, CameraSpec] = dict(cameras) if cameras is not None else {"navcam": CameraSpec()}
        self.renderer = Renderer(terrain, shadows=shadows, seed=s_render,
                                 tint_bgr=(0.55, 0.72, 0.95) if self.body.name == "mars" else (1.0, 1.0, 1.0))
        self.avionics_on = True  # False models hibernation: only the wake circuit draws power
        #: further switched rails (hosted payloads, ``sim://mcu?loads=payload.spec:2.5``): name -> W when on
        self.switched_loads: dict[str, float] = {}
        self.switched_on: set[str] = set()
        self.powered = True
        self.restart_soc = 0.05
        self._steps = 0
        self._now_s = 0.0  # time_s, kept beside the step count for the reads made every cycle
        self._motor_j = 0.0  # electrical energy the motors drew since the last slow step
        self._motor_heat_j = [0.0, 0.0]  # and the part each side turned into heat
        self._bus_v = self.power.battery.ocv()
        self._solar_w = self._solar_now()
        self._bus_v, _ = self.power.bus(self._load_w(), self._solar_w)
        self._frame_seq: dict[str, int] = {}
        #: a sample-return lander's drill, arm, container and ascent interface (sim_hw.sampling)
        self.sampling: SamplingSystem | None = None
        if sampling is not None:
            self.add_sampling(sampling)

    def add_sampling(self, config: SamplingConfig | None = None) -> SamplingSystem:
        """Give the vehicle its sampling mechanisms (once), over the regolith under it."""
        if self.sampling is None:
            s = self.vehicle.state
            t = self.terrain
            h, w = t.heights.shape
            area = max(1e-9, (h - 1) * (w - 1) * t.resolution_m ** 2)
            # Golombek k is the fraction of the surface rocks cover: the site's own, seen from its rocks
            k = sum(math.pi * r.radius ** 2 for r in t.rocks) / area
            regolith = Regolith.for_site(self.body.name, self.seed, s.x, s.y, k)
            self.sampling = SamplingSystem(config, regolith, start_s=self.time_s)
        return self.sampling

    # ------------------------------------------------------------------ construction helpers

    @classmethod
    def from_config(cls, config: dict[str, Any], seed: int | None = None) -> World:
        """Build from a scenario dictionary (see :mod:`sim_hw.scenario`); ``seed`` overrides."""
        from sim_hw.scenario import Scenario

        scenario = Scenario.from_dict(config)
        return scenario.build(seed=seed)

    def __repr__(self) -> str:
        return f"World({self.body.name!r}, seed={self.seed}, t={self.time_s:.2f}s)"

    # ------------------------------------------------------------------ time

    @property
    def time_s(self) -> float:
        return self._now_s

    @property
    def env_time_s(self) -> float:
        """Local solar time the sun model sees: seconds since local midnight of day 0."""
        return self.start_time_s + self.time_s

    def step_to(self, t_s: float) -> None:
        """Integrate physics up to simulated time t (floored to the step grid); no-op if t <= now."""
        dt = self.physics_dt_s
        target = int(math.floor(t_s / dt + 1e-9))
        steps = self._steps
        if steps >= target:
            return
        k = self._slow_k
        veh = self.vehicle
        sampling = self.sampling
        while steps < target:
            if veh.quiescent:
                nxt = min(target, (steps // k + 1) * k)
                veh.step((nxt - steps) * dt)
                steps = nxt
            else:
                veh.step(dt)
                s = veh.state
                pl = self._bus_v * s.current_left * dt
                pr = self._bus_v * s.current_right * dt
                self._motor_j += pl + pr
                loss = 1.0 - veh.config.motor_efficiency
                heat = self._motor_heat_j
                heat[0] += pl * loss
                heat[1] += pr * loss
                steps += 1
            # the clock moves before the sampling mechanisms and the slow step look at it
            self._steps = steps
            self._now_s = steps * dt
            if sampling is not None:
                sampling.step_to(self._now_s)
            if steps % k == 0:
                self._slow_step()

    def step(self, dt_s: float) -> None:
        """Advance by dt seconds from now."""
        self.step_to(self.time_s + dt_s)

    def _slow_step(self) -> None:
        """Move energy and heat over one slow step, with the sun at the step's midpoint."""
        dt = self.slow_dt_s
        t_mid = self.env_time_s - 0.5 * dt
        solar = self.power.panel.output_w(self.env, t_mid, self.vehicle.rotation())
        motor_w = self._motor_j / dt
        if self.sampling is not None:
            motor_w += self.sampling.take_energy_j() / dt
        avionics = self._avionics_w()
        load = avionics + self.thermal.heater_power_w() + motor_w + self._switched_w()
        self.power.step(dt, load, solar)
        cfg = self.thermal.config
        i = self.power.last_current_a
        internal = {
            cfg.avionics_node: avionics,
            cfg.battery_node: i * i * self.power.battery.config.internal_resistance_ohm,
        }
        for node, heat in zip(cfg.motor_nodes, self._motor_heat_j, strict=True):
            internal[node] = internal.get(node, 0.0) + heat / dt
        self.thermal.step(dt, self.env, t_mid, internal)
        self._motor_j = 0.0
        self._motor_heat_j = [0.0, 0.0]
        # brownout: everything on the bus drops out until the battery has recovered a little
        if self.power.brownout and self.powered:
            log.warning("world t=%.0f s: brownout, vehicle unpowered", self.time_s)
            self.powered = False
        elif not self.powered and self.power.battery.soc >= self.restart_soc:
            log.info("world t=%.0f s: battery recovered, vehicle powered again", self.time_s)
            self.powered = True
        if not self.powered:
            self.vehicle.stop()
        self.thermal.inhibit = not self.powered
        self.thermal.update_heaters()
        self._solar_w = self._solar_now()
        self._bus_v, _ = self.power.bus(self._load_w(), self._solar_w)

    def _avionics_w(self) -> float:
        if not self.powered:
            return 0.0
        cfg = self.power.config
        return cfg.avionics_w if self.avionics_on else cfg.hibernate_w

    def _switched_w(self) -> float:
        if not self.powered:
            return 0.0
        return sum(self.switched_loads[n] for n in sorted(self.switched_on))

    def switch_load(self, load: str, on: bool) -> None:
        """The power board's switched rails: ``avionics`` (off = hibernating), ``heaters``, and
        any rail in :attr:`switched_loads`."""
        if load == "avionics":
            self.avionics_on = bool(on)
        elif load == "heaters":
            self.thermal.switched_off = not on
            self.thermal.update_heaters()
        elif load in self.switched_loads:
            if on:
                self.switched_on.add(load)
            else:
                self.switched_on.discard(load)
        else:
            raise ValueError(f"no load {load!r}; loads: {', '.join(['avionics', 'heaters', *self.switched_loads])}")

    def _solar_now(self) -> float:
        return self.power.panel.output_w(self.env, self.env_time_s, self.vehicle.rotation())

    def _load_w(self) -> float:
        s = self.vehicle.state
        motors = self._bus_v * (s.current_left + s.current_right)
        return self._avionics_w() + self.thermal.heater_power_w() + motors + self._switched_w()

    # ------------------------------------------------------------------ sun

    def sun_vector(self) -> np.ndarray:
        return self.env.sun_vector(self.env_time_s)

    def sun_elevation_deg(self) -> float:
        return float(self.env.sun_elevation_deg(self.env_time_s))

    # ------------------------------------------------------------------ readings

    def _fault_flags(self) -> int:
        """The MCU protocol's fault bits: a stall on each commanded side, undervoltage."""
        s = self.vehicle.state
        if not s.stalled and self.powered:
            return 0  # the common case, without building flags
        flags = FaultFlags.NONE
        if s.stalled:
            if s.cmd_left:
                flags |= FaultFlags.STALL_LEFT
            if s.cmd_right:
                flags |= FaultFlags.STALL_RIGHT
        if not self.powered:
            flags |= FaultFlags.UNDERVOLTAGE
        return int(flags)

    def read_drive(self) -> DriveStatus:
        veh = self.vehicle
        s = veh.state
        lt, rt = self.encoders.read(veh)
        # no flags to build in the common case: nothing stalled, the bus powered
        flags = 0 if not s.stalled and self.powered else self._fault_flags()
        return DriveStatus(self._now_s, lt, rt, s.current_left, s.current_right, s.stalled, flags)

    def read_imu(self) -> ImuReading:
        thermal = self.thermal
        accel, gyro, temp = self.imu.read(self.vehicle, thermal.temp_c(thermal.config.avionics_node))
        return ImuReading(self._now_s, accel, gyro, temp)

    def read_power(self) -> PowerReading:
        v, i = self.power.bus(self._load_w(), self._solar_w)
        return PowerReading(self.time_s, v, i, self.power.battery.soc, self._solar_w)

    def read_thermal(self) -> ThermalReading:
        return ThermalReading(self.time_s, self.thermal.temps_c)

    def sensors(self) -> PlantSensors:
        """Everything an MCU sensor report carries, as a dict (see :class:`PlantSensors`)."""
        d = self.read_drive()
        imu = self.read_imu()
        p = self.read_power()
        return PlantSensors({
            "time_s": self.time_s,
            "left_ticks": d.left_ticks,
            "right_ticks": d.right_ticks,
            "left_current_a": d.left_current_a,
            "right_current_a": d.right_current_a,
            "accel": imu.accel_mps2,
            "gyro": imu.gyro_rads,
            "imu_temp_c": imu.temp_c,
            "bus_v": p.bus_v,
            "current_a": p.current_a,
            "soc": p.soc,
            "solar_w": p.solar_w,
            "temps_c": self.thermal.temps_c,
            "stalled": d.stalled,
        }, fault_flags=d.fault_flags)

    def truth(self) -> dict[str, Any]:
        """Ground truth for harnesses: pose, motion, sun, energy and heat. Never for flight code."""
        out: dict[str, Any] = dict(self.vehicle.truth())
        out.update(
            time_s=self.time_s,
            env_time_s=self.env_time_s,
            sun_elevation_deg=self.sun_elevation_deg(),
            sun_azimuth_deg=float(self.env.sun_azimuth_deg(self.env_time_s)),
            soc=self.power.battery.soc,
            battery_wh=self.power.battery.energy_wh,
            solar_w=self._solar_w,
            temps_c=self.thermal.temps_c,
            heaters_on=list(self.thermal.heater_on),
            powered=self.powered,
        )
        return out

    # ------------------------------------------------------------------ cameras

    def camera_pose(self, name: str = "navcam") -> CameraPose:
        spec = self._camera(name)
        mount, rot = self.vehicle.camera_mount()
        return CameraPose.from_mount(mount, rot, spec.pan_deg, spec.tilt_deg)

    def _camera(self, name: str) -> CameraSpec:
        try:
            return self.cameras[name]
        except KeyError:
            raise KeyError(f"no camera named {name!r}; cameras: {', '.join(sorted(self.cameras))}") from None

    def add_camera(self, spec: CameraSpec) -> None:
        self.cameras[spec.name] = spec

    def capture(self, name: str = "navcam", eye: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Render one image now: ``eye`` None (mast centre), "left" or "right" of the stereo pair.

        Returns the image and its metadata (pose, sun, frame sequence number). The sensor noise
        is seeded by the world seed, camera name, eye and sequence, so it is reproducible.
        """
        spec = self._camera(name)
        pose = self.camera_pose(name)
        if eye == "left":
            pose = pose.stereo(spec.baseline_m)[0]
        elif eye == "right":
            pose = pose.stereo(spec.baseline_m)[1]
        elif eye is not None:
            raise ValueError(f"eye must be None, 'left' or 'right', not {eye!r}")
        key = f"{name}/{eye or 'mono'}"
        seq = self._frame_seq.get(key, 0)
        self._frame_seq[key] = seq + 1
        rng = np.random.default_rng([self.seed, zlib.crc32(key.encode()), seq])
        img = self.render_view(spec, pose, rng=rng)
        s = self.vehicle.state
        meta = {
            "pose": pose.as_dict(),
            "vehicle": {"x": s.x, "y": s.y, "z": s.z, "yaw": s.yaw, "pitch": s.pitch, "roll": s.roll},
            "pan_deg": spec.pan_deg, "tilt_deg": spec.tilt_deg, "eye": eye or "mono",
            "sun_elevation_deg": self.sun_elevation_deg(), "seq": seq,
        }
        return img, meta  # type: ignore[return-value]

    def footprint(self) -> Box:
        """This vehicle's body as another vehicle's camera sees it."""
        s = self.vehicle.state
        if isinstance(self.vehicle, Lander):
            length, width, height = self.vehicle.size_m()
            albedo = 0.3  # foil and deck, darker than the regolith in the sun
        else:
            c = self.vehicle.config
            length, width, height, albedo = c.wheelbase_m + 2 * c.wheel_radius_m, c.track_width_m + 0.1, 0.6, 0.3
        return Box(s.x, s.y, s.z, s.yaw, length, width, height, albedo)

    def neighbour_boxes(self) -> list[Any]:
        """Where the other vehicles on the site stand now (what :meth:`render_view` draws)."""
        return [n.footprint() for n in self.neighbours]

    def render_view(self, spec: CameraSpec, pose: CameraPose, exposure: float = 1.0,
                    rng: np.random.Generator | None = None, *, sun: np.ndarray | None = None,
                    boxes: list[Any] | None = None, parallel: bool = True) -> np.ndarray:
        """One image of the terrain and the other vehicles on the site from ``pose``.

        ``sun`` and ``boxes`` (the neighbours' footprints) default to now; a frame fixed at one
        instant and developed later passes the ones it fixed then.
        """
        sun = self.sun_vector() if sun is None else sun
        boxes = self.neighbour_boxes() if boxes is None else boxes
        img = self.renderer.render(spec.model(), pose, sun, exposure=exposure, bgr=spec.bgr,
                                   noise_dn=spec.noise_dn, rng=rng, return_depth=bool(boxes), parallel=parallel)
        if boxes:
            img, depth = img
            tint = self.renderer.reference.tint_bgr if spec.bgr else (1.0, 1.0, 1.0)
            draw_boxes(img, depth, spec.model(), pose, boxes, sun, float(np.mean(self.terrain.albedo)), tint,
                       exposure=exposure)
        return img  # type: ignore[return-value]

    # ------------------------------------------------------------------ the MCU plant

    def mcu_plant(self) -> WorldPlant:
        """The object an MCU emulator drives: wheels in, sensor reports out, time advanced by it."""
        return WorldPlant(self)

    # ------------------------------------------------------------------ whole missions

    @classmethod
    def for_mission(cls, seed: int = 0, scenario: str = "moon-farside", **overrides: Any) -> World:
        """The world a whole-mission run flies in: a named scenario (see :mod:`sim_hw.scenario`),
        with any scenario keys overridden (``slow_dt_s=60.0`` for fast runs)."""
        from sim_hw.scenario import Scenario, get_scenario

        base = get_scenario(scenario)
        if overrides:
            base = Scenario.from_dict({"scenario": scenario, **overrides})
        return base.build(seed=seed)

    def summary(self) -> str:
        """One line of truth for a run's report: where the vehicle is, its energy and heat."""
        t = self.truth()
        temps = t["temps_c"]
        return (
            f"t={t['time_s']:.0f} s, x={t['x']:.2f} y={t['y']:.2f} m yaw={math.degrees(t['yaw']):.1f} deg, "
            f"driven {t['distance_m']:.2f} m{' (stalled)' if t['stalled'] else ''}, "
            f"sun {t['sun_elevation_deg']:.1f} deg, SOC {100 * t['soc']:.1f} %, "
            f"board {temps.get('board', float('nan')):.1f} C"
        )


class PlantSensors(dict):
    """A sensor report: a dict with the keys ``time_s, left_ticks, right_ticks, left_current_a,
    right_current_a, accel, gyro, imu_temp_c, bus_v, current_a, soc, solar_w, temps_c, stalled``.

    The same values also answer as attributes, under the field names of the MCU emulator's
    ``McuSensors`` (``accel_mps2``, ``gyro_rads``, ``fault_flags`` and the rest unchanged), so the
    emulator can read a world plant's report the way it reads its own.
    """

    _ALIASES = {"accel_mps2": "accel", "gyro_rads": "gyro"}

    def __init__(self, values: dict[str, Any], fault_flags: int = 0) -> None:
        super().__init__(values)
        self.fault_flags = int(fault_flags)

    def __getattr__(self, name: str) -> Any:
        key = self._ALIASES.get(name, name)
        try:
            return self[key]
        except KeyError:
            raise AttributeError(name) from None


class WorldPlant:
    """The McuPlant face of a world: ``set_wheels``, ``stop``, ``step``, ``sensors``, ``reset_encoders``.

    ``step(dt)`` advances the world by dt of simulated time (an emulator running in real time
    calls it with the wall time that passed); fractions of a physics step are carried over, so
    many small steps add up to the same time as one big one.
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self._target = world.time_s

    def set_wheels(self, left_mps: float, right_mps: float) -> None:
        self.world.vehicle.set_wheels(left_mps, right_mps)

    def stop(self) -> None:
        self.world.vehicle.stop()

    def step(self, dt_s: float) -> None:
        if dt_s < 0:
            raise ValueError("dt_s must not be negative")
        self._target = max(self._target, self.world.time_s) + dt_s
        self.world.step_to(self._target)

    def sensors(self) -> PlantSensors:
        return self.world.sensors()

    def reset_encoders(self) -> None:
        self.world.vehicle.reset_encoders()

    @property
    def sampling(self) -> SamplingSystem | None:
        """The lander's sampling board, which the emulator drives (None on a rover)."""
        return self.world.sampling
