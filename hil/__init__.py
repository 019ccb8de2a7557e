"""Magpie hil package."""
