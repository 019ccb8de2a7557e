"""``magpie web``: serve the web ground station beside a running ``magpie ground``.

It reads the same ground configuration as ``magpie ground`` (archive, PUB and command endpoints,
the vehicles' dictionaries) and serves the page on http://127.0.0.1:8080/ by default. Binding
another address is allowed; commanding from another address then needs the token.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from typing import Any

from ground.dictionary import DictionaryError
from ground.server import ConfigError, load_config

log = logging.getLogger(__name__)


def cmd_web(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ground.web.app import LinkInfo, WebGround, build_app
    except ModuleNotFoundError as exc:
        print(f"magpie web: {exc.name} is not installed (pip install 'magpie[web]')", file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config)
        link = LinkInfo.load(args.link)
        token = args.token or os.environ.get("MAGPIE_WEB_TOKEN") or None
        if token is None and args.host not in ("127.0.0.1", "::1", "localhost"):
            token = secrets.token_urlsafe(16)
            print(f"web: commanding from other addresses needs the token {token}", flush=True)
        web = WebGround(cfg, token=token, link=link)
    except (ConfigError, DictionaryError, ValueError) as exc:
        print(f"magpie web: {exc}", file=sys.stderr)
        return 2
    print(f"web: http://{args.host}:{args.port}/ (ground telemetry {cfg.pub}, commands {cfg.commands})", flush=True)
    try:
        uvicorn.run(build_app(web), host=args.host, port=args.port, log_level="warning", ws="websockets-sansio")
    except OSError as exc:
        print(f"magpie web: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    except SystemExit:  # uvicorn exits when it cannot bind, after logging why
        print(f"magpie web: cannot serve on {args.host}:{args.port} (address in use or not permitted)",
              file=sys.stderr)
        return 2
    return 0


def register(subparsers: Any) -> None:
    """Add ``web`` to the ``magpie`` command line."""
    p = subparsers.add_parser("web", help="serve the web ground station (channels, plots, events, commands, "
                              "images, map)", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="ground.toml", help="ground configuration TOML (default %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    p.add_argument("--port", type=int, default=8080, help="port (default %(default)s)")
    p.add_argument("--token", default=None,
                   help="token that commanding from a non-loopback address needs (default $MAGPIE_WEB_TOKEN; "
                        "one is made up and printed when binding another address without one)")
    p.add_argument("--link", default=None, metavar="JSON",
                   help="link description (light_time_s, hop_delay_s, windows, t0_unix) for the light time "
                        "and pass schedule; magpie sim --realtime writes one")
    p.set_defaults(func=cmd_web)
