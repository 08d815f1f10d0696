"""Registry-to-registry federation hops (DESIGN section 5). Not built yet: see the open issue."""
