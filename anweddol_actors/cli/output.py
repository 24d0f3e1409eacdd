"""What a command prints: a line of text, or with ``--json`` the original's JSON shape.

Every command that takes ``--json`` prints exactly one object on stdout,
``{"status": "OK" | "ERROR", "message": MESSAGE, "data": {...}}``
(``reference/cli_json_output.md``); errors raised as ``CliError`` are printed in that shape
by ``cli.main`` when ``--json`` was given.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def emit(args: argparse.Namespace, message: str, data: dict[str, Any], text: str) -> int:
    """Print ``text``, or the JSON object for ``message`` and ``data``; returns 0."""
    if getattr(args, "json", False):
        print(json.dumps({"status": "OK", "message": message, "data": data}))
    else:
        print(text)
    return 0


def emit_failure(args: argparse.Namespace, message: str, data: dict[str, Any], text: str) -> int:
    """Like ``emit`` for an outcome that is not an error of use (``"status": "ERROR"``);
    returns 1, the exit code of a command that ran but found something wrong."""
    if getattr(args, "json", False):
        print(json.dumps({"status": "ERROR", "message": message, "data": data}))
    else:
        print(text)
    return 1


def aligned(cells: list[tuple[str, ...]]) -> str:
    """Rows of cells (the first: the headings) as columns padded to their widest cell."""
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )
