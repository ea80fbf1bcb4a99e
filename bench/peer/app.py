"""The peer: FastAPI-Users in the SQLAlchemy setup its documentation describes, for bench/ to measure.

Written for Keyhall's benchmarks after FastAPI-Users' "full example" configuration (SQLAlchemy adapter,
a UUID user table, BearerTransport + JWTStrategy), with two deliberate choices:

- Passwords are hashed with argon2id at Keyhall's parameters (t=2, m=19456 KiB, p=1). FastAPI-Users
  hashes through pwdlib; its documented way to change that is to hand the UserManager a
  ``PasswordHelper(PasswordHash((Argon2Hasher(...),)))``. pwdlib's own Argon2Hasher default is t=3,
  m=65536 KiB, p=4, which would make the comparison meaningless.
- The tables are created by ``python app.py create-tables`` before the workers start, not in the app's
  lifespan as the example does: with two uvicorn workers both would run CREATE TABLE at once.

Runs in its own virtualenv (bench/peer/requirements.txt), started by bench/peer_server.py as
``uvicorn app:app --app-dir bench/peer --workers 2``; ``PEER_DATABASE_URL`` names the database
(``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://user@host/db``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncGenerator

from fastapi import Depends, FastAPI
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin, schemas
from fastapi_users.authentication import AuthenticationBackend, BearerTransport, JWTStrategy
from fastapi_users.password import PasswordHelper
from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

DATABASE_URL = os.environ.get("PEER_DATABASE_URL", "sqlite+aiosqlite:///./peer.db")
# A benchmark-only signing secret: the peer never runs outside a benchmark on 127.0.0.1.
SECRET = os.environ.get("PEER_JWT_SECRET", "bench-only-secret-" + "0" * 32)

# Keyhall's argon2id parameters (keyhall.server.crypto.passwords), so both servers pay the same hash.
ARGON2 = Argon2Hasher(time_cost=2, memory_cost=19456, parallelism=1)


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


class UserRead(schemas.BaseUser[uuid.UUID]):
    pass


class UserCreate(schemas.BaseUserCreate):
    pass


class UserUpdate(schemas.BaseUserUpdate):
    pass


engine = create_async_engine(DATABASE_URL)
session_maker = async_sessionmaker(engine, expire_on_commit=False)


async def get_async_session() -> AsyncGenerator[AsyncSession, None]:
    async with session_maker() as session:
        yield session


async def get_user_db(
    session: AsyncSession = Depends(get_async_session),  # noqa: B008 (FastAPI's dependency style)
) -> AsyncGenerator[SQLAlchemyUserDatabase[User, uuid.UUID], None]:
    yield SQLAlchemyUserDatabase(session, User)


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = SECRET
    verification_token_secret = SECRET


password_helper = PasswordHelper(PasswordHash((ARGON2,)))


async def get_user_manager(
    user_db: SQLAlchemyUserDatabase[User, uuid.UUID] = Depends(get_user_db),  # noqa: B008
) -> AsyncGenerator[UserManager, None]:
    yield UserManager(user_db, password_helper)


def get_jwt_strategy() -> JWTStrategy[User, uuid.UUID]:
    return JWTStrategy(secret=SECRET, lifetime_seconds=3600)


auth_backend = AuthenticationBackend(
    name="jwt", transport=BearerTransport(tokenUrl="auth/jwt/login"), get_strategy=get_jwt_strategy
)
fastapi_users = FastAPIUsers[User, uuid.UUID](get_user_manager, [auth_backend])

app = FastAPI()
app.include_router(fastapi_users.get_auth_router(auth_backend), prefix="/auth/jwt", tags=["auth"])
app.include_router(fastapi_users.get_register_router(UserRead, UserCreate), prefix="/auth", tags=["auth"])
app.include_router(fastapi_users.get_users_router(UserRead, UserUpdate), prefix="/users", tags=["users"])


@app.get("/health")
async def health() -> dict[str, str]:
    """For the benchmark's start-up wait only (no database)."""
    return {"status": "ok"}


async def create_tables() -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    await engine.dispose()


if __name__ == "__main__":
    if sys.argv[1:] != ["create-tables"]:
        sys.exit("usage: python app.py create-tables")
    asyncio.run(create_tables())
