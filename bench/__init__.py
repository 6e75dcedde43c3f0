"""freshtoken benchmarks: `python -m bench all` (see bench/__main__.py)."""
