"""Record legacy exchanges and replay them against another endpoint, with a diff report.

For migration teams: ``klarna-gateway serve --record DIR`` (the gateway itself) and
``klarna-gateway record --upstream URL`` (a transparent proxy in front of the legacy
platform, :mod:`gateway.replay.proxy`) write every XML-RPC exchange as JSONL
(:mod:`gateway.replay.recording`), digests masked (:mod:`gateway.replay.masking`).
``klarna-gateway replay`` re-signs each call (:mod:`gateway.replay.resign`), maps reservation and invoice numbers, seeds the orders a
sandbox target lacks (:mod:`gateway.replay.seed`), sends the calls in order
(:mod:`gateway.replay.runner`) and judges every reply (:mod:`gateway.replay.compare`, pure)
into an HTML report and a JSON summary (:mod:`gateway.replay.report`).
"""
