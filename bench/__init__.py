"""Benchmarks, run on demand (``make bench``); results are reported in bench/README.md.

Performance is measured here, never by timed assertions in the tests (BRIEF.md, quality bar).
"""
