"""The hardware layer's error hierarchy: lower-library errors are translated into these."""

from __future__ import annotations


class HalError(Exception):
    """Base of every error the hardware layer raises."""


class DeviceUrlError(HalError, ValueError):
    """A device URL is malformed, names an unknown scheme, or carries an unknown option."""


class DeviceClosedError(HalError):
    """A method was called on a device that is closed."""


class DeviceTimeoutError(HalError, TimeoutError):
    """A blocking device call ran past its deadline."""


class LinkDownError(HalError):
    """The link to a device is down (port vanished, peer silent); the driver may reconnect."""


class ProtocolError(HalError):
    """A peer sent something that breaks the wire protocol (bad frame, bad version, bad reply)."""


class CommandRejectedError(HalError):
    """A device refused a command (for example an MCU NACK), with its reason."""


class UnsupportedError(HalError):
    """A device (or the firmware behind it) does not have the ability asked for: a drill on an
    MCU whose firmware reports no drill. Counted by the driver, never retried."""
