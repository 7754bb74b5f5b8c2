"""Local emulator of Klarna's Order Management REST API (see ``README.md`` here).

Public entry points: :class:`gateway.sandbox.resource.SandboxResource` and, in
:mod:`gateway.sandbox.service`, ``make_sandbox_site``, ``listen_sandbox`` and ``run_sandbox``.
The package must not import ``gateway.om``, ``gateway.translate``, ``gateway.wire``,
``gateway.edge`` or
``gateway.store``: an emulator that shared the client's code would share its bugs.
"""
