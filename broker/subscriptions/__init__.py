"""FHIR subscriptions (DESIGN 7): the Subscription resource, the outbox and the delivery worker.

- ``controller``: the FHIR routes (Subscription, ``$status``, ``$events``, the topic);
- ``service``: the rules of creating, changing and reading subscriptions;
- ``repository``: the only caller of ``sql/queries/subscriptions.sql``;
- ``delivery``: the worker that claims due subscriptions and records each outcome;
- ``notifier``: one HTTP attempt (endpoint checks after DNS resolution, signing, timeout);
- pure rules: ``filters`` (filter criteria), ``bundles`` (notification Bundles), ``retry``
  (schedule, jitter, ``Retry-After``), ``endpoints`` (address policy), ``signing`` (Standard Webhooks),
  ``metrics`` (Prometheus text).

Events are written by triggers on ``records`` (``sql/migrations/0006_subscriptions.sql``), so the
records code knows nothing of subscriptions.
"""
