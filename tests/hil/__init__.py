"""Hardware-in-the-loop suites: emulated rigs by default, real ones with --hil-port."""
