"""busbar: one event-bus client for polyglot services, as an asyncio API over a Rust core.

    bus = await busbar.connect()                      # in-memory; backend="nats", nats_url=...
    sub = await bus.subscribe("orders.>")
    await bus.publish("orders.eu.created", {"qty": 1})
    async for msg in sub:
        print(msg.subject, msg.json())

Every call that does work returns an awaitable. Calls that finish at once (most publishes)
return an already-finished awaitable, so awaiting them costs no trip through the event loop.
"""

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine

from ._busbar import *  # noqa: F403  (the native module's __all__ is the public API)
from ._busbar import (
    BusError,
    ClosedError,
    LaggedError,
    Message,
    Ready,
    ServiceJobs,
    Subscription,
    Waiting,
)
from ._busbar import __all__ as __all__
from ._busbar import __version__ as __version__

# `serve`, `_with_callback` (what `subscribe(cb=...)` runs) are Python, below; `serve`
# is `busbar.serve` (the native module's `__all__` is the package's).


async def serve(subscription: Subscription, handler: Callable[[Message], object]) -> int:
    """Answers every request on `subscription` with what `handler` returns (data as for
    `publish`; the handler may be async), until the subscription ends; returns how many
    requests were answered. Rust's `busbar::serve`, C's `busbar_subscription_serve`.

    No single message stops it: a lag notice is skipped (counted in `stats()`), a handler
    that raises is logged on the `busbar` logger and its request goes unanswered, a reply
    that cannot be sent is dropped. Only a closed bus ends it early, with `ClosedError`.
    """
    answered = 0
    while True:
        try:
            request = await subscription.__anext__()
        except StopAsyncIteration:
            return answered
        except LaggedError:
            continue
        try:
            reply = handler(request)
            if inspect.isawaitable(reply):
                reply = await reply
        except Exception:
            logging.getLogger("busbar").exception("serve(): the handler failed on %r", request)
            continue
        if request.reply_to is None:
            continue
        try:
            await request.respond(reply)
        except ClosedError:
            raise
        except BusError:
            continue
        answered += 1


_log = logging.getLogger("busbar")
_callback_tasks: set[asyncio.Task[None]] = set()


async def _deliver(sub: Subscription, cb: Callable[[Message], object]) -> None:
    """Hands each message of `sub` to `cb` until the subscription ends. A lag notice and
    a callback that raises are logged on the `busbar` logger; delivery goes on."""
    while True:
        try:
            msg = await sub.__anext__()
        except StopAsyncIteration:
            return
        except LaggedError as notice:
            _log.warning("subscription %s: %s", sub.pattern, notice)
            continue
        try:
            outcome = cb(msg)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            _log.exception("subscription %s: the callback failed on %r", sub.pattern, msg)


def _keep(work: Coroutine[object, object, None]) -> None:
    """Runs `work` as a task, held in `_callback_tasks` until it ends (asyncio keeps only
    weak references to tasks)."""
    task = asyncio.get_running_loop().create_task(work)
    _callback_tasks.add(task)
    task.add_done_callback(_callback_tasks.discard)


async def _with_callback(
    pending: Awaitable[Subscription], cb: Callable[[Message], object]
) -> Subscription:
    """`subscribe(pattern, cb=...)`: the subscription, with a task feeding `cb`."""
    sub = await pending
    _keep(_deliver(sub, cb))
    return sub


async def _answer(jobs: ServiceJobs, handler: Callable[[Message], object]) -> None:
    """Answers each job of an endpoint with `handler` until the jobs end. A handler that
    raises answers with an error reply: its text, and its `code` attribute (core's rule:
    kept when from 100 to 999, else 500)."""
    while (job := await jobs.next()) is not None:
        try:
            reply = handler(job.request)
            if inspect.isawaitable(reply):
                reply = await reply
        except Exception as err:
            code = getattr(err, "code", None)  # core keeps it when it is from 100 to 999
            ok = isinstance(code, int) and not isinstance(code, bool)
            job.fail(str(err) or type(err).__name__, code if ok else None)
            continue
        try:
            job.reply(reply)
        except (BusError, TypeError, ValueError) as err:
            _log.warning("endpoint: the handler's reply cannot be sent: %s", err)
            job.fail(f"the handler's reply cannot be sent: {err}", 500)


async def _with_endpoint(
    pending: Awaitable[ServiceJobs], handler: Callable[[Message], object]
) -> None:
    """`service.add_endpoint(name, subject, handler)`: the endpoint, with a task answering it."""
    _keep(_answer(await pending, handler))


# A call that finished at once returns a `Ready`, one that waits a `Waiting`; as
# Coroutines both are accepted by `asyncio.create_task(bus.publish(...))`, the habit of
# nats-py users.
Coroutine.register(Ready)
Coroutine.register(Waiting)
