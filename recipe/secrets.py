"""Secrets never logged: URLs with a password in them are kept out of params, tags, hashes, Prefect and logs.

A study storage URL (``stages.tune.storage=postgresql://user:PASSWORD@host/db``) or a tracking URI may carry a
password in its userinfo. The rule (DESIGN.md, "Trust boundaries"): it never reaches MLflow params or tags, the
config hash, Prefect's stored flow-run parameters or any log. How:

- :func:`redact_url` writes the password as ``***`` (``postgresql://user:***@host/db``); the rest of the URL
  (scheme, user, host, database) stays readable, so a reader can still tell which store was used.
- :func:`conceal` is what the config does with such a URL when it is validated: it keeps the redacted form in
  the config and the real URL in this process's memory, keyed by the redacted form. Everything that serialises
  the config (MLflow params, ``config.json``, checkpoints, the config hash, Prefect's parameters) sees only
  the redacted form, so a study's name does not change when only its password does. :func:`reveal` gives the
  real URL back where it is opened (the Optuna storage), in the same process.
- :class:`RedactingFilter` rewrites every log record passing through a handler it is attached to (the run log,
  the terminal), for URLs that reached a message some other way.

A process that did not validate the config (a Dask worker) gets the real URL from the one that did, in the
picklable trial spec; it is never written anywhere on the way.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
_REVEALED: dict[str, str] = {}  # redacted URL -> the real one, for this process only

# scheme://user:password@  (the password up to the last "@" before the host; no "/" in userinfo)
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]*:)(?P<pw>[^\s/@]+)(?P<tail>@)")


def redact_url(url: str) -> str:
    """``url`` with the password of its userinfo written as ``***``; a URL without one is returned as is.

    >>> redact_url("postgresql://optuna:s3cret@db:5432/optuna")
    'postgresql://optuna:***@db:5432/optuna'
    """
    if not isinstance(url, str) or "@" not in url or "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if parts.password is None or parts.password == MASK:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def redact_text(text: str) -> str:
    """Every ``scheme://user:password@`` in free text with the password written as ``***``."""
    if not isinstance(text, str) or "@" not in text:
        return text
    return _USERINFO.sub(lambda m: m["head"] + (MASK if m["pw"] != MASK else m["pw"]) + m["tail"], text)


def conceal(url: str | None) -> str | None:
    """The redacted form of ``url``, remembering the real one for :func:`reveal` in this process.

    A URL already redacted (a config read back from MLflow) is returned as is: :func:`reveal` finds the real one
    when this process saw it."""
    if url is None:
        return None
    redacted = redact_url(url)
    if redacted != url:
        _REVEALED[redacted] = url
    return redacted


def reveal(url: str | None) -> str | None:
    """The real URL behind a redacted one (see :func:`conceal`); any other value is returned as is.

    Raises:
        ValueError: ``url`` is redacted and this process never saw the real one: the message says where to put it
            (``RECIPE_OPTUNA_STORAGE`` on the machine that runs the tune stage).
    """
    if url is None or MASK not in url:
        return url
    real = _REVEALED.get(url)
    if real is None:
        raise ValueError(
            f"{url} has its password redacted and this process does not know it; give the full URL on this "
            "machine (export RECIPE_OPTUNA_STORAGE=..., or --set stages.tune.storage=... on its command line)"
        )
    return real


class RedactingFilter(logging.Filter):
    """A logging filter that writes passwords in URLs as ``***`` in each record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "@" in record.msg:
            record.msg = redact_text(record.msg)
        if record.args:
            if isinstance(record.args, dict):
                record.args = {k: redact_text(v) if isinstance(v, str) else v for k, v in record.args.items()}
            else:
                record.args = tuple(redact_text(a) if isinstance(a, str) else a for a in record.args)
        return True
