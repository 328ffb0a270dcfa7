"""``/metrics``: Prometheus text, computed from the read model at each scrape,
plus what this process's step runner counted.

- ``vidpipe_queues{status}``: queues by status;
- ``vidpipe_step_duration_seconds{step}``: a summary (count, sum) of completed steps' durations;
- ``vidpipe_step_retries_total{step}``: transient failures retried, by step;
- ``vidpipe_notification_deliveries_total{channel,outcome}``: push attempts;
- ``vidpipe_notifications_total{kind}``: in-app notifications;
- ``vidpipe_follower_lag_events{follower}``: events a follower of the log has yet to apply;
- ``vidpipe_follower_leading{follower}``: 1 where this process leads the follower (applies, publishes),
  0 where it stands by (:mod:`projections.leadership`); one process in all shows 1 for each follower;
- ``vidpipe_step_deliveries_total{step,received}``: step deliveries this process received, by how
  (:data:`handlers.step_runner.Received`: ``started``/``redelivered`` ran the work, the others
  did not; ``completed`` is a delivery for a step already completed). Counted since the process
  started, as Prometheus counters are.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import get_args

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from api.wiring import Core
from domain.queue import STEPS
from handlers.step_runner import Received, StepRunner
from projections.follower import EventFollower

QUEUE_STATUSES = ("pending", "processing", "completed", "failed", "cancelled")


class ReadModelCollector(Collector):
    def __init__(self, core: Core, followers: Sequence[EventFollower]) -> None:
        self.core = core
        self.followers = followers

    def collect(self) -> Iterator[Metric]:
        view = self.core.view
        queues = GaugeMetricFamily("vidpipe_queues", "Processing queues by status", labels=["status"])
        counts = {r["status"]: r["n"] for r in view.fetchall(
            "SELECT status, COUNT(*) AS n FROM video_processing_queue GROUP BY status")}
        for status in QUEUE_STATUSES:
            queues.add_metric([status], counts.get(status, 0))
        yield queues

        steps = view.fetchall(
            "SELECT step, SUM(retries) AS retries, "
            "SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) AS done, "
            "SUM(CASE WHEN status = 'completed' THEN duration_seconds ELSE 0 END) AS seconds "
            "FROM video_processing_steps GROUP BY step")
        by_step = {r["step"]: r for r in steps}
        durations = SummaryMetricFamily(
            "vidpipe_step_duration_seconds", "Duration of completed steps", labels=["step"])
        retries = CounterMetricFamily("vidpipe_step_retries", "Step attempts retried after a transient failure",
                                      labels=["step"])
        for step in sorted(set(STEPS) | set(by_step)):
            row = by_step.get(step, {})
            durations.add_metric([step], count_value=int(row.get("done") or 0), sum_value=float(row.get("seconds") or 0))
            retries.add_metric([step], int(row.get("retries") or 0))
        yield durations
        yield retries

        deliveries = CounterMetricFamily("vidpipe_notification_deliveries", "Push notification attempts",
                                         labels=["channel", "outcome"])
        for r in view.fetchall("SELECT channel, outcome, COUNT(*) AS n FROM notification_deliveries "
                               "GROUP BY channel, outcome"):
            deliveries.add_metric([r["channel"], r["outcome"]], int(r["n"]))
        yield deliveries

        notifications = CounterMetricFamily("vidpipe_notifications", "In-app notifications", labels=["kind"])
        for r in view.fetchall("SELECT kind, COUNT(*) AS n FROM notifications GROUP BY kind"):
            notifications.add_metric([r["kind"]], int(r["n"]))
        yield notifications

        lag = GaugeMetricFamily("vidpipe_follower_lag_events", "Events of the log a follower has yet to apply",
                                labels=["follower"])
        last = self.core.app.recorder.max_notification_id() or 0
        for follower in self.followers:
            lag.add_metric([follower.key], max(0, last - follower.position))
        yield lag

        leading = GaugeMetricFamily("vidpipe_follower_leading",
                                    "1 where this process leads the follower, 0 where it stands by",
                                    labels=["follower"])
        for follower in self.followers:
            leads = getattr(follower, "leading", None)
            if leads is not None:
                leading.add_metric([follower.key], int(bool(leads)))
        yield leading


class StepDeliveryCollector(Collector):
    """The step runner's count of deliveries, by step and how each was received."""

    def __init__(self, runner: StepRunner) -> None:
        self.runner = runner

    def collect(self) -> Iterator[Metric]:
        deliveries = CounterMetricFamily(
            "vidpipe_step_deliveries", "Step deliveries received by this process, by how they were received",
            labels=["step", "received"])
        counts = dict(self.runner.deliveries)
        for step in STEPS:
            for how in get_args(Received):
                deliveries.add_metric([step, how], counts.get((step, how), 0))
        yield deliveries


def metrics_registry(
    core: Core, followers: Sequence[EventFollower], runner: StepRunner | None = None
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReadModelCollector(core, followers))
    if runner is not None:
        registry.register(StepDeliveryCollector(runner))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
