"""The services directory: member gateways and registries that records may name."""
