"""Plots of a ``python -m anweddol_actors bench --json FILE`` run, for docs/benchmarks.md.

    .venv/bin/python benchmarks/plot_bench.py FILE.json docs/images [--markdown]

Writes into the folder:

- ``bench-stat-latency.png``: the STAT latency distributions (box: quartiles, whiskers:
  p1-p99), per client kind and number of concurrent clients, on a log scale, with one
  RSA-4096 decryption as a line;
- ``bench-create-phases.png``: where a CREATE's time goes, warm and cold, beside a bare
  boot of the same image (the median run of each, from the server's journal).

``--markdown`` also prints the run's tables as Markdown (the same as
``python -m anweddol_actors bench --from FILE --markdown``), ready to paste into the doc.
Needs matplotlib (in the dev extras: ``pip install -e '.[dev]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from anweddol_actors.bench import report  # noqa: E402


def plot_stat(document: dict, out: Path) -> None:
    stat = document["stat"]
    labels, data = [], []
    for kind, loads in stat["loads"].items():
        for load in loads:
            if load["samples"]:
                labels.append(
                    f"{kind}\n{load['clients']} client{'s' if load['clients'] > 1 else ''}"
                )
                data.append([s * 1000 for s in load["samples"]])
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.boxplot(data, whis=(1, 99), showfliers=False)
    ax.set_xticks(range(1, len(labels) + 1), labels)
    ax.set_yscale("log")
    ax.set_ylabel("STAT latency, ms (log)")
    decrypt = stat["rsa_decrypt"]["seconds_each"] * 1000
    ax.axhline(decrypt, color="grey", linestyle="--", linewidth=1)
    ax.text(0.6, decrypt * 1.1, f"one RSA-4096 decryption ({decrypt:.1f} ms)", color="grey")
    ax.set_title("STAT latency by client and concurrency (box: quartiles; whiskers: p1–p99)")
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "bench-stat-latency.png", dpi=110)
    plt.close(fig)


def median_run(runs: list[dict], key: str) -> dict:
    """The run whose ``key`` is the median (the lower of the two middle ones)."""
    ordered = sorted(runs, key=lambda run: run[key])
    return ordered[(len(ordered) - 1) // 2]


def plot_create(document: dict, out: Path) -> None:
    create = document["create"]
    bars: list[tuple[str, list]] = []
    if create.get("bare_boot", {}).get("runs"):
        bars.append(("bare boot", median_run(create["bare_boot"]["runs"], "total")["phases"]))
    if create.get("cold", {}).get("runs"):
        bars.append(("cold CREATE", median_run(create["cold"]["runs"], "create")["phases"]))
    warm = create.get("warm") or {}
    if warm.get("available") and warm.get("runs"):
        bars.append(("warm CREATE", median_run(warm["runs"], "create")["phases"]))
    names = list(dict.fromkeys(label for _bar, phases in bars for label, _s in phases))
    colours = {name: plt.get_cmap("tab20")(i % 20) for i, name in enumerate(names)}
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.9 * len(bars) + 0.22 * len(names)))
    for row, (_bar, phases) in enumerate(bars):
        left = 0.0
        for label, seconds in phases:
            ax.barh(row, seconds, left=left, color=colours[label], edgecolor="white")
            left += seconds
        ax.text(left, row, f" {left:.2f} s", va="center")
    ax.set_yticks(range(len(bars)), [bar for bar, _phases in bars])
    ax.invert_yaxis()
    ax.set_xlabel("seconds from the request (bare boot: from the domain create)")
    ax.set_title("Where a CREATE's time goes (the median run of each; journal timestamps)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[name]) for name in names]
    ax.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "bench-create-phases.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="a bench --json file")
    parser.add_argument("outdir", type=Path, help="folder of the PNGs")
    parser.add_argument("--markdown", action="store_true", help="also print the tables")
    args = parser.parse_args(argv)
    document = json.loads(args.file.read_text())
    args.outdir.mkdir(parents=True, exist_ok=True)
    if document.get("stat"):
        plot_stat(document, args.outdir)
    if document.get("create"):
        plot_create(document, args.outdir)
    if args.markdown:
        print(report.render(document, markdown=True), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
