"""Protocol-faithful platform simulators for labops.itsm tests, benchmarks and the demo.

Each simulator is a real, stateful HTTP server (``python -m simulators.<name>``) built on
:mod:`simulators.base`; :mod:`simulators.harness` starts and controls them from Python.
These packages are test and demo infrastructure: they are not shipped in the collection.
"""
