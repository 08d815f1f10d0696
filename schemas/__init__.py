"""Wire types of ief-registry: msgspec Structs and constrained scalars, no I/O.

Nothing in this package imports any other package of the project.
"""
