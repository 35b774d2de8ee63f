"""``python -m classify_ops {redrive,reprocess} --stack NAME [options]``: parsing and exit codes.

Each command's work is its module's (``redrive.run``, ``reprocess.run``); this module turns the
command line into their options, and every way a command can stop into one line and a status:
0 done, 1 finished with something not done, 2 cannot run (usage, credentials, permissions, no such
stack or output), 130 interrupted.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from classify_ops import redrive, reprocess
from classify_ops.errors import EXIT_INTERRUPTED, EXIT_PROBLEM, Interrupted, OpsError, describe
from classify_ops.messages import valid_run_id
from classify_ops.selection import ALL, BREED, DATE_RANGE, PREFIX, Selection, parse_time
from classify_ops.stack import connect

PROG = "python -m classify_ops"


def _typed(convert: Callable[[str], object], what: str) -> Callable[[str], object]:
    """An argparse type whose error names what was expected."""

    def parse(text: str) -> object:
        try:
            return convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{what} expected, got {text!r} ({exc})") from None

    return parse


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError("must be above 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("which stack")
    where.add_argument(
        "--stack", required=True, help="the stack's name (sam deploy's; make's STACK=dog-breeds)"
    )
    where.add_argument("--region", help="its region (default: AWS_REGION or the profile's)")
    where.add_argument("--profile", help="an AWS CLI profile (default: AWS_PROFILE or default)")
    where.add_argument(
        "--endpoint-url",
        help="send every AWS call here, e.g. the offline stack's moto server (make local)",
    )

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The stack's operator commands. Each one: --help for its options.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{redrive,reprocess}")

    move = commands.add_parser(
        "redrive",
        parents=[common],
        help="move every dead-letter queue message back to the upload queue",
        description="Move every message of the dead-letter queue back to the upload queue "
        "(an SQS message move task), then follow it to its end.",
    )
    move.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="follow the move until it ends (default); --no-wait: start it and return",
    )
    move.add_argument(
        "--max-per-second",
        type=_typed(int, "a whole number 1-500"),
        help="SQS's MaxNumberOfMessagesPerSecond (default: as fast as SQS goes)",
    )
    move.add_argument(
        "--poll-interval", type=_typed(_positive, "seconds"), default=5.0, help=argparse.SUPPRESS
    )

    again = commands.add_parser(
        "reprocess",
        parents=[common],
        help="classify stored uploads again (after a model update)",
        description="Send one reprocess request per selected upload to the upload queue: the "
        "function classifies each again with the current model. Resumable with --run-id.",
    )
    chosen = again.add_argument_group("which uploads (exactly one of)")
    chosen.add_argument("--all", action="store_true", help="every item of the table")
    chosen.add_argument("--prefix", help="items whose key starts with this (e.g. uploads/2024/)")
    chosen.add_argument("--breed", help="items predicted as this breed (the by_breed index)")
    chosen.add_argument(
        "--since",
        type=_typed(parse_time, "an ISO date or time"),
        help="uploads at or after this time (ISO 8601, UTC unless it says otherwise)",
    )
    chosen.add_argument(
        "--until", type=_typed(parse_time, "an ISO date or time"), help="uploads before this time"
    )
    again.add_argument(
        "--run-id",
        type=_typed(valid_run_id, "a run id"),
        help="resume this run: items it already did are skipped (default: a new rp-<time> id)",
    )
    again.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="after sending, wait until the function has classified every item",
    )
    again.add_argument(
        "--wait-timeout",
        type=_typed(_positive, "seconds"),
        default=600.0,
        help="with --wait: give up once no item finished for this long (default 600 s)",
    )
    again.add_argument(
        "--poll-interval", type=_typed(_positive, "seconds"), default=10.0, help=argparse.SUPPRESS
    )
    return parser


def selection_of(args: argparse.Namespace) -> Selection:
    """The one selection the arguments name; ``ValueError`` unless exactly one is given."""
    given = [
        name
        for name, present in (
            ("--all", args.all),
            ("--prefix", args.prefix is not None),
            ("--breed", args.breed is not None),
            ("--since/--until", args.since is not None or args.until is not None),
        )
        if present
    ]
    if len(given) != 1:
        found = ", ".join(given) if given else "none"
        raise ValueError(
            f"choose exactly one of --all, --prefix, --breed, --since/--until ({found})"
        )
    if args.all:
        return Selection(ALL)
    if args.prefix is not None:
        return Selection(PREFIX, args.prefix)
    if args.breed is not None:
        return Selection(BREED, args.breed)
    if args.since and args.until and args.since >= args.until:
        raise ValueError("--since must be before --until")
    return Selection(DATE_RANGE, since=args.since, until=args.until)


def interpreter() -> str:
    """This Python as a user would type it: relative to the current folder when inside it."""
    python = Path(sys.executable)
    try:
        return str(python.relative_to(Path.cwd()))
    except ValueError:
        return str(python)


def resume_command(argv: Sequence[str], run_id: str) -> str:
    """The command line ``argv`` with ``--run-id run_id`` in place of any run id it had."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--run-id":
            skip = True
        elif not arg.startswith("--run-id="):
            kept.append(arg)
    return shlex.join([interpreter(), "-m", "classify_ops", *kept, "--run-id", run_id])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "reprocess":
            try:
                selection = selection_of(args)
            except ValueError as exc:
                parser.error(str(exc))
        connection = connect(args.region, args.profile, args.endpoint_url)
        if args.command == "redrive":
            options = redrive.RedriveOptions(
                wait=args.wait,
                max_per_second=args.max_per_second,
                poll_interval_s=args.poll_interval,
            )
            return redrive.run(connection, args.stack, options)
        return reprocess.run(
            connection,
            args.stack,
            reprocess.ReprocessOptions(
                selection=selection,
                run_id=args.run_id,
                wait=args.wait,
                idle_timeout_s=args.wait_timeout,
                poll_interval_s=args.poll_interval,
                resume_command=lambda run_id: resume_command(argv, run_id),
            ),
        )
    except OpsError as exc:
        return _fail(str(exc))
    except (ClientError, BotoCoreError) as exc:
        return _fail(describe(exc))
    except Interrupted as exc:
        return _fail(str(exc), EXIT_INTERRUPTED, "interrupted")
    except KeyboardInterrupt:
        return _fail("stopped", EXIT_INTERRUPTED, "interrupted")


def _fail(message: str, status: int = EXIT_PROBLEM, kind: str = "error") -> int:
    """One line on stderr (AWS messages may span lines), then the exit status."""
    sys.stdout.flush()
    print(f"{PROG}: {kind}: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return status
