"""Loopback fakes of the image providers: real HTTP, each provider's own wire format and errors.

Shared by the adapter tests, the e2e tests and the benchmarks.
"""
