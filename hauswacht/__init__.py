"""Hauswacht: self-hosted observability for Python web services on SQLite.

    from hauswacht import HauswachtMiddleware, capture_exception, record_metric, measure

The collector is imported on first use of one of these names, so that
`import hauswacht.vault` in an app's configuration code does not load the
middleware and its dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hauswacht.collector import HauswachtMiddleware, capture_exception, measure, record_metric

__all__ = ["HauswachtMiddleware", "capture_exception", "measure", "record_metric"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in __all__:
        import hauswacht.collector

        return getattr(hauswacht.collector, name)
    raise AttributeError(f"module 'hauswacht' has no attribute {name!r}")
