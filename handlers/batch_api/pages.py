"""One page of a list of files or batches, after OpenAI's cursor (`after`: the last id of the
page before)."""

from __future__ import annotations

from typing import Any

from handlers.batch_api.ids import made_in_second
from handlers.batch_api.objects import Page
from textgen.errors import InvalidRequest


def page(items: list[Any], after: str | None, limit: int, newest_first: bool) -> Page:
    """`limit` of `items` (sorted by creation second, then id) from the one after `after`.

    A cursor whose object is gone (deleted between two pages, or not of this list's kind) still
    marks its place, as ids begin with the time they were made: the list goes on from there
    rather than from its start, which a client paging through would read twice, or forever.
    """
    start = 0
    if after is not None:
        ids = [item.id for item in items]
        if after in ids:
            start = ids.index(after) + 1
        else:
            start = _place_of(after, [(item.created_at, item.id) for item in items], newest_first)
    shown = items[start : start + limit]
    return Page(
        data=shown,
        first_id=shown[0].id if shown else None,
        last_id=shown[-1].id if shown else None,
        has_more=start + limit < len(items),
    )


def _place_of(after: str, keys: list[tuple[int, str]], newest_first: bool) -> int:
    second = made_in_second(after)
    if second is None:
        raise InvalidRequest(
            f"after must be the id of a file or batch, as a list's last_id; got {after!r}",
            field="after",
        )
    cursor = (second, after)
    beyond = (i for i, key in enumerate(keys) if (key < cursor if newest_first else key > cursor))
    return next(beyond, len(keys))
