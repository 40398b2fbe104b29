"""Consultations of State data under rule R16: purpose binding, consent, and a trace for each call.

One commit per request: the audit row (and its event) is written after the
provider answered, in a single transaction, and the data is only returned once
that transaction committed. So no data leaves the gateway untraced, and a
refused or failed call is traced like a successful one.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from guichet_gateway.events import ConsultationRecorded
from guichet_gateway.policy import (
    ALLOWED_PURPOSES,
    FORBIDDEN_PURPOSES,
    Dataset,
    Outcome,
    allowed_purposes_text,
)
from guichet_gateway.providers import (
    IdentityNotFound,
    IdentityRejected,
    ProviderError,
    ProviderFailure,
    ProviderThrottled,
    ProviderTimeout,
    QuotientFamilialProvider,
    QuotientFamilialRequest,
)
from guichet_gateway.repository import ConsultationRepository, Position
from guichet_gateway.schemas import AuditEntry, AuditPage, QuotientFamilialResponse
from guichet_plumbing.db import Database
from guichet_plumbing.observability import ServiceMetrics
from guichet_plumbing.outbox import stage
from guichet_plumbing.problems import InvalidParam, Problem

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Caller:
    """Who consults, for whom and why: everything the trace keeps."""

    tenant: str
    procedure: str
    purpose: str
    consent: bool
    recipient: str
    agent_id: str = ANONYMOUS


@dataclass(frozen=True)
class _Verdict:
    outcome: Outcome
    problem: Problem | None
    upstream_code: str | None = None


class GatewayService:
    def __init__(
        self,
        db: Database,
        provider: QuotientFamilialProvider,
        metrics: ServiceMetrics,
        *,
        retry_after: int,
    ) -> None:
        self.db = db
        self.provider = provider
        self.retry_after = retry_after
        self.consultations = metrics.counter(
            "guichet_gateway_consultations",
            "State data consultations, by dataset and outcome (every one is traced).",
            ("dataset", "outcome"),
        )

    async def quotient_familial(
        self, caller: Caller, request: QuotientFamilialRequest
    ) -> QuotientFamilialResponse:
        refusal = self._refusal(caller)
        if refusal is not None:
            await self._record(caller, Dataset.QUOTIENT_FAMILIAL, None, refusal)
            assert refusal.problem is not None
            raise refusal.problem

        try:
            data = await self.provider.fetch(request)
        except ProviderError as exc:
            verdict = self._provider_verdict(exc)
        except Exception:
            # A crashing adapter is still a failed call to trace, and never the agent's fault.
            log.exception("quotient familial provider %s crashed", self.provider.name)
            verdict = self._provider_verdict(ProviderFailure())
        else:
            consultation_id = await self._record(
                caller,
                Dataset.QUOTIENT_FAMILIAL,
                self.provider.name,
                _Verdict(Outcome.SUCCESS, None),
            )
            return QuotientFamilialResponse(
                consultation_id=consultation_id, provider=self.provider.name, **dict(data)
            )

        await self._record(caller, Dataset.QUOTIENT_FAMILIAL, self.provider.name, verdict)
        assert verdict.problem is not None
        raise verdict.problem

    async def audit_page(
        self, *, tenant: str, procedure: str | None, cursor: str | None, limit: int
    ) -> AuditPage:
        after = decode_cursor(cursor) if cursor is not None else None
        # A read: no write lock (SQLite's transaction() takes one up front).
        async with self.db.sessions() as session:
            rows = await ConsultationRepository(session).page(
                tenant=tenant, procedure=procedure, after=after, limit=limit + 1
            )
        items = [AuditEntry.model_validate(dict(row._mapping)) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = items[-1]
            next_cursor = encode_cursor(Position(last.occurred_at, last.id))
        return AuditPage(items=items, next_cursor=next_cursor)

    # Decisions ----------------------------------------------------------------------------

    def _refusal(self, caller: Caller) -> _Verdict | None:
        if caller.purpose in FORBIDDEN_PURPOSES:
            label = FORBIDDEN_PURPOSES[caller.purpose]
            return _Verdict(
                Outcome.PURPOSE_FORBIDDEN,
                Problem(
                    403,
                    "purpose-forbidden",
                    "Finalité interdite",
                    "Les données obtenues auprès d'API Particulier ne peuvent pas servir à la "
                    f"finalité « {label} » : elles ne servent qu'à informer l'usager d'un droit "
                    "et à le lui accorder (règle R16). Finalités admises : "
                    f"{allowed_purposes_text()}.",
                ),
            )
        if caller.purpose not in ALLOWED_PURPOSES:
            return _Verdict(
                Outcome.PURPOSE_UNKNOWN,
                Problem(
                    422,
                    "purpose-unknown",
                    "Finalité inconnue",
                    "La finalité indiquée n'est pas reconnue. Choisissez l'une des finalités "
                    f"admises : {allowed_purposes_text()}.",
                    invalid_params=[
                        InvalidParam(
                            name="purpose",
                            reason=f"Valeurs possibles : {', '.join(ALLOWED_PURPOSES)}.",
                        )
                    ],
                ),
            )
        if not caller.consent:
            return _Verdict(
                Outcome.CONSENT_MISSING,
                Problem(
                    403,
                    "consent-missing",
                    "Consentement de l'usager absent",
                    "Le quotient familial ne peut être demandé qu'avec le consentement de "
                    "l'usager, enregistré dans son dossier (règle R16). Recueillez-le puis "
                    "renvoyez la "
                    "demande avec consent=true, ou demandez-lui une attestation de quotient "
                    "familial.",
                ),
            )
        return None

    def _provider_verdict(self, exc: ProviderError) -> _Verdict:
        code = exc.upstream_code
        if isinstance(exc, IdentityNotFound):
            return _Verdict(
                Outcome.NOT_FOUND,
                Problem(
                    404,
                    "quotient-familial-not-found",
                    "Allocataire introuvable",
                    "Aucun dossier de la CAF ou de la MSA ne correspond à cette identité. Vérifiez "
                    "les noms, prénoms, sexe, date et lieu de naissance tels qu'à l'état civil, ou "
                    "demandez à l'usager une attestation de quotient familial.",
                ),
                code,
            )
        if isinstance(exc, IdentityRejected):
            return _Verdict(
                Outcome.IDENTITY_REJECTED,
                Problem(
                    422,
                    "identity-rejected",
                    "État civil refusé par le fournisseur",
                    "Le fournisseur de données a refusé l'état civil transmis comme mal formé. "
                    "Vérifiez l'orthographe des noms et prénoms et le code du lieu de naissance.",
                ),
                code,
            )
        if isinstance(exc, ProviderThrottled):
            seconds = exc.retry_after or self.retry_after
            return _Verdict(
                Outcome.RATE_LIMITED,
                Problem(
                    429,
                    "provider-rate-limited",
                    "Trop de demandes",
                    "Le service de l'État qui fournit le quotient familial limite le nombre de "
                    f"demandes et l'a atteint. Réessayez dans {seconds} secondes.",
                    headers={"Retry-After": str(seconds)},
                ),
                code,
            )
        if isinstance(exc, ProviderTimeout):
            return _Verdict(
                Outcome.UPSTREAM_TIMEOUT,
                Problem(
                    504,
                    "provider-timeout",
                    "Fournisseur de données indisponible",
                    "Le service de l'État qui fournit le quotient familial n'a pas répondu à "
                    "temps. Réessayez dans quelques minutes ; en attendant, l'usager peut "
                    "fournir une "
                    "attestation de quotient familial.",
                ),
                code,
            )
        return _Verdict(
            Outcome.UPSTREAM_ERROR,
            Problem(
                502,
                "provider-error",
                "Fournisseur de données en erreur",
                "Le service de l'État qui fournit le quotient familial a renvoyé une réponse "
                "inexploitable. Réessayez plus tard ; en attendant, l'usager peut fournir une "
                "attestation de quotient familial.",
            ),
            code,
        )

    # The one commit point ------------------------------------------------------------------

    async def _record(
        self, caller: Caller, dataset: Dataset, provider: str | None, verdict: _Verdict
    ) -> uuid.UUID:
        consultation_id = uuid.uuid4()
        now = datetime.now(UTC)
        status_code = verdict.problem.status if verdict.problem is not None else 200
        event = ConsultationRecorded(
            consultation_id=consultation_id,
            dataset=dataset,
            procedure=caller.procedure,
            purpose=caller.purpose,
            consent=caller.consent,
            agent_id=caller.agent_id,
            provider=provider,
            outcome=verdict.outcome,
            status_code=status_code,
        )
        async with self.db.transaction() as session:
            await ConsultationRepository(session).add(
                id=consultation_id,
                occurred_at=now,
                tenant=caller.tenant,
                procedure=caller.procedure,
                purpose=caller.purpose,
                consent=caller.consent,
                agent_id=caller.agent_id,
                recipient=caller.recipient,
                dataset=dataset.value,
                provider=provider,
                outcome=verdict.outcome.value,
                status_code=status_code,
                upstream_code=verdict.upstream_code,
            )
            await stage(
                session,
                event.envelope(tenant=caller.tenant, subject=str(consultation_id), occurred_at=now),
            )
        self.consultations.labels(dataset.value, verdict.outcome.value).inc()
        return consultation_id


# Cursor: opaque to clients, a (occurred_at, id) position to us.


def encode_cursor(position: Position) -> str:
    raw = json.dumps({"t": position.occurred_at.isoformat(), "id": str(position.id)})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = json.loads(base64.urlsafe_b64decode(padded.encode()))
        occurred_at = datetime.fromisoformat(raw["t"])
        if occurred_at.tzinfo is None:
            raise ValueError("naive")
        return Position(occurred_at, uuid.UUID(raw["id"]))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise Problem(
            400,
            "cursor-invalid",
            "Curseur invalide",
            "Le curseur de pagination n'est pas reconnu. Reprenez la liste depuis le "
            "début, sans paramètre cursor.",
        ) from exc
