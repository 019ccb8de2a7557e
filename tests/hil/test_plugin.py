"""The pytest plugin itself, run as a user would: a separate pytest process on small test files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hil.trace import WireTrace

pytestmark = pytest.mark.timeout(60)

FAILING = '''
import pytest

@pytest.mark.hil_mcu
def test_deliberately_fails(hil_mcu):
    hil_mcu.driver.set_wheels(0.0, 0.0)
    assert False, "deliberate failure"

@pytest.mark.hil_mcu
def test_passes(hil_mcu):
    assert hil_mcu.driver.link_up
'''

NEEDS_MCU = '''
import pytest

@pytest.mark.hil_mcu
def test_needs_mcu(hil_mcu):
    assert hil_mcu.driver.link_up

@pytest.mark.hil_loopback
def test_needs_loopback(hil_loopback_port):
    assert hil_loopback_port.is_open
'''


def run_pytest(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_rig.py").write_text(source, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGPIE_HIL_")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs",
         "--rootdir", str(tmp_path), *args, str(tmp_path / "test_rig.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=50)


def test_failed_test_leaves_its_wire_trace_beside_the_report(tmp_path: Path) -> None:
    report = tmp_path / "reports" / "junit.xml"
    proc = run_pytest(tmp_path, FAILING, "-k", "emulator-pty", f"--junitxml={report}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed, 1 passed" in proc.stdout
    traces = sorted((tmp_path / "reports" / "hil-traces").glob("*.trace.txt"))
    assert len(traces) == 1 and "test_deliberately_fails" in traces[0].name
    dump = traces[0].read_text()
    # the HELLO the driver sent, COBS-encoded: version 1, msg id 1 on the wire
    assert " TX " in dump and " RX " in dump
    assert "--- wire trace" not in dump and dump.startswith("# wire trace")
    assert "wire trace" in proc.stdout  # the section shown in the failure report
    assert str(traces[0]) in report.read_text()  # recorded as a property in the JUnit XML


def test_the_rig_decides_what_runs_and_says_why(tmp_path: Path) -> None:
    # A loopback on a real port (here a pty pair the test holds): MCU tests are skipped with the
    # reason, loopback tests run for real.
    from hil.rig import PtyLoopback

    with PtyLoopback() as rig:
        proc = run_pytest(tmp_path, NEEDS_MCU, f"--hil-port={rig.path}", "--hil-target=loopback")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed, 1 skipped" in proc.stdout
    assert "needs a microcontroller" in proc.stdout and rig.path in proc.stdout


RIG_USERS = '''
import fcntl
import os
import pytest
from hil.pytestplugin.fixtures import rig_lock_path

@pytest.mark.parametrize("k", range(4))
@pytest.mark.hil_loopback
def test_on_the_rig(hil_loopback_port, hil_options, k):
    # while this test has the port, no other test (worker or process) can take the rig's turn
    with open(rig_lock_path(hil_options.port), "a+b") as other:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert hil_loopback_port.is_open

@pytest.mark.parametrize("k", range(4))
def test_beside_the_rig(k):
    assert k >= 0
'''


def test_a_real_rig_is_used_by_one_test_at_a_time(tmp_path: Path) -> None:
    # two workers, as the project's suite runs: each test on the one real port holds the rig's
    # turn while it runs, so no other can open the port it holds exclusively
    from hil.rig import PtyLoopback

    with PtyLoopback() as rig:
        proc = run_pytest(tmp_path, RIG_USERS, f"--hil-port={rig.path}", "-n", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "8 passed" in proc.stdout


def test_environment_variable_names_the_port(tmp_path: Path) -> None:
    (tmp_path / "test_env.py").write_text(
        "def test_opts(hil_options):\n    assert hil_options.port == 'loop://' and "
        "hil_options.target == 'mcu' and hil_options.baud == 921600\n", encoding="utf-8")
    env = {**os.environ, "MAGPIE_HIL_PORT": "loop://", "MAGPIE_HIL_TARGET": "mcu",
           "MAGPIE_HIL_BAUD": "921600"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(tmp_path / "test_env.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "magpie hil: mcu rig at loop://, 921600 baud" in proc.stdout


def test_trace_dump_is_a_spy_style_hexdump() -> None:
    trace = WireTrace(max_bytes=64)
    trace.record("tx", b"\x02\x01\x01\x00magpie\x00")
    trace.note("unplug")
    trace.record("rx", bytes(range(40)))
    for _ in range(10):
        trace.record("rx", b"x" * 10)  # beyond max_bytes: the oldest RX chunks go
    dump = trace.dump()
    assert "TX 0000  02 01 01 00 6D 61 67 70 69 65 00" in dump and "magpie" in dump
    assert "--- unplug" in dump
    assert "00 01 02 03" not in dump  # the 40-byte chunk was dropped to stay bounded
    assert trace.total == {"tx": 11, "rx": 140}


def test_hil_check_json_is_machine_readable(tmp_path: Path) -> None:
    out = tmp_path / "check.json"
    proc = subprocess.run([sys.executable, "-m", "magpie.cli", "hil", "check", "--target", "mcu",
                           "--json", str(out)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=50)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "EMULATOR" in proc.stdout and "PASSED: 5 of 5 checks passed" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["passed"] is True and doc["emulated"] is True and doc["target"] == "mcu"
    names = [r["name"] for r in doc["results"]]
    assert names == ["handshake and version", "wheel command ack latency", "sensor stream rate",
                     "reconnect after the port vanishes", "motors stop when the link goes silent"]
    for r in doc["results"]:
        for m in r["measurements"]:
            assert {"name", "value", "unit", "limit", "ok"} <= set(m)
