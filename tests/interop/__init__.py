"""Vendors' clients, unmodified apart from configuration, against a live server of the suite."""
