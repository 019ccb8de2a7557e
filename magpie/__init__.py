"""The Magpie launcher: the ``magpie`` command, which assembles and runs the other packages.

Nothing imports this package; it sits on top of flight, hal, sim_hw, ground and hil.
"""
