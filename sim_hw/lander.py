"""A static lander: a body that sits where it landed, tilted by the ground and its landing.

A lander has no wheels. It stands on its footpads (the terrain under them sets its height,
pitch and roll, as a rover's wheels do) with an extra landing tilt on top, carries a mast
camera, a solar array, a battery and a thermal model (the world gives it those as it gives a
rover), and ignores drive commands, counting them (``refused_drive_commands``) so a misrouted
command is visible. It is the base for landers that do more (a drill, a sample arm): they add
their mechanisms to a subclass and keep this body.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from sim_hw.terrain import Terrain
from sim_hw.vehicle import Vehicle, VehicleConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LanderConfig:
    """Size, mass, mast and landing tilt of a lander (degrees, positive nose-up / right-down)."""

    mass_kg: float = 1200.0
    footprint_m: float = 3.0  # footpad spacing, square
    deck_height_m: float = 1.4  # top of the body above the ground, for rendering
    mast_height_m: float = 2.4
    mast_forward_m: float = 0.0
    tilt_pitch_deg: float = 0.0
    tilt_roll_deg: float = 0.0

    def __post_init__(self) -> None:
        for name in ("mass_kg", "footprint_m", "deck_height_m", "mast_height_m"):
            if getattr(self, name) <= 0:
                raise ValueError(f"lander.{name} must be positive, got {getattr(self, name)}")
        for name in ("tilt_pitch_deg", "tilt_roll_deg"):
            if abs(getattr(self, name)) > 30.0:
                raise ValueError(f"lander.{name} beyond 30 degrees: the lander would have tipped over")

    def vehicle_config(self) -> VehicleConfig:
        """The body geometry the terrain contact model needs (footpads in place of wheels)."""
        return VehicleConfig(mass_kg=self.mass_kg, track_width_m=self.footprint_m, wheelbase_m=self.footprint_m,
                             mast_height_m=self.mast_height_m, mast_forward_m=self.mast_forward_m,
                             max_wheel_mps=1e-6)


class Lander(Vehicle):
    """A body that never moves (see the module docstring)."""

    kind = "lander"

    def __init__(self, terrain: Terrain, config: LanderConfig | None = None, x: float | None = None,
                 y: float | None = None, yaw_deg: float = 0.0, gravity_mps2: float = 1.62, seed: int = 0) -> None:
        self.lander = config or LanderConfig()
        super().__init__(terrain, self.lander.vehicle_config(), x, y, yaw_deg, gravity_mps2, seed)
        self.refused_drive_commands = 0

    def _settle(self) -> None:
        super()._settle()
        s = self.state
        s.pitch += math.radians(self.lander.tilt_pitch_deg)
        s.roll += math.radians(self.lander.tilt_roll_deg)

    def set_wheels(self, left_mps: float, right_mps: float) -> None:
        if left_mps or right_mps:
            self.refused_drive_commands += 1
            if self.refused_drive_commands == 1:
                log.warning("lander: drive command ignored (a lander has no wheels); further ones only counted")

    @property
    def quiescent(self) -> bool:
        return True

    def step(self, dt_s: float) -> None:
        self.time_s += dt_s

    def truth(self) -> dict[str, float | bool]:
        out = super().truth()
        out["refused_drive_commands"] = self.refused_drive_commands
        return out

    def size_m(self) -> tuple[float, float, float]:
        """Length, width and height of the body, for drawing it in another vehicle's camera."""
        f = self.lander.footprint_m
        return f, f, self.lander.deck_height_m
