"""hubbub: a chat room server, one process on SQLite or many nodes on Redis and PostgreSQL."""

__version__ = "0.1.0"
