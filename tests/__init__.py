"""Hauswacht test suite."""
