"""RFC 3986 URI-reference validation, for the CloudEvents ``source`` attribute.

CloudEvents 1.0 says ``source`` is a URI-reference. Consumers' SDKs parse it (the Java SDK with
``java.net.URI``), so a value such as ``payment_service:eu`` (``_`` cannot be in a scheme) or
``9svc:prod`` (a scheme starts with a letter) makes them fail. The grammar below is RFC 3986's
(section 4.1 ``URI-reference = URI / relative-ref``), written as one regular expression; IPv6 literals
are checked with :mod:`ipaddress`.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["is_uri_reference"]

_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = r"!$&'()*+,;="
_PCT = r"%[0-9A-Fa-f]{2}"
_PCHAR = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@]|{_PCT})"
_PCHAR_NC = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}@]|{_PCT})"  # no colon: first segment of a relative path
_SEGMENT = rf"{_PCHAR}*"
_SEGMENT_NZ = rf"{_PCHAR}+"
_SEGMENT_NZ_NC = rf"{_PCHAR_NC}+"
_USERINFO = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:]|{_PCT})*"
_IP_LITERAL = r"\[(?P<ip>[0-9A-Fa-f:.]+|[vV][0-9A-Fa-f]+\.[" + _UNRESERVED + _SUB_DELIMS + r":]+)\]"
_REG_NAME = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}]|{_PCT})*"
_AUTHORITY = rf"(?:{_USERINFO}@)?(?:{_IP_LITERAL}|{_REG_NAME})(?::[0-9]*)?"
_PATH_ABEMPTY = rf"(?:/{_SEGMENT})*"
_PATH_ABSOLUTE = rf"/(?:{_SEGMENT_NZ}(?:/{_SEGMENT})*)?"
_PATH_ROOTLESS = rf"{_SEGMENT_NZ}(?:/{_SEGMENT})*"
_PATH_NOSCHEME = rf"{_SEGMENT_NZ_NC}(?:/{_SEGMENT})*"
_QUERY = rf"(?:{_PCHAR}|[/?])*"
_TAIL = rf"(?:\?{_QUERY})?(?:#{_QUERY})?"

_URI = re.compile(
    rf"[A-Za-z][A-Za-z0-9+\-.]*:(?://{_AUTHORITY}{_PATH_ABEMPTY}|{_PATH_ABSOLUTE}|{_PATH_ROOTLESS}|){_TAIL}"
)
_RELATIVE_REF = re.compile(rf"(?://{_AUTHORITY}{_PATH_ABEMPTY}|{_PATH_ABSOLUTE}|{_PATH_NOSCHEME}|){_TAIL}")


def is_uri_reference(text: str) -> bool:
    """Whether ``text`` is an RFC 3986 URI-reference: an absolute URI or a relative reference."""
    for grammar in (_URI, _RELATIVE_REF):
        match = grammar.fullmatch(text)
        if match is None:
            continue
        literal = match.group("ip")
        if literal is None or literal[:1] in "vV":
            return True
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            continue
        return True
    return False
