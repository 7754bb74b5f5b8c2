"""The registry of legacy calls: every served call's :class:`CallSpec`, and the known calls
the gateway does not offer, checked when this module is imported.

Why checked at import (cadwyn's ``VersionBundle`` does the same for API versions): a call
declared twice, a decode returning another call's type, or a digest position outside the
call's arity would otherwise surface as a wrong fault in production. Adding a call means
adding one module under ``gateway.calls`` and listing its ``SPEC`` in ``gateway.calls``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.calls.spec import CallSpec, NotOffered, Target


class RegistryError(Exception):
    """A call declaration is incomplete or inconsistent (raised at import time)."""


@dataclass(frozen=True)
class Lookup:
    """What the edge learns from a method name: a served call, or a known unoffered one."""

    name: str
    eid_at: int
    digest_at: int | None
    spec: CallSpec[Any] | None = None
    not_offered: NotOffered | None = None


class CallRegistry:
    """Served calls by name, plus the known-but-unoffered ones (data, not scattered checks)."""

    def __init__(self, served: Iterable[CallSpec[Any]], not_offered: Iterable[NotOffered],
                 internal: Iterable[CallSpec[Any]] = ()) -> None:
        self.served: dict[str, CallSpec[Any]] = {}
        self.not_offered: dict[str, NotOffered] = {}
        #: Calls the engine runs and recovers but the XML-RPC edge never offers (a KCO v2
        #: recurring purchase arrives over its own REST endpoint).
        self.internal: dict[str, CallSpec[Any]] = {}
        for spec in served:
            _check_spec(spec)
            if spec.name in self.served:
                raise RegistryError(f"{spec.name} is declared twice")
            self.served[spec.name] = spec
        for spec in internal:
            _check_spec(spec, arity_applies=False)
            if spec.name in self.served or spec.name in self.internal:
                raise RegistryError(f"{spec.name} is declared twice")
            self.internal[spec.name] = spec
        for entry in not_offered:
            if entry.name in self.served or entry.name in self.not_offered:
                raise RegistryError(f"{entry.name} is both served and not offered, or "
                                    "listed twice")
            if entry.digest is not None and entry.digest_at is None:
                raise RegistryError(f"{entry.name}: a digest rule needs its position")
            self.not_offered[entry.name] = entry

    def lookup(self, method: str) -> Lookup | None:
        spec = self.served.get(method)
        if spec is not None:
            return Lookup(spec.name, spec.eid_at, spec.digest_at, spec=spec)
        entry = self.not_offered.get(method)
        if entry is not None:
            return Lookup(entry.name, entry.eid_at, entry.digest_at, not_offered=entry)
        return None

    def spec(self, method: str) -> CallSpec[Any]:
        return self.served.get(method) or self.internal[method]

    def spec_for(self, call: Any) -> CallSpec[Any]:
        """The declaration of a decoded call."""
        return self.spec(call.method)

    def runs(self, method: str) -> bool:
        """Whether the engine can run (and recover) a journal entry of this method."""
        return method in self.served or method in self.internal

    @property
    def names(self) -> Sequence[str]:
        return tuple(self.served)

    def mapped(self, fn: Callable[[CallSpec[Any]], CallSpec[Any]]) -> CallRegistry:
        """The same calls, each declaration passed through ``fn`` (a wrapped plan), checked
        again."""
        return CallRegistry(served=[fn(s) for s in self.served.values()],
                            not_offered=self.not_offered.values(),
                            internal=[fn(s) for s in self.internal.values()])


def _check_spec(spec: CallSpec[Any], *, arity_applies: bool = True) -> None:
    """Complete and self-consistent, or :class:`RegistryError` naming what is wrong."""
    where = f"call {spec.name!r}"
    if not spec.name or getattr(spec.call_type, "method", None) != spec.name:
        raise RegistryError(f"{where}: call_type.method must equal the name")
    if arity_applies:
        if not spec.arity or min(spec.arity) < 3:
            raise RegistryError(f"{where}: arity must list the parameter counts the SDKs send")
        for label, position in (("eid_at", spec.eid_at), ("digest_at", spec.digest_at)):
            if not 2 <= position < min(spec.arity):
                raise RegistryError(f"{where}: {label} {position} is outside every arity")
        if spec.eid_at == spec.digest_at:
            raise RegistryError(f"{where}: eid and digest cannot share a position")
    for attr in ("digest", "decode", "plan", "reply"):
        if not callable(getattr(spec, attr)):
            raise RegistryError(f"{where}: {attr} is not callable")
    declared = getattr(spec.call_type, "__dataclass_fields__", {})
    for name in (*spec.free_text, *spec.line_keys):
        if name not in declared:
            raise RegistryError(f"{where}: text field {name!r} is not a field of the call")
    if spec.read_only and spec.money.value != "none":
        raise RegistryError(f"{where}: a read-only call cannot move money")
    if not spec.summary:
        raise RegistryError(f"{where}: a one-line summary is required (explain, "
                            "docs/translation.md)")
    _check_differences(spec, where)
    if spec.target is Target.LOOKUP:
        if spec.locate is None:
            raise RegistryError(f"{where}: a LOOKUP target needs locate")
        return
    if spec.target is Target.NONE:
        return
    if spec.target not in (Target.RESERVATION, Target.INVOICE):
        raise RegistryError(f"{where}: target {spec.target.value} is located, not declared")
    fields = getattr(spec.call_type, "__dataclass_fields__", {})
    needed = "rno" if spec.target is Target.RESERVATION else "invno"
    if needed not in fields:
        raise RegistryError(f"{where}: target {spec.target.value} needs a {needed!r} field")


def _check_differences(spec: CallSpec[Any], where: str) -> None:
    """Every call says how v2 and REST differ for it: ``docs/translation.md`` is generated
    from these sentences and ``explain`` prints them, so a call without them would leave a
    migration team guessing."""
    if not spec.differences:
        raise RegistryError(f"{where}: differences must say where v2 and REST differ "
                            "(docs/translation.md is generated from them)")
    for text in spec.differences:
        if not isinstance(text, str) or not text.strip() or "\n" in text:
            raise RegistryError(f"{where}: each difference is one non-empty line")
    if len(set(spec.differences)) != len(spec.differences):
        raise RegistryError(f"{where}: a difference is listed twice")
