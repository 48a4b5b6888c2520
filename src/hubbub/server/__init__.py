"""The node's I/O on aiohttp: composition root, HTTP routes, WebSocket handler, gateway, edge."""
