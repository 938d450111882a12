"""Load help articles from files (Markdown + front matter, HTML, FAQ CSV/YAML, JSONL) and validate them.

Every loader returns the articles it could read plus one :class:`LoadError` per bad file or item,
so one broken file never stops an import.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import frontmatter
import yaml
from bs4 import BeautifulSoup

STATUSES = ("draft", "published", "archived")
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
MARKDOWN_SUFFIXES = {".md", ".markdown"}
HTML_SUFFIXES = {".html", ".htm"}
FAQ_SUFFIXES = {".yaml", ".yml", ".csv"}
JSONL_SUFFIXES = {".jsonl"}
ZENDESK_SUFFIXES = {".json"}  # a Zendesk Help Center articles export
ZIP_SUFFIXES = {".zip"}
# Longest values the store's columns hold (bot/models.py). Checked here so that SQLite, which ignores
# lengths, and PostgreSQL accept the same articles, and a reject names the field.
MAX_CHARS = {
    "title": 500,
    "question": 500,
    "tags": 100,
    "updated": 40,
    "url": 1000,
    "body": 500_000,
}


@dataclass
class SourceArticle:
    """One article as read from a file, before it reaches the store."""

    id: str
    title: str
    body: str
    category: str | None = None
    tags: list[str] = field(default_factory=list)
    status: str = "published"
    updated: str | None = None
    url: str | None = None
    source: str = ""

    def content_hash(self) -> str:
        """Hash of everything that makes a new revision when it changes."""
        payload = json.dumps(
            [self.title, self.body, self.category, sorted(self.tags), self.status, self.url]
        )
        return hashlib.sha256(payload.encode()).hexdigest()


@dataclass
class LoadError:
    """A file (or one item in it) that could not be imported, and why."""

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


class InvalidArticle(ValueError):
    """Raised by validation with a reason naming the offending field."""


def slugify(text: str, max_len: int = 60) -> str:
    """Lowercase-hyphenated id from free text."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_len].rstrip("-") or "item"


def _text(value: object, name: str, required: bool = True) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidArticle(f"field '{name}' is missing or empty")
        return None
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if not isinstance(value, (str, int, float)):
        raise InvalidArticle(f"field '{name}' must be text, got {type(value).__name__}")
    text = str(value).strip()
    if "\x00" in text:  # PostgreSQL cannot store NUL in text
        raise InvalidArticle(f"field '{name}' contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # e.g. a lone surrogate from a "\ud800" JSON escape
        raise InvalidArticle(
            f"field '{name}' contains characters that are not valid text"
        ) from None
    if len(text) > MAX_CHARS.get(name, len(text)):
        raise InvalidArticle(f"field '{name}' is longer than {MAX_CHARS[name]} characters")
    return text


def _url(value: str | None) -> str | None:
    """Only web links and site-relative paths: a citation link must never run script."""
    if value and not re.match(r"^(https?://|/(?!/))", value, re.IGNORECASE):
        raise InvalidArticle(f"field 'url' must start with http://, https:// or /, got {value!r}")
    return value


def _tags(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = [t for t in re.split(r"[,;|]", value)]
    if not isinstance(value, list):
        raise InvalidArticle("field 'tags' must be a list or a comma-separated string")
    return sorted({_text(t, "tags").lower() for t in value if str(t).strip()})


def make_article(data: dict, source: str, default_id: str | None = None) -> SourceArticle:
    """Validate a mapping of fields into a :class:`SourceArticle` (raises :class:`InvalidArticle`)."""
    if not isinstance(data, dict):
        raise InvalidArticle("expected a mapping of fields")
    article_id = _text(data.get("id"), "id", required=default_id is None) or default_id
    if not ID_PATTERN.match(article_id or ""):
        raise InvalidArticle(
            f"field 'id' {article_id!r} must be 1-128 letters, digits, '-', '_' or '.'"
        )
    status = (_text(data.get("status"), "status", required=False) or "published").lower()
    if status not in STATUSES:
        raise InvalidArticle(f"field 'status' must be one of {', '.join(STATUSES)}, got {status!r}")
    category = _text(data.get("category"), "category", required=False)
    return SourceArticle(
        id=article_id,
        title=_text(data.get("title"), "title"),
        body=_text(data.get("body"), "body"),
        category=slugify(category) if category else None,
        tags=_tags(data.get("tags")),
        status=status,
        updated=_text(data.get("updated"), "updated", required=False),
        url=_url(_text(data.get("url"), "url", required=False)),
        source=source,
    )


def load_markdown(path: Path) -> SourceArticle:
    """A Markdown file with YAML front matter; the id defaults to the file name."""
    try:
        post = frontmatter.loads(path.read_text(encoding="utf-8-sig"))  # -sig: drop a BOM
    except UnicodeDecodeError as exc:
        raise InvalidArticle("not UTF-8 text") from exc
    except yaml.YAMLError as exc:
        raise InvalidArticle(f"front matter is not valid YAML ({exc.__class__.__name__})") from exc
    except ValueError as exc:  # YAML that parses but holds an impossible date, e.g. 2026-13-45
        raise InvalidArticle(f"front matter has an invalid value ({exc})") from exc
    data = dict(post.metadata)
    data["body"] = post.content
    return make_article(data, str(path), default_id=slugify(path.stem, 128))


def html_to_markdown(html: str) -> tuple[str | None, str]:
    """Title and a Markdown rendering (headings, paragraphs, list items) of an HTML article."""
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "nav", "header", "footer"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else None
    root = soup.body or soup
    lines: list[str] = []
    for el in root.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "td"]):
        text = " ".join(el.get_text(" ", strip=True).split())
        if not text or el.find_parent(["li", "pre", "td"]) is not None:
            continue
        if el.name == "h1" and title is None:
            title = text
            continue
        if el.name[0] == "h":
            lines.append(f"\n{'#' * int(el.name[1])} {text}\n")
        elif el.name == "li":
            lines.append(f"- {text}")
        else:
            lines.append(f"\n{text}\n")
    return title, "\n".join(lines).strip()


def load_html(path: Path) -> SourceArticle:
    """An HTML article: title from <title> or <h1>, metadata from <meta name=...> tags."""
    html = path.read_text(encoding="utf-8", errors="replace")
    soup = BeautifulSoup(html, "html.parser")
    meta = {m.get("name", "").lower(): m.get("content") for m in soup.find_all("meta")}
    title, body = html_to_markdown(html)
    data = {
        "id": meta.get("article-id"),
        "title": title,
        "body": body,
        "category": meta.get("category"),
        "tags": meta.get("keywords"),
        "status": meta.get("status"),
        "url": meta.get("url"),
    }
    return make_article(data, str(path), default_id=slugify(path.stem, 128))


def _faq_article(item: object, source: str) -> SourceArticle:
    if not isinstance(item, dict):
        raise InvalidArticle("expected a mapping with 'question' and 'answer'")
    question = _text(item.get("question"), "question")
    data = dict(item)
    data["title"] = question
    data["body"] = _text(item.get("answer"), "answer")
    return make_article(data, source, default_id="faq-" + slugify(question))


def load_faq(path: Path) -> tuple[list[SourceArticle], list[LoadError]]:
    """An FAQ file: YAML (a list of {question, answer, id?, category?, tags?}) or CSV with a header."""
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as fh:  # spreadsheets write a BOM
            reader = csv.DictReader(fh)
            missing = {"question", "answer"} - set(reader.fieldnames or [])
            if missing:
                raise InvalidArticle(f"CSV header lacks column(s) {', '.join(sorted(missing))}")
            items = [(f"{path}:{n + 2}", row) for n, row in enumerate(reader)]
    else:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
        except yaml.YAMLError as exc:
            raise InvalidArticle(f"not valid YAML ({exc.__class__.__name__})") from exc
        except ValueError as exc:  # e.g. an impossible date such as 2026-02-30
            raise InvalidArticle(f"invalid value ({exc})") from exc
        if isinstance(data, dict):
            data = data.get("items", data.get("faq"))
        if not isinstance(data, list):
            raise InvalidArticle("expected a list of question/answer items (or {items: [...]})")
        items = [(f"{path}[{n}]", item) for n, item in enumerate(data)]
    articles, errors = [], []
    for where, item in items:
        try:
            articles.append(_faq_article(item, where))
        except InvalidArticle as exc:
            errors.append(LoadError(where, str(exc)))
    return articles, errors


def jsonl_records(path: Path) -> Iterator[tuple[str, object, str | None]]:
    """(where, parsed value, error) for each non-blank line of a JSON Lines file; ``where`` is
    path:line, and a line that is not valid JSON comes with the reason instead of a value."""
    with path.open(encoding="utf-8-sig") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{n}", json.loads(line), None
            except json.JSONDecodeError as exc:
                yield f"{path}:{n}", None, f"not valid JSON ({exc.msg})"
            except RecursionError:
                yield f"{path}:{n}", None, "JSON nested too deeply"


def load_jsonl(path: Path) -> tuple[list[SourceArticle], list[LoadError]]:
    """JSON Lines in the eval format: {id, title, body, url?, category?} per line."""
    articles, errors = [], []
    for where, data, problem in jsonl_records(path):
        try:
            if problem:
                raise InvalidArticle(problem)
            articles.append(make_article(data, where))
        except InvalidArticle as exc:
            errors.append(LoadError(where, str(exc)))
    return articles, errors


def load_path(path: Path, zips: bool = True) -> tuple[list[SourceArticle], list[LoadError]]:
    """Every article under a file or folder, with the errors of the files that failed
    (``zips``: read zip files too; a zip inside a zip is not read)."""
    path = Path(path)
    if not path.exists():
        return [], [LoadError(str(path), "no such file or folder")]
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    articles: list[SourceArticle] = []
    errors: list[LoadError] = []
    for file in files:
        suffix = file.suffix.lower()
        if file.name.startswith(".") or suffix not in (
            MARKDOWN_SUFFIXES
            | HTML_SUFFIXES
            | FAQ_SUFFIXES
            | JSONL_SUFFIXES
            | ZENDESK_SUFFIXES
            | ZIP_SUFFIXES
        ):
            if not path.is_dir():
                errors.append(
                    LoadError(str(file), f"unsupported file type '{suffix or file.name}'")
                )
            continue
        try:
            if suffix in MARKDOWN_SUFFIXES:
                articles.append(load_markdown(file))
            elif suffix in HTML_SUFFIXES:
                articles.append(load_html(file))
            elif suffix in ZIP_SUFFIXES and not zips:
                errors.append(LoadError(str(file), "a zip inside a zip is not read"))
            elif suffix in ZIP_SUFFIXES:
                found, bad = _load_zip(file)
                articles.extend(found)
                errors.extend(bad)
            elif suffix in ZENDESK_SUFFIXES:
                from indexer.zendesk import load_zendesk

                found, bad = load_zendesk(file)
                articles.extend(found)
                errors.extend(bad)
            else:
                loader = load_faq if suffix in FAQ_SUFFIXES else load_jsonl
                found, bad = loader(file)
                articles.extend(found)
                errors.extend(bad)
        except (InvalidArticle, OSError, UnicodeDecodeError, csv.Error) as exc:
            errors.append(LoadError(str(file), str(exc)))
        except Exception as exc:  # noqa: BLE001 - one unreadable file never stops the others
            errors.append(LoadError(str(file), f"could not read: {exc.__class__.__name__}: {exc}"))
    return _drop_duplicates(articles, errors)


def _load_zip(file: Path) -> tuple[list[SourceArticle], list[LoadError]]:
    """The articles in a zip, their sources named ``archive.zip:inner/path``."""
    from indexer.archives import UnsafeArchive, unpack

    with tempfile.TemporaryDirectory(prefix="supportbot-zip-") as tmp:
        try:
            unpack(file, Path(tmp))
        except UnsafeArchive as exc:
            return [], [LoadError(str(file), str(exc))]
        found, bad = load_path(Path(tmp), zips=False)

    def inside(source: str) -> str:
        return f"{file}:{source[len(tmp) + 1 :]}" if source.startswith(tmp) else source

    for item in [*found, *bad]:
        item.source = inside(item.source)
    return found, bad


def _drop_duplicates(
    articles: list[SourceArticle], errors: list[LoadError]
) -> tuple[list[SourceArticle], list[LoadError]]:
    seen: dict[str, str] = {}
    unique = []
    for article in articles:
        if article.id in seen:
            errors.append(
                LoadError(
                    article.source, f"duplicate id '{article.id}' (first in {seen[article.id]})"
                )
            )
            continue
        seen[article.id] = article.source
        unique.append(article)
    return unique, errors
