"""The command line: ``python -m blip caption|ask|match|classify|embed|index|search|download|info``.

Each sub-command is one small function: it opens the images, makes one :class:`~blip.engine.Engine`
call and prints the result, for people (a line per caption, a table per match) or, with ``--json``,
for programs (one JSON object per image and line). Mistakes a user can make end in one line on stderr
and exit code 2 (the command line) or 1 (something failed while running), never in a traceback.
"""

from __future__ import annotations

import sys

from ..loading import hub
from ..loading.checkpoint import CheckpointError
from ..model.config import ConfigError
from .options import RunError
from .parser import build_parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 failed while running, 2 usage error)."""
    args = build_parser().parse_args(argv)
    where = f"blip {args.command}: error:"
    try:
        return args.func(args)
    except (RunError, hub.CheckpointUnavailableError, CheckpointError, ConfigError, OSError) as err:
        print(f"{where} {err}", file=sys.stderr)
        return 1
    except ValueError as err:  # bad option values, unknown model, a model of the wrong task
        print(f"{where} {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
