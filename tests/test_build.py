"""Incremental, versioned index builds (indexer/build.py and indexer/store.py) with the fake embedder."""

from __future__ import annotations

import json
import platform
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from indexer.build import build_index
from indexer.chunking import IndexDoc, split_article
from indexer.embedder import FakeEmbedder
from indexer.store import KEEP_VERSIONS, SearchIndex, current_version, load_current, trim_heap
from tests.conftest import SMALL_KB


def small_kb_docs() -> list[IndexDoc]:
    return [
        IndexDoc(a.id, 1, a.title, a.body, f"/help/articles/{a.id}", a.category)
        for a in SMALL_KB
        if a.status == "published"
    ]


def versions(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "versions").iterdir())


def edit(docs: list[IndexDoc], article_id: str, old: str, new: str) -> list[IndexDoc]:
    """The docs with one article's body edited (and its revision bumped)."""
    out = []
    for d in docs:
        if d.article_id == article_id:
            assert old in d.body
            d = replace(d, body=d.body.replace(old, new), revision=d.revision + 1)
        out.append(d)
    return out


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "index"


def test_first_build_embeds_every_passage(root: Path, fake_embedder: FakeEmbedder) -> None:
    docs = small_kb_docs()
    expected = [p for d in docs for p in split_article(d, 120, fake_embedder.name)]

    result = build_index(docs, root, fake_embedder)

    assert result.changed
    assert result.articles == len(docs)
    assert result.passages == len(expected)
    # every passage, plus each article's title (embedded once for title matching)
    assert result.embedded == len(expected) + len(docs) == fake_embedder.texts_embedded
    assert result.reused == 0
    assert current_version(root) == result.version
    assert result.path == root / "versions" / result.version
    assert versions(root) == [result.version]


def test_rebuild_of_unchanged_docs_writes_nothing(root: Path, fake_embedder: FakeEmbedder) -> None:
    first = build_index(small_kb_docs(), root, fake_embedder)
    embedded_before = fake_embedder.texts_embedded

    again = build_index(small_kb_docs(), root, fake_embedder)

    assert not again.changed
    assert again.embedded == 0
    assert again.reused == first.passages + first.articles
    assert fake_embedder.texts_embedded == embedded_before
    assert again.version == first.version
    assert current_version(root) == first.version
    assert versions(root) == [first.version]


def test_changing_one_article_reembeds_only_its_changed_passage(
    root: Path, fake_embedder: FakeEmbedder
) -> None:
    first = build_index(small_kb_docs(), root, fake_embedder)
    before = fake_embedder.texts_embedded
    docs = edit(small_kb_docs(), "shipping-costs", "for $15", "for $20")

    second = build_index(docs, root, fake_embedder)

    assert second.changed
    assert second.version != first.version
    assert fake_embedder.texts_embedded - before == 1 == second.embedded
    assert second.reused == second.passages + second.articles - 1
    assert current_version(root) == second.version
    loaded = load_current(root)
    texts = [p["text"] for p in loaded.passages if p["article_id"] == "shipping-costs"]
    assert any("$20" in t for t in texts)
    assert not any("$15" in t for t in texts)
    revisions = {p["article_id"]: p["revision"] for p in loaded.passages}
    assert revisions["shipping-costs"] == 2
    assert revisions["return-policy"] == 1


def test_reused_vectors_are_the_previous_ones(root: Path, fake_embedder: FakeEmbedder) -> None:
    build_index(small_kb_docs(), root, fake_embedder)
    old = load_current(root)
    old_vectors = {h: old.vectors[i] for i, h in enumerate(old.manifest.passage_hashes)}

    build_index(edit(small_kb_docs(), "return-policy", "30 days", "45 days"), root, fake_embedder)

    new = load_current(root)
    kept = [h for h in new.manifest.passage_hashes if h in old_vectors]
    assert len(kept) == len(new.passages) - 1
    for i, h in enumerate(new.manifest.passage_hashes):
        if h in old_vectors:
            np.testing.assert_array_equal(new.vectors[i], old_vectors[h])


def test_adding_and_removing_articles(root: Path, fake_embedder: FakeEmbedder) -> None:
    docs = small_kb_docs()
    build_index(docs, root, fake_embedder)
    before = fake_embedder.texts_embedded

    new_doc = IndexDoc("gift-cards", 1, "Gift cards", "Gift cards never expire.", "/g")
    added = build_index([*docs, new_doc], root, fake_embedder)
    assert added.embedded == 2 == fake_embedder.texts_embedded - before  # passage + title

    removed = build_index(docs[1:], root, fake_embedder)
    assert removed.changed and removed.embedded == 0
    ids = {p["article_id"] for p in load_current(root).passages}
    assert docs[0].article_id not in ids
    assert "gift-cards" not in ids


def test_another_model_reembeds_everything(root: Path, fake_embedder: FakeEmbedder) -> None:
    first = build_index(small_kb_docs(), root, fake_embedder)
    other = FakeEmbedder()
    other.name = "fake-hash-v2"

    result = build_index(small_kb_docs(), root, other)

    assert result.changed
    assert result.embedded == first.passages + first.articles == other.texts_embedded
    assert load_current(root).manifest.model == "fake-hash-v2"


def test_old_versions_are_pruned(root: Path, fake_embedder: FakeEmbedder) -> None:
    built = []
    for n in range(KEEP_VERSIONS + 2):
        docs = edit(small_kb_docs(), "return-policy", "30 days", f"{30 + n + 1} days")
        built.append(build_index(docs, root, fake_embedder).version)

    assert len(set(built)) == len(built)
    assert versions(root) == sorted(built[-KEEP_VERSIONS:])
    assert current_version(root) == built[-1]


def test_saved_index_loads_back_identically(root: Path, fake_embedder: FakeEmbedder) -> None:
    docs = small_kb_docs()
    result = build_index(docs, root, fake_embedder)
    passages = [p for d in docs for p in split_article(d, 120, fake_embedder.name)]

    loaded = SearchIndex.load(result.path)

    assert loaded.passages == [p.to_dict() for p in passages]
    expected = FakeEmbedder().embed([p.search_text for p in passages])
    np.testing.assert_array_equal(loaded.vectors, expected)
    assert loaded.vectors.dtype == np.float32
    m = loaded.manifest
    assert (m.version, m.model, m.dim) == (result.version, fake_embedder.name, fake_embedder.dim)
    assert (m.passages, m.articles) == (len(passages), len(docs))
    assert m.passage_hashes == [p.hash for p in passages]
    assert loaded.dense.ntotal == len(passages)
    # every stored vector finds its own passage first
    _, found = loaded.dense.search(loaded.vectors, 1)
    assert found[:, 0].tolist() == list(range(len(passages)))
    assert loaded.lexical is not None
    assert load_current(root).manifest.version == result.version


def test_loaded_passages_share_their_repeated_fields(
    root: Path, fake_embedder: FakeEmbedder
) -> None:
    """A field equal to the previous passage's is one object in memory (11 MB less per server
    process at 50,000 passages), and the passages are still what was saved."""
    docs = [
        IndexDoc(
            f"a{i}",
            1,
            f"Title {i}",
            "\n\n".join(f"Part {j}. " + "word " * 150 for j in range(3)),
            f"/a{i}",
            "cat",
        )
        for i in range(3)
    ]
    result = build_index(docs, root, fake_embedder)
    loaded = SearchIndex.load(result.path)
    saved = json.loads((result.path / "passages.json").read_text())
    assert loaded.passages == saved
    first, second = loaded.passages[0], loaded.passages[1]
    assert first["article_id"] == second["article_id"] == "a0"  # an article of several passages
    for key in ("article_id", "title", "url", "category"):
        assert second[key] is first[key]
    other = next(p for p in loaded.passages if p["article_id"] == "a1")
    assert other["title"] is not first["title"] and other["title"] == "Title 1"
    assert other["category"] is first["category"]  # equal values across articles are shared too


def test_interrupted_save_keeps_the_old_version(
    root: Path, fake_embedder: FakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build_index(small_kb_docs(), root, fake_embedder)
    docs = edit(small_kb_docs(), "reset-password", "1 hour", "2 hours")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(np, "save", disk_full)
        with pytest.raises(OSError, match="No space"):
            build_index(docs, root, fake_embedder)

    assert current_version(root) == first.version
    assert versions(root) == [first.version]  # no half-written or temporary folder
    assert load_current(root).manifest.version == first.version

    retried = build_index(docs, root, fake_embedder)
    assert retried.changed and current_version(root) == retried.version
    assert versions(root) == sorted([first.version, retried.version])


def test_unreadable_current_version_is_rebuilt(root: Path, fake_embedder: FakeEmbedder) -> None:
    build_index(small_kb_docs(), root, fake_embedder)
    (root / "CURRENT").write_text("does-not-exist")
    before = fake_embedder.texts_embedded

    result = build_index(small_kb_docs(), root, fake_embedder)

    assert result.changed
    assert fake_embedder.texts_embedded - before == result.passages + result.articles
    assert current_version(root) == result.version


def test_truncated_manifest_is_rebuilt_and_stale_temp_folders_are_pruned(
    root: Path, fake_embedder: FakeEmbedder
) -> None:
    import os
    import time

    first = build_index(small_kb_docs(), root, fake_embedder)
    (first.path / "manifest.json").write_text("{}")  # a crash mid-write left an empty manifest
    stale = root / "versions" / ".tmp-crashed"
    stale.mkdir()
    old = time.time() - 7200
    os.utime(stale, (old, old))
    fresh = root / "versions" / ".tmp-building-now"
    fresh.mkdir()

    again = build_index(small_kb_docs(), root, fake_embedder)

    assert again.changed and current_version(root) == again.version != first.version
    assert not stale.exists()  # left by a crash an hour ago
    assert fresh.exists()  # may belong to a build still running


def test_an_incremental_build_equals_a_fresh_one(
    root: Path, tmp_path: Path, fake_embedder: FakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unchanged articles keep their passages, vectors and term counts; only the edited and the
    new article are split again, and the result is the index a fresh build makes."""
    import indexer.build as build_module
    from indexer.lexical import tokenize

    docs = small_kb_docs()
    build_index(docs, root, fake_embedder)
    split_ids: list[str] = []
    real_split = build_module.split_article

    def counting_split(doc, *args, **kwargs):
        split_ids.append(doc.article_id)
        return real_split(doc, *args, **kwargs)

    monkeypatch.setattr(build_module, "split_article", counting_split)
    new_doc = IndexDoc("gift-cards", 1, "Gift cards", "Gift cards never expire.", "/g")
    edited = [*edit(docs, "return-policy", "30 days", "45 days")[1:], new_doc]
    build_index(edited, root, fake_embedder)
    assert sorted(split_ids) == ["gift-cards", "return-policy"]

    incremental = load_current(root)
    fresh_root = tmp_path / "fresh"
    build_index(edited, fresh_root, FakeEmbedder())
    fresh = load_current(fresh_root)
    assert incremental.passages == fresh.passages
    np.testing.assert_array_equal(incremental.vectors, fresh.vectors)
    np.testing.assert_array_equal(incremental.title_vectors, fresh.title_vectors)
    for query in ["return within 45 days", "gift card expiry", "shipping costs"]:
        tokens = tokenize([query])[0]
        np.testing.assert_allclose(
            incremental.lexical.scores(tokens), fresh.lexical.scores(tokens), rtol=1e-6
        )


def test_a_server_passes_its_live_index_instead_of_reading_it(
    root: Path, fake_embedder: FakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import indexer.build as build_module

    build_index(small_kb_docs(), root, fake_embedder)
    live = load_current(root)
    monkeypatch.setattr(build_module, "load_current", lambda *a, **k: pytest.fail("read again"))
    result = build_index(
        edit(small_kb_docs(), "return-policy", "30 days", "45 days"), root, fake_embedder, live=live
    )
    assert result.embedded == 1 and result.changed


def test_a_version_without_its_bm25_index_is_refused_and_rebuilt(
    root: Path, fake_embedder: FakeEmbedder
) -> None:
    import shutil

    from indexer.lexical import tokenize

    first = build_index(small_kb_docs(), root, fake_embedder)
    shutil.rmtree(first.path / "lexical")
    with pytest.raises(ValueError, match="BM25 index is missing"):
        load_current(root)
    rebuilt = build_index(
        edit(small_kb_docs(), "return-policy", "30 days", "45 days"), root, fake_embedder
    )
    assert rebuilt.changed
    scores = load_current(root).lexical.scores(tokenize(["return within 45 days"])[0])
    assert scores.max() > 0  # BM25 is whole again, not silently empty


def test_changing_the_dense_index_settings_rebuilds(root: Path, fake_embedder) -> None:
    import faiss

    from indexer.dense import DenseOptions, is_approximate

    build_index(small_kb_docs(), root, fake_embedder)
    assert not is_approximate(load_current(root).dense)
    again = build_index(
        small_kb_docs(), root, fake_embedder, dense_options=DenseOptions(ann_min_passages=2)
    )
    assert again.changed and again.embedded == 0  # nothing re-embedded, only the dense index
    assert isinstance(load_current(root).dense, faiss.IndexIVFFlat)


def test_two_articles_with_one_id_are_refused(root: Path, fake_embedder) -> None:
    docs = small_kb_docs()
    with pytest.raises(ValueError, match="share an id"):
        build_index([*docs, docs[0]], root, fake_embedder)


def _anon_kb() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("RssAnon:")).split()[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_trim_heap_gives_freed_memory_back_to_the_system() -> None:
    """glibc keeps freed heap memory resident below a live block; trim_heap returns it."""
    blocks = [bytearray(4000) for _ in range(20_000)]  # 80 MB of malloc'd (not mmapped) blocks
    pinned = bytearray(4000)  # above them, so glibc cannot shrink the heap by itself
    del blocks
    before = _anon_kb()
    trim_heap()
    assert before - _anon_kb() > 20_000  # KB (without the trim: 0)
    assert len(pinned) == 4000


def test_loading_a_version_trims_the_heap(
    root: Path, fake_embedder: FakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot import pipeline

    trims: list[str | None] = []
    holder = pipeline.IndexHolder(root, embedders=fake_embedder)
    monkeypatch.setattr(pipeline, "trim_heap", lambda: trims.append(current_version(root)))
    build_index(small_kb_docs(), root, fake_embedder)
    assert holder.refresh() and not holder.refresh()
    assert trims == [current_version(root)]  # once per version, after it was loaded
