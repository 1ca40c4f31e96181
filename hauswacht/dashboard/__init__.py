"""The dashboard: a separate, read-only Starlette app over the rollups, with login.

`create_app(database, ...)` builds it; serve it with `hauswacht dashboard` or
mount it inside another app. See app.py for the contract and auth.py for the
login, session and CSRF rules.
"""

from hauswacht.dashboard.app import DashboardConfigError, create_app

__all__ = ["DashboardConfigError", "create_app"]
