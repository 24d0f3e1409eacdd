"""The report of a run: the speed targets (ratios), met or not; the text and Markdown tables.

Works on the JSON document alone (``run.py`` builds it), so that a saved run can be shown
again (``bench --from FILE``) without measuring anything.
"""

from __future__ import annotations

import math
from typing import Any

from anweddol_actors.bench.stats import ratio

# (key, label, operator, target): the project's speed targets (issue 11, "Speed").
TARGETS: tuple[tuple[str, str, str, float], ...] = (
    ("warm_create_p50_project", "warm CREATE p50, project client (s)", "<", 0.5),
    ("warm_create_p50_deployed", "warm CREATE p50, deployed-style client (s)", "<", 0.5),
    ("cold_create_vs_bare_boot", "cold CREATE p50 ÷ bare boot p50", "<=", 1.1),
    ("stat_deployed_vs_project", "STAT p50 deployed-style ÷ project (1 client)", "<=", 1.2),
    ("server_cpu_vs_decrypt", "server CPU per STAT ÷ one RSA-4096 decryption", "<=", 1.3),
    ("forwarder_vs_direct", "forwarder ÷ direct loopback (MiB/s, parallel streams)", ">=", 0.6),
    ("forwarder_vs_socat", "forwarder ÷ socat (MiB/s, parallel streams)", ">=", 2.0),
)


def _get(document: dict[str, Any], *path: Any) -> Any:
    node: Any = document
    for key in path:
        if isinstance(node, dict):
            node = node.get(key)
        elif isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node):
            node = node[key]
        else:
            return None
    return node


def _load_at(document: dict[str, Any], kind: str, clients: int) -> dict[str, Any] | None:
    for load in _get(document, "stat", "loads", kind) or []:
        if load.get("clients") == clients:
            return load
    return None


def ratios(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of :data:`TARGETS` with its value (None when not measured) and
    ``met`` (None when not measured)."""
    warm = _get(document, "create", "warm") or {}
    project1 = _load_at(document, "project", 1)
    deployed1 = _load_at(document, "deployed", 1)
    values = {
        "warm_create_p50_project": _get(warm, "by_client", "project", "p50"),
        "warm_create_p50_deployed": _get(warm, "by_client", "deployed", "p50"),
        "cold_create_vs_bare_boot": ratio(
            _get(document, "create", "cold", "summary", "p50"),
            _get(document, "create", "bare_boot", "summary", "p50"),
        ),
        "stat_deployed_vs_project": ratio(
            _get(deployed1, "latency", "p50"), _get(project1, "latency", "p50")
        ),
        "server_cpu_vs_decrypt": _get(document, "stat", "server_cpu", "vs_decrypt"),
        "forwarder_vs_direct": _get(document, "forwarder", "relay_vs_direct"),
        "forwarder_vs_socat": _get(document, "forwarder", "relay_vs_socat"),
    }
    out = []
    for key, label, op, target in TARGETS:
        value = values[key]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            met = None
        else:
            met = (
                value < target if op == "<" else value <= target if op == "<=" else value >= target
            )
        out.append(
            {"key": key, "label": label, "value": value, "op": op, "target": target, "met": met}
        )
    return out


# -- formatting ------------------------------------------------------------------------------


def ms(seconds: float | None) -> str:
    """Seconds as milliseconds with one decimal, ``-`` for none."""
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def secs(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"


def num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def verdict(met: bool | None) -> str:
    return "not measured" if met is None else "met" if met else "MISSED"


def tables(document: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report as ``(title, header, rows)`` tables, every figure beside its baseline."""
    out: list[tuple[str, list[str], list[list[str]]]] = []
    stat = document.get("stat")
    if stat:
        decrypt = stat["rsa_decrypt"]
        rows = []
        for kind, loads in stat["loads"].items():
            for load in loads:
                rows.append(
                    [
                        kind,
                        str(load["clients"]),
                        num(load["per_second"], 1),
                        ms(load["latency"]["p50"]),
                        ms(load["latency"]["p99"]),
                        num(load["vs_decrypt_rate"]),
                        str(load["errors"]),
                    ]
                )
        out.append(
            (
                f"STAT (baseline: RSA-4096 OAEP decrypt {decrypt['per_second']:.0f}/s, "
                f"{decrypt['seconds_each'] * 1000:.2f} ms each)",
                ["client", "clients", "STAT/s", "p50 ms", "p99 ms", "÷ decrypt/s", "errors"],
                rows,
            )
        )
        cpu = stat["server_cpu"]
        out.append(
            (
                "Server CPU per STAT (baseline: one RSA-4096 decryption)",
                ["STATs", "CPU ms per STAT", "decrypt ms", "÷ decrypt"],
                [
                    [
                        str(cpu["count"]),
                        ms(cpu["seconds_each"]),
                        ms(decrypt["seconds_each"]),
                        num(cpu["vs_decrypt"]),
                    ]
                ],
            )
        )
    create = document.get("create")
    if create:
        rows = []
        bare = _get(create, "bare_boot", "summary") or {}
        rows.append(
            [
                "bare boot (baseline)",
                str(bare.get("n", 0)),
                secs(bare.get("p50")),
                secs(bare.get("p99")),
                "1.00",
            ]
        )
        cold = _get(create, "cold", "summary") or {}
        rows.append(
            [
                "cold CREATE",
                str(cold.get("n", 0)),
                secs(cold.get("p50")),
                secs(cold.get("p99")),
                num(ratio(cold.get("p50"), bare.get("p50"))),
            ]
        )
        warm = create.get("warm") or {}
        if warm.get("available"):
            for kind, figures in warm["by_client"].items():
                rows.append(
                    [
                        f"warm CREATE ({kind})",
                        str(figures["n"]),
                        secs(figures["p50"]),
                        secs(figures["p99"]),
                        num(ratio(figures["p50"], bare.get("p50"))),
                    ]
                )
        else:
            rows.append(["warm CREATE", "-", "not available", "-", "-"])
        destroy = _get(create, "destroy", "summary") or {}
        rows.append(
            [
                "DESTROY",
                str(destroy.get("n", 0)),
                secs(destroy.get("p50")),
                secs(destroy.get("p99")),
                "-",
            ]
        )
        out.append(
            (
                "CREATE and DESTROY (seconds)",
                ["what", "runs", "p50 s", "p99 s", "÷ bare boot"],
                rows,
            )
        )
    forwarder = document.get("forwarder")
    if forwarder:
        streams = forwarder["streams"]
        rows = []
        for name, row in forwarder["paths"].items():
            rows.append(
                [
                    name + (" (baseline)" if name != "relay" else ""),
                    num(row["mib_s_1_stream"], 0),
                    num(row[f"mib_s_{streams}_streams"], 0),
                    f"{row['setup']['p50'] * 1e6:.0f}",
                    f"{row['setup']['p99'] * 1e6:.0f}",
                ]
            )
        out.append(
            (
                f"Forwarder ({forwarder['size_mib']} MiB a run, best of {forwarder['repeat']})",
                [
                    "path",
                    "MiB/s 1 stream",
                    f"MiB/s {streams} streams",
                    "setup p50 µs",
                    "setup p99 µs",
                ],
                rows,
            )
        )
    journal = document.get("journal")
    if journal:
        out.append(
            (
                "Journal (one transaction a transition; baseline: raw sqlite3, same pragmas)",
                ["journal /s", "raw SQLite /s", "÷ raw"],
                [
                    [
                        num(journal["transitions_per_second"], 0),
                        num(journal["raw_sqlite_per_second"], 0),
                        num(journal["vs_raw"]),
                    ]
                ],
            )
        )
    idle = document.get("idle_connections")
    if idle and (idle.get("stat_while_open") or {}).get("n"):
        figures = idle["stat_while_open"]
        out.append(
            (
                f"STAT with {idle['held']} idle connections open (baseline: STAT p50, 1 client)",
                ["STATs", "p50 ms", "max ms", "baseline p50 ms"],
                [
                    [
                        str(figures["n"]),
                        ms(figures["p50"]),
                        ms(figures["max"]),
                        ms(_get(_load_at(document, "project", 1), "latency", "p50")),
                    ]
                ],
            )
        )
    live = _get(document, "create", "live_container")
    if idle or live:
        rows = []
        if idle:
            base = idle["before"]
            rows.append(
                [
                    f"idle connection (×{idle['held']})",
                    num(idle["threads_per_connection"]),
                    num(idle["rss_kib_per_connection"], 1),
                    f"{base['threads']} threads, {base['rss_kib'] / 1024:.1f} MiB",
                ]
            )
        if live:
            base = live["server_before"]
            qemu = live.get("qemu_rss_kib")
            rows.append(
                [
                    "live container (server)",
                    str(live["server_threads_per_container"]),
                    str(live["server_rss_kib_per_container"]),
                    f"{base['threads']} threads, {base['rss_kib'] / 1024:.1f} MiB",
                ]
            )
            rows.append(
                [
                    "live container (its QEMU)",
                    "-" if live.get("qemu_threads") is None else str(live["qemu_threads"]),
                    "-" if qemu is None else str(qemu),
                    "-",
                ]
            )
        out.append(
            (
                "Memory and threads (baseline: the same server with none)",
                ["per", "threads", "RSS KiB", "server before"],
                rows,
            )
        )
    rows = [
        [r["label"], num(r["value"]), f"{r['op']} {r['target']:g}", verdict(r["met"])]
        for r in ratios(document)
    ]
    out.append(("Targets", ["figure", "value", "target", ""], rows))
    errors = document.get("errors") or {}
    if errors:
        out.append(
            ("Sections that failed", ["section", "error"], [[k, v] for k, v in errors.items()])
        )
    return out


def text_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [title]
    for row in [header, *rows]:
        lines.append(
            "  "
            + "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)
            ).rstrip()
        )
    return "\n".join(lines)


def markdown_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def render(document: dict[str, Any], markdown: bool = False) -> str:
    """The whole report as text (or Markdown)."""
    host = document.get("host") or {}
    head = (
        f"anweddol_actors {document.get('version', '?')} bench"
        f"{' --quick' if document.get('quick') else ''}, {document.get('started', '?')}; "
        f"{host.get('cores', '?')} cores"
    )
    if host.get("domain_type"):
        head += f", domain type {host['domain_type']}"
    form = markdown_table if markdown else text_table
    parts = [head] + [form(*table) for table in tables(document)]
    return "\n\n".join(parts) + "\n"
