"""PostgreSQL (asyncpg): the store and log of one node, and the history of many."""
