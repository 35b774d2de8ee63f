"""The offline system's one command line (what `make demo` and `make local` run).

    python -m local demo [options]   train the small default, start the stack, upload, score it
    python -m local up [options]     start the stack on a model and run until Ctrl-C/SIGTERM

``python -m local COMMAND --help`` lists a command's options. Each command's options, output and
exit status are its module's: ``local.demo.command.main`` and ``local.up.main``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from local import up
from local.demo import command as demo

COMMANDS: dict[str, tuple[Callable[[list[str] | None], int], str]] = {
    "demo": (demo.main, "train, deploy and use the system offline (`make demo`)"),
    "up": (up.main, "start the stack and run until Ctrl-C (`make local`)"),
}


def usage() -> str:
    lines = ["usage: python -m local {demo,up} [options]", "", "commands:"]
    lines += [f"  {name:<6}{summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if not argv or argv[0] not in COMMANDS:
        given = f"unknown command {argv[0]!r}" if argv else "a command is required"
        print(f"{usage()}\n\npython -m local: error: {given}", file=sys.stderr)
        return 2  # argparse's status for a usage error
    command, _ = COMMANDS[argv[0]]
    return command(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
