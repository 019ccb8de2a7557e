"""Sensor models between the vehicle's truth and what the flight software reads.

Each model draws its noise from its own seeded stream, separate from the physics, so reading a
sensor more or less often never changes how the vehicle moves, and a seed gives the same
readings for the same sequence of reads.

* :class:`ImuModel`: accelerometer = specific force in the body frame (gravity projected
  through the vehicle's attitude, plus its own acceleration) + a constant per-axis bias + white
  noise; gyro = body angular rate + bias + white noise; the temperature is the electronics
  node's plus a little noise.
* :class:`EncoderModel`: counts from wheel rotation (the rim, not the ground), quantised to whole
  ticks, optionally with a per-wheel scale error (a wheel radius that is not quite what the
  software believes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim_hw.vehicle import Vehicle


@dataclass(frozen=True)
class ImuConfig:
    accel_noise_mps2: float = 0.01
    accel_bias_mps2: float = 0.005  # sigma of the per-axis bias drawn at start
    gyro_noise_rads: float = 0.0005
    gyro_bias_rads: float = 0.0002
    temp_noise_c: float = 0.05


class ImuModel:
    """A 6-axis IMU mounted at the body origin, aligned with the body axes.

    A read is a few float operations: the noise is drawn from the seeded stream in blocks
    (the same numbers, in the same order, as one draw of seven per read) and the truth comes from
    the vehicle as plain floats, so no numpy call is made on three-element vectors.
    """

    NOISE_BLOCK = 64  # reads per block of noise

    def __init__(self, config: ImuConfig | None = None, seed: int = 0) -> None:
        self.config = config or ImuConfig()
        ss = np.random.SeedSequence([seed, 0x1A0])
        bias_rng, self._rng = (np.random.default_rng(s) for s in ss.spawn(2))
        self.accel_bias = bias_rng.standard_normal(3) * self.config.accel_bias_mps2
        self.gyro_bias = bias_rng.standard_normal(3) * self.config.gyro_bias_rads
        self._noise: list[float] = []
        self._next = 0

    @property
    def accel_bias(self) -> np.ndarray:
        """Per-axis accelerometer bias (m/s^2); may be set (a fault campaign scales it)."""
        return np.array(self._accel_bias)

    @accel_bias.setter
    def accel_bias(self, value: np.ndarray | tuple[float, float, float]) -> None:
        x, y, z = (float(v) for v in value)
        self._accel_bias = (x, y, z)

    @property
    def gyro_bias(self) -> np.ndarray:
        """Per-axis gyro bias (rad/s)."""
        return np.array(self._gyro_bias)

    @gyro_bias.setter
    def gyro_bias(self, value: np.ndarray | tuple[float, float, float]) -> None:
        x, y, z = (float(v) for v in value)
        self._gyro_bias = (x, y, z)

    def read(
        self, vehicle: Vehicle, temp_c: float
    ) -> tuple[tuple[float, float, float], tuple[float, float, float], float]:
        """(accel m/s^2, gyro rad/s, temperature C) as the device would report them now."""
        c = self.config
        i = self._next
        if i + 7 > len(self._noise):
            self._noise = self._rng.standard_normal(7 * self.NOISE_BLOCK).tolist()
            i = 0
        n = self._noise
        self._next = i + 7
        fx, fy, fz = vehicle.specific_force_xyz()
        wx, wy, wz = vehicle.angular_rate_xyz()
        ab, gb = self._accel_bias, self._gyro_bias
        an, gn = c.accel_noise_mps2, c.gyro_noise_rads
        return (
            (fx + ab[0] + n[i] * an, fy + ab[1] + n[i + 1] * an, fz + ab[2] + n[i + 2] * an),
            (wx + gb[0] + n[i + 3] * gn, wy + gb[1] + n[i + 4] * gn, wz + gb[2] + n[i + 5] * gn),
            temp_c + n[i + 6] * c.temp_noise_c,
        )


def attitude_from_accel(accel: tuple[float, float, float] | np.ndarray) -> tuple[float, float]:
    """(pitch, roll) in radians from a resting accelerometer, in the vehicle's conventions."""
    fx, fy, fz = (float(a) for a in accel)
    return math.atan2(fx, math.hypot(fy, fz)), math.atan2(fy, fz)


@dataclass(frozen=True)
class EncoderConfig:
    scale_error_left: float = 0.0  # fractional: 0.01 counts 1 % more than the true rotation
    scale_error_right: float = 0.0


class EncoderModel:
    """Quadrature encoders on the wheel shafts: cumulative signed counts."""

    def __init__(self, ticks_per_rev: int, config: EncoderConfig | None = None) -> None:
        self.ticks_per_rev = int(ticks_per_rev)
        self.config = config or EncoderConfig()

    @property
    def config(self) -> EncoderConfig:
        return self._config

    @config.setter
    def config(self, value: EncoderConfig) -> None:
        # the factors a read multiplies by, taken once (read every control cycle)
        self._config = value
        self._k = self.ticks_per_rev / (2.0 * math.pi)
        self._scale_left = 1.0 + value.scale_error_left
        self._scale_right = 1.0 + value.scale_error_right

    def read(self, vehicle: Vehicle) -> tuple[int, int]:
        k = self._k
        s = vehicle.state
        return (
            math.floor(s.angle_left * k * self._scale_left),
            math.floor(s.angle_right * k * self._scale_right),
        )
