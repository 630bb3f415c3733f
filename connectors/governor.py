"""The query governor: per-connector timeouts, row caps, page size, concurrency
and retry, each decision logged (connector name and decision only -- never a
literal value from a statement, never a secret).

A statement that runs past its timeout is cancelled AT THE SERVER: the kind
passes a ``cancel`` callable (psycopg ``conn.cancel()``, sqlite3
``conn.interrupt()``, pyodbc ``cursor.cancel()``, JDBC ``Statement.cancel()``)
that :meth:`Governor.deadline` fires from a timer thread; kinds also set the
server-side limit where the engine has one (``SET LOCAL statement_timeout``,
``SET STATEMENT max_statement_time=... FOR``, ``setQueryTimeout``), so a
cancel that races the timer still ends the query on the server.

Framework-free: no Django import.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from migration.engine.errors import TransientError

__all__ = ["Deadline", "Governor", "GovernorPolicy", "QueryTimeout"]

log = logging.getLogger("pasportal.connectors.governor")
T = TypeVar("T")


class QueryTimeout(TransientError):
    """A governed statement exceeded its timeout and was cancelled at the server."""


class GovernorPolicy(BaseModel):
    """Limits for one connector (part of every kind's config as ``governor``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    statement_timeout_s: float = Field(300.0, gt=0, le=86_400)
    row_cap: int = Field(1_000_000, gt=0)
    page_size: int = Field(50_000, gt=0, le=1_000_000)
    max_concurrency: int = Field(4, ge=1, le=64)
    max_retries: int = Field(3, ge=0, le=20)
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    acquire_timeout_s: float = Field(600.0, gt=0)


_SEMAPHORES: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_SEM_LOCK = threading.Lock()


def _semaphore(name: str, size: int) -> threading.BoundedSemaphore:
    # One semaphore per connector (and size) in this process, shared by every
    # connection object opened for that connector.
    with _SEM_LOCK:
        key = (name, size)
        if key not in _SEMAPHORES:
            _SEMAPHORES[key] = threading.BoundedSemaphore(size)
        return _SEMAPHORES[key]


class Deadline:
    """State of one governed statement's timer (``fired`` once cancelled)."""

    def __init__(self) -> None:
        self.fired = threading.Event()
        self.cancel_error: str | None = None


class Governor:
    """Applies a GovernorPolicy to the statements of one named connector."""

    def __init__(self, connector: str, policy: GovernorPolicy | None = None) -> None:
        self.connector = connector
        self.policy = policy or GovernorPolicy()
        self._sem = _semaphore(connector, self.policy.max_concurrency)

    # ------------------------------------------------------------- decisions

    def _log(self, decision: str, level: int = logging.INFO, **facts: object) -> None:
        # Only numbers and fixed labels go into facts; statements never do.
        extra = " ".join(f"{k}={v}" for k, v in facts.items())
        log.log(level, "connector=%s decision=%s %s", self.connector, decision, extra)

    def page_size(self, requested: int | None) -> int:
        """Return the page size to use: the request clamped to the policy."""
        cap = self.policy.page_size
        if requested is None:
            return cap
        if requested > cap:
            self._log("page_size_clamped", requested=requested, limit=cap)
            return cap
        return max(1, int(requested))

    def row_cap(self, requested: int | None = None) -> int:
        """Return the row cap for one ad-hoc query (the smaller of request and policy)."""
        cap = self.policy.row_cap
        if requested is not None and requested < cap:
            return max(0, int(requested))
        if requested is not None and requested > cap:
            self._log("row_cap_applied", requested=requested, limit=cap)
        return cap

    def note_truncated(self, what: str, rows: int) -> None:
        """Log that a query result was truncated at the row cap."""
        self._log("rows_truncated", logging.WARNING, what=what, rows=rows)

    @property
    def timeout_s(self) -> float:
        """Statement timeout in seconds."""
        return self.policy.statement_timeout_s

    # ----------------------------------------------------------- concurrency

    @contextmanager
    def slot(self, what: str) -> Iterator[None]:
        """Hold one of the connector's concurrent-query slots; raises TransientError."""
        t0 = time.monotonic()
        if not self._sem.acquire(timeout=self.policy.acquire_timeout_s):
            self._log("slot_timeout", logging.WARNING, what=what)
            raise TransientError(
                f"connector {self.connector!r}: no free query slot after "
                f"{self.policy.acquire_timeout_s:.0f}s "
                f"(max_concurrency={self.policy.max_concurrency})"
            )
        waited = time.monotonic() - t0
        if waited > 0.05:
            self._log("slot_waited", what=what, waited_ms=int(waited * 1000))
        try:
            yield
        finally:
            self._sem.release()

    # --------------------------------------------------------------- timeout

    @contextmanager
    def deadline(
        self,
        what: str,
        cancel: Callable[[], None],
        timeout_s: float | None = None,
    ) -> Iterator[Deadline]:
        """Fire ``cancel`` after the timeout; turn the driver's error into QueryTimeout."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        state = Deadline()
        # A timer that fires just as the statement finishes must not cancel
        # after the block has ended (the caller then closes the cursor and the
        # connection; a driver cancelling a freed handle can crash the
        # process). Firing and leaving the block exclude each other; leaving
        # waits for a cancel already under way.
        lock = threading.Lock()
        ended = False

        def fire() -> None:
            with lock:
                if ended:
                    return
                state.fired.set()
                try:
                    cancel()
                except Exception as exc:  # the server-side limit still applies
                    state.cancel_error = type(exc).__name__
            self._log(
                "statement_cancelled",
                logging.WARNING,
                what=what,
                timeout_s=timeout,
                cancel_error=state.cancel_error or "none",
            )

        timer = threading.Timer(timeout, fire)
        timer.daemon = True
        timer.start()
        try:
            yield state
        except Exception as exc:
            if state.fired.is_set() or _looks_like_timeout(exc):
                err = QueryTimeout(
                    f"connector {self.connector!r}: {what} exceeded the statement "
                    f"timeout of {timeout:g}s and was cancelled at the server"
                )
                timer.cancel()
                raise err from None
            raise
        finally:
            timer.cancel()
            with lock:
                ended = True
        if state.fired.is_set():
            # The driver returned normally after a cancel (e.g. partial result):
            # the result cannot be trusted.
            raise QueryTimeout(
                f"connector {self.connector!r}: {what} exceeded the statement "
                f"timeout of {timeout:g}s and was cancelled at the server"
            )

    # ----------------------------------------------------------------- retry

    def retry(self, fn: Callable[[], T], what: str) -> T:
        """Return fn(); retry TransientError with exponential backoff, re-raise others."""
        attempt = 0
        while True:
            try:
                return fn()
            except TransientError as exc:
                if attempt >= self.policy.max_retries:
                    self._log(
                        "retry_exhausted",
                        logging.ERROR,
                        what=what,
                        attempts=attempt + 1,
                        error=type(exc).__name__,
                    )
                    raise
                delay = min(
                    self.policy.backoff_max_s,
                    self.policy.backoff_base_s * (2**attempt),
                )
                delay *= 0.5 + random.random() / 2  # jitter: no thundering herd
                self._log(
                    "retry",
                    logging.WARNING,
                    what=what,
                    attempt=attempt + 1,
                    delay_ms=int(delay * 1000),
                    error=type(exc).__name__,
                )
                time.sleep(delay)
                attempt += 1


def _looks_like_timeout(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(
        marker in text
        for marker in (
            "statement timeout",
            "canceling statement",
            "query_canceled",
            "querycanceled",
            "interrupted",
            "max_statement_time",
            "query execution was interrupted",
            "operation canceled",
            "operation cancelled",
            "hyt00",
            "hy008",
            "timeout expired",
        )
    )
