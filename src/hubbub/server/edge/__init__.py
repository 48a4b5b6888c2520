"""Defences at the edge of a node: origins and CORS, the client's address, slowloris."""
