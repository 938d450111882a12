"""``supportbot user ...``: console accounts (agents and admins)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bot.settings import Settings

users = typer.Typer(
    help="Console accounts: agents and admins (support leads).", no_args_is_help=True
)


def _sessions():
    from bot.db import init_db, make_engine, make_sessionmaker

    engine = make_engine(Settings().database_url)
    init_db(engine)
    return make_sessionmaker(engine)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@users.command("add")
def add(
    username: Annotated[str, typer.Argument(help="Sign-in name (letters, digits, . _ @ -).")],
    role: Annotated[str, typer.Option(help="agent or admin.")] = "agent",
    name: Annotated[str, typer.Option(help="Name the customer sees (default: username).")] = "",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a console account; asks for the password (twice) unless --password-stdin."""
    from bot.auth import UserError, create_user
    from bot.db import session_scope

    password = _password(password_stdin)
    try:
        with session_scope(_sessions()) as session:
            user = create_user(session, username, password, role, name)
            shown = f"{user.username} ({user.role}, shown as {user.display_name!r})"
    except UserError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"created {shown}")


@users.command("password")
def password(
    username: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
) -> None:
    """Set a new password for an account."""
    from sqlalchemy import select

    from bot.auth import UserError, set_password
    from bot.db import session_scope
    from bot.models import User

    new = _password(password_stdin)
    try:
        with session_scope(_sessions()) as session:
            user = session.scalar(select(User).where(User.username == username))
            if user is None:
                raise UserError(f"no account named {username!r}")
            set_password(user, new)
    except UserError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"password of {username} changed")


@users.command("list")
def list_users() -> None:
    """The accounts, with their roles."""
    from sqlalchemy import select

    from bot.db import session_scope
    from bot.models import User

    with session_scope(_sessions()) as session:
        for user in session.scalars(select(User).order_by(User.username)):
            state = "" if user.active else " (disabled)"
            typer.echo(f"{user.username}\t{user.role}\t{user.display_name}{state}")


@users.command("disable")
def disable(username: str) -> None:
    """Stop an account from signing in (its history stays)."""
    from sqlalchemy import select

    from bot.db import session_scope
    from bot.models import User

    with session_scope(_sessions()) as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            typer.secho(f"error: no account named {username!r}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1)
        user.active = False
    typer.echo(f"{username} disabled")


tokens = typer.Typer(help="REST API tokens (they act as an admin account).", no_args_is_help=True)


@tokens.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="What the token is for, e.g. 'cms-sync'.")],
    user: Annotated[str, typer.Option(help="The admin account the token acts as.")],
) -> None:
    """Make a token; it is printed once and only its hash is kept."""
    from sqlalchemy import select

    from bot.api_tokens import create_token
    from bot.db import session_scope
    from bot.models import User

    with session_scope(_sessions()) as session:
        account = session.scalar(select(User).where(User.username == user))
        if account is None or account.role != "admin":
            typer.secho(f"error: {user!r} is not an admin account", fg=typer.colors.RED, err=True)
            raise typer.Exit(1)
        token, secret = create_token(session, account, name)
        number = token.id
    typer.echo(f"token {number} for {user}: {secret}")
    typer.echo("Keep it now: it is not shown again. Send it as 'Authorization: Bearer <token>'.")


@tokens.command("list")
def token_list() -> None:
    """Tokens, with their account and last use."""
    from sqlalchemy import select

    from bot.db import session_scope
    from bot.models import ApiToken

    with session_scope(_sessions()) as session:
        for t in session.scalars(select(ApiToken).order_by(ApiToken.id)):
            state = "revoked" if t.revoked else f"last used {t.last_used_at or 'never'}"
            typer.echo(f"{t.id}\t{t.name}\t{t.user.username}\t{state}")


@tokens.command("revoke")
def token_revoke(number: int) -> None:
    """Stop a token from working."""
    from bot.db import session_scope
    from bot.models import ApiToken

    with session_scope(_sessions()) as session:
        token = session.get(ApiToken, number)
        if token is None:
            typer.secho(f"error: no token {number}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1)
        token.revoked = True
    typer.echo(f"token {number} revoked")
