"""Discovery fan-out and subscriptions (DESIGN sections 6 and 7). Not built yet: see the open issues."""
