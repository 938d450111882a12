"""Zendesk Help Center articles exports (JSON): ``{"articles": [{id, title, body (HTML),
section_id, label_names, draft, html_url, ...}]}`` or a bare list of such articles."""

from __future__ import annotations

import json
from pathlib import Path

from indexer.articles import (
    InvalidArticle,
    LoadError,
    SourceArticle,
    html_to_markdown,
    make_article,
)

MAX_BYTES = 200 * 1024 * 1024


def _article(item: object, where: str) -> SourceArticle:
    if not isinstance(item, dict):
        raise InvalidArticle("expected an article object")
    _, body = (
        html_to_markdown(item.get("body") or "")
        if isinstance(item.get("body"), str)
        else (
            None,
            item.get("body"),
        )
    )
    section = item.get("section_id")
    return make_article(
        {
            "id": f"zendesk-{item.get('id')}" if item.get("id") is not None else None,
            "title": item.get("title") or item.get("name"),
            "body": body,
            "category": f"section-{section}" if section is not None else None,
            "tags": item.get("label_names") or [],
            "status": "draft" if item.get("draft") else "published",
            "url": item.get("html_url"),
            "updated": item.get("updated_at"),
        },
        where,
    )


def is_zendesk(data: object) -> bool:
    items = data.get("articles") if isinstance(data, dict) else data
    return isinstance(items, list) and all(isinstance(i, dict) and "body" in i for i in items[:5])


def load_zendesk(path: Path) -> tuple[list[SourceArticle], list[LoadError]]:
    """The articles of an export; a bad article is reported by its position and skipped."""
    if path.stat().st_size > MAX_BYTES:
        return [], [LoadError(str(path), f"larger than {MAX_BYTES // 2**20} MB")]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as exc:
        return [], [LoadError(str(path), f"not valid JSON: {exc}")]
    if not is_zendesk(data):
        return [], [LoadError(str(path), "not a Zendesk articles export (no 'articles' list)")]
    items = data["articles"] if isinstance(data, dict) else data
    articles, errors = [], []
    for n, item in enumerate(items, start=1):
        where = f"{path}:article {n}"
        try:
            articles.append(_article(item, where))
        except InvalidArticle as exc:
            errors.append(LoadError(where, str(exc)))
    return articles, errors
