"""The Raspberry Pi Pico reference firmware (MicroPython); see README.md here."""
