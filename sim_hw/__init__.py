"""Magpie sim_hw package."""
