"""Run the benchmarks and print one table: figure, baseline measured in the same run, ratio.

    python -m bench            # full run
    python -m bench --quick    # shorter measurements
    python -m bench --only executive mcu
"""

from __future__ import annotations

import argparse
import importlib
import math
import pkgutil
import sys
import time

import bench
from bench.common import Row


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter measurements")
    ap.add_argument("--only", nargs="*", default=None, help="benchmark modules to run (e.g. executive)")
    args = ap.parse_args(argv)
    names = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules(bench.__path__)
                   if m.name.startswith("bench_"))
    if args.only:
        unknown = set(args.only) - set(names)
        if unknown:
            ap.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; have {', '.join(names)}")
        names = [n for n in names if n in args.only]
    rows: list[tuple[str, Row]] = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        module = importlib.import_module(f"bench.bench_{name}")
        try:
            result = module.run(args.quick)
        except Exception as exc:  # one broken benchmark must not hide the others
            print(f"  {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        rows += [(name, r) for r in result]
        print(f"  {name} took {time.monotonic() - t0:.1f} s", file=sys.stderr)
    w = max((len(r.name) for _, r in rows), default=10)
    header = (f"{'area':<10} {'figure':<{w}} {'value':>12} {'unit':<10} {'baseline':>12}  {'ratio':>7}  "
              "target / baseline")
    print(header)
    print("-" * len(header))
    for area, r in rows:
        ratio = r.ratio
        print(f"{area:<10} {r.name:<{w}} {_fmt(r.value):>12} {r.unit:<10} {_fmt(r.baseline):>12}  "
              f"{(_fmt(ratio) + 'x') if ratio is not None else '-':>7}  "
              f"{r.target}{' | ' if r.target and r.baseline_name else ''}{r.baseline_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
