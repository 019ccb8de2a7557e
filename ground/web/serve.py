"""Run the web ground in a background thread (tests, benchmarks, ``magpie sim --realtime``).

uvicorn's ``Server`` is started on its own event loop in a daemon thread and stopped by setting
``should_exit``, so a caller gets a clean start (``wait_started``) and stop (``stop``).
"""

from __future__ import annotations

import threading
import time

import uvicorn

from ground.web.app import WebGround, build_app


class WebThread:
    """The web ground on ``host:port`` in a thread; ``url`` is its address once started."""

    def __init__(self, web: WebGround, host: str = "127.0.0.1", port: int = 0) -> None:
        self.web = web
        config = uvicorn.Config(build_app(web), host=host, port=port, log_level="warning", ws="websockets-sansio",
                                lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="magpie-web", daemon=True)
        self.host = host

    @property
    def port(self) -> int:
        sockets = [s for srv in self.server.servers for s in srv.sockets]
        return int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 20.0) -> WebThread:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the web ground did not start")
            time.sleep(0.02)  # polling another thread's start-up
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
