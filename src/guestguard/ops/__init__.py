"""Operations: health, readiness, metrics, error reports, traces and the ``guestguard`` command."""
from __future__ import annotations


def includeme(config) -> None:
    from guestguard.ops.error_reports import start_error_reports

    config.add_route("health", "/health")
    config.add_route("readyz", "/readyz")
    config.add_route("metrics", "/metrics")
    # Under the request id, over the security headers and everything below:
    # every answer is counted, an error view's too.
    config.add_tween("guestguard.ops.metrics.metrics_tween_factory",
                     under="guestguard.audit.request_id.request_id_tween_factory",
                     over="guestguard.web.security_headers_tween_factory")
    start_error_reports(config.registry.settings)
    if config.registry.settings["tracing.enabled"]:
        # Imported only here: a process that does not trace loads nothing of OpenTelemetry.
        from guestguard.ops.tracing import start_tracing

        start_tracing(config)
        # Under the request id (the span records it; log lines carry both), over
        # the metrics: the span covers everything the request did.
        config.add_tween("guestguard.ops.tracing.tracing_tween_factory",
                         under="guestguard.audit.request_id.request_id_tween_factory",
                         over="guestguard.ops.metrics.metrics_tween_factory")
    config.scan(".views")
