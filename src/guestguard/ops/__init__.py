"""Operations: health, readiness, metrics, error reports and the ``guestguard`` command."""
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
    config.scan(".views")
