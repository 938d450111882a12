"""Splitting articles into passages along their headings (indexer/chunking.py)."""

from __future__ import annotations

import pytest

from indexer.chunking import IndexDoc, passage_hash, sections, split_article


def doc(body: str, title: str = "Refunds", article_id: str = "refunds") -> IndexDoc:
    return IndexDoc(
        article_id=article_id,
        revision=3,
        title=title,
        body=body,
        url=f"/help/articles/{article_id}",
        category="billing",
    )


NESTED = """Refunds go back to the original payment method.

## Refund timing
How long a refund takes depends on how you paid.

### Card payments
Card refunds take 5-10 business days.

### PayPal
PayPal refunds arrive within 24 hours.

## Exceptions
Gift cards are never refunded.
"""


def test_heading_paths_follow_nesting() -> None:
    passages = split_article(doc(NESTED))
    assert [(p.heading_path, p.text) for p in passages] == [
        ([], "Refunds go back to the original payment method."),
        (["Refund timing"], "How long a refund takes depends on how you paid."),
        (["Refund timing", "Card payments"], "Card refunds take 5-10 business days."),
        (["Refund timing", "PayPal"], "PayPal refunds arrive within 24 hours."),
        (["Exceptions"], "Gift cards are never refunded."),
    ]


def test_passages_carry_article_fields_and_search_text() -> None:
    passages = split_article(doc(NESTED))
    card = passages[2]
    assert (card.article_id, card.revision, card.title, card.url, card.category) == (
        "refunds",
        3,
        "Refunds",
        "/help/articles/refunds",
        "billing",
    )
    assert card.search_text == (
        "Refunds\nRefund timing > Card payments\nCard refunds take 5-10 business days."
    )
    assert card.to_dict()["heading_path"] == ["Refund timing", "Card payments"]
    assert card.to_dict()["hash"] == card.hash


def test_deeper_heading_after_shallower_one_resets_the_path() -> None:
    body = "# Top\na\n### Deep\nb\n## Middle\nc\n#### Deepest\nd\n# Other\ne"
    assert [path for path, _ in sections(body)] == [
        ["Top"],
        ["Top", "Deep"],
        ["Top", "Middle"],
        ["Top", "Middle", "Deepest"],
        ["Other"],
    ]


def test_text_before_first_heading_has_empty_path() -> None:
    [(path, text), *_] = sections("Intro line.\n\n## Later\nMore.")
    assert path == []
    assert text == "Intro line."


def test_heading_without_text_is_skipped() -> None:
    passages = split_article(doc("## Empty\n## Full\nSome text."))
    assert [p.heading_path for p in passages] == [["Full"]]


def test_fenced_code_with_hash_lines_is_not_a_heading() -> None:
    body = (
        "## Configure the client\n"
        "Put this in your config file:\n\n"
        "```bash\n"
        "# not a heading, a shell comment\n"
        "export API_KEY=abc\n"
        "```\n\n"
        "## Next steps\n"
        "Restart the app."
    )
    passages = split_article(doc(body))
    assert [p.heading_path for p in passages] == [["Configure the client"], ["Next steps"]]
    assert "# not a heading, a shell comment" in passages[0].text
    assert "export API_KEY=abc" in passages[0].text


def test_inline_markup_is_reduced_to_text() -> None:
    [p] = split_article(doc("Click **Save** then run `sync` or see [the guide](https://x/y)."))
    assert p.text == "Click Save then run sync or see the guide."


def test_long_section_is_split_into_windows() -> None:
    sentences = [f"Sentence number {i} has exactly seven words." for i in range(40)]
    body = "## Long\n" + " ".join(sentences[:20]) + "\n\n" + " ".join(sentences[20:])
    passages = split_article(doc(body), max_words=30)
    assert len(passages) > 1
    assert all(p.heading_path == ["Long"] for p in passages)
    assert all(len(p.text.split()) <= 30 for p in passages)
    # nothing lost, nothing repeated, order kept
    assert " ".join(" ".join(p.text.split()) for p in passages) == " ".join(sentences)


@pytest.mark.parametrize(
    "body",
    [
        " ".join(f"word{i}" for i in range(250)),  # one run-on "sentence"
        "\n".join(f"- step {i} click the next button" for i in range(50)),  # a long list
    ],
    ids=["no-punctuation", "long-list"],
)
def test_text_without_sentence_breaks_is_still_split(body: str) -> None:
    passages = split_article(doc(body), max_words=40)
    assert len(passages) > 1
    assert all(len(p.text.split()) <= 40 for p in passages)
    assert " ".join(w for p in passages for w in p.text.split()) == " ".join(body.split())


def test_short_section_is_one_passage() -> None:
    passages = split_article(doc("## Short\n" + "word " * 30), max_words=30)
    assert len(passages) == 1


def test_title_only_article_gets_one_passage_with_its_title() -> None:
    for body in ("", "## Just a heading\n", "   \n"):
        [p] = split_article(doc(body, title="Contact us"))
        assert p.text == "Contact us"
        assert p.heading_path == []
        assert p.hash


def test_hash_depends_on_model_and_text() -> None:
    a = split_article(doc(NESTED), model="model-a")
    again = split_article(doc(NESTED), model="model-a")
    other_model = split_article(doc(NESTED), model="model-b")
    assert [p.hash for p in a] == [p.hash for p in again]
    assert all(x.hash != y.hash for x, y in zip(a, other_model, strict=True))
    assert len({p.hash for p in a}) == len(a)

    edited = split_article(doc(NESTED.replace("5-10", "3-7")), model="model-a")
    changed = [i for i, (x, y) in enumerate(zip(a, edited, strict=True)) if x.hash != y.hash]
    assert changed == [2]  # only the card-payments passage


def test_hash_covers_title_and_heading_path() -> None:
    base = split_article(doc("## A\nSame text."), model="m")[0].hash
    assert split_article(doc("## B\nSame text."), model="m")[0].hash != base
    assert split_article(doc("## A\nSame text.", title="Other"), model="m")[0].hash != base


def test_hash_ignores_revision_and_url() -> None:
    one = IndexDoc("a", 1, "T", "Body.", "/one")
    two = IndexDoc("a", 2, "T", "Body.", "/two")
    assert split_article(one, model="m")[0].hash == split_article(two, model="m")[0].hash


def test_passage_hash_function() -> None:
    assert passage_hash("text", "m1") == passage_hash("text", "m1")
    assert passage_hash("text", "m1") != passage_hash("text", "m2")
    assert passage_hash("text", "m1") != passage_hash("text2", "m1")


def test_unicode_line_separators_do_not_shift_headings():
    from indexer.chunking import sections

    body = (
        "Line a\u2028line b\u2028line c\n## Shipping\nStandard takes 3 days.\n"
        "Express takes 1 day.\n## Returns\n30 days.\r\n"
    )
    got = {tuple(p): t for p, t in sections(body)}
    assert "line b" in got[()] and "line c" in got[()]
    assert got[("Shipping",)] == "Standard takes 3 days.\nExpress takes 1 day."
    assert got[("Returns",)] == "30 days."
