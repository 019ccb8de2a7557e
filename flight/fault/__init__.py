"""Fault protection: modes, monitors, responses, hibernation and the hardware watchdog."""

from flight.fault.modes import TRANSITIONS, Mode, parse_mode, transition_problem
from flight.fault.monitors import BUILTIN, Condition, ConditionError, MonitorSpec, parse_condition, parse_monitors
from flight.fault.protection import FaultProtection
from flight.fault.responses import Decision, Response, arbitrate

__all__ = [
    "BUILTIN", "TRANSITIONS", "Condition", "ConditionError", "Decision", "FaultProtection", "Mode",
    "MonitorSpec", "Response", "arbitrate", "parse_condition", "parse_mode", "parse_monitors",
    "transition_problem",
]
