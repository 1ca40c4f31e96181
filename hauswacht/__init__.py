"""Hauswacht: self-hosted observability for Python web services on SQLite.

    from hauswacht import HauswachtMiddleware, capture_exception, record_metric, measure
"""

from hauswacht.collector import HauswachtMiddleware, capture_exception, measure, record_metric

__all__ = ["HauswachtMiddleware", "capture_exception", "measure", "record_metric"]
__version__ = "0.1.0"
