"""Helpers of the test suite: plain modules, imported by name (`from support.api import Api`).

pyproject.toml puts tests/ on the path (`pythonpath = ["tests"]`), so every tier imports
them the same way. The conftest.py files hold fixtures only; what a fixture or a test
builds on lives here.
"""
