"""Helpers for the test suite: servers, proxies, record builders and known calls.

The fixtures built on them are in ``tests/conftest.py``; test modules import the helpers as
``from support.index import make_segment``.
"""
