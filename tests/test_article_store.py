"""The article store on SQLite and PostgreSQL: imports, revisions, published docs (bot/article_store.py)."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import func, select

from bot.article_store import import_articles, published_docs
from bot.db import session_scope
from bot.models import Article, ArticleRevision, Category, Tag
from indexer.articles import LoadError, SourceArticle, make_article
from tests.conftest import SMALL_KB


def run_import(sessions, articles, errors=None):
    with session_scope(sessions) as session:
        return import_articles(session, articles, errors)


def count(sessions, model) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def revisions_of(sessions, article_id: str) -> list[ArticleRevision]:
    with sessions() as session:
        return list(
            session.scalars(
                select(ArticleRevision)
                .where(ArticleRevision.article_id == article_id)
                .order_by(ArticleRevision.number)
            )
        )


def get_article(sessions, article_id: str) -> Article | None:
    with sessions() as session:
        article = session.get(Article, article_id)
        if article is not None:
            _ = (article.category, article.tags)  # load before the session closes
        return article


class BrokenArticle(SourceArticle):
    """An article whose row cannot be written: its content hash is NULL, which the schema forbids."""

    def content_hash(self) -> str:
        return None  # type: ignore[return-value]


def test_import_creates_articles_categories_tags_and_revision_1(sessions) -> None:
    report = run_import(sessions, SMALL_KB)

    assert sorted(report.created) == sorted(a.id for a in SMALL_KB)
    assert report.updated == report.unchanged == report.errors == []
    assert count(sessions, Article) == len(SMALL_KB)
    assert count(sessions, ArticleRevision) == len(SMALL_KB)

    article = get_article(sessions, "reset-password")
    assert article.title == "Reset your password"
    assert article.body == SMALL_KB[0].body
    assert article.revision == 1
    assert article.status == "published"
    assert article.category.slug == "account"
    assert [t.name for t in article.tags] == ["password"]

    with sessions() as session:
        slugs = set(session.scalars(select(Category.slug)))
        tags = set(session.scalars(select(Tag.name)))
    assert slugs == {"account", "orders-shipping", "returns"}
    assert tags == {"password"}

    [rev] = revisions_of(sessions, "reset-password")
    assert (rev.number, rev.title, rev.body, rev.category, rev.tags) == (
        1,
        "Reset your password",
        SMALL_KB[0].body,
        "account",
        ["password"],
    )


def test_reimport_unchanged_adds_no_revision(sessions) -> None:
    run_import(sessions, SMALL_KB)

    report = run_import(sessions, SMALL_KB)

    assert sorted(report.unchanged) == sorted(a.id for a in SMALL_KB)
    assert report.created == report.updated == []
    assert count(sessions, ArticleRevision) == len(SMALL_KB)
    assert get_article(sessions, "return-policy").revision == 1


def test_changed_body_adds_revision_2_and_keeps_revision_1(sessions) -> None:
    run_import(sessions, SMALL_KB)
    old = SMALL_KB[2]
    new = replace(old, body=old.body.replace("30 days", "45 days"), tags=["refund"])

    report = run_import(sessions, [new, *SMALL_KB[:2]])

    assert report.updated == ["return-policy"]
    assert sorted(report.unchanged) == ["reset-password", "shipping-costs"]
    article = get_article(sessions, "return-policy")
    assert article.revision == 2
    assert "45 days" in article.body
    assert [t.name for t in article.tags] == ["refund"]
    first, second = revisions_of(sessions, "return-policy")
    assert (first.number, second.number) == (1, 2)
    assert "30 days" in first.body and first.tags == []
    assert "45 days" in second.body and second.tags == ["refund"]
    assert count(sessions, ArticleRevision) == len(SMALL_KB) + 1


def test_published_docs_leave_out_drafts_and_archived(sessions) -> None:
    archived = SourceArticle(id="old-faq", title="Old", body="Gone.", status="archived")
    run_import(sessions, [*SMALL_KB, archived])

    with sessions() as session:
        docs = published_docs(session, public_url="https://help.example.com/")

    assert [d.article_id for d in docs] == ["reset-password", "return-policy", "shipping-costs"]
    shipping = docs[2]
    assert shipping.url == "https://help.example.com/help/articles/shipping-costs"
    assert shipping.category == "orders-shipping"
    assert shipping.revision == 1
    assert all("Teleportation" not in d.body for d in docs)


def test_publishing_a_draft_makes_it_a_doc(sessions) -> None:
    run_import(sessions, SMALL_KB)
    draft = SMALL_KB[3]
    report = run_import(sessions, [replace(draft, status="published")])
    assert report.updated == ["old-draft"]
    with sessions() as session:
        docs = {d.article_id: d for d in published_docs(session)}
    assert docs["old-draft"].revision == 2


def test_explicit_url_is_kept(sessions) -> None:
    article = SourceArticle(id="ext", title="External", body="B.", url="https://kb.example/ext")
    run_import(sessions, [article])
    with sessions() as session:
        [doc] = published_docs(session)
    assert doc.url == "https://kb.example/ext"


def test_longest_valid_fields_are_stored(sessions) -> None:
    """The loader's length limits fit the columns, on PostgreSQL too."""
    data = {
        "id": "x" * 128,
        "title": "T" * 500,
        "body": "B",
        "category": "c" * 200,
        "tags": ["t" * 100],
        "updated": "u" * 40,
        "url": "https://" + "u" * 992,
    }
    article = make_article(data, "kb/" + "s" * 990)
    report = run_import(sessions, [article])
    assert report.errors == []
    stored = get_article(sessions, "x" * 128)
    assert (len(stored.title), len(stored.url), len(stored.updated_label)) == (500, 1000, 40)
    assert [len(t.name) for t in stored.tags] == [100]


def test_load_errors_are_carried_into_the_report(sessions) -> None:
    load_error = LoadError("kb/bad.md", "field 'title' is missing or empty")
    report = run_import(sessions, SMALL_KB[:1], [load_error])
    assert report.errors == [load_error]
    assert report.created == ["reset-password"]
    assert report.summary() == "1 created, 0 updated, 0 unchanged, 1 error(s)"


def test_a_failing_new_article_leaves_no_rows_and_others_are_stored(sessions) -> None:
    broken = BrokenArticle(
        id="broken",
        title="Broken",
        body="Cannot be stored.",
        category="only-broken",
        tags=["only-broken-tag"],
        source="kb/broken.md",
    )

    report = run_import(sessions, [SMALL_KB[0], broken, *SMALL_KB[1:]])

    assert sorted(report.created) == sorted(a.id for a in SMALL_KB)
    [error] = report.errors
    assert error.source == "kb/broken.md"
    assert "could not store" in error.reason
    assert get_article(sessions, "broken") is None
    assert revisions_of(sessions, "broken") == []
    with sessions() as session:
        assert session.scalar(select(Category).where(Category.slug == "only-broken")) is None
        assert session.scalar(select(Tag).where(Tag.name == "only-broken-tag")) is None
    assert count(sessions, Article) == len(SMALL_KB)
    assert count(sessions, ArticleRevision) == len(SMALL_KB)


def test_a_failing_update_keeps_the_previous_revision(sessions) -> None:
    run_import(sessions, SMALL_KB)
    old = SMALL_KB[1]
    broken = BrokenArticle(**{**vars(old), "body": "Half-written?", "category": "new-cat"})
    changed = replace(SMALL_KB[2], body="Returns are accepted within 60 days.")

    report = run_import(sessions, [broken, changed])

    assert report.updated == ["return-policy"]
    assert [e.source for e in report.errors] == [old.source or old.id]
    article = get_article(sessions, old.id)
    assert article.revision == 1
    assert article.body == old.body
    assert article.category.slug == "orders-shipping"
    assert len(revisions_of(sessions, old.id)) == 1
    assert get_article(sessions, "return-policy").revision == 2
    with sessions() as session:
        assert session.scalar(select(Category).where(Category.slug == "new-cat")) is None
