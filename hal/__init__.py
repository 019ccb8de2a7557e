"""Hardware abstraction: device contracts, opening devices by URL, and the real drivers."""

from hal.contracts import (
    ArmStatus,
    AscentInterface,
    AscentStatus,
    Camera,
    CameraModel,
    ContainerStatus,
    Device,
    Drill,
    DrillState,
    DrillStatus,
    DriveStatus,
    DriveTrain,
    Frame,
    Imu,
    ImuReading,
    PowerMonitor,
    PowerReading,
    Radio,
    SampleArm,
    SampleContainer,
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
    UnsupportedError,
)
from hal.registry import known_schemes, open_device, register_scheme

__all__ = [
    "ArmStatus", "AscentInterface", "AscentStatus", "Camera", "CameraModel", "ContainerStatus", "Device",
    "Drill", "DrillState", "DrillStatus", "DriveStatus", "DriveTrain", "Frame", "Imu", "ImuReading",
    "PowerMonitor", "PowerReading", "Radio", "SampleArm", "SampleContainer", "StereoPair", "ThermalReading",
    "ThermalSensors", "Watchdog", "CommandRejectedError", "DeviceClosedError", "DeviceTimeoutError",
    "DeviceUrlError", "HalError", "LinkDownError", "ProtocolError", "UnsupportedError", "known_schemes",
    "open_device", "register_scheme",
]
