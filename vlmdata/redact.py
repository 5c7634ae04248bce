"""Secrets out of everything vlmdata prints or writes: the API key (from `api_key_env`, whatever the
variable is called), credential-looking variables expanded into the recipe, and keys written into an
endpoint URL (`https://user:KEY@host/v1`, `?api-key=KEY`, an `sk-...` token anywhere in it).

`safe_url` is the only form of a base URL that reaches messages, manifests and the resolved recipe;
`Redactor` replaces every known secret value in any text (error messages from servers included).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit

MASK = "***"
_SECRET_PARAM = re.compile(r"key|token|secret|passw|auth|sig|credential", re.IGNORECASE)
_TOKEN = re.compile(r"\b(?:sk|pk|rk|api|key)[-_][A-Za-z0-9_-]{12,}")
MIN_SECRET_CHARS = 4  # shorter values would mask ordinary words


def url_secrets(url: str) -> list[str]:
    """The parts of a URL that are credentials: userinfo, secret-named query values, key-like tokens."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _TOKEN.findall(url)
    found = [x for x in (parts.username, parts.password) if x]
    found += [v for k, v in parse_qsl(parts.query, keep_blank_values=False) if _SECRET_PARAM.search(k)]
    found += _TOKEN.findall(url)
    return [s for s in found if len(s) >= MIN_SECRET_CHARS]


def safe_url(url: str) -> str:
    """`url` with its credentials masked (see `url_secrets`)."""
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        url = url.replace(secret, MASK)
    return url


class Redactor:
    """Replaces secret values by their names (`${VAR}`) or a mask, longest first."""

    def __init__(self, *, env_names: Iterable[str] = (), urls: Iterable[str] = ()) -> None:
        pairs: dict[str, str] = {}
        for name in env_names:
            value = os.environ.get(name)
            if value and len(value) >= MIN_SECRET_CHARS:
                pairs[value] = f"${{{name}}}"
        for url in urls:
            for secret in url_secrets(url):
                pairs.setdefault(secret, MASK)
        self._pairs = sorted(pairs.items(), key=lambda kv: len(kv[0]), reverse=True)

    def __call__(self, text: str) -> str:
        for secret, shown in self._pairs:
            text = text.replace(secret, shown)
        return text

    def __bool__(self) -> bool:
        return bool(self._pairs)
