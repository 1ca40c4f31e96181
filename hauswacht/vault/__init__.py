"""The vault part; built by its own issue."""
