"""The one stderr console that progress bars and status lines draw on.

Sharing it lets rich nest live displays (a generation bar inside a command's status line) instead
of two displays overwriting the same terminal line.
"""

from rich.console import Console

stderr = Console(stderr=True)
