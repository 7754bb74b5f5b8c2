"""pytest plugin of klarna-gateway (entry point ``pytest11: klarna_gateway``).

Placeholder: the plugin's fixtures (a gateway and sandbox for a merchant's own regression
suite) are being written separately; this module exists so the entry point resolves.
"""
