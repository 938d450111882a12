"""The ``supportbot`` command through Typer's CLI runner (bot/cli.py), with the fake embedder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app

runner = CliRunner()

RESET_MD = """---
title: Reset your password
category: Account
tags: [password]
---
Forgot your password? Use the reset link.

## Steps
Go to Sign in, choose Forgot password and follow the link we email you to reset your password.
"""

SHIPPING_MD = """---
title: Shipping options and costs
category: Orders
---
Standard shipping takes 3-5 business days and is free over $50.
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Database, index and a working folder in tmp_path; the fake embedder; generous thresholds."""
    monkeypatch.chdir(tmp_path)  # no stray .env, relative paths land in tmp_path
    monkeypatch.setenv("SUPPORTBOT_DATABASE_URL", f"sqlite:///{tmp_path / 'data' / 'bot.db'}")
    monkeypatch.setenv("SUPPORTBOT_INDEX_DIR", str(tmp_path / "data" / "index"))
    monkeypatch.setenv("SUPPORTBOT_EMBEDDER", "fake")
    monkeypatch.setenv("SUPPORTBOT_ANSWER_THRESHOLD", "0.1")
    monkeypatch.setenv("SUPPORTBOT_CLARIFY_THRESHOLD", "0.05")
    return tmp_path


@pytest.fixture
def kb(env: Path) -> Path:
    folder = env / "kb"
    folder.mkdir()
    (folder / "reset-password.md").write_text(RESET_MD)
    (folder / "shipping.md").write_text(SHIPPING_MD)
    return folder


def invoke(*args: str):
    return runner.invoke(app, list(args))


def assert_clean_failure(result, *fragments: str) -> None:
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)  # a handled exit, not a crash
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output


def test_import_reports_the_bad_file_and_imports_the_rest(kb: Path) -> None:
    bad = kb / "broken.md"
    bad.write_text("---\ncategory: Account\n---\nAn article without a title.\n")

    result = invoke("import", str(kb))

    assert result.exit_code == 0, result.output
    assert str(bad) in result.stderr
    assert "field 'title' is missing or empty" in result.stderr
    assert "2 created, 0 updated, 0 unchanged, 1 error(s)" in result.stdout

    again = invoke("import", str(kb))
    assert "0 created, 0 updated, 2 unchanged, 1 error(s)" in again.stdout


def test_import_of_a_missing_path_fails_clearly(env: Path) -> None:
    result = invoke("import", str(env / "no-such-folder"))
    assert_clean_failure(result, "no-such-folder", "no such file or folder")
    assert not (env / "data" / "bot.db").exists()


def test_import_of_only_bad_files_fails(env: Path) -> None:
    bad = env / "bad.yaml"
    bad.write_text("- question: Where is the answer?\n")
    result = invoke("import", str(bad))
    assert_clean_failure(result, str(bad), "'answer'")


def test_index_before_any_import_fails_clearly(env: Path) -> None:
    result = invoke("index")
    assert_clean_failure(result, "no published articles", "supportbot import")
    assert not (env / "data" / "index" / "CURRENT").exists()


def test_ask_before_index_fails_clearly(env: Path) -> None:
    result = invoke("ask", "How do I reset my password?")
    assert_clean_failure(result, "no index", "supportbot index")


def test_ask_with_empty_question_fails_clearly(kb: Path) -> None:
    result = invoke("ask", "   ")
    assert_clean_failure(result, "empty")


def test_index_then_ask_prints_decision_answer_and_citation(kb: Path, env: Path) -> None:
    assert invoke("import", str(kb)).exit_code == 0

    built = invoke("index")
    assert built.exit_code == 0, built.output
    assert "index built" in built.stdout
    assert "2 articles" in built.stdout
    assert (env / "data" / "index" / "CURRENT").exists()

    result = invoke("ask", "How do I reset my password?")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("decision:   answer")
    assert lines[1].startswith("answer:     ")
    assert "reset" in lines[1].lower()
    citations = [line for line in lines if line.startswith("citation 1:")]
    assert citations == [
        "citation 1: Reset your password [reset-password] /help/articles/reset-password"
    ]


def test_ask_json_is_parseable(kb: Path) -> None:
    invoke("import", str(kb))
    invoke("index")

    result = invoke("ask", "--json", "What does standard shipping cost?")

    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["action"] == "answer"
    assert 0 < out["confidence"] <= 1
    assert "free over $50" in out["text"]
    assert [c["article_id"] for c in out["citations"]] == ["shipping"]
    assert out["scores"]["candidates"][0]["article_id"] == "shipping"


def test_index_twice_says_unchanged_and_rebuilds_after_an_edit(kb: Path) -> None:
    invoke("import", str(kb))
    first = invoke("index")
    assert "index built" in first.stdout

    second = invoke("index")
    assert second.exit_code == 0
    assert "index unchanged" in second.stdout
    assert "0 texts embedded" in second.stdout

    (kb / "shipping.md").write_text(SHIPPING_MD.replace("$50", "$40"))
    assert "1 updated" in invoke("import", str(kb)).stdout
    third = invoke("index")
    assert "index built" in third.stdout
    assert "(1 texts embedded, 4 reused)" in third.stdout  # 2 passages + 2 titles reused


def test_user_add_then_sign_in_with_that_password(env: Path) -> None:
    from bot.auth import authenticate
    from bot.db import make_engine, make_sessionmaker, session_scope
    from bot.settings import Settings

    made = runner.invoke(
        app,
        ["user", "add", "dana", "--role", "admin", "--name", "Dana K", "--password-stdin"],
        input="a long enough password\n",
    )
    assert made.exit_code == 0, made.output
    assert "dana (admin, shown as 'Dana K')" in made.output
    listed = invoke("user", "list")
    assert "dana\tadmin\tDana K" in listed.output
    engine = make_engine(Settings().database_url)
    with session_scope(make_sessionmaker(engine)) as session:
        assert authenticate(session, "dana", "a long enough password").display_name == "Dana K"
        assert authenticate(session, "dana", "wrong password") is None
    engine.dispose()


def test_user_add_refuses_short_passwords_taken_names_and_bad_roles(env: Path) -> None:
    short = runner.invoke(app, ["user", "add", "eve", "--password-stdin"], input="short\n")
    assert_clean_failure(short, "at least 8 characters")
    runner.invoke(app, ["user", "add", "eve", "--password-stdin"], input="long password 1\n")
    again = runner.invoke(
        app, ["user", "add", "EVE", "--password-stdin"], input="long password 2\n"
    )
    assert_clean_failure(again, "taken")
    role = runner.invoke(
        app, ["user", "add", "zed", "--role", "boss", "--password-stdin"], input="long password 3\n"
    )
    assert_clean_failure(role, "role")


def test_identity_token_needs_a_secret_and_verifies(env: Path, monkeypatch) -> None:
    from bot.identity import verify_customer

    assert_clean_failure(invoke("identity-token", "cust-1"), "SUPPORTBOT_IDENTITY_SECRET")
    monkeypatch.setenv("SUPPORTBOT_IDENTITY_SECRET", "shh")
    token = invoke("identity-token", "cust-1", "--ttl", "60").output.strip()
    assert verify_customer("shh", token, 3600) == "cust-1"
