"""Every touch of a library's internals, one module per library, each guarded by tests/contract.

The upper bounds on these libraries in pyproject.toml are the versions those contract tests
passed on; raise one only after they pass on the new version.
"""
