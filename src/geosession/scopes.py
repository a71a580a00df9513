"""Context managers for sessions that say how to use them when used as a session.

``s = db.session()`` then ``s.execute(...)`` is what SQLAlchemy's ``sessionmaker()``
allows, and what a session that must always close cannot: the call gives a context
manager, and Python's own would answer "'_GeneratorContextManager' object has no
attribute 'execute'". A scope answers with the ``with`` statement to write instead. Type
checkers see no such attribute, and keep flagging the mistake before it runs.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from types import TracebackType
from typing import TYPE_CHECKING, Generic, NoReturn, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class Scope(AbstractContextManager[T], Generic[T]):
    """A ``with`` block's session: entered, the session; used as one, an error saying so."""

    def __init__(self, managed: AbstractContextManager[T], call: str) -> None:
        self._managed, self._call = managed, call

    def __enter__(self) -> T:
        return self._managed.__enter__()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        return self._managed.__exit__(kind, error, traceback)

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> NoReturn:
            raise _misused(self._call, name, "with")

        async def __aenter__(self) -> NoReturn:
            twin = self._call.replace("db.", "db.async_", 1)
            raise TypeError(
                f"{self._call} is for `with` in sync code; in async code write `async with "
                f"{twin} as s:` and await s.execute(...) inside it"
            )

        async def __aexit__(self, *exc: object) -> None:
            return None


class AsyncScope(AbstractAsyncContextManager[T], Generic[T]):
    """The async twin of :class:`Scope`, for ``async with``."""

    def __init__(self, managed: AbstractAsyncContextManager[T], call: str) -> None:
        self._managed, self._call = managed, call

    async def __aenter__(self) -> T:
        return await self._managed.__aenter__()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        return await self._managed.__aexit__(kind, error, traceback)

    if not TYPE_CHECKING:

        def __getattr__(self, name: str) -> NoReturn:
            raise _misused(self._call, name, "async with")

        def __enter__(self) -> NoReturn:
            twin = self._call.replace("db.async_", "db.", 1)
            raise TypeError(
                f"{self._call} is for `async with` in async code; write `async with "
                f"{self._call} as s:` there, or `with {twin} as s:` in sync code"
            )

        def __exit__(self, *exc: object) -> None:
            return None


def _misused(call: str, name: str, statement: str) -> AttributeError:
    return AttributeError(
        f"{call} is not a session but the block that holds one: write `{statement} {call} "
        f"as s:` and call s.{name}(...) inside it (the session is closed, and its connection "
        "returned to the pool, when the block ends)"
    )


def scope(call: str) -> Callable[[Callable[P, Iterator[T]]], Callable[P, Scope[T]]]:
    """:func:`contextlib.contextmanager`, giving a :class:`Scope` named ``call``."""

    def decorate(function: Callable[P, Iterator[T]]) -> Callable[P, Scope[T]]:
        managed = contextmanager(function)

        @functools.wraps(function)
        def scoped(*args: P.args, **kwargs: P.kwargs) -> Scope[T]:
            return Scope(managed(*args, **kwargs), call)

        return scoped

    return decorate


def async_scope(
    call: str,
) -> Callable[[Callable[P, AsyncIterator[T]]], Callable[P, AsyncScope[T]]]:
    """:func:`contextlib.asynccontextmanager`, giving an :class:`AsyncScope`."""

    def decorate(function: Callable[P, AsyncIterator[T]]) -> Callable[P, AsyncScope[T]]:
        managed = asynccontextmanager(function)

        @functools.wraps(function)
        def scoped(*args: P.args, **kwargs: P.kwargs) -> AsyncScope[T]:
            return AsyncScope(managed(*args, **kwargs), call)

        return scoped

    return decorate
