"""The HTTP server around the application: the bounds uvicorn keeps before a request reaches it."""
