"""Dispatching requests to the competent service, and the agents' inbox."""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from guichet_plumbing.access_log import record_read
from guichet_plumbing.auth import SYSTEM, Kind, Principal, Role, forbidden
from guichet_plumbing.db import Database
from guichet_plumbing.envelope import Envelope
from guichet_plumbing.outbox import stage
from guichet_plumbing.problems import InvalidParam, Problem, unknown_tenant
from guichet_routing import repository, workflows
from guichet_routing.events import (
    RequestAssigned,
    RequestReceived,
    ServiceAlerted,
    StatusChanged,
)
from guichet_routing.repository import InboxFilter
from guichet_routing.rules import FieldCondition, Neighbourhood, Rule, Sample, decide
from guichet_routing.schemas import (
    AssignmentPublic,
    DryRunResult,
    DryRunSample,
    Inbox,
    InboxItem,
    NeighbourhoodPublic,
    NeighbourhoodWrite,
    RoutingTable,
    RulePublic,
    RulesWrite,
    ServicePublic,
    ServiceSettingsWrite,
    TransitionCreate,
    WorkflowPublic,
    WorkflowWrite,
)

log = logging.getLogger(__name__)


async def _routing(session: AsyncSession, tenant: str) -> tuple[list[Rule], list[Neighbourhood]]:
    return (
        [_rule(r) for r in await repository.list_rules(session, tenant)],
        [
            Neighbourhood(n.code, n.name, n.geometry)
            for n in await repository.list_neighbourhoods(session, tenant)
        ],
    )


def _rule(row: Any) -> Rule:
    conditions = row.conditions
    return Rule(
        position=row.position,
        name=row.name,
        service=row.service_code,
        procedures=_set(conditions.get("procedures")),
        channels=_set(conditions.get("channels")),
        fields=tuple(
            FieldCondition(
                field=f["field"],
                equals=f.get("equals"),
                one_of=tuple(f["one_of"]) if f.get("one_of") is not None else None,
                contains=f.get("contains"),
            )
            for f in conditions.get("fields") or ()
        ),
        neighbourhoods=_set(conditions.get("neighbourhoods")),
    )


def _set(values: list[str] | None) -> frozenset[str] | None:
    return frozenset(values) if values is not None else None


async def on_request_received(session: AsyncSession, envelope: Envelope) -> None:
    event = RequestReceived.model_validate(envelope.data)
    tenant = await repository.get_tenant(session, envelope.tenant)
    if tenant is None:
        # Intake and routing disagree on tenants: a configuration fault to fix, not
        # a reason to block every later request on this partition.
        log.error("request %s for tenant %s unknown to routing", event.request_id, envelope.tenant)
        return
    rules, places = await _routing(session, envelope.tenant)
    decision = decide(
        rules,
        tenant.default_service,
        Sample(
            procedure=event.procedure_code,
            channel=event.channel,
            payload=event.payload,
            longitude=event.location.longitude if event.location else None,
            latitude=event.location.latitude if event.location else None,
        ),
        places,
    )
    service = await repository.get_service(session, envelope.tenant, decision.service)
    assert service is not None, "rules reference existing services (foreign key)"
    why = decision.explanation()
    now = datetime.now(UTC)
    version, definition = await _current_workflow(session, envelope.tenant, event.procedure_code)
    start = workflows.status(definition, definition["initial"])
    # R28: the service's answer commitment, as a date agents can sort by.
    due_at = now + timedelta(days=service.commitment_days) if service.commitment_days else None
    await repository.insert_assignment(
        session,
        {
            "request_id": event.request_id,
            "tenant": envelope.tenant,
            "tracking_code": event.tracking_code,
            "procedure_code": event.procedure_code,
            "procedure_title": event.procedure_title or "Demande à qualifier",
            "channel": event.channel,
            "applicant_name": event.applicant.name,
            "received_at": event.received_at,
            "service_code": decision.service,
            "status": start["code"],
            "status_label": start["label"],
            "phase": start["phase"],
            "workflow_version": version,
            "due_at": due_at,
            "assigned_at": now,
            "rule": why[:1000],
            "neighbourhood": decision.neighbourhood,
        },
    )
    await repository.add_history(
        session,
        event.request_id,
        now,
        start["code"],
        f"Transmise au service : {service.name} ({why})",
    )
    await stage(
        session,
        RequestAssigned(
            request_id=event.request_id,
            tracking_code=event.tracking_code,
            procedure_code=event.procedure_code,
            channel=event.channel,
            service_code=decision.service,
            service_name=service.name,
            rule=why,
            assigned_at=now,
        ).envelope(tenant=envelope.tenant, subject=str(event.request_id), occurred_at=now),
    )
    if service.alert_mode == "immediate" and service.email:
        await stage(
            session,
            ServiceAlerted(
                request_id=event.request_id,
                tracking_code=event.tracking_code,
                service_code=decision.service,
                service_name=service.name,
                service_email=service.email,
                procedure_title=event.procedure_title or "Demande à qualifier",
                channel=event.channel,
                due_at=due_at,
            ).envelope(tenant=envelope.tenant, subject=str(event.request_id), occurred_at=now),
        )


async def put_rules(db: Database, tenant: str, body: RulesWrite) -> RoutingTable:
    """Replace the tenant's ordered rules; the next request is routed by them (R29)."""
    async with db.transaction() as session:
        if await repository.get_tenant(session, tenant) is None:
            raise unknown_tenant(tenant)
        known = {s.code for s in await repository.list_services(session, tenant)}
        places = {n.code for n in await repository.list_neighbourhoods(session, tenant)}
        faults = []
        if body.default_service not in known:
            faults.append(
                InvalidParam(
                    name="default_service", reason=f"Service « {body.default_service} » inconnu."
                )
            )
        for index, rule in enumerate(body.rules):
            if rule.service not in known:
                faults.append(
                    InvalidParam(
                        name=f"rules[{index}].service",
                        reason=f"Service « {rule.service} » inconnu.",
                    )
                )
            for code in rule.conditions.neighbourhoods or ():
                if code not in places:
                    faults.append(
                        InvalidParam(
                            name=f"rules[{index}].conditions.neighbourhoods",
                            reason=f"Quartier « {code} » inconnu : déclarez-le d'abord.",
                        )
                    )
        if faults:
            raise Problem(
                422,
                "rules-invalid",
                "Règles d'aiguillage invalides",
                "Les règles n'ont pas été enregistrées : "
                + " ".join(f"{f.name} : {f.reason}" for f in faults),
                faults,
            )
        await repository.replace_rules(
            session,
            tenant,
            body.default_service,
            [
                {
                    "position": position,
                    "name": rule.name,
                    "service_code": rule.service,
                    "conditions": rule.conditions.model_dump(mode="json", exclude_none=True),
                }
                for position, rule in enumerate(body.rules, start=1)
            ],
        )
    return await routing_table(db, tenant)


async def dry_run(db: Database, tenant: str, sample: DryRunSample) -> DryRunResult:
    """Where a request like this one would go, and why, without sending anything."""
    async with db.sessions() as session:
        row = await repository.get_tenant(session, tenant)
        if row is None:
            raise unknown_tenant(tenant)
        rules, places = await _routing(session, tenant)
        names = {s.code: s.name for s in await repository.list_services(session, tenant)}
    decision = decide(
        rules,
        row.default_service,
        Sample(
            procedure=sample.procedure,
            channel=sample.channel,
            payload=sample.payload,
            longitude=sample.longitude,
            latitude=sample.latitude,
        ),
        places,
    )
    return DryRunResult(
        service=decision.service,
        service_name=names[decision.service],
        rule=decision.rule.position if decision.rule else None,
        neighbourhood=decision.neighbourhood,
        explanation=decision.explanation(),
    )


async def put_neighbourhood(db: Database, tenant: str, code: str, body: NeighbourhoodWrite) -> bool:
    async with db.transaction() as session:
        if await repository.get_tenant(session, tenant) is None:
            raise unknown_tenant(tenant)
        return await repository.upsert_neighbourhood(
            session, tenant, code, body.name, body.geometry
        )


async def list_neighbourhoods(db: Database, tenant: str) -> list[NeighbourhoodPublic]:
    async with db.sessions() as session:
        if await repository.get_tenant(session, tenant) is None:
            raise unknown_tenant(tenant)
        rows = await repository.list_neighbourhoods(session, tenant)
    return [NeighbourhoodPublic(code=r.code, name=r.name, geometry=r.geometry) for r in rows]


def encode_cursor(received_at: datetime, request_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{received_at.isoformat()}|{request_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        stamp, request_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        when = datetime.fromisoformat(stamp)
        if when.tzinfo is None:
            raise ValueError("naive cursor")
        return when, uuid.UUID(request_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise Problem(
            400,
            "cursor-invalid",
            "Curseur invalide",
            "Le curseur de pagination est invalide ; reprenez la liste depuis le "
            "début sans paramètre cursor.",
            [InvalidParam(name="cursor", reason="Curseur illisible.")],
        ) from exc


def _inbox_scope(principal: Principal, where: InboxFilter) -> InboxFilter:
    """R21: an agent's inbox holds their services' requests, and nothing else."""
    if principal.kind is Kind.system:
        return where
    if where.service is not None:
        if not principal.handles(where.tenant, where.service):
            raise forbidden(
                f"Le service « {where.service} » n'est pas le vôtre : sa corbeille ne vous "
                "est pas accessible."
            )
        return where
    return replace(where, services=principal.services)


async def inbox(
    db: Database,
    where: InboxFilter,
    *,
    cursor: str | None,
    limit: int,
    principal: Principal = SYSTEM,
) -> Inbox:
    where = _inbox_scope(principal, where)
    after = decode_cursor(cursor) if cursor else None
    async with db.sessions() as session:
        if await repository.get_tenant(session, where.tenant) is None:
            raise unknown_tenant(where.tenant)
        names = {s.code: s.name for s in await repository.list_services(session, where.tenant)}
        if where.service is not None and where.service not in names:
            raise Problem(
                404,
                "service-unknown",
                "Service inconnu",
                f"Le service « {where.service} » n'existe pas dans cette collectivité.",
                [InvalidParam(name="service", reason="Service inconnu.")],
            )
        rows = await repository.inbox_page(session, where, after, limit + 1)
        counts = await repository.inbox_counts(session, where)
    page = rows[:limit]
    now = datetime.now(UTC)
    items = [
        InboxItem(
            request_id=r.request_id,
            tracking_code=r.tracking_code,
            procedure=r.procedure_code,
            procedure_title=r.procedure_title,
            channel=r.channel,
            applicant_name=r.applicant_name,
            service=names.get(r.service_code, r.service_code),
            status=r.status,
            status_label=r.status_label,
            phase=r.phase,
            agent=r.agent,
            neighbourhood=r.neighbourhood,
            received_at=r.received_at,
            assigned_at=r.assigned_at,
            due_at=r.due_at,
            overdue=bool(r.due_at and not r.closed and r.due_at < now),
        )
        for r in page
    ]
    next_cursor = (
        encode_cursor(page[-1].received_at, page[-1].request_id) if len(rows) > limit else None
    )
    return Inbox(items=items, next_cursor=next_cursor, counts=counts)


async def _file(
    session: AsyncSession, request_id: uuid.UUID, principal: Principal, purpose: str
) -> Any:
    """The request's assignment, locked, if `principal` handles its service (R21); journaled."""
    row = await repository.lock_assignment(session, request_id)
    if row is None:
        raise _unknown_request()
    if principal.kind is not Kind.system:
        if not principal.handles(row.tenant, row.service_code):
            # Another service's file reads as no file at all.
            raise _unknown_request()
        await record_read(
            session,
            principal,
            tenant=row.tenant,
            file=str(request_id),
            service=row.service_code,
            purpose=purpose,
        )
    return row


async def assign_agent(
    db: Database, request_id: uuid.UUID, agent: str | None, principal: Principal = SYSTEM
) -> AssignmentPublic:
    by = _by(principal)
    async with db.transaction() as session:
        row = await _file(session, request_id, principal, "attribution")
        await repository.set_agent(session, request_id, agent)
        label = f"Attribuée à {agent}" if agent else "Remise dans la corbeille du service"
        await repository.add_history(
            session, request_id, datetime.now(UTC), row.status, label, agent=by, comment=None
        )
    return await _view(db, request_id)


def _by(principal: Principal) -> str | None:
    return None if principal.kind is Kind.system else principal.subject


async def comment(
    db: Database, request_id: uuid.UUID, text: str, principal: Principal = SYSTEM
) -> None:
    """Internal note between agents: kept in the history, never shown to the citizen."""
    by = _by(principal)
    async with db.transaction() as session:
        row = await _file(session, request_id, principal, "commentaire interne")
        await repository.add_history(
            session,
            request_id,
            datetime.now(UTC),
            row.status,
            "Commentaire interne",
            agent=by,
            comment=text,
        )


async def configure_service(
    db: Database,
    tenant: str,
    code: str,
    body: ServiceSettingsWrite,
    principal: Principal = SYSTEM,
) -> None:
    if not (
        principal.kind is Kind.system
        or principal.has_role(tenant, Role.administrator)
        or (principal.has_role(tenant, Role.service_head) and code in principal.services)
    ):
        raise forbidden("Un chef de service ne règle que ses propres services.")
    async with db.transaction() as session:
        if await repository.get_tenant(session, tenant) is None:
            raise unknown_tenant(tenant)
        if await repository.get_service(session, tenant, code) is None:
            raise Problem(
                404,
                "service-unknown",
                "Service inconnu",
                f"Le service « {code} » n'existe pas dans cette collectivité.",
            )
        await repository.update_service(session, tenant, code, body.model_dump(mode="json"))


async def routing_table(db: Database, tenant: str) -> RoutingTable:
    async with db.sessions() as session:
        row = await repository.get_tenant(session, tenant)
        if row is None:
            raise unknown_tenant(tenant)
        services = await repository.list_services(session, tenant)
        rules = await repository.list_rules(session, tenant)
        places = await repository.list_neighbourhoods(session, tenant)
    return RoutingTable(
        tenant=tenant,
        default_service=row.default_service,
        services=[ServicePublic(code=s.code, name=s.name) for s in services],
        rules=[
            RulePublic(
                position=r.position, name=r.name, conditions=r.conditions, service=r.service_code
            )
            for r in rules
        ],
        neighbourhoods=[n.code for n in places],
    )


async def _current_workflow(
    session: AsyncSession, tenant: str, procedure: str | None
) -> tuple[int, dict[str, Any]]:
    row = await repository.latest_workflow(session, tenant, procedure) if procedure else None
    return (row.version, row.definition) if row else (0, workflows.DEFAULT_WORKFLOW)


async def _definition(session: AsyncSession, assignment: Any) -> dict[str, Any]:
    if assignment.workflow_version == 0 or assignment.procedure_code is None:
        return workflows.DEFAULT_WORKFLOW
    row = await repository.get_workflow(
        session, assignment.tenant, assignment.procedure_code, assignment.workflow_version
    )
    return dict(row.definition)


async def put_workflow(
    db: Database, tenant: str, procedure: str, body: WorkflowWrite
) -> WorkflowPublic:
    """A new version; requests in flight keep theirs, the next ones take this one (R29)."""
    definition = body.model_dump(mode="json", by_alias=True)
    faults = workflows.problems(definition)
    if faults:
        raise Problem(
            422,
            "workflow-invalid",
            "Circuit de traitement invalide",
            "Le circuit n'a pas été enregistré : "
            + " ".join(f"{f.name} : {f.reason}" for f in faults),
            faults,
        )
    async with db.transaction() as session:
        if await repository.get_tenant(session, tenant) is None:
            raise unknown_tenant(tenant)
        latest = await repository.latest_workflow(session, tenant, procedure)
        version = (latest.version if latest else 0) + 1
        await repository.insert_workflow(
            session,
            {
                "tenant": tenant,
                "procedure_code": procedure,
                "version": version,
                "definition": definition,
                "created_at": datetime.now(UTC),
            },
        )
    return WorkflowPublic(
        tenant=tenant, procedure=procedure, version=version, definition=definition
    )


async def get_workflow(db: Database, tenant: str, procedure: str) -> WorkflowPublic:
    async with db.sessions() as session:
        if await repository.get_tenant(session, tenant) is None:
            raise unknown_tenant(tenant)
        version, definition = await _current_workflow(session, tenant, procedure)
    return WorkflowPublic(
        tenant=tenant, procedure=procedure, version=version, definition=definition
    )


async def assignment(
    db: Database, request_id: uuid.UUID, principal: Principal = SYSTEM
) -> AssignmentPublic:
    if principal.kind is not Kind.system:
        async with db.transaction() as session:
            await _file(session, request_id, principal, "consultation du dossier")
    return await _view(db, request_id)


async def _view(db: Database, request_id: uuid.UUID) -> AssignmentPublic:
    async with db.sessions() as session:
        row = await repository.get_assignment(session, request_id)
        if row is None:
            raise _unknown_request()
        definition = await _definition(session, row)
        names = {s.code: s.name for s in await repository.list_services(session, row.tenant)}
    return AssignmentPublic(
        request_id=row.request_id,
        tracking_code=row.tracking_code,
        service=names.get(row.service_code, row.service_code),
        status=row.status,
        status_label=row.status_label,
        phase=row.phase,
        workflow_version=row.workflow_version,
        available_transitions=[
            {"code": t["code"], "label": t["label"]}
            for t in definition["transitions"]
            if row.status in t["from"]
        ],
    )


async def fire(
    db: Database, request_id: uuid.UUID, body: TransitionCreate, principal: Principal = SYSTEM
) -> AssignmentPublic:
    """An agent moves the request along its workflow; the citizen sees the new label."""
    agent = _by(principal)
    async with db.transaction() as session:
        row = await _file(session, request_id, principal, "instruction")
        definition = await _definition(session, row)
        move = workflows.transition(definition, body.transition)
        if move is None:
            raise Problem(
                422,
                "transition-unknown",
                "Transition inconnue",
                f"Le circuit de cette demande n'a pas de transition « {body.transition} ».",
                [InvalidParam(name="transition", reason="Transition inconnue.")],
            )
        if row.status not in move["from"]:
            raise Problem(
                409,
                "transition-not-allowed",
                "Transition impossible",
                f"« {move['label']} » ne peut pas être fait depuis le statut "
                f"« {row.status_label} ».",
            )
        target = workflows.status(definition, move["to"])
        now = datetime.now(UTC)
        await repository.set_status(
            session, request_id, target["code"], target["label"], target["phase"], target["final"]
        )
        await repository.add_history(
            session,
            request_id,
            now,
            target["code"],
            target["label"],
            agent=agent,
            comment=body.comment,
        )
        await stage(
            session,
            StatusChanged(
                request_id=request_id,
                tracking_code=row.tracking_code,
                from_status=row.status,
                status=target["code"],
                label=target["label"],
                phase=target["phase"],
                final=target["final"],
                transition=move["code"],
                actions=list(move["actions"]),
                changed_at=now,
            ).envelope(tenant=row.tenant, subject=str(request_id), occurred_at=now),
        )
    return await _view(db, request_id)


def _unknown_request() -> Problem:
    return Problem(
        404,
        "request-unknown",
        "Demande introuvable",
        "Aucune demande aiguillée ne porte cet identifiant.",
    )
