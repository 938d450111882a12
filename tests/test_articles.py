"""Loading and validating help articles: Markdown, HTML, FAQ YAML/CSV, JSONL (indexer/articles.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.articles import InvalidArticle, SourceArticle, load_path, make_article


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def by_id(articles: list[SourceArticle]) -> dict[str, SourceArticle]:
    return {a.id: a for a in articles}


RESET_MD = """---
title: Reset your password
category: Account & Login
tags: [Password, login, password]
status: Published
updated: 2024-05-01
url: https://help.example.com/reset
---
Forgot your password? Use the reset link.

## Steps
Go to Sign in and choose Forgot password.
"""


# --- Markdown ----------------------------------------------------------------------------------


def test_markdown_front_matter_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "Reset Password.md", RESET_MD)
    articles, errors = load_path(path)
    assert errors == []
    [article] = articles
    assert article.id == "reset-password"  # from the file name, slugified
    assert article.title == "Reset your password"
    assert article.body.startswith("Forgot your password?")
    assert "## Steps" in article.body
    assert article.category == "account-login"
    assert article.tags == ["login", "password"]  # lowercased, deduplicated, sorted
    assert article.status == "published"
    assert article.updated == "2024-05-01"  # a YAML date becomes ISO text
    assert article.url == "https://help.example.com/reset"
    assert article.source == str(path)


def test_markdown_id_in_front_matter_wins(tmp_path: Path) -> None:
    path = write(tmp_path / "whatever.md", "---\nid: kb-42\ntitle: T\n---\nBody text.\n")
    [article], errors = load_path(path)
    assert errors == []
    assert article.id == "kb-42"


def test_markdown_with_byte_order_mark(tmp_path: Path) -> None:
    path = write(tmp_path / "bom.md", RESET_MD, encoding="utf-8-sig")
    [article], errors = load_path(path)
    assert errors == []
    assert article.title == "Reset your password"
    assert not article.body.startswith("---")


@pytest.mark.parametrize(
    ("front_matter", "field"),
    [
        ("category: x", "title"),
        ("title: '   '", "title"),
        ("title: T\nstatus: secret", "status"),
        ("title: T\nid: 'has spaces'", "id"),
        ("title: T\ntags: {a: 1}", "tags"),
        ("title: {a: 1}", "title"),
    ],
)
def test_markdown_validation_error_names_path_and_field(
    tmp_path: Path, front_matter: str, field: str
) -> None:
    path = write(tmp_path / "bad.md", f"---\n{front_matter}\n---\nSome body.\n")
    articles, errors = load_path(path)
    assert articles == []
    [error] = errors
    assert error.source == str(path)
    assert f"'{field}'" in error.reason
    assert str(path) in str(error)


def test_markdown_empty_body_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.md", "---\ntitle: Only a title\n---\n\n   \n")
    articles, [error] = load_path(path)
    assert articles == []
    assert "'body'" in error.reason


def test_markdown_broken_front_matter(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.md", "---\ntitle: [unclosed\n---\nBody\n")
    articles, [error] = load_path(path)
    assert articles == []
    assert error.source == str(path)
    assert "YAML" in error.reason


def test_markdown_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.md"
    path.write_bytes("---\ntitle: Caf\xe9\n---\nCr\xe8me br\xfbl\xe9e\n".encode("latin-1"))
    articles, [error] = load_path(path)
    assert articles == []
    assert error.source == str(path)
    assert "UTF-8" in error.reason


# --- HTML ----------------------------------------------------------------------------------


def test_html_article(tmp_path: Path) -> None:
    html = """<!doctype html><html><head>
      <title>Track your order</title>
      <meta charset="utf-8">
      <meta name="article-id" content="track-order">
      <meta name="category" content="Orders">
      <meta name="keywords" content="tracking, Orders">
      <script>var tracking = "should not appear";</script>
    </head><body>
      <nav>Home | Help</nav>
      <h1>Track your order</h1>
      <p>Open <b>My orders</b> to see where your parcel is.</p>
      <h2>No tracking number?</h2>
      <ul><li>Wait 24 hours</li><li>Contact <a href="/c">support</a></li></ul>
    </body></html>"""
    path = write(tmp_path / "page.html", html)
    [article], errors = load_path(path)
    assert errors == []
    assert article.id == "track-order"
    assert article.title == "Track your order"
    assert article.category == "orders"
    assert article.tags == ["orders", "tracking"]
    assert "Open My orders to see where your parcel is." in article.body
    assert "## No tracking number?" in article.body
    assert "- Wait 24 hours" in article.body
    assert "- Contact support" in article.body
    assert "should not appear" not in article.body
    assert "Home | Help" not in article.body


def test_html_title_from_h1_and_id_from_file_name(tmp_path: Path) -> None:
    path = write(tmp_path / "Gift Cards.htm", "<body><h1>Gift cards</h1><p>They never expire.</p>")
    [article], errors = load_path(path)
    assert errors == []
    assert article.id == "gift-cards"
    assert article.title == "Gift cards"
    assert article.body == "They never expire."


def test_html_without_title_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "untitled.html", "<body><p>Text without any title.</p></body>")
    articles, [error] = load_path(path)
    assert articles == []
    assert error.source == str(path)
    assert "'title'" in error.reason


# --- FAQ YAML and CSV ------------------------------------------------------------------------


def test_faq_yaml_items_and_per_item_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path / "faq.yaml",
        """
items:
  - question: Do you ship abroad?
    answer: Yes, to 40 countries.
    category: Shipping
    tags: shipping, international
  - id: faq-gift
    question: Can I pay with a gift card?
    answer: Yes.
  - question: Where is my answer?
  - question: ''
    answer: An answer without a question.
  - just a string
""",
    )
    articles, errors = load_path(path)
    found = by_id(articles)
    assert set(found) == {"faq-do-you-ship-abroad", "faq-gift"}
    ship = found["faq-do-you-ship-abroad"]
    assert ship.title == "Do you ship abroad?"
    assert ship.body == "Yes, to 40 countries."
    assert ship.category == "shipping"
    assert ship.tags == ["international", "shipping"]
    assert ship.source == f"{path}[0]"
    reasons = {e.source: e.reason for e in errors}
    assert set(reasons) == {f"{path}[2]", f"{path}[3]", f"{path}[4]"}
    assert "'answer'" in reasons[f"{path}[2]"]
    assert "'question'" in reasons[f"{path}[3]"]
    assert "mapping" in reasons[f"{path}[4]"]


def test_faq_yaml_plain_list(tmp_path: Path) -> None:
    path = write(tmp_path / "faq.yml", "- question: Is it free?\n  answer: Yes.\n")
    [article], errors = load_path(path)
    assert errors == []
    assert (article.id, article.body) == ("faq-is-it-free", "Yes.")


def test_faq_yaml_wrong_shape(tmp_path: Path) -> None:
    path = write(tmp_path / "faq.yaml", "question: not a list\n")
    articles, [error] = load_path(path)
    assert articles == []
    assert error.source == str(path)
    assert "list" in error.reason


def test_faq_csv_rows_with_line_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path / "faq.csv",
        "question,answer,category,tags\n"
        '"How do refunds work?","Refunds go back to your card, in 5-10 days.",Returns,"refund;card"\n'
        "Empty answer?,,Returns,\n"
        ",An answer without a question,,\n",
    )
    articles, errors = load_path(path)
    [refund] = articles
    assert refund.id == "faq-how-do-refunds-work"
    assert refund.body == "Refunds go back to your card, in 5-10 days."
    assert refund.tags == ["card", "refund"]
    assert refund.source == f"{path}:2"
    reasons = {e.source: e.reason for e in errors}
    assert set(reasons) == {f"{path}:3", f"{path}:4"}
    assert "'answer'" in reasons[f"{path}:3"]  # the CSV column, not an internal field name
    assert "'question'" in reasons[f"{path}:4"]


def test_faq_csv_missing_column(tmp_path: Path) -> None:
    path = write(tmp_path / "faq.csv", "question,reply\nQ,A\n")
    articles, [error] = load_path(path)
    assert articles == []
    assert error.source == str(path)
    assert "answer" in error.reason


def test_faq_csv_exported_with_byte_order_mark(tmp_path: Path) -> None:
    """Spreadsheet programs write UTF-8 CSV with a BOM; the header must still be recognised."""
    path = write(tmp_path / "faq.csv", "question,answer\nIs it free?,Yes.\n", encoding="utf-8-sig")
    [article], errors = load_path(path)
    assert errors == []
    assert article.title == "Is it free?"


# --- JSONL ---------------------------------------------------------------------------------


def test_jsonl_good_and_bad_lines(tmp_path: Path) -> None:
    good = {"id": "a-1", "title": "First", "body": "Body one.", "url": "https://x/a-1"}
    lines = [
        json.dumps(good),
        "",
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"id": "a-2", "title": "No body"}),
        json.dumps({"id": "a-3", "title": "Third", "body": "Body three.", "category": "Billing"}),
    ]
    path = write(tmp_path / "articles.jsonl", "\n".join(lines) + "\n")
    articles, errors = load_path(path)
    found = by_id(articles)
    assert set(found) == {"a-1", "a-3"}
    assert found["a-1"].url == "https://x/a-1"
    assert found["a-1"].source == f"{path}:1"
    assert found["a-3"].category == "billing"
    reasons = {e.source: e.reason for e in errors}
    assert set(reasons) == {f"{path}:3", f"{path}:4", f"{path}:5"}
    assert "JSON" in reasons[f"{path}:3"]
    assert "mapping" in reasons[f"{path}:4"]
    assert "'body'" in reasons[f"{path}:5"]


def test_jsonl_requires_an_id(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", json.dumps({"title": "T", "body": "B"}) + "\n")
    articles, [error] = load_path(path)
    assert articles == []
    assert error.source == f"{path}:1"
    assert "'id'" in error.reason


def test_jsonl_with_byte_order_mark(tmp_path: Path) -> None:
    line = json.dumps({"id": "a-1", "title": "T", "body": "B"})
    path = write(tmp_path / "a.jsonl", line + "\n", encoding="utf-8-sig")
    [article], errors = load_path(path)
    assert errors == []
    assert article.id == "a-1"


# --- folders, duplicates, unsupported files -------------------------------------------------


def test_duplicate_ids_keep_the_first_and_name_both_files(tmp_path: Path) -> None:
    first = write(tmp_path / "a" / "shipping.md", "---\ntitle: First\n---\nOne.\n")
    second = write(tmp_path / "b" / "shipping.md", "---\ntitle: Second\n---\nTwo.\n")
    articles, [error] = load_path(tmp_path)
    [article] = articles
    assert article.title == "First"
    assert error.source == str(second)
    assert "duplicate id 'shipping'" in error.reason
    assert str(first) in error.reason


def test_duplicate_ids_across_formats(tmp_path: Path) -> None:
    write(tmp_path / "faq.yaml", "- id: same\n  question: Q?\n  answer: A.\n")
    write(tmp_path / "z.jsonl", json.dumps({"id": "same", "title": "T", "body": "B"}) + "\n")
    articles, errors = load_path(tmp_path)
    assert [a.source for a in articles] == [f"{tmp_path / 'faq.yaml'}[0]"]
    assert [e.source for e in errors] == [f"{tmp_path / 'z.jsonl'}:1"]


def test_unsupported_file_given_directly(tmp_path: Path) -> None:
    path = write(tmp_path / "notes.txt", "hello")
    articles, [error] = load_path(path)
    assert articles == []
    assert error.source == str(path)
    assert "unsupported file type '.txt'" in error.reason


def test_missing_path(tmp_path: Path) -> None:
    articles, [error] = load_path(tmp_path / "nope")
    assert articles == []
    assert "no such file" in error.reason


def test_folder_with_one_bad_file_among_good_ones(tmp_path: Path) -> None:
    write(tmp_path / "reset-password.md", RESET_MD)
    write(tmp_path / "guides" / "returns.md", "---\ntitle: Returns\n---\nWithin 30 days.\n")
    write(tmp_path / "faq.yaml", "- question: Is it free?\n  answer: Yes.\n")
    write(tmp_path / "page.html", "<title>Contact us</title><p>Email us any time.</p>")
    write(tmp_path / "more.jsonl", json.dumps({"id": "j1", "title": "J", "body": "B"}) + "\n")
    bad = write(tmp_path / "guides" / "broken.md", "---\ncategory: x\n---\nNo title here.\n")
    write(tmp_path / "README.txt", "not an article")  # ignored in a folder
    write(tmp_path / ".hidden.md", "---\ntitle: Hidden\n---\nSkipped.\n")
    articles, errors = load_path(tmp_path)
    assert sorted(a.id for a in articles) == [
        "faq-is-it-free",
        "j1",
        "page",
        "reset-password",
        "returns",
    ]
    [error] = errors
    assert error.source == str(bad)
    assert "'title'" in error.reason


# --- make_article and content hashes --------------------------------------------------------


def test_make_article_rejects_non_mapping() -> None:
    with pytest.raises(InvalidArticle, match="mapping"):
        make_article(["not", "a", "dict"], "src")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"title": "t" * 501}, "title"),
        ({"updated": "Last reviewed on 14 November 2023 by support"}, "updated"),
        ({"url": "https://x/" + "a" * 1000}, "url"),
        ({"tags": ["ok", "t" * 101]}, "tags"),
        ({"body": "binary\x00junk"}, "body"),
    ],
)
def test_values_the_store_cannot_hold_are_rejected(fields: dict, field: str) -> None:
    """SQLite ignores column lengths and PostgreSQL does not: both must accept the same articles."""
    with pytest.raises(InvalidArticle, match=f"field '{field}'"):
        make_article({"id": "a", "title": "T", "body": "B", **fields}, "s")


def test_long_faq_question_is_reported_as_question(tmp_path: Path) -> None:
    path = write(tmp_path / "faq.csv", f"question,answer\n{'why ' * 130}?,Because.\n")
    articles, [error] = load_path(path)
    assert articles == []
    assert error.source == f"{path}:2"
    assert "field 'question' is longer than 500" in error.reason


def test_content_hash_changes_with_content_but_not_source() -> None:
    base = make_article({"id": "a", "title": "T", "body": "B", "tags": "x, y"}, "one.md")
    same = make_article({"id": "a", "title": "T", "body": "B", "tags": ["Y", "x"]}, "two.md")
    assert base.content_hash() == same.content_hash()
    for change in (
        {"body": "B2"},
        {"title": "T2"},
        {"status": "draft"},
        {"tags": "x"},
        {"category": "c"},
        {"url": "https://u"},
    ):
        other = make_article({"id": "a", "title": "T", "body": "B", "tags": "x, y", **change}, "s")
        assert other.content_hash() != base.content_hash(), change


# --- regressions from review -----------------------------------------------------------------


def test_impossible_dates_and_invalid_text_skip_only_their_file(tmp_path):
    from indexer.articles import load_path

    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "good.md").write_text("---\ntitle: Good\n---\nBody text.\n")
    (kb / "baddate.md").write_text("---\ntitle: Bad\nupdated: 2026-13-45\n---\nBody.\n")
    (kb / "faq.yaml").write_text("- question: Q?\n  answer: A.\n  updated: 2026-02-30\n")
    (kb / "items.jsonl").write_text(
        '{"id": "s", "title": "T \\ud800", "body": "b"}\n{"id": "ok", "title": "T", "body": "b"}\n'
        + '{"id": "deep", "title": '
        + "[" * 100_000
        + "]" * 100_000
        + "}\n"
    )
    articles, errors = load_path(kb)
    assert sorted(a.id for a in articles) == ["good", "ok"]
    reasons = {e.source.rsplit("/", 1)[-1]: e.reason for e in errors}
    assert "invalid value" in reasons["baddate.md"]
    assert "invalid value" in reasons["faq.yaml"]
    assert "not valid text" in reasons["items.jsonl:1"]
    assert "items.jsonl:3" in reasons


def test_article_urls_must_be_web_links_or_site_paths():
    import pytest

    from indexer.articles import InvalidArticle, make_article

    base = {"id": "a", "title": "T", "body": "B"}
    assert make_article({**base, "url": "https://help.example/a"}, "x").url.startswith("https")
    assert make_article({**base, "url": "/help/a"}, "x").url == "/help/a"
    for bad in ("javascript:alert(1)", "//evil.example/a", "data:text/html,hi"):
        with pytest.raises(InvalidArticle, match="field 'url'"):
            make_article({**base, "url": bad}, "x")
