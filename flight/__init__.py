"""Magpie flight software: the executive, components, commanding, telemetry and events."""

__version__ = "0.1.0"
