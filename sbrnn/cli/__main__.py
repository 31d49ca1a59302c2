"""``python -m sbrnn.cli``: the ``sbrnn`` command."""

from sbrnn.cli import main

main()
