"""The ``keyhall`` command: init, migrate, serve, app create, users list, keys rotate, outbox."""

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
keys_commands = typer.Typer(help="Manage the server's keys.", no_args_is_help=True)
app.add_typer(keys_commands, name="keys")

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
    no_migrate: Annotated[
        bool,
        typer.Option(
            "--no-migrate",
            envvar="KEYHALL_NO_MIGRATE",
            help="Do not run `init` (migrations, default app); refuse to start if the schema is behind. "
            "For many hosts: run `keyhall migrate` once per release, then start the servers with this",
        ),
    ] = False,
) -> None:
    """Serve the API (runs `init` first, so an empty database just works; see --no-migrate)."""
    import os
    import shutil
    import tempfile

    # Metrics of all workers in one scrape: prometheus-client's multiprocess mode wants a folder that is
    # empty when the server starts, named before prometheus-client is first imported (by init below, or a
    # worker). Ours, removed at exit, unless the operator names one.
    metrics_dir = None
    if not os.environ.get(_METRICS_DIR_ENV):
        metrics_dir = tempfile.mkdtemp(prefix="keyhall-metrics-")
        os.environ[_METRICS_DIR_ENV] = metrics_dir
    try:
        _serve(host, port, database_url, workers, no_migrate)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


_METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # keyhall.server.metrics.MULTIPROC_ENV, not imported early


def _serve(host: str, port: int, database_url: str | None, workers: int, no_migrate: bool) -> None:
    import os

    settings = _settings(database_url, host=host, port=port, workers=workers)
    if no_migrate:
        if not _run(_schema_is_current(settings)):
            typer.echo("error: the database schema is not up to date: run `keyhall migrate` first", err=True)
            raise typer.Exit(1)
    else:
        result = _run(_initialise(settings))
        # A service manager keeps stdout in its journal: show the secret only to a person at a terminal.
        _print_init(settings, result, json_output=False, show_secret=sys.stdout.isatty())
    # Workers re-read settings from the environment: hand them the resolved values.
    os.environ["KEYHALL_DATABASE_URL"] = settings.database_url
    os.environ["KEYHALL_HOST"] = host
    os.environ["KEYHALL_PORT"] = str(port)
    pool = None
    if settings.hash_processes > 0:
        from keyhall.server.crypto.hash_pool import SOCKET_ENV, HashPool

        pool = HashPool(settings.hash_processes)  # before the workers, which find it by SOCKET_ENV
        os.environ[SOCKET_ENV] = pool.path
    typer.echo(f"Keyhall listening on {settings.app_host} (API docs at {settings.app_host}/docs)", err=True)
    try:
        _uvicorn(settings, host, port, workers)
    finally:
        if pool is not None:
            pool.stop()  # after the workers: they hash until their last request is answered


def _uvicorn(settings: Any, host: str, port: int, workers: int) -> None:
    import uvicorn

    from keyhall.server.http.protocol import protocol_class_path
    from keyhall.server.logs import uvicorn_log_config

    uvicorn.run(
        "keyhall.server.asgi:app",
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level=settings.log_level,
        log_config=uvicorn_log_config(settings) or uvicorn.config.LOGGING_CONFIG,
        proxy_headers=False,
        http=protocol_class_path(),  # uvicorn's parser plus a deadline for the request head
        timeout_keep_alive=max(1, round(settings.timeout_keep_alive_s)),
        timeout_graceful_shutdown=max(1, round(settings.graceful_shutdown_s)),
    )


@app.command()
def migrate(database_url: DatabaseOption = None) -> None:
    """Upgrade the database schema to this version (once, however many hosts run it at the same time).

    On PostgreSQL an advisory lock makes concurrent runs wait for each other; the later ones find the
    schema current and do nothing. `init` and `serve` (without --no-migrate) do this too.
    """
    settings = _settings(database_url)
    heads = _run(_migrate(settings))
    typer.echo(f"Database schema is at {', '.join(sorted(heads))}.")


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


@keys_commands.command("rotate")
def keys_rotate(
    pool: Annotated[str | None, typer.Option("--pool", help="The user pool (default: every pool)")] = None,
    grace: Annotated[
        str, typer.Option("--grace", help="How long the old keys stay accepted: 90s, 30m, 24h, 7d")
    ] = "24h",
    database_url: DatabaseOption = None,
    json_output: JsonOption = False,
) -> None:
    """New password transport keys (RSA and SM2): the old ones stay accepted for the grace period.

    Running servers serve the new public keys within KEYHALL_TRANSPORT_KEY_REFRESH_S (default 30 s).
    """
    from keyhall.server.flows.transport_keys import parse_duration

    try:
        grace_period = parse_duration(grace)
    except ValueError as exc:
        typer.echo(f"error: --grace: {exc}", err=True)
        raise typer.Exit(2) from None
    settings = _settings(database_url)
    rotations = _run(_rotate_keys(settings, pool, grace_period))
    if json_output:
        record = [
            {
                "pool_id": rotation.pool_id,
                "removed_expired": rotation.removed,
                "keys": [
                    {
                        "kind": kind.kind,
                        "key_id": kind.new_key_id,
                        "generation": kind.generation,
                        "old_keys_accepted_until": kind.accept_until.isoformat(),
                        "old_keys": kind.retired,
                    }
                    for kind in rotation.kinds
                ],
            }
            for rotation in rotations
        ]
        typer.echo(json.dumps(record))
        return
    for rotation in rotations:
        typer.echo(f"Rotated the transport keys of pool {rotation.pool_id}:")
        for kind in rotation.kinds:
            typer.echo(
                f"  {kind.kind}: new key {kind.new_key_id} (generation {kind.generation}); "
                f"{kind.retired} old key(s) accepted until {kind.accept_until.isoformat()}"
            )
        if rotation.removed:
            typer.echo(f"  removed {rotation.removed} key(s) whose grace period was over")
    typer.echo(
        f"Running servers pick the new keys up within {settings.transport_key_refresh_s:g} s "
        "(KEYHALL_TRANSPORT_KEY_REFRESH_S)."
    )


@keys_commands.command("rotate-signing")
def keys_rotate_signing(database_url: DatabaseOption = None, json_output: JsonOption = False) -> None:
    """A new token signing key: new tokens are signed with it; the old key stays in the JWKS until the
    tokens it signed have expired. Running servers sign with the new key within
    KEYHALL_SIGNING_KEY_REFRESH_S (default 60 s)."""
    settings = _settings(database_url)
    kid, retired = _run(_rotate_signing(settings))
    if json_output:
        typer.echo(json.dumps({"kid": kid, "retired": retired}))
        return
    typer.echo(f"New signing key {kid}")
    for old in retired:
        typer.echo(f"  retired {old} (still in the JWKS until its tokens have expired)")


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

    kek = settings.key_encryption_key(create=True)  # the key file, unless KEYHALL_SECRET_KEY is set
    engine = create_engine(settings.database_url)
    try:
        return await initialise(engine, system_clock, kek)
    finally:
        await engine.dispose()


async def _create_app(settings: Any, name: str) -> Any:
    from keyhall.server.clock import system_clock
    from keyhall.server.flows.setup import create_app, initialise
    from keyhall.server.store.db import create_engine

    kek = settings.key_encryption_key(create=True)
    engine = create_engine(settings.database_url)
    try:
        await initialise(engine, system_clock, kek)
        return await create_app(engine, name, system_clock)
    finally:
        await engine.dispose()


async def _rotate_keys(settings: Any, pool_id: str | None, grace: Any) -> Any:
    from keyhall.server.clock import system_clock
    from keyhall.server.flows.setup import initialise
    from keyhall.server.flows.transport_keys import rotate_transport_keys
    from keyhall.server.store.db import create_engine

    kek = settings.key_encryption_key()  # the KEK the database was set up with; never a new one here
    engine = create_engine(settings.database_url)
    try:
        await initialise(engine, system_clock, kek)
        return await rotate_transport_keys(engine, kek, system_clock, pool_id=pool_id, grace=grace)
    finally:
        await engine.dispose()


async def _migrate(settings: Any) -> set[str]:
    from keyhall.server.store.db import create_engine
    from keyhall.server.store.migrate import current_heads, migrate

    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        return await current_heads(engine)
    finally:
        await engine.dispose()


async def _schema_is_current(settings: Any) -> bool:
    from keyhall.server.store.db import create_engine
    from keyhall.server.store.migrate import schema_is_current

    engine = create_engine(settings.database_url)
    try:
        return await schema_is_current(engine)
    finally:
        await engine.dispose()


async def _rotate_signing(settings: Any) -> Any:
    from keyhall.server.clock import system_clock
    from keyhall.server.flows.setup import initialise
    from keyhall.server.store.db import create_engine
    from keyhall.server.tokens.keys import rotate_signing_key

    kek = settings.key_encryption_key()  # the KEK the database was set up with; never a new one here
    engine = create_engine(settings.database_url)
    try:
        await initialise(engine, system_clock)
        return await rotate_signing_key(engine, kek, system_clock)
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
