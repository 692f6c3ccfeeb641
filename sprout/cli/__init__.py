"""The ``sprout`` command line: one module per command group, `common` for what they share.

This package is the only part of `sprout` that reaches the applications: the registry in
`bentos` (BentoML's model store) and the service, and Prefect's API for `sprout status`. Each
command imports what it needs when it runs, so ``sprout --help`` stays quick.
"""

from .main import app

__all__ = ["app"]
