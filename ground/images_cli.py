"""``magpie images``: list, show, export and find the gaps of the products in a ground archive.

The archive is named with ``--archive PATH`` (for example a ``magpie sim`` run's
``OUT/archive.db``) or found through the ground configuration (``--config``, default
``ground.toml``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ground.archive import Archive
from ground.images import collect, export, resend_commands


def _archive_path(args: argparse.Namespace) -> Path:
    if args.archive:
        return Path(args.archive)
    from ground.server import load_config

    return Path(load_config(args.config).archive)


def _views(args: argparse.Namespace) -> list[Any]:
    path = _archive_path(args)
    if not path.exists():
        raise FileNotFoundError(f"no archive at {path}")
    with Archive(path, readonly=True) as archive:
        return collect(archive, args.scid, getattr(args, "pid", None))


def cmd_list(args: argparse.Namespace) -> int:
    views = _views(args)
    if not views:
        print("no products in the archive")
        return 0
    print(f"{'scid':>5} {'pid':>8} {'kind':<5} {'status':<8} {'segments':>9} {'bytes':>9}  size/format  missing")
    for v in views:
        m = v.meta
        size = f"{m.get('width', '?')}x{m.get('height', '?')} {m.get('format', '?')}"
        have = f"{len(v.assembly.parts)}/{v.assembly.n}"
        nbytes = len(v.data) if v.data is not None else sum(len(p) for p in v.assembly.parts.values())
        missing = v.summary()["missing"] or "-"
        print(f"{v.scid:>5} {v.pid:>8} {v.kind:<5} {v.status:<8} {have:>9} {nbytes:>9}  {size:<12} {missing}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    views = _views(args)
    if not views:
        print(f"error: no product {args.pid} in the archive", file=sys.stderr)
        return 1
    print(json.dumps([v.summary() for v in views], indent=1, sort_keys=True, default=str))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    views = _views(args)
    if args.complete_only:
        views = [v for v in views if v.status == "complete"]
    paths = export(views, args.out)
    images = sum(1 for p in paths if p.suffix != ".json")
    print(f"wrote {images} image(s) and {len(paths) - images} sidecar(s) to {args.out}")
    return 0


def cmd_missing(args: argparse.Namespace) -> int:
    cmds = resend_commands(_views(args))
    if not cmds:
        print("no partial products")
        return 0
    for name, a in cmds:
        print(f'magpie cmd {name} pid={a["pid"]} what={a["what"]} segments="{a["segments"]}"')
    return 0


def register(subparsers: Any) -> None:
    """Add ``images`` to the ``magpie`` CLI."""
    p = subparsers.add_parser("images", help="list, show and export image products from the archive",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="images_cmd", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--archive", default=None, help="ground archive (SQLite); default: from --config")
        q.add_argument("--config", default="ground.toml", help="ground configuration TOML (default %(default)s)")
        q.add_argument("--scid", type=int, default=None, help="only this spacecraft")

    q = sub.add_parser("list", help="one line per product: status, segments received, what is missing")
    common(q)
    q.set_defaults(func=cmd_list)
    q = sub.add_parser("show", help="a product's metadata and status as JSON")
    q.add_argument("pid", type=int)
    common(q)
    q.set_defaults(func=cmd_show)
    q = sub.add_parser("export", help="write complete products as image files with JSON sidecars")
    q.add_argument("--out", type=Path, required=True, help="output directory")
    q.add_argument("--complete-only", action="store_true", help="no sidecars for partial products")
    common(q)
    q.set_defaults(func=cmd_export)
    q = sub.add_parser("missing", help="print the IMG_RESEND commands that would fill the gaps")
    common(q)
    q.set_defaults(func=cmd_missing)
