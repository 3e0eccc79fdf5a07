"""The agent's ``/metrics``: its status document as Prometheus metric families, via prometheus-client.

Nothing here runs per event: the agent keeps plain integer counters
(``stats.Stats``), and a custom collector turns the status document into
metric families only when Prometheus scrapes.  Names follow Prometheus'
conventions (https://prometheus.io/docs/practices/naming/): the
``doow_track_`` prefix, base units in names (``_seconds``, ``_bytes``),
``_total`` on counters, and what varies in labels (``source``, ``name``,
``outcome``).  ``monitoring/`` holds the alerting rules and the Grafana
dashboard built on these names; ``tests/agent/test_metrics.py`` checks the
three against each other and against ``promtool``.
"""

from __future__ import annotations

import calendar
import time
from typing import Callable, Iterator, List, Optional, Tuple

from prometheus_client import ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

# The classic text format: every name here is a legacy Prometheus name, so it is also valid 1.0.0 text,
# and Prometheus servers and promtool of any age read it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=value)


def _labelled(family: Metric, samples: List[Tuple[List[str], float]]) -> Metric:
    for labels, value in samples:
        family.add_metric(labels, value)
    return family


def _timestamp(iso: Optional[str]) -> Optional[float]:
    return None if iso is None else float(calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ")))


class StatusCollector:
    """Reads ``document()`` (the ``/status`` JSON of ``health.status_document``) at each scrape."""

    def __init__(self, document: Callable[[], dict]) -> None:
        self._document = document

    def collect(self) -> Iterator[Metric]:
        status = self._document()
        yield from self._agent(status)
        yield from self._events(status)
        yield from self._delivery(status)
        yield from self._spool(status["spool"])
        yield from self._files(status["files"])

    @staticmethod
    def _agent(status: dict) -> Iterator[Metric]:
        yield InfoMetricFamily("doow_track_build", "The agent's version.", value={"version": status["version"]})
        yield _gauge("doow_track_start_time_seconds", "When the agent started (Unix time).",
                     time.time() - status["uptime_seconds"])
        yield _gauge("doow_track_ready", "1 when /readyz answers 200.", int(status["ready"]))
        yield _gauge("doow_track_config_generation", "Config generation: 1 at start, +1 per applied reload.",
                     status["generation"])
        reload = status["reload"]
        yield _gauge("doow_track_config_last_reload_successful",
                     "0 when the last reload was refused (the running config is kept), else 1.",
                     int(reload["ok"] is not False))
        yield CounterMetricFamily("doow_track_config_reloads", "Reloads attempted (SIGHUP) since start.",
                                  value=reload["attempts"])

    @staticmethod
    def _events(status: dict) -> Iterator[Metric]:
        received = CounterMetricFamily(
            "doow_track_received_events", "Lines from each source: accepted into the spool, or invalid.",
            labels=["source", "name", "outcome"])
        for figures in status["sources"]:
            for outcome in ("accepted", "invalid"):
                received.add_metric([figures["source"], figures["name"], outcome], figures[outcome])
        yield received
        counters = status["counters"]
        yield _labelled(CounterMetricFamily("doow_track_sent_events", "Events the API answered for, by outcome.",
                                            labels=["outcome"]),
                        [(["delivered"], counters["delivered"]), (["rejected"], counters["rejected"])])
        yield CounterMetricFamily("doow_track_dead_lettered_events",
                                  "Events the API rejected for good and moved to the dead-letter table.",
                                  value=counters["dead_lettered"])

    @staticmethod
    def _delivery(status: dict) -> Iterator[Metric]:
        counters = status["counters"]
        yield CounterMetricFamily("doow_track_delivery_requests", "Ingest requests sent.", value=counters["requests"])
        yield CounterMetricFamily("doow_track_delivery_retries", "Batches sent again after a failed request.",
                                  value=counters["retries"])
        yield _gauge("doow_track_delivery_failing", "1 while the last ingest request failed (events stay spooled).",
                     int(status["failing"]))
        yield _gauge("doow_track_key_rejected", "1 while the API rejects the key (401/403).",
                     int(status["key_rejected"]))
        for name, help_text, iso in (
                ("doow_track_last_success_timestamp_seconds", "When a delivery last succeeded (Unix time).",
                 status["last_success"]),
                ("doow_track_last_error_timestamp_seconds", "When a delivery last went wrong (Unix time).",
                 status["last_error_at"])):
            stamp = _timestamp(iso)
            if stamp is not None:
                yield _gauge(name, help_text, stamp)

    @staticmethod
    def _spool(spool: dict) -> Iterator[Metric]:
        yield _gauge("doow_track_spool_events", "Events in the spool, not yet delivered.", spool["events"])
        yield _gauge("doow_track_spool_bytes", "Bytes counted against spool.maxBytes.", spool["bytes"])
        yield _gauge("doow_track_spool_max_bytes", "spool.maxBytes: beyond it new events are refused.",
                     spool["max_bytes"])
        yield _gauge("doow_track_spool_full", "1 while new events are refused.", int(spool["full"]))
        yield _gauge("doow_track_spool_oldest_event_age_seconds", "Age of the oldest spooled event (0 when empty).",
                     float(spool["oldest_age_seconds"] or 0.0))
        yield _gauge("doow_track_dead_letter_events", "Events in the dead-letter table (see `deadletter`).",
                     spool["dead_letters"])

    @staticmethod
    def _files(files: List[dict]) -> Iterator[Metric]:
        read = GaugeMetricFamily("doow_track_file_read_bytes", "How far each tailed file is read.", labels=["name"])
        size = GaugeMetricFamily("doow_track_file_size_bytes", "Each tailed file's size.", labels=["name"])
        for figures in files:
            read.add_metric([figures["path"]], figures["offset"])
            if figures["size"] is not None:
                size.add_metric([figures["path"]], figures["size"])
        yield read
        yield size


def registry(document: Callable[[], dict]) -> CollectorRegistry:
    """The agent's metrics, plus the standard ``process_*`` ones (memory, CPU, descriptors)."""
    collectors = CollectorRegistry(auto_describe=False)
    collectors.register(StatusCollector(document))
    ProcessCollector(registry=collectors)
    return collectors


def exposition(collectors: CollectorRegistry) -> bytes:
    """One scrape's body in ``CONTENT_TYPE``."""
    return generate_latest(collectors)
