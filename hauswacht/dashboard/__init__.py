"""The dashboard part; built by its own issue."""
