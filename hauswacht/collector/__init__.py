"""The collector: the ASGI middleware and the capture functions that produce events."""

from hauswacht.collector.capture import capture_exception, measure, record_metric
from hauswacht.collector.collector import Collector
from hauswacht.collector.middleware import HauswachtMiddleware
from hauswacht.collector.settings import Settings, SettingsError

__all__ = [
    "Collector",
    "HauswachtMiddleware",
    "Settings",
    "SettingsError",
    "capture_exception",
    "measure",
    "record_metric",
]
