"""The call engine: journal + REST, between the edge's decoded calls and their replies.

``runner`` holds the one short path every call takes (claim → read → plan → intent → send
→ outcome → reply); ``claim`` an arriving call and a runner's hold on its entry;
``resolve`` the reservation a call names by an invoice number or an order id;
``planning`` a new operation up to its intent; ``steps`` sending and recording the steps;
``twins`` a call bound to an identical one; ``continuation`` an entry taken over (by a
retry or recovery); ``effects`` what each kind of step changes; ``answers`` a call's reply
with its entry, and a finished entry's outcome given again; ``failures`` and ``faults``
what a failure does; ``decisions`` the pure money rules; ``recovery`` the sweep that
finishes what crashes and timeouts left unfinished. The binding rule itself is
``gateway.binding``.
"""
from __future__ import annotations

from gateway.engine.runner import CallEngine

__all__ = ["CallEngine"]
