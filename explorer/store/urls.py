"""Storage URLs: the default, the kind of a URL, the file behind it, the absolute form, masking.

The embedded default is an Optuna journal file, `runs/<study>.journal`: no server,
several local processes can run one study at once (appends are serialised by a lock
file; plain SQLite raises "database is locked" under concurrent writers), and
optuna-dashboard opens it. See docs/studies.md for the measurements behind the choice.

A plain path or `journal:PATH` is a journal file (or an SQLite file, recognised by its
header); `sqlite:///PATH`, `postgresql://USER@HOST/DB` and `mysql://...` are databases.
`mask_url()` hides passwords (from SQLAlchemy's parse of the URL); every message that shows a
URL, and every stored copy of one, goes through it. Hints a user may paste show
`runnable_url()`: the URL without its password, which then comes from PGPASSWORD.
"""

from __future__ import annotations

import re
from pathlib import Path

from explorer.core.errors import UserError

RDB_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql")
SQLITE_MAGIC = b"SQLite format 3\x00"
FORMS = "use a path, journal:PATH, sqlite:///PATH or postgresql://USER@HOST/DB"

SECRET_KEYS = ("password", "passwd", "pwd", "sslpassword", "passfile")  # libpq's query-string forms
MASK = "***"
# In free text: user:PASSWORD@ as SQLAlchemy reads it (the password runs to the first @, so an
# unencoded /, ?, # or space is inside it), then any further x@ before the host (an unencoded @).
# (No spaces here: that would swallow the message after a URL without a password; a password with a
# space is hidden whole when the message comes with its URL, or is a whole URL itself.)
_SECRET = re.compile(r"(?P<head>[a-zA-Z][\w+.-]*://[^:/@\s]*:)[^@\s]*@(?:[^/?#@\s]*@)*")
_SECRET_QUERY = re.compile(r"(?i)(?P<head>[?&](?:%s)=)[^&#\s]*" % "|".join(SECRET_KEYS))
_USERINFO = re.compile(r"(?P<head>[\w+]+://[^:/]*:)[^@]*@")  # sqlalchemy.engine.url._parse_url's
_USERINFO_TO_LAST_AT = re.compile(r"(?P<head>[\w+.-]+://[^:/@]*:).*@")
_WHOLE_URL = re.compile(r"[a-zA-Z][\w+.-]*://[^\n]*")


def _parsed(url: str):
    """SQLAlchemy's URL for `url`, or None when it is not one SQLAlchemy can read."""
    if not _WHOLE_URL.fullmatch(url):
        return None
    from sqlalchemy.engine import make_url

    try:
        return make_url(url)
    except Exception:  # ArgumentError, ValueError (a non-numeric port)
        return None


def _secret_query(u) -> dict[str, str]:
    return {k: MASK for k in u.query if k.lower() in SECRET_KEYS}


def mask_url(text: str, url: str | None = None) -> str:
    """`text` with every password hidden: postgresql://u:***@host/db, ...?password=***.

    A whole URL is masked from SQLAlchemy's own parse (so a password with an unencoded /, ?, #,
    @ or space is hidden whole); free text (an error message) by pattern, and, given the `url`
    it came from, with that URL's password hidden wherever the text repeats it."""
    text = str(text)
    if _WHOLE_URL.fullmatch(text.strip()):
        text, u = text.strip(), _parsed(text.strip())
        if u is not None and "@" not in (u.host or ""):
            if u.password is not None:  # SQLAlchemy's own pattern for the span: the first @ ends it
                text = _USERINFO.sub(lambda m: m.group("head") + MASK + "@", text, count=1)
        else:  # malformed (a bad port, ...) or an unencoded @ in the password: up to the last @
            text = _USERINFO_TO_LAST_AT.sub(lambda m: m.group("head") + MASK + "@", text, count=1)
        return _SECRET_QUERY.sub(lambda m: m.group("head") + MASK, text)
    for secret in _secrets(url):
        text = text.replace(secret, MASK)
    text = _SECRET.sub(lambda m: m.group("head") + MASK + "@", text)
    return _SECRET_QUERY.sub(lambda m: m.group("head") + MASK, text)


def _secrets(url: str | None) -> list[str]:
    """The passwords in `url` as parsed and as written (percent-encoded), longest first; very
    short ones are left to the patterns (hiding every 'a' in a message helps nobody)."""
    from urllib.parse import quote

    u = _parsed(str(url or "").strip())
    if u is None:
        return []
    found = {str(u.password)} if u.password is not None else set()
    found |= {v for k, v in u.query.items() if k.lower() in SECRET_KEYS and isinstance(v, str)}
    found |= {quote(s, safe="") for s in found}
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)


def has_password(url: str) -> bool:
    """True when `url` carries a password (user:PASSWORD@ or a ?password= argument)."""
    u = _parsed(str(url).strip())
    return u is not None and (u.password is not None or bool(_secret_query(u)))


def runnable_url(url: str) -> str:
    """`url` without its password, for hints a user can paste: with PostgreSQL the password then
    comes from PGPASSWORD or ~/.pgpass (see password_note)."""
    u = _parsed(str(url).strip())
    if u is None or not has_password(url):
        return url
    if "@" in (u.host or ""):  # an unencoded @ in the password: nothing runnable to show
        return mask_url(url)
    query = {k: v for k, v in u.query.items() if k.lower() not in SECRET_KEYS}
    return u._replace(password=None).set(query=query).render_as_string(hide_password=False)


def password_note(url: str) -> str:
    """'' or where the password of a runnable_url() hint comes from."""
    if not has_password(url):
        return ""
    if storage_kind(url) == "postgresql":
        return " (with the password in PGPASSWORD=... or ~/.pgpass)"
    return " (add the password to the URL)"


def default_storage_url(study_name: str) -> str:
    """The embedded default: a journal file under runs/."""
    return f"runs/{study_name}.journal"


def storage_kind(url: str) -> str:
    """'journal', 'sqlite', 'postgresql' or 'rdb' (another database: mysql://, or a scheme
    check_url refuses). A plain path is 'sqlite' when the file starts with SQLite's header."""
    url = str(url).strip()
    if url.startswith("journal:"):
        return "journal"
    if "://" in url:
        scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
        return {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql"}.get(scheme, "rdb")
    if url.startswith("sqlite:"):
        return "sqlite"  # sqlite:PATH without //: check_url refuses it
    try:
        with open(url, "rb") as f:
            return "sqlite" if f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC else "journal"
    except OSError:
        return "journal"


def check_url(url: str) -> None:
    """UserError (secrets masked) for a URL that names no storage or one that would lose the study."""
    if "://" in url and url.split("://", 1)[0].split("+", 1)[0].lower() not in RDB_SCHEMES:
        raise UserError(f"unknown storage URL {mask_url(url)!r}: {FORMS}")
    if "://" not in url and re.match(r"[A-Za-z][\w+.-]+:", url) and not url.startswith("journal:"):
        # sqlite:runs/x.db or postgresql:host would otherwise become a file named "sqlite:..."
        raise UserError(f"storage {mask_url(url)!r} looks like a URL without '//': {FORMS}")
    if re.fullmatch(r"sqlite(\+\w+)?://(/(:memory:)?)?", url.strip()):
        raise UserError(f"storage {url!r} is an in-memory database that other processes and later "
                        "runs cannot see; give a file: sqlite:///runs/NAME.db")


def journal_path(url: str) -> Path:
    """The file behind a journal URL (`journal:PATH` or a plain path)."""
    return Path(url[len("journal:"):] if url.startswith("journal:") else url)


def sqlite_path(url: str) -> Path:
    """The database file of sqlite:///relative, sqlite:////absolute (query dropped) or a plain path."""
    if "://" not in url:
        return Path(url)
    return Path(url.split(":///", 1)[1].split("?", 1)[0]) if ":///" in url else Path("")


def absolute_url(url: str) -> str:
    """A journal file's (or SQLite database's) absolute path, so a file exported here finds its
    study from any folder; other URLs unchanged."""
    if "://" not in url:
        return str(journal_path(url).resolve())  # journal:PATH, or a plain path to either kind
    head, sep, rest = url.partition(":///")
    if head.split("+", 1)[0].lower() == "sqlite" and sep:
        path, q, query = rest.partition("?")
        if path and path != ":memory:" and not path.startswith("/"):  # sqlite:///rel.db is relative
            return f"{head}:///{Path(path).resolve()}{q}{query}"
    return url
