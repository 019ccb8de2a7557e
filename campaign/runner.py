"""Running a campaign: every run of a grid, serially or on Dask, into a resumable results file.

Each finished run is one JSON line appended (and flushed to disk) to ``results.jsonl`` in the
output directory, so an interrupted campaign loses at most the runs in flight: a rerun with the
same grid reads the file, skips every run whose key is there, and flies only the rest. A torn
last line (the process died mid-write) is ignored and counted.

The same seed gives the same record whether the run is flown serially in this process or by a
Dask worker in another: a run takes no state from the process it runs in (its own temporary
state directory; BLAS held to one thread, as Dask's nanny also sets, because a threaded BLAS
sums in another order and a traverse then diverges by a few ulps that grow).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from campaign.grid import Grid, RunSpec

log = logging.getLogger(__name__)

RESULTS_NAME = "results.jsonl"
RunFn = Callable[[RunSpec], dict]


class CampaignError(Exception):
    """A campaign that cannot start (output directory, scheduler, missing engine): one line."""


class RunsLost(Exception):
    """Some runs never came back (their worker died or the scheduler went away); the finished
    ones are in ``records`` and in the results file, and a rerun flies the rest."""

    def __init__(self, message: str, records: list[dict]) -> None:
        super().__init__(message)
        self.records = records


def _one_blas_thread() -> Any:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the campaign extra is not installed: the environment decides
        log.warning("threadpoolctl not installed: BLAS threads are not held to one")
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def execute(spec: RunSpec) -> dict:
    """Fly one traverse (the real harness, :func:`campaign.traverse.run_traverse`) and return
    its figures as plain JSON values."""
    from campaign.faults import apply_fault
    from campaign.traverse import run_traverse

    hook = None if spec.fault == "none" else (lambda world: apply_fault(world, spec.fault))
    events = logging.getLogger("flight.events")
    if events.level == logging.NOTSET:  # a worker process: events would bury the progress lines
        events.setLevel(logging.ERROR)
    with _one_blas_thread(), tempfile.TemporaryDirectory(prefix="magpie-campaign-") as state:
        rep = run_traverse(spec.level, spec.seed, Path(state), goals=spec.goals,
                           goal_distance_m=spec.goal_distance_m, timeout_per_goal_s=spec.timeout_per_goal_s,
                           mode=spec.mode, world_hook=hook)
    return {
        "goals": rep.goals,
        "reached": rep.reached,
        "collisions": rep.collisions,
        "tilt_over": rep.tilt_over,
        "max_tilt_deg": _finite(rep.max_tilt_deg),
        "stalls": rep.stalls,
        "distance_m": _finite(rep.distance_m),
        "drive_time_s": _finite(rep.drive_time_s),
        "mean_speed_frac": _finite(rep.mean_speed_frac),
        "loc_error_frac": _finite(rep.loc_error_frac),
        "loc_errors": [_finite(e) for e in rep.loc_errors],
        "failures": list(rep.failures),
        "stops": list(rep.stops),
        "vo_updates": rep.vo_updates,
        "plans": rep.plans,
    }


def _timed(run: RunFn, spec: RunSpec) -> dict:
    """Run ``spec`` and wrap its figures in a record (an exception is a failed run, not a crash)."""
    t0 = time.perf_counter()
    try:
        result, error = run(spec), None
    except Exception as exc:  # noqa: BLE001 - one run's crash is that run's result
        log.exception("run %s raised", spec.key)
        result, error = None, f"{type(exc).__name__}: {exc}"
    return {"key": spec.key, "spec": spec.to_dict(), "result": result, "error": error,
            "wall_s": round(time.perf_counter() - t0, 3)}


@dataclass
class ResultsFile:
    """The append-only results of one output directory."""

    path: Path
    torn_lines: int = 0
    records: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def open(cls, out_dir: Path) -> ResultsFile:
        out_dir = Path(out_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            probe = out_dir / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise CampaignError(f"output directory {out_dir} is not writable: {exc.strerror or exc}") from None
        rf = cls(out_dir / RESULTS_NAME)
        if rf.path.exists():
            rf._load()
        return rf

    def _load(self) -> None:
        with self.path.open("r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                    key = rec["key"]
                    RunSpec.from_dict(rec["spec"])
                except (ValueError, KeyError, TypeError):
                    self.torn_lines += 1
                    continue
                self.records[key] = rec
        if self.torn_lines:
            log.warning("%s: %d unreadable line(s) ignored (an interrupted write)", self.path, self.torn_lines)

    def append(self, record: dict) -> None:
        line = json.dumps(record, sort_keys=True, allow_nan=False)
        with self.path.open("a", encoding="utf-8") as fh:
            if fh.tell() > 0 and not self._ends_with_newline():
                fh.write("\n")  # a torn line stays torn, on its own line
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.records[record["key"]] = record

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"


Progress = Callable[[int, int, dict], None]


def _serial(specs: Iterable[RunSpec], run: RunFn) -> Iterable[dict]:
    for spec in specs:
        yield _timed(run, spec)


def _connect(scheduler: str | None, n_workers: int | None, timeout_s: float = 10.0) -> tuple[Any, Any]:
    """A Dask client on ``scheduler``, or on a new local cluster of worker processes."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise CampaignError("Dask is not installed: pip install 'magpie[campaign]', or run with --serial") from None
    if not log.isEnabledFor(logging.INFO):  # Dask's own INFO lines would bury the progress lines
        for name in ("distributed", "dask"):
            logging.getLogger(name).setLevel(logging.WARNING)
    cluster = None
    try:
        if scheduler:
            return Client(scheduler, timeout=f"{timeout_s:g}s"), None
        with warnings.catch_warnings():  # its HTTP port taken (another cluster): Dask picks another
            warnings.filterwarnings("ignore", message="Port .* is already in use")
            cluster = LocalCluster(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1,
                                   processes=True, dashboard_address=None, silence_logs=logging.ERROR)
        return Client(cluster), cluster
    except (OSError, TimeoutError, ValueError) as exc:
        if cluster is not None:
            cluster.close()
        raise CampaignError(f"cannot reach the Dask scheduler {scheduler or '(local)'}: {exc}") from None


def _on_dask(client: Any, cluster: Any, specs: list[RunSpec], run: RunFn) -> Iterable[dict]:
    from distributed import as_completed

    try:
        token = uuid.uuid4().hex[:8]  # this campaign's tasks never meet another's on a shared scheduler
        futures = [client.submit(_timed, run, spec, key=f"magpie-run-{token}-{spec.key}", pure=False)
                   for spec in specs]
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except Exception as exc:  # noqa: BLE001 - the engine lost it; not the run's result
                log.error("a run was lost by the engine: %s", exc)
                yield {"lost": str(fut.key), "error": f"{type(exc).__name__}: {exc}"}
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_campaign(grid: Grid, out_dir: Path, *, serial: bool = False, scheduler: str | None = None,
                 n_workers: int | None = None, run: RunFn = execute, progress: Progress | None = None,
                 connect_timeout_s: float = 10.0) -> list[dict]:
    """Fly every run of ``grid`` not already in ``out_dir``'s results, and return all the grid's
    records in grid order. ``run`` is the run function (the real traverse unless a test asks for
    another); ``progress(done, total, record)`` is called as each run finishes."""
    results = ResultsFile.open(out_dir)
    specs = grid.runs()
    todo = [s for s in specs if s.key not in results.records]
    total = len(specs)
    done = total - len(todo)
    if done:
        log.info("resuming: %d of %d runs already in %s", done, total, results.path)
    source: Iterable[dict] = []
    if serial:
        source = _serial(todo, run)
    elif todo or scheduler:  # a scheduler given is checked even when nothing is left to fly
        source = _on_dask(*_connect(scheduler, n_workers, connect_timeout_s), todo, run)
    lost = []
    for record in source:
        if "lost" in record:
            lost.append(record)
            continue
        results.append(record)
        done += 1
        if progress is not None:
            progress(done, total, record)
    finished = [results.records[s.key] for s in specs if s.key in results.records]
    if lost:
        raise RunsLost(f"{len(lost)} of {total} runs lost by the engine ({lost[0]['error']}); "
                       "rerun the same command to fly them", finished)
    return finished


def comparable(records: list[dict]) -> list[dict]:
    """Records without what differs between two faithful runs of one seed (the wall time)."""
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in records]
