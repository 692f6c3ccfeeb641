"""``python -m sprout.cli``: the same as the ``sprout`` command."""

from .main import app

app()
