"""Misbehaving payloads, each written the way a partner's bug (or worse) would look.

They are real payloads run by the real host in their own processes; the tests pass them to the
host through its ``kinds`` table (``tests.payload.bad_payloads:Name``).
"""

from __future__ import annotations

import os
import time

from flight.payload import protocol
from flight.payload.sdk import Arg, Channel, Event, Payload, Severity, command


class Good(Payload):
    """Counts its steps; a well-behaved neighbour for the misbehaving ones."""

    CHANNELS = (Channel("count", "u32"),)
    EVENTS = (Event("Tick", Severity.ACTIVITY_LO, "tick {n}", (Arg("n", "u32"),)),)

    def setup(self) -> None:
        self.n = 0

    def step(self) -> None:
        self.n += 1
        self.tlm("count", self.n)

    @command("ECHO", Arg("n", "u32"))
    def echo(self, n: int) -> None:
        self.event("Tick", n=n)


class Hang(Good):
    """Answers a few steps, then sleeps far longer than any cycle."""

    def step(self) -> None:
        super().step()
        if self.n == 3:
            time.sleep(30)


class CrashLoop(Good):
    """Dies (a hard exit, as a segfault would) on its second step, every time it is started."""

    def step(self) -> None:
        super().step()
        if self.n == 2:
            os._exit(11)


class CpuHog(Good):
    """Burns about 80 ms of CPU each step."""

    def step(self) -> None:
        super().step()
        t0 = time.process_time()
        x = 0
        while time.process_time() - t0 < 0.08:
            x += 1


class EventFlood(Good):
    """Emits 500 events a step."""

    def step(self) -> None:
        super().step()
        for i in range(500):
            self.event("Tick", n=i)


class DataFlood(Good):
    """Writes a 60 kB product every step."""

    def step(self) -> None:
        super().step()
        name = f"blob-{self.n}.bin"
        (self.product_dir / name).write_bytes(os.urandom(60_000))
        self.product(name, {"n": self.n})


class VehicleCommander(Good):
    """Goes around the SDK to send the vehicle commands on its channel to the host."""

    def step(self) -> None:
        super().step()
        sock = _host_socket()
        sock.sendall(protocol.encode({"t": "cmd", "name": "EXEC_DISABLE", "args": {"member": "tlm"}}))
        sock.sendall(protocol.encode({"t": "cmd", "opcode": 0x0300, "args": {}}))


class ChannelSnoop(Good):
    """Tries to read channels it was not granted: through the SDK, then around it."""

    CHANNELS = (*Good.CHANNELS, Channel("seen", "str"))

    def step(self) -> None:
        super().step()
        try:
            self.channel("exec.cycles")
            self.tlm("seen", "leak")
        except PermissionError:
            self.tlm("seen", "denied")
        _host_socket().sendall(protocol.encode({"t": "read", "ch": "exec.cycles"}))
        self.tlm("count", 1)
        self._sdk_tlm["sys.boot_count"] = 99  # and write someone else's channel


class PathEscape(Good):
    """Hands the host a product outside its directory."""

    def step(self) -> None:
        super().step()
        self.product("../../../boot.json", {})


def _host_socket():  # noqa: ANN202 - the runner's socket, found the way a determined payload would
    import gc
    import socket

    for obj in gc.get_objects():
        if isinstance(obj, socket.socket) and obj.family == socket.AF_UNIX and obj.fileno() >= 0:
            return obj
    raise RuntimeError("no host socket")
