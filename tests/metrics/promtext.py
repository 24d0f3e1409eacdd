"""Reading ``/metrics`` in the tests: over real HTTP, parsed by the Prometheus client's own
parser (never by hand)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from anweddol_actors.web.server import WebServer


def scrape(web: WebServer, local_address: str | None = None) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=local_address) if local_address else None
    with httpx.Client(transport=transport, timeout=10) as http:
        return http.get(web.url + "/metrics")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}``, parsed by the Prometheus client's parser."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]
