"""Split articles into passages along their Markdown headings.

Each passage carries the article title and its heading path, so "Refund timing > Card payments"
is searchable even when the paragraph itself never says "refund".
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from itertools import pairwise

from markdown_it import MarkdownIt

# block structure is all the splitter reads (a heading's text is its inline token's content), so
# the inline rules, most of the parse time, are switched off
_md = MarkdownIt("commonmark").disable("inline")
_INLINE_MARKUP = re.compile(r"(\*\*|__|`|\[([^\]]*)\]\([^)]*\))")


@dataclass
class IndexDoc:
    """A published article as the indexer sees it."""

    article_id: str
    revision: int
    title: str
    body: str
    url: str
    category: str | None = None


@dataclass
class Passage:
    """A piece of an article: the unit that is embedded, searched and quoted."""

    article_id: str
    revision: int
    title: str
    url: str
    heading_path: list[str]
    text: str
    category: str | None = None
    hash: str = field(default="")

    @property
    def search_text(self) -> str:
        """What is embedded and indexed: title, heading path and text."""
        heads = " > ".join(h for h in self.heading_path if h != self.title)
        return "\n".join(part for part in (self.title, heads, self.text) if part)

    def to_dict(self) -> dict:
        return {
            "article_id": self.article_id,
            "revision": self.revision,
            "title": self.title,
            "url": self.url,
            "heading_path": self.heading_path,
            "text": self.text,
            "category": self.category,
            "hash": self.hash,
        }


def _plain(markdown: str) -> str:
    """Markdown source of a section reduced to readable text (keeps list markers and line breaks)."""
    text = _INLINE_MARKUP.sub(lambda m: m.group(2) if m.group(2) is not None else "", markdown)
    lines = [line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def sections(body: str) -> list[tuple[list[str], str]]:
    """(heading path, section text) pairs, in order; text before the first heading has path []."""
    # one notion of "line" for the parser and the slicing: str.splitlines() would also split on
    # U+2028, form feeds etc., which markdown-it does not count, shifting every heading after them
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    lines = body.split("\n")
    tokens = _md.parse(body)
    heads = [
        (tok.map[0], tok.map[1], int(tok.tag[1]), inline.content.strip())
        for tok, inline in pairwise(tokens)
        if tok.type == "heading_open" and tok.map
    ]
    out: list[tuple[list[str], str]] = []
    stack: list[tuple[int, str]] = []
    start = 0
    path: list[str] = []
    for line_start, line_end, level, title in heads:
        out.append((path, "\n".join(lines[start:line_start])))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        path = [t for _, t in stack]
        start = line_end
    out.append((path, "\n".join(lines[start:])))
    return [(p, _plain(t)) for p, t in out if _plain(t) or p]


def _pieces(para: str, max_words: int) -> list[str]:
    """A paragraph cut at sentence ends, then line breaks, then every max_words words."""
    if len(para.split()) <= max_words:
        return [para]
    out: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+", para):
        if len(sentence.split()) <= max_words:
            out.append(sentence)
            continue
        for line in sentence.splitlines():  # a list, or a run-on sentence
            words = line.split()
            out.extend(" ".join(words[i : i + max_words]) for i in range(0, len(words), max_words))
    return [piece for piece in out if piece.strip()]


def _windows(text: str, max_words: int) -> list[str]:
    """Split text at paragraph (then sentence) boundaries into pieces of at most ~max_words."""
    pieces: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        pieces.extend(_pieces(para, max_words))
    out: list[str] = []
    current: list[str] = []
    count = 0
    for piece in pieces:
        n = len(piece.split())
        if current and count + n > max_words:
            out.append("\n\n".join(current))
            current, count = [], 0
        current.append(piece)
        count += n
    if current:
        out.append("\n\n".join(current))
    return out


def passage_hash(search_text: str, model: str) -> str:
    """Content hash keyed by the model, so unchanged text is never embedded twice."""
    return hashlib.sha256(f"{model}\n{search_text}".encode()).hexdigest()


def split_article(doc: IndexDoc, max_words: int = 120, model: str = "") -> list[Passage]:
    """Passages of one article, in reading order. A heading with no text of its own is skipped."""
    passages = []
    for path, text in sections(doc.body):
        if not text:
            continue
        for window in _windows(text, max_words):
            p = Passage(
                article_id=doc.article_id,
                revision=doc.revision,
                title=doc.title,
                url=doc.url,
                heading_path=path,
                text=window,
                category=doc.category,
            )
            p.hash = passage_hash(p.search_text, model)
            passages.append(p)
    if not passages:  # a title-only article still gets found by its title
        p = Passage(doc.article_id, doc.revision, doc.title, doc.url, [], doc.title, doc.category)
        p.hash = passage_hash(p.search_text, model)
        passages.append(p)
    return passages
