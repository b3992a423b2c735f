"""Interop acceptance tests: SIPp and baresip against a real `pbx serve` on loopback."""
