"""The `engagement` command line.

Every sub-command lives in its own module of this package (engagement_cli/cmd_*.py) and
registers itself here with a one-line help, examples and documented exit codes. Modules are
imported lazily so `engagement --help` is fast, and only `engagement worker` imports Faust (the
worker's runtime, agents/), when it runs a worker.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from agents import __version__
from agents.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

# The exit codes of every command and of the worker (agents/exits.py), as `--help` tells them.
EPILOG = """\
exit codes:
  0  success
  1  the command failed (a server did not answer, a check did not pass)
  2  bad usage: an unknown flag, a missing or malformed argument (e.g. --as-of)
  3  bad configuration: the TOML file (--config, $ENGAGEMENT_CONFIG) or a setting from the
     environment (ENGAGEMENT_*, KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, ...) is missing,
     unreadable or invalid
  4  an input file is missing or unreadable
  5  snapshot: the workers cannot answer yet (HTTP 503, a rebalance); retry
  130  interrupted (Ctrl-C)

Run `engagement COMMAND --help` for a command's options and examples.
"""
SEE_ALSO = "`engagement --help` lists the commands; docs/configuration.md every setting.\n"

# name -> (module, one-line help). Each module has `add_arguments(parser)` and `run(args) -> int`
# and a module docstring whose first paragraph is the command's description and examples.
COMMANDS: dict[str, tuple[str, str]] = {
    "replay": (
        "engagement_cli.cmd_replay",
        "compute the metrics snapshot from kcat-style JSONL files",
    ),
    "simulate": (
        "engagement_cli.cmd_simulate",
        "generate a realistic record stream (to a file or Kafka)",
    ),
    "topics": ("engagement_cli.cmd_topics", "create (or check) the project's Kafka topics"),
    "load": (
        "engagement_cli.cmd_load",
        "send a kcat-style JSONL file into Kafka (keys, timestamps)",
    ),
    "emit": ("engagement_cli.cmd_emit", "send one event or survey answer, validated client-side"),
    "snapshot": (
        "engagement_cli.cmd_snapshot",
        "print the live snapshot of the workers (table or JSON)",
    ),
    "worker": (
        "engagement_cli.cmd_worker",
        "run a live worker (Faust): metrics, /snapshot, /metrics",
    ),
    "at-risk": ("engagement_cli.cmd_at_risk", "list customers at risk (health < 40), from Redis"),
    "forget": (
        "engagement_cli.cmd_forget",
        "erase a user (GDPR) from the workers' tables and Redis",
    ),
    "dead-letters": (
        "engagement_cli.cmd_dead_letters",
        "list rejected records by reason; re-send chosen ones",
    ),
    "top": ("engagement_cli.cmd_top", "a live terminal view of the KPIs (/snapshot, /metrics)"),
    "rebuild": ("engagement_cli.cmd_rebuild", "reset the state; workers then reprocess the topics"),
}


class _CommandListFormatter(argparse.RawDescriptionHelpFormatter):
    """Every command and its help on one line of 80 columns: help text from column 20
    (argparse measures sub-commands 2 columns short, so a 12-character name took 2 lines)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=20)
        self._action_max_length = 18


def add_kafka_arguments(p: argparse.ArgumentParser) -> None:
    """--bootstrap and --prefix, defaulting to $KAFKA_BOOTSTRAP and $ENGAGEMENT_TOPIC_PREFIX."""
    import os

    p.add_argument(
        "--bootstrap",
        default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP; 127.0.0.1:9092)",
    )
    p.add_argument(
        "--prefix",
        default=os.environ.get("ENGAGEMENT_TOPIC_PREFIX", ""),
        help="topic name prefix (env ENGAGEMENT_TOPIC_PREFIX)",
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the chosen command's module is imported (keeps `--help` fast)."""
    parser = argparse.ArgumentParser(
        prog="engagement",
        description="Live customer-engagement metrics on Kafka: exact DAU/WAU/MAU, stickiness, "
        "activation, retention, churn, CSAT/NPS/CES, support, commerce and customer health.",
        epilog=EPILOG,
        formatter_class=_CommandListFormatter,
    )
    parser.add_argument("--version", action="version", version=f"engagement {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_line) in COMMANDS.items():
        if name != command:
            sub.add_parser(name, help=help_line)
            continue
        module = importlib.import_module(module_name)
        # A command that documents its own exit codes (an "exit codes:" block in its docstring)
        # shows only those: one block, so its help never says two things about a code.
        own_codes = "\nexit codes:\n" in (module.__doc__ or "")
        p = sub.add_parser(
            name,
            help=help_line,
            description=module.__doc__,
            epilog=SEE_ALSO if own_codes else EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        print("engagement: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
