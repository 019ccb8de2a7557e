"""Magpie ground segment: station, archive, commander and the client API.

The station receives frames (from the relay or straight from a vehicle), archives raw and decoded
telemetry in SQLite, acknowledges and NAKs, and publishes live telemetry on ZeroMQ; the commander
signs and tracks commands; the client serves operators' scripts and system tests.
"""

from ground.archive import Archive
from ground.client import ClientTimeout, GroundClient, LocalClient
from ground.commander import Commander, CommandRecord, Stage
from ground.dictionary import Dictionary
from ground.station import Station, Vehicle

__all__ = [
    "Archive",
    "ClientTimeout",
    "CommandRecord",
    "Commander",
    "Dictionary",
    "GroundClient",
    "LocalClient",
    "Stage",
    "Station",
    "Vehicle",
]
