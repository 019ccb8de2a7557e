"""The vehicle's end of the link: recorder to radio, and radio to verifier.

:class:`LinkEndpoint.step` is called by the flight software's rate group (or a test on a
simulated clock). It reads every uplink frame the radio holds, checks it (frame error control,
spacecraft id, the frame's SDLS authentication and anti-replay window, then the packet's HMAC, key
and counter), applies authenticated ACK/NAK link control to the recorder and
returns authenticated command bytes for the dispatcher; then it sends what the recorder releases
within the downlink byte budget accrued since the last step, in authenticated frames (first
sends on their kind's virtual channel, resends on the stored-data channel). Nothing
unauthenticated reaches the recorder or the dispatcher, so a forged ACK cannot make the vehicle
drop data.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flight.link.auth import Verified, Verifier
from flight.link.frames import VC, Deframer, Framer
from flight.link.packets import Apid, PacketError, decode_link_control
from flight.link.recorder import Recorder
from flight.link.sdls import LinkSecurity
from hal.contracts import Radio
from hal.errors import HalError

log = logging.getLogger(__name__)


@dataclass
class EndpointStats:
    frames_sent: int = 0
    packets_sent: int = 0
    uplink_packets: int = 0
    commands: int = 0
    link_control: int = 0
    bad_link_control: int = 0
    send_failures: int = 0
    acked: int = 0
    naked: int = 0


class LinkEndpoint:
    """Moves packets between the recorder, the radio and the verifier. See the module docstring."""

    def __init__(
        self,
        scid: int,
        recorder: Recorder,
        verifier: Verifier,
        radio: Radio,
        downlink_bytes_per_s: float = 32_000.0,
        max_burst_bytes: int = 64_000,
        max_frame_len: int = 4096,
        security: LinkSecurity | None = None,
    ) -> None:
        """``security``: the frame SAs; by default derived from the verifier's first key (both
        directions from the one key, state beside the verifier's)."""
        self.scid = scid
        self.recorder = recorder
        self.verifier = verifier
        self.radio = radio
        self.rate = downlink_bytes_per_s
        self.max_burst = max_burst_bytes
        if security is None:
            if not verifier.keys:
                raise ValueError("the link endpoint needs a key for its frames: the verifier has none")
            key = verifier.keys[0]
            path = verifier.state_path.with_name(verifier.state_path.stem + "-sdls.json")
            security = LinkSecurity.for_vehicle(key, None, path)
        self.security = security
        self.framer = Framer(scid, max_frame_len, security=security.tx)
        self.deframer = Deframer(accept_scids=[scid], security={scid: security.rx})
        self.stats = EndpointStats()
        self._budget = 0.0
        self._last_s: float | None = None

    def receive(self) -> list[Verified]:
        """Drain the radio; apply link control; return accepted commands in arrival order."""
        commands: list[Verified] = []
        while True:
            try:
                data = self.radio.recv(0.0)
            except HalError as exc:
                log.warning("radio receive failed: %s", exc)
                break
            if data is None:
                break
            frame = self.deframer.accept_frame(data)
            if frame is None or frame.vcid != VC.UPLINK or not frame.uplink:
                continue
            for raw in frame.packets:
                self.stats.uplink_packets += 1
                ok = self.verifier.verify(raw)
                if ok is None:
                    continue
                if ok.apid == Apid.TC_LINK:
                    self._link_control(ok.body)
                else:
                    self.stats.commands += 1
                    commands.append(ok)
        return commands

    def _link_control(self, body: bytes) -> None:
        try:
            acks, naks = decode_link_control(body)
        except PacketError as exc:
            self.stats.bad_link_control += 1
            log.warning("authenticated link control is malformed: %s", exc)
            return
        self.stats.link_control += 1
        if acks:
            self.stats.acked += self.recorder.ack(acks)
        for apid, seqs in naks:
            self.stats.naked += self.recorder.nak(apid, seqs)

    def transmit(self, now_s: float, min_budget: int = 0) -> int:
        """Send what the byte budget allows (at least ``min_budget`` bytes); returns packets sent."""
        if self._last_s is not None:
            self._budget = min(self.max_burst, self._budget + (now_s - self._last_s) * self.rate)
        else:
            self._budget = float(self.framer.max_frame_len)
        self._budget = max(self._budget, float(min_budget))
        self._last_s = now_s
        if self._budget < 64:
            return 0
        if not getattr(self.radio, "carrier", True):
            return 0  # no lock on the relay (out of its view): the recorder keeps everything queued
        sent = self.recorder.next_to_send(int(self._budget), now_s=now_s)
        if not sent:
            return 0
        frames = self.framer.pack_by_apid([s.data for s in sent if s.sent_count <= 1],
                                          stored=[s.data for s in sent if s.sent_count > 1])
        for frame in frames:
            try:
                self.radio.send(frame)
            except HalError as exc:
                # the packets stay in the recorder and go again after the resend timeout
                self.stats.send_failures += 1
                log.warning("radio send failed: %s", exc)
                break
            self._budget -= len(frame)
            self.stats.frames_sent += 1
        self.stats.packets_sent += len(sent)
        return len(sent)

    def step(self, now_s: float) -> list[Verified]:
        """One cycle: uplink in, downlink out. Returns commands for the dispatcher."""
        commands = self.receive()
        self.transmit(now_s)
        return commands
