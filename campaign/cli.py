"""``magpie campaign``: fly a grid of seeded traverses and write the validation report.

Progress goes to stderr, one line per finished run; the report's table goes to stdout at the
end. Exit status: 0 when the campaign ran (whatever its figures), 1 when the engine lost runs
(a worker died: the report covers the rest, a rerun flies them), 2 for bad input (an unknown
difficulty or mode, a bad seed list, an unwritable output directory, an unreachable scheduler,
Dask missing without ``--serial``), 130 when interrupted (finished runs are kept: rerun to resume).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from campaign.faults import FAULTS
from campaign.grid import MODES, Grid, GridError
from campaign.report import table_lines, write_report
from campaign.runner import CampaignError, ResultsFile, RunsLost, run_campaign
from sim_hw.traverse import LEVELS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "campaign", help="fly a grid of seeded traverses and write the validation report",
        description="Fly every (difficulty, mode, fault, seed) of a grid with the traverse harness, on Dask "
                    "(a local cluster of one worker process per core, or --scheduler ADDRESS) or "
                    "--serial, appending each finished run to OUT/results.jsonl; a rerun with the same "
                    "grid skips the runs already there. Then write OUT/report.md, OUT/report.html and "
                    "one SVG plot per figure. The same seeds give the same results either way.")
    p.add_argument("--levels", default=",".join(LEVELS), help=f"terrain difficulties (default: {','.join(LEVELS)})")
    p.add_argument("--seeds", default="1-4", help="seeds, e.g. 1-30 or 1,5,9-12 (default: 1-4)")
    p.add_argument("--modes", default="autonav", help=f"navigation modes, of {','.join(MODES)} (default: autonav)")
    p.add_argument("--faults", default="none",
                   help=f"fault injections, of {','.join(FAULTS)} (default: none; see campaign.faults)")
    p.add_argument("--goals", type=int, default=3, help="goals per run (default: 3)")
    p.add_argument("--goal-distance", type=float, default=8.0, help="metres between goals (default: 8)")
    p.add_argument("--timeout-per-goal", type=float, default=150.0,
                   help="simulated seconds allowed per goal (default: 150)")
    p.add_argument("--out", type=Path, default=Path("campaign-out"), help="output directory (default: campaign-out)")
    p.add_argument("--serial", action="store_true", help="fly the runs one by one in this process, without Dask")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="a running Dask scheduler (tcp://host:8786) instead of a local cluster")
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="how long to try reaching --scheduler (default: 10)")
    p.add_argument("--workers", type=int, default=None, help="local cluster workers (default: one per core)")
    p.add_argument("--report-only", action="store_true", help="write the report from the results file; fly nothing")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-v info, -vv debug)")
    p.set_defaults(func=cmd_campaign)


def _fail(message: str) -> int:
    print(f"magpie campaign: {message}", file=sys.stderr)
    return 2


def cmd_campaign(args: argparse.Namespace) -> int:
    try:
        grid = Grid.parse(args.levels, args.seeds, args.goals, args.goal_distance, args.timeout_per_goal, args.modes,
                          args.faults)
    except GridError as exc:
        return _fail(str(exc))
    if args.serial and args.scheduler:
        return _fail("--serial and --scheduler exclude each other")
    if not 0 < args.connect_timeout <= 600:
        return _fail(f"--connect-timeout {args.connect_timeout:g}: must be 0 to 600 s")
    if args.workers is not None and args.workers < 1:
        return _fail(f"--workers {args.workers}: must be at least 1")
    t0 = time.monotonic()

    def progress(done: int, total: int, rec: dict) -> None:
        r = rec.get("result")
        spec = rec["spec"]
        what = (f"goals {r['reached']}/{r['goals']}, collisions {r['collisions']}, "
                f"loc error {100 * (r['loc_error_frac'] or 0):.2f}%, speed {100 * (r['mean_speed_frac'] or 0):.0f}%"
                if r else f"error: {rec.get('error')}")
        fault = "" if spec.get("fault", "none") == "none" else f" {spec['fault']}"
        print(f"[{done}/{total}] {spec['level']} {spec['mode']}{fault} seed {spec['seed']}: {what} "
              f"({rec['wall_s']:.0f} s; {time.monotonic() - t0:.0f} s elapsed)", file=sys.stderr, flush=True)

    try:
        found = ResultsFile.open(args.out).records
        if args.report_only:
            records = [found[s.key] for s in grid.runs() if s.key in found]
            if not records:
                return _fail(f"no results for this grid in {args.out}")
        else:
            already = sum(s.key in found for s in grid.runs())
            if already:
                print(f"resuming: {already} of {len(grid.runs())} runs already in {args.out}", file=sys.stderr)
            records = run_campaign(grid, args.out, serial=args.serial, scheduler=args.scheduler,
                                   n_workers=args.workers, progress=progress,
                                   connect_timeout_s=args.connect_timeout)
        paths = write_report(records, args.out)
    except RunsLost as exc:
        if exc.records:
            write_report(exc.records, args.out)
        print(f"magpie campaign: {exc}", file=sys.stderr)
        return 1
    except CampaignError as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot write the report in {args.out}: {exc.strerror or exc}")
    print("\n".join(table_lines(records)))
    print(f"report: {paths[1]}", file=sys.stderr)
    return 0
