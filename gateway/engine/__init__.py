"""The call engine: journal + REST, between the edge's decoded calls and their replies.

``runner`` holds the one short path every call takes; ``claim`` the runner's leases;
``decisions`` the pure money rules; ``faults`` the mapping of every failure to a legacy
fault; ``recovery`` the sweep that finishes what crashes and timeouts left unfinished.
"""
from __future__ import annotations

from gateway.engine.runner import CallEngine

__all__ = ["CallEngine"]
