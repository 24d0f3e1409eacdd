"""``config show | init | check``: the configuration a command would read, a fresh file,
and whether a file is fit to serve with.

``show`` prints the effective configuration (the file's values over the defaults) as YAML
that loads back to the same; ``init`` writes the commented default file (the text of
``config.dump_default()``); ``check`` validates a file, names its source and prints the
warnings ``serve`` would log, plus what this host cannot honour (``config.host``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from anweddol_actors.cli import CliError
from anweddol_actors.cli.configfile import add_config_option, load, system_config_path
from anweddol_actors.cli.output import emit, emit_failure


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "config",
        help="show, create or check the configuration file",
        description="Show the effective configuration, write the commented default file, "
        "or check a file.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    show = actions.add_parser(
        "show",
        help="print the effective configuration (YAML, defaults filled in)",
        description="Print the configuration a command would use, as YAML with every key "
        "(the file's values over the defaults); the first line names its source.",
    )
    add_config_option(show)
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=run_show)

    init = actions.add_parser(
        "init",
        help="write the commented default configuration file",
        description="Write the commented default configuration file to PATH (default: "
        "the system file), creating its folder; refuses to overwrite without --force.",
    )
    init.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help=f"where to write it ('-' = standard output; default {system_config_path()})",
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.add_argument("--json", action="store_true", help="print JSON")
    init.set_defaults(func=run_init)

    check = actions.add_parser(
        "check",
        help="validate the configuration file and print its warnings",
        description="Validate the configuration file a command would read, print its "
        "source and each warning; exit 2 when it cannot be served with.",
    )
    add_config_option(check)
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(func=run_check)


def run_show(args: argparse.Namespace) -> int:
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    import yaml

    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.config.compat import acted_on

    loaded = load(args)
    document = acted_on(loaded.config.to_dict(), loaded.given)
    text = f"# configuration: {loaded.source}\n" + yaml.safe_dump(
        document, sort_keys=False, default_flow_style=False
    )
    return emit(
        args,
        "Effective configuration",
        {"source": loaded.source, "config": document, "warnings": loaded.warnings},
        text.rstrip("\n"),
    )


def run_init(args: argparse.Namespace) -> int:
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.config import dump_default

    text = dump_default()
    if args.path == "-":
        if args.json:
            return emit(args, "Default configuration", {"path": "-", "content": text}, "")
        sys.stdout.write(text)
        return 0
    path = Path(args.path or system_config_path())
    write_new_file(path, text, force=args.force)
    return emit(args, "Configuration file written", {"path": str(path)}, f"wrote {path}")


def write_new_file(path: Path, text: str, *, force: bool) -> None:
    """Write ``text`` to ``path`` whole (a reader never sees half a file), creating its
    folder; a ``CliError`` when it exists and ``force`` is false, or cannot be written."""
    if path.is_dir():
        raise CliError(f"{path} is a directory")
    if path.exists() and not force:
        raise CliError(f"{path} already exists (--force to overwrite it)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        # mkstemp makes the file 0600; a configuration file is read by the server's user.
        os.chmod(temporary, 0o644)
        if force:
            os.replace(temporary, path)
        else:
            # A link fails where a file appeared since the check: never overwrite one.
            os.link(temporary, path)
    except FileExistsError:
        raise CliError(f"{path} already exists (--force to overwrite it)") from None
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def run_check(args: argparse.Namespace) -> int:
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.config.host import host_problems

    try:
        loaded = load(args)
    except CliError as exc:
        return _check_failed(args, [str(exc)])
    where = loaded.path or "configuration"
    problems = [f"{where}: {problem}" for problem in host_problems(loaded.config)]
    if problems:
        return _check_failed(args, problems)
    lines = [f"ok: {loaded.source}", *(f"warning: {w}" for w in loaded.warnings)]
    return emit(
        args,
        "Check done",
        {
            "errors_recorded": 0,
            "errors_list": [],
            "source": loaded.source,
            "warnings": loaded.warnings,
        },
        "\n".join(lines),
    )


def _check_failed(args: argparse.Namespace, errors: list[str]) -> int:
    """The original's ``start -c`` failure (its JSON message too), exit code 2: the file
    must change before the server can start with it."""
    if args.json:
        emit_failure(
            args,
            "Errors detected on server environment",
            {"errors_recorded": len(errors), "errors_list": errors},
            "",
        )
    else:
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
    return 2
