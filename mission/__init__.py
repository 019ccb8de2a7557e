"""Missions: the orchestration of world, vehicles, relay and ground on one simulated clock.

:mod:`mission.scenario` reads a scenario (TOML: the body, site, vehicles, relay and plans) and
checks it; :mod:`mission.fleet` flies one, several vehicles on one site through one relay into
one ground archive; :mod:`mission.lockstep` is the single-vehicle lockstep mission and the
real-time one with separate processes; :mod:`mission.solo` flies a vehicle without a link.
The ``magpie`` command line is a thin layer over these.
"""
