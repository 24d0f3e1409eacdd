"""``python -m anweddol_actors bench [--quick] [--json FILE] [--markdown] [--from FILE]``:
measure this machine's server, every figure beside its baseline from the same run.

The measuring is ``anweddol_actors.bench``'s; this module parses the options, prints the
table and writes the JSON. Progress goes to standard error, the report to standard output.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import replace
from pathlib import Path

from anweddol_actors.cli import CliError
from anweddol_actors.errors import AnweddolError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure STAT, CREATE, the forwarder, the journal and memory against baselines",
        description=(
            "Measure this machine's server (started here as `serve` children in a temporary "
            "folder, on 127.0.0.1 only) and print each figure beside its baseline, then the "
            "speed targets (ratios). The full run takes several minutes; --quick about one."
        ),
    )
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs (about a minute)")
    parser.add_argument(
        "--json",
        dest="json_file",
        metavar="FILE",
        help="also write the whole run (raw samples too) as JSON",
    )
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    parser.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help="measure nothing: show the run saved in FILE (a --json file)",
    )
    parser.add_argument(
        "--uri", default="qemu:///system", help="libvirt URI of the servers and the bare boots"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="SECTION",
        choices=["journal", "forwarder", "stat", "idle_connections", "cold", "warm"],
        help="measure only these sections",
    )
    parser.set_defaults(func=run)


def _interrupt(signum: int, frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C: the servers are stopped and their domains removed.
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.bench import report
    from anweddol_actors.bench.run import FULL, QUICK
    from anweddol_actors.bench.run import run as measure

    if args.from_file:
        try:
            document = json.loads(Path(args.from_file).read_text())
        except (OSError, ValueError) as exc:
            raise CliError(f"cannot read {args.from_file}: {exc}") from None
        print(report.render(document, markdown=args.markdown), end="")
        return 0
    plan = QUICK if args.quick else FULL
    if args.only:
        plan = replace(plan, sections=tuple(args.only))
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        document = measure(
            plan,
            quick=args.quick,
            libvirt_uri=args.uri,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except AnweddolError as exc:
        # What stops the whole run (libvirt unreachable, no image): one line.
        raise CliError(str(exc)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(report.render(document, markdown=args.markdown), end="")
    if args.json_file:
        Path(args.json_file).write_text(json.dumps(document, indent=1) + "\n")
    return 1 if document["errors"] else 0
