"""The grid of a validation campaign: which seeded runs, and the one key that names each.

A campaign is the product of terrain difficulties, navigation modes, fault injections
(:mod:`campaign.faults`) and seeds, every run with
the same goal chain (count, spacing, timeout). A run is named by its :attr:`RunSpec.key`, a
string made of every parameter that changes its outcome: the results file is keyed by it, so a
rerun of the same grid knows which runs are already done, and a run with other parameters is
never mistaken for one of them.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass

from campaign.faults import FAULTS
from sim_hw.traverse import LEVELS

#: navigation modes a run may fly (``NAV_MODE``)
MODES = ("autonav", "guarded", "blind")


class GridError(ValueError):
    """A grid specification that cannot be run; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One seeded traverse: the world (difficulty, seed) and the goals it is asked to drive."""

    level: str
    seed: int
    goals: int = 3
    goal_distance_m: float = 8.0
    timeout_per_goal_s: float = 150.0
    mode: str = "autonav"
    fault: str = "none"

    @property
    def key(self) -> str:
        fault = "" if self.fault == "none" else f"/fault={self.fault}"
        return (f"{self.level}/seed={self.seed}/goals={self.goals}/dist={self.goal_distance_m:g}"
                f"/timeout={self.timeout_per_goal_s:g}/mode={self.mode}{fault}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        return cls(level=str(d["level"]), seed=int(d["seed"]), goals=int(d["goals"]),
                   goal_distance_m=float(d["goal_distance_m"]), timeout_per_goal_s=float(d["timeout_per_goal_s"]),
                   mode=str(d["mode"]), fault=str(d.get("fault", "none")))

    def replay_command(self, out_dir: str = "campaign-replay") -> str:
        """The one command that flies this run again, alone and without Dask."""
        args = ["magpie", "campaign", "--levels", self.level, "--seeds", str(self.seed), "--goals", str(self.goals),
                "--goal-distance", f"{self.goal_distance_m:g}", "--timeout-per-goal", f"{self.timeout_per_goal_s:g}",
                "--modes", self.mode, "--serial", "--out", out_dir]
        if self.fault != "none":
            args[-3:-3] = ["--faults", self.fault]
        return shlex.join(args)


def parse_seeds(text: str) -> tuple[int, ...]:
    """Seeds from ``"1-4,7,10-12"``: ranges inclusive, order kept, duplicates dropped."""
    seeds: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            raise GridError(f"seeds {text!r}: empty item (write e.g. 1-4,7)")
        lo_text, sep, hi_text = part.partition("-")
        try:
            lo = int(lo_text)
            hi = int(hi_text) if sep else lo
        except ValueError:
            raise GridError(f"seeds {text!r}: {part!r} is not a seed or a range like 1-4") from None
        if lo < 0 or hi < lo:
            raise GridError(f"seeds {text!r}: {part!r} must be non-negative and rising")
        if hi - lo >= 100_000:
            raise GridError(f"seeds {text!r}: {part!r} is more than 100000 seeds")
        seeds.extend(s for s in range(lo, hi + 1) if s not in seeds)
    return tuple(seeds)


def parse_names(text: str, allowed: tuple[str, ...] | list[str], what: str) -> tuple[str, ...]:
    """Comma-separated names, each one of ``allowed``."""
    names = tuple(dict.fromkeys(n.strip() for n in str(text).split(",")))
    for n in names:
        if n not in allowed:
            raise GridError(f"unknown {what} {n!r}; {what}s: {', '.join(allowed)}")
    return names


@dataclass(frozen=True, slots=True)
class Grid:
    """Difficulties x modes x fault injections x seeds, every run with the same goal chain."""

    levels: tuple[str, ...]
    seeds: tuple[int, ...]
    goals: int = 3
    goal_distance_m: float = 8.0
    timeout_per_goal_s: float = 150.0
    modes: tuple[str, ...] = ("autonav",)
    faults: tuple[str, ...] = ("none",)

    def __post_init__(self) -> None:
        if not self.levels or not self.seeds or not self.modes or not self.faults:
            raise GridError("the grid is empty: give at least one level, seed, mode and fault")
        for level in self.levels:
            parse_names(level, tuple(LEVELS), "level")
        for mode in self.modes:
            parse_names(mode, MODES, "mode")
        for fault in self.faults:
            parse_names(fault, tuple(FAULTS), "fault")
        if not 1 <= self.goals <= 20:
            raise GridError(f"goals {self.goals}: must be 1 to 20")
        if not 0.5 <= self.goal_distance_m <= 30.0:
            raise GridError(f"goal distance {self.goal_distance_m:g} m: must be 0.5 to 30 m")
        if not 1.0 <= self.timeout_per_goal_s <= 3600.0:
            raise GridError(f"timeout per goal {self.timeout_per_goal_s:g} s: must be 1 to 3600 s")

    @classmethod
    def parse(cls, levels: str, seeds: str, goals: int = 3, goal_distance_m: float = 8.0,
              timeout_per_goal_s: float = 150.0, modes: str = "autonav", faults: str = "none") -> Grid:
        return cls(parse_names(levels, tuple(LEVELS), "level"), parse_seeds(seeds), int(goals),
                   float(goal_distance_m), float(timeout_per_goal_s), parse_names(modes, MODES, "mode"),
                   parse_names(faults, tuple(FAULTS), "fault"))

    def runs(self) -> list[RunSpec]:
        """Every run, in the report's order: level, mode, fault, then seed."""
        return [RunSpec(level, seed, self.goals, self.goal_distance_m, self.timeout_per_goal_s, mode, fault)
                for level in self.levels for mode in self.modes for fault in self.faults for seed in self.seeds]
