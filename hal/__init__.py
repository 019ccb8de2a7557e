"""Hardware abstraction: device contracts, opening devices by URL, and the real drivers."""

from hal.contracts import (
    Camera,
    CameraModel,
    Device,
    DriveStatus,
    DriveTrain,
    Frame,
    Imu,
    ImuReading,
    PowerMonitor,
    PowerReading,
    Radio,
    StereoPair,
    ThermalReading,
    ThermalSensors,
    Watchdog,
)
from hal.errors import (
    CommandRejectedError,
    DeviceClosedError,
    DeviceTimeoutError,
    DeviceUrlError,
    HalError,
    LinkDownError,
    ProtocolError,
)
from hal.registry import known_schemes, open_device, register_scheme

__all__ = [
    "Camera", "CameraModel", "Device", "DriveStatus", "DriveTrain", "Frame", "Imu", "ImuReading",
    "PowerMonitor", "PowerReading", "Radio", "StereoPair", "ThermalReading", "ThermalSensors",
    "Watchdog", "CommandRejectedError", "DeviceClosedError", "DeviceTimeoutError",
    "DeviceUrlError", "HalError", "LinkDownError", "ProtocolError", "known_schemes",
    "open_device", "register_scheme",
]
