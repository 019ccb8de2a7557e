"""Magpie ground package."""
