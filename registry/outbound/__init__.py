"""Outbound HTTP: where this server may call, how it reads other servers' answers and keeps its connections.

- ``egress``: the address policy and TLS floor of every outbound call, and the clients built on them
  (every httpx client, and the broker's connections, are made there; ADR 0016);
- ``reader``: one bounded streaming reader for every answer read (JWKS and token responses, peer
  registries, gateways), with gzip/deflate decompression that never produces more than allowed;
- ``transport``: the keep-alive connection stack the broker measured fastest for its fan-out
  (httpcore connections per origin, idle ones on a stack; ADR 0009).
"""
