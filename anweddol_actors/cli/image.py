"""``python -m anweddol_actors image build [--out PATH]``: build the dev container image."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from anweddol_actors.cli import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("image", help="build the dev container image (ISO)")
    actions = parser.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="build the ISO from installed Debian packages")
    build.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write the ISO (default: the embedded configuration's cache path)",
    )
    build.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.image.builder import (
        ImageBuildError,
        build_image,
        default_image_path,
        make_traversable,
    )

    out = args.out or default_image_path()
    start = time.monotonic()
    try:
        if args.out is None:
            # libvirt's QEMU (user libvirt-qemu) must reach the default image.
            make_traversable(out.parent)
        path = build_image(out)
    except ImageBuildError as exc:
        raise CliError(f"image build failed: {exc}") from exc
    except PermissionError as exc:
        raise CliError(f"image build needs root: {exc}") from exc
    size_mb = path.stat().st_size / 1e6
    print(f"{path} ({size_mb:.1f} MB) built in {time.monotonic() - start:.1f}s")
    return 0
