"""The one error type of the data layer, and the helper that keeps its messages complete but bounded.

Bad data is usually bad in many places at once; an error that names only the first bad file turns one fix
into a loop of fix-and-rerun. So every check collects all offenders and lists them (capped, with a count).
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_LISTED = 50


class DataError(ValueError):
    """Input data that cannot be used; the message names the file(s) or column and what to do about it."""


def listing(items: Iterable[object], cap: int = MAX_LISTED, indent: str = "    ") -> str:
    """One item a line, at most ``cap`` of them, then "... and N more"."""
    items = list(items)
    lines = [f"{indent}{item}" for item in items[:cap]]
    if len(items) > cap:
        lines.append(f"{indent}... and {len(items) - cap} more")
    return "\n".join(lines)


def inline(items: Iterable[object], cap: int = MAX_LISTED) -> str:
    """Comma-separated, capped like :func:`listing`; for column names and other short things."""
    items = [str(i) for i in items]
    more = f", ... and {len(items) - cap} more" if len(items) > cap else ""
    return ", ".join(items[:cap]) + more


def no_rows_problem(path: object, columns: list[str]) -> str:
    """The error for a CSV at ``path`` whose header ``columns`` has no data row under it. Shared by the preflight
    check (exit 2 in a second) and the loader."""
    return (
        f"data.root {path} has a header ({inline(columns, 20)}) but no data rows; add the samples under it, one a row"
    )


def drop_columns_problem(path: object, drop: list[str], columns: list[str], target: str | None) -> str:
    """What is wrong with ``data.drop_columns`` for a CSV at ``path`` whose header is ``columns`` and whose target
    is ``target``: names that are not columns (the closest column suggested, the columns listed) or the target
    itself; "" when nothing is. Shared by the preflight check (exit 2 in a second) and the loader."""
    import difflib

    unknown = [c for c in drop if c not in columns]
    if unknown:
        hints = [
            f"{c!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(c, columns, n=1)) else repr(c)
            for c in unknown
        ]
        return (
            f"{path}: data.drop_columns names {len(unknown)} column(s) the CSV does not have: {', '.join(hints)}; "
            f"its columns are: {inline(columns, 40)}"
        )
    if target is not None and target in drop:
        return f"{path}: data.drop_columns names the target column {target!r}; leave it out of data.drop_columns"
    return ""
