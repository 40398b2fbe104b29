"""Builds the gateway app; standalone, or mounted under `/gateway` by the launcher."""

from __future__ import annotations

from fastapi import FastAPI

from guichet_gateway.api import router
from guichet_gateway.events import ConsultationRecorded
from guichet_gateway.models import metadata
from guichet_gateway.providers import QuotientFamilialProvider, SandboxQuotientFamilialProvider
from guichet_gateway.service import GatewayService
from guichet_gateway.settings import GatewaySettings
from guichet_plumbing.bus import Bus
from guichet_plumbing.runtime import ServiceRuntime, create_service_app


def build_provider(settings: GatewaySettings) -> QuotientFamilialProvider:
    # Only the sandbox exists; an API Particulier client will be chosen here by `provider`.
    return SandboxQuotientFamilialProvider.from_directory(settings.sandbox_cases_dir)


def create_app(
    settings: GatewaySettings | None = None,
    *,
    bus: Bus | None = None,
    provider: QuotientFamilialProvider | None = None,
) -> FastAPI:
    """`provider` replaces the one `settings` selects (tests use fakes of the port)."""
    settings = settings if settings is not None else GatewaySettings()
    runtime = ServiceRuntime("gateway", settings, metadata, bus)
    runtime.publishes([ConsultationRecorded.event_type])
    service = GatewayService(
        runtime.db,
        provider or build_provider(settings),
        runtime.metrics,
        retry_after=settings.rate_limit_retry_after,
    )
    app = create_service_app(
        runtime,
        title="Guichet — passerelle API Particulier",
        description="Quotient familial CAF ou MSA des usagers, obtenu auprès de l'État avec leur "
        "consentement, pour une démarche et une finalité admises ; chaque consultation est "
        "tracée (règle R16).",
        routers=[router],
    )
    app.state.gateway_service = service
    return app
