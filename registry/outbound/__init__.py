"""Outbound HTTP: how this server reads other servers' answers and keeps its connections to them.

- ``reader``: one bounded streaming reader for every answer read (JWKS and token responses, peer
  registries, gateways), with gzip/deflate decompression that never produces more than allowed;
- ``transport``: the keep-alive connection stack the broker measured fastest for its fan-out
  (httpcore connections per origin, idle ones on a stack; ADR 0009).
"""
