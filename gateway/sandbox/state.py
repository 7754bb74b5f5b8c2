"""Everything one sandbox remembers about Klarna's side, in one object handlers receive.

Handlers need the order book, the customer tokens and the id source together (a recurring
order reads a token, books an order and draws ids); passing one :class:`SandboxState` keeps
their signatures uniform and lets ``POST /sandbox/v1/reset`` forget everything in one call.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from gateway.sandbox.ids import IdSource
from gateway.sandbox.orders import OrderBook
from gateway.sandbox.tokens import TokenBook


@dataclass
class SandboxState:
    ids: IdSource = field(default_factory=IdSource)
    book: OrderBook = field(init=False)
    tokens: TokenBook = field(default_factory=TokenBook)

    def __post_init__(self) -> None:
        self.book = OrderBook(self.ids)

    def clear(self) -> None:
        """Forget orders and tokens (the id streams are restarted separately, if seeded)."""
        self.book.clear()
        self.tokens.clear()
