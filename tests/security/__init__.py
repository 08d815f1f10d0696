"""What the server defends against, one module per class of attack.

Each module states one class; each test states one behaviour in its docstring. Read the module
names as the list of what is defended:

- ``test_input_validation.py``: identifiers and codes that smuggle whitespace, newlines, NULs or
  digits of other scripts past a check (full-match, ASCII-only validators).
- ``test_json_bodies.py``: JSON bodies nested deep enough to exhaust the decoder, and duplicate keys
  that make two readers see two documents.
- ``test_malformed_tokens.py``: bearer tokens and client assertions of every malformed shape
  (claims of the wrong type, bad encodings, deep JSON): always 401, and always charged to the
  failed-authentication limiter.
- ``test_outbound_addresses.py``: server-side request forgery: member, peer, JWKS, token-endpoint and
  webhook URLs that lead to loopback, private, link-local or other local addresses (IPv6
  transition forms included), plain http, and token endpoints chosen by a gateway.
- ``test_proxy_headers.py``: forged ``X-Forwarded-*`` and ``Host`` headers steering the client
  address, the limiter or the token audience.
- ``test_refused_methods.py``: requests refused before any handler runs still leave their audit row.
- ``test_database_roles.py``: the server's database role cannot get round the append-only rules.
- ``test_request_limits.py``: oversized headers, clients that never finish their headers, and too
  many connections from one address.
- ``test_abuse.py``: all of the above at once against a real server process, with other clients
  still served.

Defences tested elsewhere, next to the feature they guard: token forgery, algorithm confusion and
replay (``tests/integration/test_auth_resource_server.py``, ``test_token_endpoint.py``,
``test_trusted_issuer.py``), rate limits (``test_rate_limits.py``), body size and media types
(``test_fhir_refusals.py``), subscription endpoint checks (``tests/subscriptions/``), misbehaving
peers and gateways (``tests/federation/``, ``tests/broker/``).
"""
