"""Magpie reference firmware for a Raspberry Pi Pico (MicroPython): binds magpie_fw to the board.

Only this file touches hardware; the protocol, watchdog and stream live in magpie_fw.py, which
the Magpie test suite runs under CPython against the real host driver. Edit the pins below to
match your wiring. Hold GP22 low at power-up to skip this program and keep the REPL.
"""

import select
import sys
import time

import machine
import magpie_fw
import micropython

# -- wiring (GP numbers) -----------------------------------------------------------------------
LEFT_PWM, LEFT_DIR, RIGHT_PWM, RIGHT_DIR = 16, 17, 18, 19  # motor driver inputs (PWM + direction)
LEFT_ENC_A, LEFT_ENC_B, RIGHT_ENC_A, RIGHT_ENC_B = 2, 3, 4, 5  # quadrature encoders
SAFE_PIN = 22  # low at boot: do not start
UART_ID = None  # None: USB CDC (/dev/ttyACM0 on the Pi); 0: UART0 on GP0 (TX) / GP1 (RX)
UART_BAUD = 921600  # only for UART_ID 0 or 1; USB CDC ignores the baud rate
MAX_MM_S = 1000  # rim speed at 100 % duty; SET_WHEELS beyond it is refused (OUT_OF_RANGE)
PWM_HZ = 20000


class Board:
    """Two PWM motors with direction pins, two encoders, the RP2040's temperature sensor."""

    max_speed_mm_s = MAX_MM_S
    capabilities = 0x01 | 0x08  # ENCODERS | THERMAL

    def __init__(self):
        pin = machine.Pin
        self.pwm = [machine.PWM(pin(LEFT_PWM)), machine.PWM(pin(RIGHT_PWM))]
        for p in self.pwm:
            p.freq(PWM_HZ)
            p.duty_u16(0)
        self.dir = [pin(LEFT_DIR, pin.OUT, value=0), pin(RIGHT_DIR, pin.OUT, value=0)]
        self.ticks = [0, 0]
        self.enc_b = [pin(LEFT_ENC_B, pin.IN, pin.PULL_UP), pin(RIGHT_ENC_B, pin.IN, pin.PULL_UP)]
        pin(LEFT_ENC_A, pin.IN, pin.PULL_UP).irq(lambda p: self._count(0), pin.IRQ_RISING)
        pin(RIGHT_ENC_A, pin.IN, pin.PULL_UP).irq(lambda p: self._count(1), pin.IRQ_RISING)
        self.temp_adc = machine.ADC(4)

    def _count(self, side):
        self.ticks[side] += 1 if self.enc_b[side].value() else -1

    def set_wheels(self, left_mm_s, right_mm_s):
        for side, speed in ((0, left_mm_s), (1, right_mm_s)):
            self.dir[side].value(1 if speed < 0 else 0)
            self.pwm[side].duty_u16(min(65535, abs(speed) * 65535 // MAX_MM_S))

    def stop(self):
        self.set_wheels(0, 0)

    def reset_encoders(self):
        self.ticks = [0, 0]

    def sensors(self):
        volts = self.temp_adc.read_u16() * 3.3 / 65535
        board_c = 27.0 - (volts - 0.706) / 0.001721
        return (self.ticks[0], self.ticks[1], 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                board_c, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, board_c, 0)


def main():
    if machine.Pin(SAFE_PIN, machine.Pin.IN, machine.Pin.PULL_UP).value() == 0:
        return
    board = Board()
    if UART_ID is None:
        micropython.kbd_intr(-1)  # 0x03 is data on this link, not Ctrl-C
        poller = select.poll()
        poller.register(sys.stdin, select.POLLIN)
        out = sys.stdout.buffer

        def read():
            data = b""
            while len(data) < 64 and poller.poll(0):
                data += sys.stdin.buffer.read(1)
            return data

        def write(frame):
            out.write(frame)
    else:
        uart = machine.UART(UART_ID, baudrate=UART_BAUD, tx=machine.Pin(0), rx=machine.Pin(1),
                            rxbuf=1024)

        def read():
            return uart.read(uart.any() or 0) or b""

        def write(frame):
            uart.write(frame)

    fw = magpie_fw.Firmware(board, write)
    wdt = machine.WDT(timeout=1000)  # a hung loop resets the chip, and a reset stops the motors
    now = 0
    last = time.ticks_ms()
    while True:
        t = time.ticks_ms()
        now += time.ticks_diff(t, last)  # ticks_ms wraps; this count does not
        last = t
        data = read()
        if data:
            fw.feed(data, now)
        fw.tick(now)
        wdt.feed()
        time.sleep_ms(1)


main()
