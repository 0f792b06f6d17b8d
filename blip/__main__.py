"""``python -m blip ...``: see :mod:`blip.cli`."""

from .cli import main

raise SystemExit(main())
