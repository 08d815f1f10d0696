"""The server: the one place that knows every feature and wires them into one Litestar application."""
