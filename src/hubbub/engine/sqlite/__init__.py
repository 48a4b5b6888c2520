"""The embedded engine's storage: SQLite in WAL mode with group commit."""
