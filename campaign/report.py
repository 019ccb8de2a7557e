"""The campaign report: a table per cell, a distribution plot per figure, the worst runs.

Written from the records alone (``results.jsonl``), so a report can be made again at any time
with no run flown. Outputs in the campaign directory:

* ``report.md``: the cell table, the worst runs with the command that replays each;
* ``report.html``: the same with the plots inline, one self-contained file;
* ``fig-<figure>.svg``: one strip plot per figure (every run a dot, the median a bar, the target
  a dashed line), one row per cell.

The plots are hand-written SVG rather than matplotlib: a few dozen lines give a strip plot, the
report needs no plotting library on a Pi or a laptop in the field, the bytes are the same on
every machine (a report is reproducible like the runs), and the HTML stays one file.
"""

from __future__ import annotations

import html
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from campaign.grid import RunSpec

TARGET_SPEED = {"easy": 0.80, "moderate": 0.80, "hard": 0.60}
TARGET_LOC_ERROR = 0.01


@dataclass(frozen=True, slots=True)
class Figure:
    name: str
    title: str
    unit: str
    value: Callable[[dict], float]
    target: Callable[[str], float | None]
    higher_is_better: bool


def _res(rec: dict) -> dict:
    return rec.get("result") or {}


FIGURES = (
    Figure("loc-error", "Localisation error / distance", "%",
           lambda r: 100.0 * (_res(r).get("loc_error_frac") or 0.0), lambda _lvl: 100.0 * TARGET_LOC_ERROR, False),
    Figure("speed", "Mean speed / wheel limit", "%",
           lambda r: 100.0 * (_res(r).get("mean_speed_frac") or 0.0), lambda lvl: 100.0 * TARGET_SPEED.get(lvl, 0.8),
           True),
    Figure("goals", "Goals reached", "%",
           lambda r: 100.0 * _res(r).get("reached", 0) / max(1, _res(r).get("goals", 1)), lambda _lvl: 100.0, True),
    Figure("collisions", "Collisions per run", "",
           lambda r: float(_res(r).get("collisions", 0)), lambda _lvl: 0.0, False),
)


def _cell(rec: dict) -> tuple[str, str, str]:
    spec = rec["spec"]
    return spec["level"], spec["mode"], spec.get("fault", "none")


def cells(records: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    """Records grouped by (level, mode, fault), in the order first seen."""
    out: dict[tuple[str, str, str], list[dict]] = {}
    for rec in records:
        out.setdefault(_cell(rec), []).append(rec)
    return out


def _all_reached(rec: dict) -> bool:
    r = _res(rec)
    return bool(r) and r.get("reached") == r.get("goals")


def run_meets_targets(rec: dict) -> bool:
    r = _res(rec)
    if not r:
        return False
    lvl = rec["spec"]["level"]
    return (_all_reached(rec) and r.get("collisions", 1) == 0
            and (r.get("loc_error_frac") or 0.0) < TARGET_LOC_ERROR
            and (r.get("mean_speed_frac") or 0.0) >= TARGET_SPEED.get(lvl, 0.8))


def cell_rows(records: list[dict]) -> list[dict]:
    """One summary row per cell: counts and the medians the targets speak of."""
    rows = []
    for (level, mode, fault), recs in cells(records).items():
        ok = [r for r in recs if _res(r)]
        loc = [FIGURES[0].value(r) for r in ok]
        speed = [FIGURES[1].value(r) for r in ok]
        rows.append({
            "level": level, "mode": mode, "fault": fault, "runs": len(recs), "errors": len(recs) - len(ok),
            "all_goals": sum(_all_reached(r) for r in recs),
            "goals_reached": sum(_res(r).get("reached", 0) for r in recs),
            "goals_asked": sum(r["spec"]["goals"] for r in recs),
            "with_collision": sum(_res(r).get("collisions", 0) > 0 for r in recs),
            "collisions": sum(_res(r).get("collisions", 0) for r in recs),
            "loc_median": statistics.median(loc) if loc else None,
            "loc_max": max(loc, default=None),
            "speed_median": statistics.median(speed) if speed else None,
            "speed_min": min(speed, default=None),
            "meets_targets": sum(run_meets_targets(r) for r in recs),
        })
    return rows


def badness(rec: dict) -> tuple:
    """Sort key, worst first: crashed, goals missed, collisions, loc error over target, slowness."""
    r = _res(rec)
    if not r:
        return (1, 0, 0, 0.0, 0.0)
    lvl = rec["spec"]["level"]
    return (0, r.get("goals", 0) - r.get("reached", 0), r.get("collisions", 0),
            (r.get("loc_error_frac") or 0.0) / TARGET_LOC_ERROR,
            TARGET_SPEED.get(lvl, 0.8) - (r.get("mean_speed_frac") or 0.0))


def worst_runs(records: list[dict], count: int = 5) -> list[dict]:
    """The ``count`` worst runs that miss a target, worst first (ties by grid order)."""
    bad = [r for r in records if not run_meets_targets(r)]
    return sorted(bad, key=badness, reverse=True)[:count]


def _fmt(x: float | None, unit: str = "%", digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}{unit}"


def _run_summary(rec: dict) -> str:
    r = _res(rec)
    if not r:
        return f"error: {rec.get('error')}"
    text = (f"goals {r['reached']}/{r['goals']}, collisions {r['collisions']}, "
            f"loc error {_fmt(FIGURES[0].value(rec))}, speed {_fmt(FIGURES[1].value(rec), digits=0)}")
    if r.get("failures"):
        text += f" ({'; '.join(r['failures'])})"
    return text


def table_lines(records: list[dict]) -> list[str]:
    """The cell table as Markdown lines."""
    lines = ["| terrain | mode | fault | runs | all goals reached | runs with a collision | collisions "
             "| median loc error / distance | worst | median speed / max | slowest | runs meeting every target |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in cell_rows(records):
        errors = f" ({row['errors']} crashed)" if row["errors"] else ""
        lines.append(
            f"| {row['level']} | {row['mode']} | {row['fault']} | {row['runs']}{errors} "
            f"| {row['all_goals']}/{row['runs']} ({row['goals_reached']}/{row['goals_asked']} goals) "
            f"| {row['with_collision']}/{row['runs']} "
            f"| {row['collisions']} | {_fmt(row['loc_median'])} | {_fmt(row['loc_max'])} "
            f"| {_fmt(row['speed_median'], digits=0)} | {_fmt(row['speed_min'], digits=0)} "
            f"| {row['meets_targets']}/{row['runs']} |")
    return lines


def _how(spec: RunSpec) -> str:
    return spec.mode if spec.fault == "none" else f"{spec.mode}, fault {spec.fault}"


def markdown(records: list[dict], out_dir: Path) -> str:
    lines = ["# Magpie validation campaign", "", f"{len(records)} runs.", "",
             "Targets: every goal reached, 0 collisions, localisation error under "
             f"{100 * TARGET_LOC_ERROR:g}% of distance, mean speed at least "
             + ", ".join(f"{100 * v:g}% ({k})" for k, v in TARGET_SPEED.items()) + " of the wheel limit.", ""]
    lines += table_lines(records)
    lines += ["", "## Worst runs", ""]
    worst = worst_runs(records)
    if not worst:
        lines.append("Every run met every target.")
    for rec in worst:
        spec = RunSpec.from_dict(rec["spec"])
        lines += [f"- **{spec.level} seed {spec.seed}** ({_how(spec)}): {_run_summary(rec)}",
                  f"  replay: `{spec.replay_command(str(out_dir / 'replay' / f'{spec.level}-{spec.seed}'))}`"]
    lines += ["", "## Figures", ""]
    lines += [f"- {f.title}: `fig-{f.name}.svg`" for f in FIGURES]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- SVG strip plots

def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round axis ticks (steps of 1, 2, 2.5 or 5 times a power of ten) covering [lo, hi]."""
    raw = max(hi - lo, 1e-9) / count
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * mag >= raw)
    first = math.floor(lo / step) * step
    n = int(math.ceil((hi - first) / step - 1e-9))
    return [round(first + k * step, 10) for k in range(max(n, 1) + 1)]


def strip_plot(fig: Figure, records: list[dict]) -> str:
    """One row per cell: a dot per run, a bar at the median, the cell's target dashed."""
    groups = cells(records)
    width, left, right, row_h, top, bottom = 640, 150, 20, 34, 34, 36
    height = top + row_h * max(1, len(groups)) + bottom
    values = [fig.value(r) for r in records if _res(r)]
    targets = [t for lvl, _, _ in groups if (t := fig.target(lvl)) is not None]
    ticks = nice_ticks(min(values + targets + [0.0]), max(values + targets + [1.0]))
    lo, span = ticks[0], ticks[-1] - ticks[0]

    def sx(v: float) -> float:
        return left + (v - lo) / span * (width - left - right)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<title>{html.escape(fig.title)}</title>',
           f'<text x="{left}" y="20" font-size="14" font-weight="bold">{html.escape(fig.title)}'
           f'{" (" + fig.unit + ")" if fig.unit else ""}</text>']
    axis_y = top + row_h * len(groups)
    out.append(f'<line x1="{left}" y1="{axis_y}" x2="{width - right}" y2="{axis_y}" stroke="#444"/>')
    for v in ticks:
        x = sx(v)
        out.append(f'<line x1="{x:.1f}" y1="{axis_y}" x2="{x:.1f}" y2="{axis_y + 4}" stroke="#444"/>'
                   f'<text x="{x:.1f}" y="{axis_y + 18}" text-anchor="middle">{v:.3g}</text>')
    for row, ((level, mode, fault), recs) in enumerate(groups.items()):
        cy = top + row_h * row + row_h / 2
        label = f"{level} {mode}" + ("" if fault == "none" else f" {fault}")
        out.append(f'<text x="{left - 8}" y="{cy + 4:.1f}" text-anchor="end">{html.escape(label)}</text>')
        target = fig.target(level)
        if target is not None:
            tx = sx(target)
            out.append(f'<line x1="{tx:.1f}" y1="{cy - 13:.1f}" x2="{tx:.1f}" y2="{cy + 13:.1f}" stroke="#c33" '
                       f'stroke-dasharray="4 3"/>')
        vals = [(fig.value(r), r) for r in recs if _res(r)]
        for k, (v, r) in enumerate(vals):
            jitter = ((k * 7) % 11 - 5) * 1.6  # spread equal values so each run shows
            met = run_meets_targets(r)
            out.append(f'<circle cx="{sx(v):.1f}" cy="{cy + jitter:.1f}" r="3.5" fill="{"#2a7" if met else "#d62"}" '
                       f'fill-opacity="0.75"><title>{html.escape(r["spec"]["level"])} seed {r["spec"]["seed"]}: '
                       f'{v:.3g}</title></circle>')
        if vals:
            mx = sx(statistics.median(v for v, _ in vals))
            out.append(f'<line x1="{mx:.1f}" y1="{cy - 10:.1f}" x2="{mx:.1f}" y2="{cy + 10:.1f}" stroke="#000" '
                       f'stroke-width="2"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _html(records: list[dict], out_dir: Path, svgs: dict[str, str]) -> str:
    rows = cell_rows(records)
    head = ("terrain", "mode", "fault", "runs", "all goals reached", "runs with a collision", "collisions",
            "median loc error / distance", "worst", "median speed / max", "slowest", "runs meeting every target")
    body = []
    for r in rows:
        cells_ = (r["level"], r["mode"], r["fault"], str(r["runs"]),
                  f"{r['all_goals']}/{r['runs']} ({r['goals_reached']}/{r['goals_asked']} goals)",
                  f"{r['with_collision']}/{r['runs']}", str(r["collisions"]), _fmt(r["loc_median"]),
                  _fmt(r["loc_max"]), _fmt(r["speed_median"], digits=0), _fmt(r["speed_min"], digits=0),
                  f"{r['meets_targets']}/{r['runs']}")
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells_) + "</tr>")
    worst = []
    for rec in worst_runs(records):
        spec = RunSpec.from_dict(rec["spec"])
        cmd = spec.replay_command(str(out_dir / "replay" / f"{spec.level}-{spec.seed}"))
        worst.append(f"<li><b>{html.escape(spec.level)} seed {spec.seed}</b> ({html.escape(_how(spec))}): "
                     f"{html.escape(_run_summary(rec))}<br><code>{html.escape(cmd)}</code></li>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:.3em .6em;text-align:right}th{background:#eee}"
             "code{background:#f4f4f4;padding:.1em .3em}")
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Magpie validation campaign</title>"
            f"<style>{style}</style></head><body>\n<h1>Magpie validation campaign</h1>\n"
            f"<p>{len(records)} runs. Dots: runs (green: every target met); bar: median; dashed: target.</p>\n"
            "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>\n"
            + "\n".join(body) + "</table>\n<h2>Worst runs</h2>\n<ul>"
            + ("\n".join(worst) or "<li>Every run met every target.</li>") + "</ul>\n<h2>Figures</h2>\n"
            + "\n".join(f"<figure>{svgs[f.name]}</figure>" for f in FIGURES) + "</body></html>\n")


def write_report(records: list[dict], out_dir: Path) -> list[Path]:
    """Write ``report.md``, ``report.html`` and one SVG per figure; return their paths."""
    out_dir = Path(out_dir)
    svgs = {f.name: strip_plot(f, records) for f in FIGURES}
    paths = []
    for name, svg in svgs.items():
        p = out_dir / f"fig-{name}.svg"
        p.write_text(svg, encoding="utf-8")
        paths.append(p)
    md = out_dir / "report.md"
    md.write_text(markdown(records, out_dir), encoding="utf-8")
    page = out_dir / "report.html"
    page.write_text(_html(records, out_dir, svgs), encoding="utf-8")
    return [md, page, *paths]
