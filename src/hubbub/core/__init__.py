"""The rules: accounts, rooms, roles, the join cut, presence transitions, limits and audit.

No aiohttp and no backend here: only `protocol` and the engine contracts (`engine.base`).
"""
