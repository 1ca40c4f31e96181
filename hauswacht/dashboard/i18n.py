"""English and German text of the dashboard, and how a request's language and times are chosen.

The language of a request is, first to last: a `?lang=` parameter (which
the app then keeps in a cookie), that cookie, the language set when the app
was created, the best supported language of the `Accept-Language` header,
English.

Times are shown in one time zone per app: the one it was created with, else
the server's local zone. Dates follow the language: `2015-05-17 10:00` in
English and `17.05.2015 10:00` in German.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hauswacht.i18n import DEFAULT_LANGUAGE, format_number, normalize_language, translate

logger = logging.getLogger(__name__)

LANG_COOKIE = "hauswacht_lang"

CATALOG = {
    # navigation and layout
    "app_name": {"en": "Hauswacht", "de": "Hauswacht"},
    "nav_overview": {"en": "Overview", "de": "Übersicht"},
    "nav_endpoints": {"en": "Endpoints", "de": "Endpunkte"},
    "nav_metrics": {"en": "Metrics", "de": "Metriken"},
    "nav_errors": {"en": "Errors", "de": "Fehler"},
    "logout": {"en": "Log out", "de": "Abmelden"},
    "signed_in_as": {"en": "Signed in as {user}", "de": "Angemeldet als {user}"},
    "auto_refresh": {"en": "Refresh every 60 s", "de": "Alle 60 s aktualisieren"},
    "times_in": {"en": "Times in {zone}", "de": "Zeiten in {zone}"},
    "language": {"en": "Language", "de": "Sprache"},
    "hourly_note": {
        "en": "Figures come from hourly rollups, so a range covers whole hours.",
        "de": "Die Zahlen stammen aus stündlichen Rollups, ein Zeitraum umfasst daher "
        "ganze Stunden.",
    },
    # ranges
    "range": {"en": "Range", "de": "Zeitraum"},
    "range_1h": {"en": "1 h", "de": "1 Std."},
    "range_24h": {"en": "24 h", "de": "24 Std."},
    "range_7d": {"en": "7 d", "de": "7 Tage"},
    "range_30d": {"en": "30 d", "de": "30 Tage"},
    "range_custom": {"en": "Custom", "de": "Eigener"},
    "from": {"en": "From", "de": "Von"},
    "to": {"en": "To", "de": "Bis"},
    "apply": {"en": "Apply", "de": "Anwenden"},
    "window": {"en": "{start} to {end}", "de": "{start} bis {end}"},
    # login
    "login_title": {"en": "Log in", "de": "Anmelden"},
    "username": {"en": "User name", "de": "Benutzername"},
    "password": {"en": "Password", "de": "Passwort"},
    "login_button": {"en": "Log in", "de": "Anmelden"},
    "login_failed": {
        "en": "Wrong user name or password.",
        "de": "Benutzername oder Passwort falsch.",
    },
    "login_throttled": {
        "en": "Too many failed logins. Try again in {seconds} s.",
        "de": "Zu viele fehlgeschlagene Anmeldungen. In {seconds} s erneut versuchen.",
    },
    "login_no_users": {
        "en": "No dashboard user exists yet. Create one with: hauswacht dashboard passwd USER",
        "de": "Es gibt noch keinen Dashboard-Benutzer. Einen anlegen mit: "
        "hauswacht dashboard passwd BENUTZER",
    },
    "logged_out": {"en": "You are logged out.", "de": "Sie sind abgemeldet."},
    "session_expired": {
        "en": "Please log in to see this page.",
        "de": "Bitte melden Sie sich an, um diese Seite zu sehen.",
    },
    # overview
    "overview_title": {"en": "Overview", "de": "Übersicht"},
    "requests": {"en": "Requests", "de": "Anfragen"},
    "avg_latency": {"en": "Average latency", "de": "Mittlere Latenz"},
    "p95_latency": {"en": "p95 latency", "de": "p95-Latenz"},
    "error_rate": {"en": "Error rate (5xx)", "de": "Fehlerquote (5xx)"},
    "client_errors": {"en": "4xx responses", "de": "4xx-Antworten"},
    "server_errors": {"en": "5xx responses", "de": "5xx-Antworten"},
    "captured_errors": {"en": "Captured errors", "de": "Erfasste Fehler"},
    "dropped": {"en": "Dropped events", "de": "Verworfene Ereignisse"},
    "chart_requests": {"en": "Requests per hour", "de": "Anfragen pro Stunde"},
    "chart_errors": {"en": "Errors per hour", "de": "Fehler pro Stunde"},
    "chart_latency": {"en": "Latency per hour (ms)", "de": "Latenz pro Stunde (ms)"},
    "legend_ok": {"en": "1xx–3xx", "de": "1xx–3xx"},
    "legend_captured": {"en": "captured errors", "de": "erfasste Fehler"},
    "no_data": {"en": "No data in this range.", "de": "Keine Daten in diesem Zeitraum."},
    "slowest_endpoints": {"en": "Slowest endpoints", "de": "Langsamste Endpunkte"},
    "slowest_note": {
        "en": "The 10 endpoints with the highest average latency.",
        "de": "Die 10 Endpunkte mit der höchsten mittleren Latenz.",
    },
    "status_breakdown": {"en": "Status codes", "de": "Statuscodes"},
    "status": {"en": "Status", "de": "Status"},
    "count": {"en": "Count", "de": "Anzahl"},
    "share": {"en": "Share", "de": "Anteil"},
    "route": {"en": "Route", "de": "Route"},
    "method": {"en": "Method", "de": "Methode"},
    "avg_ms": {"en": "avg ms", "de": "Ø ms"},
    "p50_ms": {"en": "p50 ms", "de": "p50 ms"},
    "p95_ms": {"en": "p95 ms", "de": "p95 ms"},
    "max_ms": {"en": "max ms", "de": "max. ms"},
    # endpoints
    "endpoints_title": {"en": "Endpoints", "de": "Endpunkte"},
    "endpoint_title": {"en": "Endpoint {method} {route}", "de": "Endpunkt {method} {route}"},
    "endpoint_heading": {"en": "Endpoint", "de": "Endpunkt"},
    "history": {"en": "History", "de": "Verlauf"},
    "more_endpoints": {
        "en": "{count} more endpoints are not shown.",
        "de": "{count} weitere Endpunkte werden nicht angezeigt.",
    },
    "show_all": {"en": "Show all", "de": "Alle zeigen"},
    "sort_by": {"en": "Sort by", "de": "Sortieren nach"},
    "endpoint_unknown": {
        "en": "No requests for {method} {route} in this range.",
        "de": "Keine Anfragen für {method} {route} in diesem Zeitraum.",
    },
    # metrics
    "metrics_title": {"en": "Metrics", "de": "Metriken"},
    "metric": {"en": "Metric", "de": "Metrik"},
    "tags": {"en": "Tags", "de": "Tags"},
    "contexts": {"en": "Contexts", "de": "Kontexte"},
    "breadcrumbs": {"en": "Breadcrumbs (latest last)", "de": "Breadcrumbs (neueste zuletzt)"},
    "category": {"en": "Category", "de": "Kategorie"},
    "unit": {"en": "Unit", "de": "Einheit"},
    "avg": {"en": "avg", "de": "Ø"},
    "max": {"en": "max", "de": "max."},
    "chart_metric": {
        "en": "{name}: average and p95 per hour",
        "de": "{name}: Ø und p95 pro Stunde",
    },
    "no_metrics": {
        "en": "No custom metrics in this range. Record them with record_metric() or measure().",
        "de": "Keine eigenen Metriken in diesem Zeitraum. Mit record_metric() oder measure() "
        "aufzeichnen.",
    },
    # errors
    "errors_title": {"en": "Errors", "de": "Fehler"},
    "error_status_all": {"en": "All", "de": "Alle"},
    "error_status_unresolved": {"en": "Unresolved", "de": "Offen"},
    "error_status_resolved": {"en": "Resolved", "de": "Behoben"},
    "error_status_ignored": {"en": "Ignored", "de": "Ignoriert"},
    "type": {"en": "Type", "de": "Typ"},
    "message": {"en": "Message", "de": "Meldung"},
    "events": {"en": "Events", "de": "Ereignisse"},
    "events_in_range": {"en": "In range", "de": "Im Zeitraum"},
    "first_seen": {"en": "First seen", "de": "Zuerst gesehen"},
    "last_seen": {"en": "Last seen", "de": "Zuletzt gesehen"},
    "regressions": {"en": "Regressions", "de": "Regressionen"},
    "resolved_at": {"en": "Resolved at", "de": "Behoben am"},
    "no_errors": {
        "en": "No error groups with this status in this range.",
        "de": "Keine Fehlergruppen mit diesem Status in diesem Zeitraum.",
    },
    "error_title": {"en": "Error group {id}", "de": "Fehlergruppe {id}"},
    "resolve": {"en": "Resolve", "de": "Beheben"},
    "ignore": {"en": "Ignore", "de": "Ignorieren"},
    "reopen": {"en": "Reopen", "de": "Wieder öffnen"},
    "stack_trace": {"en": "Stack trace (latest event)", "de": "Stacktrace (neuestes Ereignis)"},
    "in_app": {"en": "in app", "de": "eigener Code"},
    "frames_omitted": {
        "en": "{count} frames omitted",
        "de": "{count} Frames ausgelassen",
    },
    "caused_by": {
        "en": "The above was the direct cause of:",
        "de": "Dies war die direkte Ursache von:",
    },
    "during_handling": {
        "en": "During handling of the above, another exception occurred:",
        "de": "Bei der Behandlung trat eine weitere Ausnahme auf:",
    },
    "request_context": {"en": "Request", "de": "Anfrage"},
    "no_request": {
        "en": "This event was not captured during a request.",
        "de": "Dieses Ereignis wurde nicht während einer Anfrage erfasst.",
    },
    "trace_id": {"en": "Trace ID", "de": "Trace-ID"},
    "headers": {"en": "Headers", "de": "Header"},
    "query": {"en": "Query", "de": "Query"},
    "client": {"en": "Client", "de": "Client"},
    "path": {"en": "Path", "de": "Pfad"},
    "sample_events": {"en": "Sample events", "de": "Beispielereignisse"},
    "seen": {"en": "Seen", "de": "Gesehen"},
    "sample_kind": {"en": "Kept as", "de": "Aufbewahrt als"},
    "sample_first": {"en": "first event", "de": "erstes Ereignis"},
    "sample_regression": {"en": "regression", "de": "Regression"},
    "sample_sample": {"en": "recent", "de": "neueres"},
    "samples_note": {
        "en": "A group keeps its first event, every regression and its 10 most recent other "
        "events; the newest 50 are listed.",
        "de": "Eine Gruppe behält ihr erstes Ereignis, jede Regression und ihre 10 neuesten "
        "anderen Ereignisse; die neuesten 50 sind aufgeführt.",
    },
    "latest_event": {"en": "Latest event", "de": "Neuestes Ereignis"},
    "level": {"en": "Level", "de": "Stufe"},
    "chart_group": {"en": "Events per hour", "de": "Ereignisse pro Stunde"},
    "status_changed": {
        "en": "Status set to: {status}",
        "de": "Status gesetzt auf: {status}",
    },
    "none": {"en": "none", "de": "keine"},
    # problems
    "bad_request_title": {"en": "Invalid request", "de": "Ungültige Anfrage"},
    "not_found_title": {"en": "Not found", "de": "Nicht gefunden"},
    "not_found": {
        "en": "There is no page at {path}.",
        "de": "Unter {path} gibt es keine Seite.",
    },
    "group_not_found": {
        "en": "There is no error group {id}.",
        "de": "Es gibt keine Fehlergruppe {id}.",
    },
    "database_title": {"en": "Database not available", "de": "Datenbank nicht verfügbar"},
    "forbidden_title": {"en": "Request rejected", "de": "Anfrage abgelehnt"},
    "csrf_failed": {
        "en": "The form token is missing or invalid. Reload the page and try again.",
        "de": "Das Formular-Token fehlt oder ist ungültig. Seite neu laden und erneut versuchen.",
    },
    "origin_failed": {
        "en": "The request came from another site (Origin {origin}).",
        "de": "Die Anfrage kam von einer anderen Website (Origin {origin}).",
    },
    "form_type": {
        "en": "Unsupported form encoding {content_type!r}: send the form as {expected}, "
        "as the dashboard's own pages do.",
        "de": "Nicht unterstützte Formularkodierung {content_type!r}: das Formular als "
        "{expected} senden, wie es die Seiten des Dashboards tun.",
    },
    "not_logged_in": {"en": "Log in first.", "de": "Bitte zuerst anmelden."},
    "back": {"en": "Back to the overview", "de": "Zurück zur Übersicht"},
    # parameter errors
    "bad_int": {
        "en": "Invalid value {value!r} for parameter '{name}': expected a whole number "
        "from {low} to {high}.",
        "de": "Ungültiger Wert {value!r} für Parameter '{name}': erwartet eine ganze Zahl "
        "von {low} bis {high}.",
    },
    "bad_choice": {
        "en": "Invalid value {value!r} for parameter '{name}': expected one of {choices}.",
        "de": "Ungültiger Wert {value!r} für Parameter '{name}': erwartet einer von {choices}.",
    },
    "bad_time": {
        "en": "Invalid value {value!r} for parameter '{name}': expected an ISO 8601 date "
        "or time, e.g. 2015-05-17, 20150517 or 2015-05-17T10:00 (without offset in {zone}), "
        "or epoch milliseconds with 12 or 13 digits, e.g. 1431856800000.",
        "de": "Ungültiger Wert {value!r} für Parameter '{name}': erwartet ein Datum oder "
        "eine Zeit nach ISO 8601, z. B. 2015-05-17, 20150517 oder 2015-05-17T10:00 "
        "(ohne Offset in {zone}), oder Epoch-Millisekunden mit 12 oder 13 Ziffern, "
        "z. B. 1431856800000.",
    },
    "time_gap": {
        "en": "Invalid value {value!r} for parameter '{name}': this local time does not "
        "exist in {zone} because the clocks skip it when daylight saving time starts. "
        "Choose another time or give an offset, e.g. +01:00.",
        "de": "Ungültiger Wert {value!r} für Parameter '{name}': diese Ortszeit gibt es in "
        "{zone} nicht, weil die Uhr sie beim Beginn der Sommerzeit überspringt. Bitte eine "
        "andere Zeit oder einen Offset angeben, z. B. +01:00.",
    },
    "time_bounds": {
        "en": "Invalid value {value!r} for parameter '{name}': the time must lie in the "
        "years 1970 to 9999 (UTC).",
        "de": "Ungültiger Wert {value!r} für Parameter '{name}': die Zeit muss in den "
        "Jahren 1970 bis 9999 (UTC) liegen.",
    },
    "range_too_long": {
        "en": "Invalid range from 'from' to 'to': it spans more than {max_hours} hours, "
        "the maximum. Choose a later 'from' or an earlier 'to'.",
        "de": "Ungültiger Zeitraum von 'from' bis 'to': er umfasst mehr als {max_hours} "
        "Stunden, das Maximum. Bitte ein späteres 'from' oder ein früheres 'to' wählen.",
    },
    "now_at": {"en": "now, {time}", "de": "jetzt, {time}"},
    "missing": {
        "en": "Missing parameter '{name}': {reason}",
        "de": "Parameter '{name}' fehlt: {reason}",
    },
    "need_from": {
        "en": "a custom range needs 'from' and 'to'.",
        "de": "ein eigener Zeitraum braucht 'from' und 'to'.",
    },
    "need_method": {
        "en": "an endpoint is named by 'route' and 'method'.",
        "de": "ein Endpunkt wird durch 'route' und 'method' bestimmt.",
    },
    "bad_order": {
        "en": "Invalid value {value!r} for parameter 'to': it must be later than 'from' ({start}).",
        "de": "Ungültiger Wert {value!r} für Parameter 'to': er muss nach 'from' ({start}) liegen.",
    },
    "too_long": {
        "en": "Invalid value for parameter '{name}': longer than {limit} characters.",
        "de": "Ungültiger Wert für Parameter '{name}': länger als {limit} Zeichen.",
    },
    "hours_and_from": {
        "en": "Invalid parameters: give either 'hours' or 'from'/'to', not both.",
        "de": "Ungültige Parameter: entweder 'hours' oder 'from'/'to' angeben, nicht beides.",
    },
}


def tr(key: str, lang: str, **fields: object) -> str:
    """Return message `key` of the dashboard catalog in `lang`."""
    return translate(CATALOG, key, lang, **fields)


def parse_accept_language(header: str | None) -> str | None:
    """Return the supported language the `Accept-Language` header prefers most, or None.

    Entries keep their order among equal q-values; q=0 rules a language out.
    """
    if not header:
        return None
    best: tuple[float, int, str] | None = None
    for position, entry in enumerate(header.split(",")[:32]):
        parts = entry.strip().split(";")
        language = normalize_language(parts[0].strip())
        if language is None:
            continue
        quality = 1.0
        for parameter in parts[1:]:
            name, _, value = parameter.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        candidate = (-quality, position, language)
        if best is None or candidate < best:
            best = candidate
    return best[2] if best else None


def choose_language(
    query_value: str | None,
    cookie_value: str | None,
    setting: str | None,
    accept_language: str | None,
) -> str:
    """Return the language of a request; see the module docstring for the order."""
    for value in (query_value, cookie_value, setting):
        language = normalize_language(value)
        if language is not None:
            return language
    return parse_accept_language(accept_language) or DEFAULT_LANGUAGE


def local_timezone() -> dt.tzinfo:
    """Return the server's local time zone: $TZ, else /etc/localtime, else its current offset."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    for name in candidates:
        if not name:
            continue
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return dt.datetime.now().astimezone().tzinfo or dt.UTC


def resolve_timezone(name: str | None) -> dt.tzinfo:
    """Return the IANA zone `name` ("Europe/Berlin", "UTC"), or the server's zone for None.

    Raises ValueError naming the value when the zone is unknown.
    """
    if not name:
        return local_timezone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {name!r}: expected an IANA name such as Europe/Berlin or UTC"
        ) from exc


def timezone_name(zone: dt.tzinfo) -> str:
    """Return a readable name of `zone`: its IANA key, else its current abbreviation."""
    key = getattr(zone, "key", None)
    if key:
        return key
    return dt.datetime.now(zone).tzname() or "UTC"


class Formatter:
    """Formats numbers, times and durations for one request's language and the app's zone."""

    def __init__(self, lang: str, zone: dt.tzinfo) -> None:
        self.lang = lang
        self.zone = zone

    def number(self, value: float | int | None, decimals: int = 0) -> str:
        return format_number(value, self.lang, decimals)

    def ms(self, value: float | None) -> str:
        """Format a duration in ms: one decimal below 100 ms, none above."""
        if value is None:
            return "–"
        return self.number(value, 1 if abs(value) < 100 else 0)

    def ms_unit(self, value: float | None) -> str:
        """Format a duration with its unit ("12.5 ms"), or "–" when unknown."""
        return "–" if value is None else f"{self.ms(value)} ms"

    def percent(self, share: float | None, decimals: int = 1) -> str:
        if share is None:
            return "–"
        return f"{self.number(share * 100, decimals)} %"

    def _local(self, epoch_ms: int) -> dt.datetime | None:
        """Return `epoch_ms` in the app's zone, in UTC when the zone's date overflows, or None."""
        for zone in (self.zone, dt.UTC):
            try:
                return dt.datetime.fromtimestamp(epoch_ms / 1000, tz=zone)
            except (ValueError, OverflowError, OSError):
                continue
        return None

    def _ambiguous(self, local: dt.datetime) -> bool:
        """Tell whether `local`'s wall time occurs twice, as when the clocks go back."""
        try:
            return local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset()
        except (ValueError, OverflowError):
            return False

    def moment(self, epoch_ms: int | None, with_seconds: bool = False) -> str:
        """Format an epoch-ms time in the app's zone: 2015-05-17 10:00 or 17.05.2015 10:00.

        Never raises: a time whose local date is out of range is shown in UTC, and one out
        of every range as its epoch ms. A wall time that occurs twice gets its UTC offset.
        """
        if epoch_ms is None:
            return "–"
        local = self._local(epoch_ms)
        if local is None:
            return f"{epoch_ms} ms"
        clock = "%H:%M:%S" if with_seconds else "%H:%M"
        if self._ambiguous(local) or local.tzinfo is not self.zone:
            clock += " %z"
        if self.lang == "de":
            return _strftime(local, f"%d.%m.%Y {clock}")
        return _strftime(local, f"%Y-%m-%d {clock}")

    def hour(self, hour: int) -> str:
        return self.moment(hour * 3_600_000)

    def short_hour(self, hour: int) -> str:
        """Format an hour for a chart axis: 17.05. 10:00 or 05-17 10:00; never raises."""
        local = self._local(hour * 3_600_000)
        if local is None:
            return str(hour)
        clock = "%H:%M"
        if self._ambiguous(local) or local.tzinfo is not self.zone:
            clock += " %z"
        if self.lang == "de":
            return _strftime(local, f"%d.%m. {clock}")
        return _strftime(local, f"%m-%d {clock}")

    def input_value(self, epoch_ms: int | None) -> str:
        """Format a time for a datetime-local form field, in the app's zone; never raises."""
        if epoch_ms is None:
            return ""
        local = self._local(epoch_ms)
        if local is None or local.tzinfo is not self.zone:
            return ""
        return _strftime(local, "%Y-%m-%dT%H:%M")


def _strftime(moment: dt.datetime, pattern: str) -> str:
    """Format `moment` with `pattern`, writing the UTC offset as +01:00 for `%z`."""
    offset = moment.strftime("%z")
    if offset:
        offset = f"{offset[:3]}:{offset[3:5]}"
    return moment.strftime(pattern.replace("%z", offset))
