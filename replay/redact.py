"""Keep credentials out of everything written: a base URL may carry them.

`http://user:key@host/v1` works as an endpoint (the HTTP client sends the user and key as basic
authentication), but the URL is also recorded: by collection in the store's manifest, the
checkpoint's `run.json` and the command line shown by `collect status`; by a search in its
archive header, `summary.json`, the searcher's state and `search compare` tables; and by both
in error lines. Those get
`redact_url(url)`: the user-info part and query parameters that look like secrets are replaced
by `***`. `scrub(text, url)` removes the secrets of `url` from any text (an exception's message
that echoes the URL, say).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
_SECRET_PARAMS = ("key", "api_key", "apikey", "token", "access_token", "password", "secret", "sig", "signature")


def _secret_param(name: str) -> bool:
    n = name.lower().replace("-", "_")
    return any(n == s or n.endswith("_" + s) for s in _SECRET_PARAMS)


def redact_url(url: str | None) -> str | None:
    """`url` with its user-info and secret-looking query values masked (None stays None)."""
    if url is None:
        return None
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # not a URL we can take apart: show nothing of it that could be a secret
        return MASK if "@" in str(url) else str(url)
    netloc = parts.netloc
    if "@" in netloc:
        if ":" in host:  # IPv6
            host = f"[{host}]"
        netloc = f"{MASK}@{host}" + (f":{port}" if port is not None else "")
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_secret_param(k) for k, _ in pairs):
            query = urlencode([(k, MASK if _secret_param(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def secrets_of(url: str | None) -> list[str]:
    """The strings of `url` that must not be written: user, password, secret query values."""
    if not url:
        return []
    try:
        parts = urlsplit(str(url))
        out = [parts.username, parts.password]
        out += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if _secret_param(k)]
    except ValueError:
        return [str(url)]
    found = []
    for s in out:
        if s:
            found += [s, unquote(s)]
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, url: str | None) -> str:
    """`text` with the full URL shown redacted and every secret of `url` masked."""
    if not url:
        return text
    text = text.replace(str(url), redact_url(url) or "")
    for s in secrets_of(url):
        text = text.replace(s, MASK)
    return text
