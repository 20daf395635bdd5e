"""The prometheus_client collector: each scrape (``collect``) reads every target once."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from vmtop.exporter.families import Families
from vmtop.exporter.targets import Targets


class SnapshotCollector:
    """Registered in the exporter's own registry: nothing is read between scrapes."""

    def __init__(self, targets: Targets) -> None:
        self.targets = targets

    def collect(self) -> Iterator[Metric]:
        observations = self.targets.observe()
        families = Families()
        for o in observations:
            families.add(o)
        yield from families.all()
        yield GaugeMetricFamily(
            "vmtop_exporter_targets", "Targets read by this scrape", value=len(observations)
        )
