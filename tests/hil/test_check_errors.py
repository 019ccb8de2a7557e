"""`magpie hil check` on ports it cannot use: clear errors, exit status 2, and a JSON record."""

from __future__ import annotations

import errno
import json
import os
import pwd
import tempfile
import threading
from pathlib import Path

import pytest
import serial

from hil.cli import EXIT_FAIL, EXIT_RIG
from hil.ports import RigError, explain, open_port
from hil.rig import McuRig
from hil.trace import WireTrace
from magpie.cli import main

pytestmark = pytest.mark.timeout(60)


def run_check(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, dict]:
    out = tmp_path / "r.json"
    code = main(["hil", "check", "--json", str(out), *args])
    cap = capsys.readouterr()
    doc = json.loads(out.read_text()) if out.exists() else {}
    return code, cap.out + cap.err, doc


def test_missing_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text, doc = run_check(tmp_path, capsys, "--port", str(tmp_path / "ttyUSB9"))
    assert code == EXIT_RIG
    assert "no such port" in text and "/dev/serial/by-id" in text
    assert doc["error"]["kind"] == "missing" and doc["passed"] is False


def test_port_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    holder = serial.Serial(path, 115200, exclusive=True)
    try:
        code, text, doc = run_check(tmp_path, capsys, "--port", path, "--target", "mcu")
    finally:
        holder.close()
        os.close(master)
        os.close(slave)
    assert code == EXIT_RIG
    assert "in use by another process" in text and f"fuser -v {path}" in text
    assert doc["error"]["kind"] == "in_use"


def test_permission_problem_names_the_group() -> None:
    err = explain("/dev/ttyUSB0", 115200,
                  serial.SerialException(errno.EACCES, "could not open port /dev/ttyUSB0: "
                                                       "[Errno 13] Permission denied"))
    assert err.kind == "permission"
    assert "usermod -aG" in str(err) and "log out" in str(err)


def _open_as_unprivileged(path: str) -> str:
    """``open_port(path)`` as the unprivileged ``nobody`` when we are root (in a forked child
    that drops its groups, gid and uid), as ourselves otherwise; the RigError kind, or "opened"."""

    def attempt() -> str:
        try:
            open_port(path, 115200).close()
        except RigError as exc:
            return f"{exc.kind}:{exc}"
        return "opened"

    if os.geteuid() != 0:
        return attempt()
    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no privileges, then the same call, the answer down the pipe
        code = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            os.write(write_end, attempt().encode()[:4000])
        except BaseException:  # noqa: BLE001 - a child must never return into pytest
            code = 1
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        answer = f.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged child failed"
    return answer


def test_permission_problem_on_a_real_file() -> None:
    """A port file nobody may open: the translation says permission and names the group. As
    root (how CI runs) the open is made by ``nobody``, since root opens any file."""
    with tempfile.TemporaryDirectory(prefix="magpie-perm-") as d:
        os.chmod(d, 0o755)  # the directory may be searched; the file may not be opened
        dev = Path(d) / "ttyFAKE"
        dev.write_bytes(b"")
        dev.chmod(0)
        answer = _open_as_unprivileged(str(dev))
    kind, _, message = answer.partition(":")
    assert kind == "permission", answer
    assert "permission denied" in message and "usermod -aG" in message


def test_baud_the_port_refuses() -> None:
    err = explain("/dev/ttyUSB0", 123, ValueError("Invalid baud rate: 123"))
    assert err.kind == "baud" and "921600" in str(err)
    with pytest.raises(SystemExit):
        main(["hil", "check", "--baud", "0"])


def test_wrong_baud_on_an_mcu_looks_like_noise(tmp_path: Path) -> None:
    """At the wrong rate an MCU's bytes arrive as garbage: the check says to fix the baud."""
    master, slave = os.openpty()
    stop = threading.Event()

    def noise() -> None:  # what 921600-baud frames look like read at 115200: junk, rarely 0x00
        while not stop.wait(0.01):
            try:
                os.write(master, bytes([0xF8, 0x80, 0xFE, 0x00, 0x78, 0xE0] * 8))
            except OSError:
                return

    thread = threading.Thread(target=noise, daemon=True)
    thread.start()
    try:
        from hil.mcu import McuSession

        with pytest.raises(RigError) as info:
            McuSession(McuRig(os.ttyname(slave)), 115200, WireTrace(), timeout=0.3)
    finally:
        stop.set()
        thread.join(1.0)
        os.close(master)
        os.close(slave)
    assert info.value.kind == "baud" and "--baud" in str(info.value)


def test_silent_port_is_not_a_loopback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    master, slave = os.openpty()
    try:
        code, text, doc = run_check(tmp_path, capsys, "--port", os.ttyname(slave))
    finally:
        os.close(master)
        os.close(slave)
    assert code == EXIT_RIG and "is TX wired to RX" in text
    assert doc["error"]["kind"] == "no_loopback"


def test_a_failing_check_exits_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A loopback with bit errors on its line fails integrity, and the run exits 1."""
    from hil.rig import PtyLoopback

    with PtyLoopback(corrupt=2e-4, seed=5) as rig:
        code, text, doc = run_check(tmp_path, capsys, "--port", rig.path, "--soak", "0.3",
                                    "--baud", "921600", "--trace", str(tmp_path / "t.txt"))
    assert code == EXIT_FAIL, text
    assert "FAIL frame integrity at 921600 baud" in text and "FAILED" in text
    assert "EMULATOR" not in text  # a port was given: the report does not claim an emulator
    assert doc["passed"] is False and doc["emulated"] is False
    assert (tmp_path / "t.txt").read_text().startswith("# wire trace")
