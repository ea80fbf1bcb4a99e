"""The ``keyhall`` command: init, serve, app create, users list, outbox."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="Keyhall: a self-hosted identity server speaking the GenAuth v3 API.", no_args_is_help=True
)
app_commands = typer.Typer(help="Manage applications.", no_args_is_help=True)
users_commands = typer.Typer(help="Inspect users.", no_args_is_help=True)
app.add_typer(app_commands, name="app")
app.add_typer(users_commands, name="users")

DatabaseOption = Annotated[
    str | None,
    typer.Option("--database-url", envvar="KEYHALL_DATABASE_URL", help="sqlite:///path or postgresql://..."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="End with one JSON line for scripts")]


def _settings(database_url: str | None, **overrides: Any) -> Any:
    try:
        from keyhall.server.settings import Settings
    except ImportError:
        typer.echo('The server is not installed: pip install "keyhall[server]"', err=True)
        raise typer.Exit(1) from None
    values = {k: v for k, v in overrides.items() if v is not None}
    if database_url:
        values["database_url"] = database_url
    return Settings(**values)


@app.command()
def init(database_url: DatabaseOption = None, json_output: JsonOption = False) -> None:
    """Create or migrate the schema; create the default user pool and application if there is none."""
    settings = _settings(database_url)
    result = _run(_initialise(settings))
    _print_init(settings, result, json_output)


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="KEYHALL_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="KEYHALL_PORT")] = 3000,
    database_url: DatabaseOption = None,
    workers: Annotated[int, typer.Option(envvar="KEYHALL_WORKERS", min=1)] = 1,
) -> None:
    """Serve the API (runs `init` first, so an empty database just works)."""
    import os

    import uvicorn

    settings = _settings(database_url, host=host, port=port, workers=workers)
    result = _run(_initialise(settings))
    # A service manager keeps stdout in its journal: show the secret only to a person at a terminal.
    _print_init(settings, result, json_output=False, show_secret=sys.stdout.isatty())
    # Workers re-read settings from the environment: hand them the resolved values.
    os.environ["KEYHALL_DATABASE_URL"] = settings.database_url
    os.environ["KEYHALL_HOST"] = host
    os.environ["KEYHALL_PORT"] = str(port)
    typer.echo(f"Keyhall listening on {settings.app_host} (API docs at {settings.app_host}/docs)", err=True)
    uvicorn.run(
        "keyhall.server.asgi:app",
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level=settings.log_level,
        proxy_headers=False,
    )


@app_commands.command("create")
def app_create(
    name: Annotated[str, typer.Option(help="The application's name")],
    database_url: DatabaseOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create an application in the default pool; prints its id and secret (shown once)."""
    settings = _settings(database_url)
    created = _run(_create_app(settings, name))
    record = {
        "app_id": created.app_id,
        "app_secret": created.app_secret,
        "app_host": settings.app_host,
        "pool_id": created.pool_id,
        "name": created.name,
    }
    if json_output:
        typer.echo(json.dumps(record))
    else:
        typer.echo(f"Created application {name!r}")
        typer.echo(f"  app id:     {created.app_id}")
        typer.echo(f"  app secret: {created.app_secret}   (shown once; only its hash is stored)")
        typer.echo(f"  app host:   {settings.app_host}")


@users_commands.command("list")
def users_list(
    database_url: DatabaseOption = None,
    json_output: JsonOption = False,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
) -> None:
    """List users (newest last), as UserDto."""
    settings = _settings(database_url)
    users = _run(_list_users(settings, limit))
    if json_output:
        typer.echo(json.dumps(users, ensure_ascii=False))
        return
    if not users:
        typer.echo("No users yet.")
        return
    for user in users:
        typer.echo(
            f"{user['userId']}  {user['createdAt']}  {user['email'] or '-'}  {user['username'] or '-'}  "
            f"{user['status']}"
        )


@app.command()
def outbox(
    database_url: DatabaseOption = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new messages")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object per message and line")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
) -> None:
    """Show the newest outbox messages (with no SMTP/SMS configured: the dev outbox, codes included)."""
    from keyhall.server.courier.devoutbox import show_outbox

    settings = _settings(database_url)
    try:
        _run(show_outbox(settings, limit=limit, follow=follow, json_output=json_output, echo=typer.echo))
    except KeyboardInterrupt:
        pass


def _print_init(settings: Any, result: Any, json_output: bool, show_secret: bool = True) -> None:
    record = {
        "app_id": result.app_id,
        "app_secret": result.app_secret,
        "app_host": settings.app_host,
        "pool_id": result.pool_id,
    }
    if json_output:
        typer.echo(json.dumps(record))
        return
    if result.created:
        typer.echo("Created the default user pool and application.")
        typer.echo(f"  app id:     {result.app_id}")
        if show_secret:
            typer.echo(f"  app secret: {result.app_secret}   (shown once; only its hash is stored)")
        else:
            typer.echo(
                "  app secret: not shown (output is not a terminal); `keyhall app create` makes an app"
            )
    else:
        typer.echo("Database is up to date.")
        typer.echo(
            f"  app id:     {result.app_id}   (secret not shown again; `keyhall app create` makes a new app)"
        )
    typer.echo(f"  app host:   {settings.app_host}")


def _run(coro: Any) -> Any:
    from keyhall.server.crypto.kek import SealedDataError, SecretKeyError
    from keyhall.server.store.db import DatabaseURLError

    try:
        return asyncio.run(coro)
    except (DatabaseURLError, SecretKeyError, SealedDataError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except LookupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"error: cannot reach the database: {exc}", err=True)
        raise typer.Exit(1) from None


async def _initialise(settings: Any) -> Any:
    from keyhall.server.clock import system_clock
    from keyhall.server.flows.setup import initialise
    from keyhall.server.store.db import create_engine

    settings.key_encryption_key(create=True)  # the key file, unless KEYHALL_SECRET_KEY is set
    engine = create_engine(settings.database_url)
    try:
        return await initialise(engine, system_clock)
    finally:
        await engine.dispose()


async def _create_app(settings: Any, name: str) -> Any:
    from keyhall.server.clock import system_clock
    from keyhall.server.flows.setup import create_app, initialise
    from keyhall.server.store.db import create_engine

    settings.key_encryption_key(create=True)
    engine = create_engine(settings.database_url)
    try:
        await initialise(engine, system_clock)
        return await create_app(engine, name, system_clock)
    finally:
        await engine.dispose()


async def _list_users(settings: Any, limit: int) -> list[dict[str, Any]]:
    from keyhall.server.http.dto import render_user
    from keyhall.server.store import repository
    from keyhall.server.store.db import create_engine, read_transaction
    from keyhall.server.store.migrate import migrate

    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        async with read_transaction(engine) as conn:
            rows = await repository.list_users(conn, limit=limit)
        return [render_user(row) for row in rows]
    finally:
        await engine.dispose()


def main() -> None:
    app(prog_name="keyhall")


if __name__ == "__main__":
    main()
