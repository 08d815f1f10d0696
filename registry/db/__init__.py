"""Database platform: named queries, migrations, the connection pool and the embedded cluster."""
