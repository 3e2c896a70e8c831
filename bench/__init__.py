"""Benchmarks of the validator hub against a bare aiohttp reference.

Each benchmark runs the hub and the reference in their own subprocesses (see
:mod:`bench.servers`), drives both with the same load generator in this process,
and prints ``RATIO`` lines (hub / bare). See ``bench/README.md``.
"""
