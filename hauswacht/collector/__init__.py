"""The collector: the ASGI middleware and the capture functions that produce events."""

from hauswacht.collector.capture import capture_exception, measure, record_metric
from hauswacht.collector.middleware import HauswachtMiddleware

__all__ = ["HauswachtMiddleware", "capture_exception", "measure", "record_metric"]
