"""busbar: one event-bus client for polyglot services, as an asyncio API over a Rust core.

    bus = await busbar.connect()                      # in-memory; backend="nats", nats_url=...
    sub = await bus.subscribe("orders.>")
    await bus.publish("orders.eu.created", {"qty": 1})
    async for msg in sub:
        print(msg.subject, msg.json())

Every call that does work returns an awaitable. Calls that finish at once (most publishes)
return an already-finished awaitable, so awaiting them costs no trip through the event loop.
"""

from ._busbar import *  # noqa: F403  (the native module's __all__ is the public API)
from ._busbar import __all__ as __all__
from ._busbar import __version__ as __version__
