"""How requests are authenticated: v1's two static headers, or the partner API's HMAC.

Pure: headers from the request target and the body bytes, no I/O. The transport asks
for them once per request, after the URL is built pre-encoded and the body serialised,
so what is signed is exactly what goes on the wire.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from ._errors import AuthenticationError, ConfigurationError

__all__ = [
    "Auth",
    "PartnerAuth",
    "V1Auth",
    "check_credential",
    "encode_query",
    "partner_signature",
]


class _Secret(str):
    """A string that never shows itself in a repr."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


def check_credential(name: str, value: object) -> str:
    """Non-empty, printable, header-safe; the message never echoes the value."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{name} must be a non-empty string")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigurationError(f"{name} contains a control character (a stray newline?)")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ConfigurationError(f"{name} has characters an HTTP header cannot carry") from None
    if value != value.strip():
        raise ConfigurationError(f"{name} starts or ends with white space")
    return value


def _check_key(value: object) -> str:
    """The partner secret is only ever an HMAC key (its UTF-8 bytes), never sent: any
    text will do, but not an empty one, nor one with a control character or white
    space at an end (a paste that went wrong)."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError("partner_secret must be a non-empty string")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigurationError("partner_secret contains a control character (a stray newline?)")
    if value != value.strip():
        raise ConfigurationError("partner_secret starts or ends with white space")
    return value


def partner_signature(partner_secret: str, message: bytes) -> str:
    """The partner API's ``secret`` header: base64(HMAC-SHA256(key = the partner secret's
    UTF-8 bytes, message)), where the message is the request target followed by the body.

    >>> partner_signature("1IieSn9qXCYu3FeEG1eH05QxTMldKEiNIkLSN/5xtgc=",
    ...     b"/v1/partner/order?since=2018-10-13T13:34:52Z&until=2018-10-16T19:22:39Z&limit=100&offset=0")
    'XoPRRDtfNWaGm4nbw7A0LY/c2U0+jg3F3Ay2d3VR3bM='
    """
    if not isinstance(message, bytes | bytearray | memoryview):
        raise TypeError(f"message must be bytes, got {type(message).__name__}")
    digest = hmac.new(partner_secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


# What a query value may keep as it is: the unreserved characters and ':' (RFC 3339
# times stay readable, as in the documentation's examples). Everything else is %XX.
_QUERY_SAFE = "-._~:"


def encode_query(params: Mapping[str, str] | Sequence[tuple[str, str]]) -> str:
    """The query string exactly as it is sent (and signed): ``k=v&k=v``, percent-encoded
    once, here; the URL is then handed to aiohttp as already encoded."""
    pairs = params.items() if isinstance(params, Mapping) else params
    return "&".join(f"{quote(k, safe=_QUERY_SAFE)}={quote(v, safe=_QUERY_SAFE)}" for k, v in pairs)


class Auth:
    """The headers that authenticate one request."""

    hints: Mapping[type, str] = {}

    def headers(self, target: str, body: Sequence[bytes] | bytes | None) -> dict[str, str]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class V1Auth(Auth):
    """``api_key`` and ``api_secret`` headers (underscores: see docs/quickstart.md)."""

    def __init__(self, api_key: str, api_secret: str) -> None:
        self._headers = {
            "api_key": check_credential("api_key", api_key),
            # A _Secret all the way to aiohttp, so no frame's locals show it.
            "api_secret": _Secret(check_credential("api_secret", api_secret)),
        }

    def headers(self, target: str, body: Sequence[bytes] | bytes | None) -> dict[str, str]:
        return dict(self._headers)

    def describe(self) -> str:
        return f"api_key={self._headers['api_key'][:4]}…"


class PartnerAuth(Auth):
    """``partner-id`` and ``secret`` = HMAC of the request target and the body.

    ``leading_slash=False`` signs the target without its leading ``/``, as the
    documentation's Create Order example does (its GET example keeps it)."""

    hints: Mapping[type, str] = {
        AuthenticationError: (
            "The partner API refused the signature: check partner_id and partner_secret "
            "(as SIRCLO gave them, no stray spaces). The clock is not involved (the "
            "signature has no timestamp). If the id and secret are right, the server may "
            "sign the URI without its leading '/': try PartnerClient(sign_leading_slash=False)."
        )
    }

    def __init__(self, partner_id: str, partner_secret: str, *, leading_slash: bool = True) -> None:
        self._partner_id = check_credential("partner_id", partner_id)
        self._key = _Secret(_check_key(partner_secret))
        self.leading_slash = leading_slash
        if not leading_slash:  # the hint names the other form, whichever is in use
            self.hints = {
                AuthenticationError: self.hints[AuthenticationError].replace(
                    "sign the URI without its leading '/': try "
                    "PartnerClient(sign_leading_slash=False)",
                    "sign the URI with its leading '/': try PartnerClient(sign_leading_slash=True)",
                )
            }

    def headers(self, target: str, body: Sequence[bytes] | bytes | None) -> dict[str, str]:
        signed = target if self.leading_slash else target.removeprefix("/")
        mac = hmac.new(self._key.encode(), signed.encode("ascii"), hashlib.sha256)
        if isinstance(body, bytes):
            mac.update(body)
        elif body is not None:
            for part in body:  # the parts as they are sent, never joined
                mac.update(part)
        return {
            "partner-id": self._partner_id,
            "secret": _Secret(base64.b64encode(mac.digest()).decode()),
        }

    def describe(self) -> str:
        return f"partner-id={self._partner_id}"
