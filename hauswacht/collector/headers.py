"""Client address and trace id from request headers.

`ClientResolver` decides which address is the client: the peer, or a hop of
X-Forwarded-For / Forwarded when the peer is a trusted proxy.
`trace_id_from_headers` picks the request's trace id. Both take raw ASGI
header values (bytes) and never raise on malformed input.
"""

from __future__ import annotations

import ipaddress
import random

from hauswacht.collector.settings import Settings

MAX_REQUEST_ID = 64  # characters kept from an incoming X-Request-ID
MAX_CLIENT = 64  # characters kept from a forwarded client address
_HEX = frozenset("0123456789abcdef")
_REQUEST_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")
_ZERO_TRACE_ID = "0" * 32


def trace_id_from_headers(traceparent: bytes | None, request_id: bytes | None) -> str:
    """Pick the trace id: traceparent's trace-id, else X-Request-ID, else a random one."""
    if traceparent is not None:
        # W3C Trace Context: version "-" trace-id (32 lower-case hex, not all
        # zeros) "-" parent-id "-" flags; version ff is invalid.
        parts = traceparent.decode("latin-1").strip().split("-")
        if len(parts) >= 4 and len(parts[0]) == 2 and parts[0] != "ff":
            candidate = parts[1]
            if len(candidate) == 32 and _HEX.issuperset(candidate) and candidate != _ZERO_TRACE_ID:
                return candidate
    if request_id is not None:
        text = request_id.decode("latin-1").strip()[:MAX_REQUEST_ID]
        if not _REQUEST_ID_CHARS.issuperset(text):
            text = "".join(char for char in text if char in _REQUEST_ID_CHARS)
        if text:
            return text
    # Not cryptographic: a trace id only has to be unique, not unguessable.
    return f"{random.getrandbits(128):032x}"


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientResolver:
    """Find the client address behind trusted proxies.

    Forwarding headers are believed only when the direct peer is a trusted
    proxy. Each proxy appends the address it saw, so the hops are read from
    right to left and the first untrusted one is the client. When every hop
    is trusted, the left-most is. X-Forwarded-For is used when present, else
    the `for=` values of Forwarded (RFC 7239).
    """

    # NOTE: a proxy that sets no X-Forwarded-For and passes a client's own
    # Forwarded header through lets that client choose its address. Trust
    # only proxies that set one of the two headers.

    MAX_CACHE = 4096

    def __init__(self, settings: Settings) -> None:
        self.networks: tuple[Network, ...] = settings.trusted_proxies
        self.trust_all = settings.trust_all_proxies
        self.enabled = bool(self.networks) or self.trust_all
        self._trusted: dict[str, bool] = {}

    def is_trusted(self, host: str) -> bool:
        if self.trust_all:
            return True
        if len(host) > MAX_CLIENT:  # no address is this long; keeps the cache small
            return False
        trusted = self._trusted.get(host)
        if trusted is not None:
            return trusted
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            trusted = False
        else:
            trusted = any(address in network for network in self.networks)
        if len(self._trusted) >= self.MAX_CACHE:
            self._trusted.clear()
        self._trusted[host] = trusted
        return trusted

    def resolve(
        self, peer: str | None, forwarded_for: bytes | None, forwarded: bytes | None
    ) -> str | None:
        if not self.enabled or peer is None or not self.is_trusted(peer):
            return peer
        if forwarded_for is not None:
            hops = [_strip_port(hop) for hop in forwarded_for.decode("latin-1").split(",")]
        elif forwarded is not None:
            hops = _forwarded_for_values(forwarded.decode("latin-1"))
        else:
            return peer
        hops = [hop for hop in hops if hop]
        if not hops:
            return peer
        for hop in reversed(hops):
            if not self.is_trusted(hop):
                return hop[:MAX_CLIENT]
        return hops[0][:MAX_CLIENT]


def _strip_port(hop: str) -> str:
    """Return the address of "1.2.3.4", "1.2.3.4:80", "[::1]:80", "::1" or '"[::1]"'."""
    hop = hop.strip().strip('"')
    if hop.startswith("["):
        end = hop.find("]")
        return hop[1:end] if end > 0 else hop[1:]
    if hop.count(":") == 1:
        return hop.partition(":")[0]
    return hop


def _forwarded_for_values(header: str) -> list[str]:
    """Return the `for=` values of a Forwarded header (RFC 7239), in order."""
    values = []
    for element in header.split(","):
        for pair in element.split(";"):
            key, sep, value = pair.strip().partition("=")
            if sep and key.strip().lower() == "for":
                values.append(_strip_port(value))
    return values
