"""The core: configuration (``config``), errors, Apple's shared names (``apple``), the
database engine (``database``) and the one fork-safety mechanism (``per_process``).

Imports nothing else of the package: every other layer builds on it.
"""
