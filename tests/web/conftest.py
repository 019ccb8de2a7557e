"""A real ground and relay on 127.0.0.1 with a minimal flight side, shared by the web tests."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from flight.link.auth import write_key_file
from ground.server import GroundServer, load_config
from sim_hw.relay import RelayParams, RelayServer
from tests.ground.test_processes import VehicleThread, free_port
from tests.link.fixtures import DICT, SECRET


@pytest.fixture
def live_ground(tmp_path: Path):
    """(tmp dir, running GroundServer) with a vehicle thread sending housekeeping at 20 Hz."""
    vport, gport, pport, cport = (free_port() for _ in range(4))
    (tmp_path / "dict.json").write_text(json.dumps(DICT))
    write_key_file(tmp_path / "66.key", SECRET)
    (tmp_path / "ground.toml").write_text(
        f'archive = "ground.db"\nrelay = "tcp://127.0.0.1:{gport}"\n'
        f'pub = "tcp://127.0.0.1:{pport}"\ncommands = "tcp://127.0.0.1:{cport}"\n'
        'state_dir = "state"\nack_interval_s = 0.2\nretry_interval_s = 3.0\n'
        '[[vehicle]]\nscid = 66\nname = "magpie-1"\ndictionary = "dict.json"\n'
        'key_file = "66.key"\nkey_id = 1\n'
    )
    relay = RelayServer(f"tcp://127.0.0.1:{vport}", f"tcp://127.0.0.1:{gport}",
                        RelayParams(light_time_s=0.02), stats_interval_s=0)
    ground = GroundServer(load_config(tmp_path / "ground.toml"))
    stop = threading.Event()
    threads = [threading.Thread(target=s.serve, args=(stop,), daemon=True) for s in (relay, ground)]
    for th in threads:
        th.start()
    vehicle = VehicleThread(tmp_path, f"radio+zmq://tcp://127.0.0.1:{vport}?scid=66")
    vehicle.start()
    yield tmp_path, ground
    vehicle.stop.set()
    vehicle.join(5)
    stop.set()
    for th in threads:
        th.join(5)
