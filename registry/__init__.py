"""ief-registry: the Registry and Broker of the Imaging Exchange Framework."""

__version__ = "0.1.0"
