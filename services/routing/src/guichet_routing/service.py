"""Dispatching requests to the competent service, and the agents' inbox."""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from guichet_plumbing.access_log import record_read
from guichet_plumbing.auth import SYSTEM, Kind, Principal, Role, forbidden
from guichet_plumbing.db import Database
from guichet_plumbing.envelope import Envelope
from guichet_plumbing.outbox import stage
from guichet_plumbing.problems import InvalidParam, Problem, unknown_tenant
from guichet_routing import incidents, repository, workflows
from guichet_routing.events import (
    DigestItem,
    PiecesReceived,
    PiecesRequested,
    RequestAssigned,
    RequestReceived,
    ServiceAlerted,
    ServiceDigest,
    StatusChanged,
    TransferRefused,
    TransferRequested,
)
from guichet_routing.repository import InboxFilter
from guichet_routing.rules import Neighbourhood, Rule, Sample, decide, field_condition
from guichet_routing.schemas import (
    AssignmentPublic,
    DryRunResult,
    DryRunSample,
    HistoryEntry,
    Inbox,
    InboxItem,
    NeighbourhoodPublic,
    NeighbourhoodWrite,
    RoutingTable,
    RulePublic,
    RulesWrite,
    ServicePublic,
    ServiceSettingsWrite,
    TeamPublic,
    TeamWrite,
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
        fields=tuple(field_condition(f) for f in conditions.get("fields") or ()),
        neighbourhoods=_set(conditions.get("neighbourhoods")),
        team=row.team_code,
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
            "team_code": decision.team,
            "payload": event.payload,
            "status_since": now,
            "auto_at": workflows.timer_at(definition, start["code"], now),
        },
    )
    await repository.add_history(
        session,
        event.request_id,
        now,
        start["code"],
        f"Transmise au service : {service.name} ({why})",
    )
    await _announce(session, envelope.tenant, event, service, decision.team, why, now)
    # R30: a report of a known problem joins its incident; the service was alerted already.
    known_problem = incidents.is_report(event) and await incidents.file_report(
        session, envelope.tenant, event, event.payload
    )
    await _settle(session, event.request_id, definition, now)
    if service.alert_mode == "immediate" and service.email and not known_problem:
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
        crews = {(t.service_code, t.code) for t in await repository.list_teams(session, tenant)}
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
            elif rule.team is not None and (rule.service, rule.team) not in crews:
                faults.append(
                    InvalidParam(
                        name=f"rules[{index}].team",
                        reason=f"Équipe « {rule.team} » inconnue au service « {rule.service} » : "
                        "déclarez-la d'abord.",
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
                    "team_code": rule.team,
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
            raise _unknown_service(where.service)
        if where.team is not None and (where.service, where.team) not in {
            (t.service_code, t.code) for t in await repository.list_teams(session, where.tenant)
        }:
            raise Problem(
                404,
                "team-unknown",
                "Équipe inconnue",
                f"L'équipe « {where.team} » n'existe pas"
                + (
                    f" au service « {where.service} »."
                    if where.service
                    else " : précisez son service."
                ),
                [InvalidParam(name="team", reason="Équipe inconnue.")],
            )
        rows = await repository.inbox_page(session, where, after, limit + 1)
        counts = await repository.inbox_counts(session, where)
        linked = await repository.incidents_of(session, [r.request_id for r in rows[:limit]])
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
            team=r.team_code,
            status=r.status,
            status_label=r.status_label,
            phase=r.phase,
            agent=r.agent,
            neighbourhood=r.neighbourhood,
            received_at=r.received_at,
            assigned_at=r.assigned_at,
            due_at=r.due_at,
            overdue=bool(r.due_at and not r.closed and r.due_at < now),
            **incidents.inbox_fields(linked.get(r.request_id)),
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
    return await _view(db, request_id, principal)


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


def _may_configure(principal: Principal, tenant: str, code: str) -> None:
    """The administrator configures every service; a service head, their own only."""
    if not (
        principal.kind is Kind.system
        or principal.has_role(tenant, Role.administrator)
        or (principal.has_role(tenant, Role.service_head) and code in principal.services)
    ):
        raise forbidden("Un chef de service ne règle que ses propres services.")


async def configure_service(
    db: Database,
    tenant: str,
    code: str,
    body: ServiceSettingsWrite,
    principal: Principal = SYSTEM,
    now: datetime | None = None,
) -> None:
    _may_configure(principal, tenant, code)
    async with db.transaction() as session:
        row = await repository.get_tenant(session, tenant)
        if row is None:
            raise unknown_tenant(tenant)
        # Locked: the mode it had decides whether digests restart at the next slot, and a
        # change committed meanwhile must be the one read.
        current = await repository.get_service(session, tenant, code, for_update=True)
        if current is None:
            raise _unknown_service(code)
        values = body.model_dump(mode="json")
        values["digest_time"] = body.digest_time.strftime("%H:%M")
        if body.alert_mode == "digest" and current.alert_mode != "digest":
            # Digests start at the next scheduled instant, not with a past one at once.
            values["last_digest_at"] = digest_slot(
                now or datetime.now(UTC), row.timezone, body.digest_period, values["digest_time"]
            )
        await repository.update_service(session, tenant, code, values)


async def routing_table(db: Database, tenant: str) -> RoutingTable:
    async with db.sessions() as session:
        row = await repository.get_tenant(session, tenant)
        if row is None:
            raise unknown_tenant(tenant)
        services = await repository.list_services(session, tenant)
        rules = await repository.list_rules(session, tenant)
        places = await repository.list_neighbourhoods(session, tenant)
        crews = await repository.list_teams(session, tenant)
    return RoutingTable(
        tenant=tenant,
        default_service=row.default_service,
        services=[ServicePublic(code=s.code, name=s.name) for s in services],
        teams=[TeamPublic(service=t.service_code, code=t.code, name=t.name) for t in crews],
        rules=[
            RulePublic(
                position=r.position,
                name=r.name,
                conditions=r.conditions,
                service=r.service_code,
                team=r.team_code,
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
    definition = body.model_dump(mode="json", by_alias=True, exclude_none=True)
    faults = workflows.problems(definition)
    if faults:
        raise _invalid_workflow(faults)
    async with db.transaction() as session:
        if await repository.get_tenant(session, tenant) is None:
            raise unknown_tenant(tenant)
        faults = await _unknown_in_workflow(session, tenant, definition)
        if faults:
            raise _invalid_workflow(faults)
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
    return await _view(db, request_id, principal)


async def _view(db: Database, request_id: uuid.UUID, principal: Principal) -> AssignmentPublic:
    async with db.sessions() as session:
        row = await repository.get_assignment(session, request_id)
        if row is None:
            raise _unknown_request()
        definition = await _definition(session, row)
        names = {s.code: s.name for s in await repository.list_services(session, row.tenant)}
        # The file's history, comments included, travels with it: its service reads it
        # all; an agent whose act just sent it to another service no longer does (R21).
        handles = principal.kind is Kind.system or principal.handles(row.tenant, row.service_code)
        history = await repository.history(session, request_id) if handles else []
    return AssignmentPublic(
        request_id=row.request_id,
        tracking_code=row.tracking_code,
        service=names.get(row.service_code, row.service_code),
        team=row.team_code,
        agent=row.agent,
        status=row.status,
        status_label=row.status_label,
        phase=row.phase,
        workflow_version=row.workflow_version,
        available_transitions=[
            {"code": t["code"], "label": t["label"]}
            for t in workflows.manual(definition, row.status)
        ],
        history=[HistoryEntry.model_validate(h._mapping) for h in history],
    )


async def fire(
    db: Database,
    request_id: uuid.UUID,
    body: TransitionCreate,
    principal: Principal = SYSTEM,
    now: datetime | None = None,
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
        actor = workflows.Actor(agent, frozenset(principal.roles), principal.services)
        refused = workflows.refusal(move, actor)
        if refused:
            raise Problem(403, "transition-forbidden", "Transition non autorisée", refused)
        if row.status not in move["from"]:
            raise Problem(
                409,
                "transition-not-allowed",
                "Transition impossible",
                f"« {move['label']} » ne peut pas être fait depuis le statut "
                f"« {row.status_label} ».",
            )
        asked = workflows.action(move, "request_pieces")
        if asked is not None and not (body.pieces or asked.get("pieces")):
            raise Problem(
                422,
                "pieces-missing",
                "Pièces à demander",
                f"« {move['label']} » demande des pièces à l'usager : indiquez lesquelles.",
                [InvalidParam(name="pieces", reason="Indiquez au moins une pièce.")],
            )
        await _apply(
            session,
            row,
            definition,
            move,
            now or datetime.now(UTC),
            agent=agent,
            comment=body.comment,
            pieces=body.pieces,
        )
    return await _view(db, request_id, principal)


async def _apply(
    session: AsyncSession,
    row: Any,
    definition: dict[str, Any],
    move: dict[str, Any],
    now: datetime,
    *,
    agent: str | None,
    comment: str | None,
    pieces: list[str] | None = None,
    depth: int = 0,
) -> None:
    """Fire `move` on the locked `row`: new status, history, event, then its actions, then
    whatever fires by itself on entering the new status."""
    target = workflows.status(definition, move["to"])
    incident = await incidents.led_by(session, row) if target["final"] else None
    actions = workflows.action_types(move)

    async def record(changed: Any, note: str | None) -> None:
        await _record_status(
            session, changed, target, move["code"], actions, now, agent, note, incident
        )

    await record(row, comment)
    # (`_record_status` set `status_since`.)
    await repository.update_assignment(
        session, row.request_id, {"auto_at": workflows.timer_at(definition, target["code"], now)}
    )
    if incident is not None:
        # R30: closing the incident's leading report closes and tells every reporter.
        await incidents.close(session, incident, record)
    # The actions see the request in its new status (their history lines are filed under it).
    moved = await repository.get_assignment(session, row.request_id)
    for act in move["actions"]:
        await _act(session, moved, act, now, agent=agent, pieces=pieces)
    if depth < workflows.MAX_CHAIN:
        await _settle(session, row.request_id, definition, now, depth + 1)


async def _record_status(
    session: AsyncSession,
    row: Any,
    target: dict[str, Any],
    transition: str,
    actions: list[str],
    at: datetime,
    agent: str | None,
    comment: str | None,
    incident: Any,
) -> None:
    """One request's new status, its history line and the event carrying the label the
    citizen reads (and, when it closes an incident, the incident's reporters)."""
    transfer = "transfer" in actions  # a workflow's: intake makes it, or says it cannot
    sequence = await repository.set_status(
        session,
        row.request_id,
        target["code"],
        target["label"],
        target["phase"],
        target["final"],
        transfer_from=row.status if transfer else None,
        transfer_told=transfer and ("notify" in actions or incident is not None),
        transfer_incident=incident.id if transfer and incident is not None else None,
        transfer_refused=transition == TRANSFER_NOT_MADE,
        status_since=at,
        **({"auto_at": None} if target["final"] else {}),  # no transition leaves it by itself
    )
    await repository.add_history(
        session, row.request_id, at, target["code"], target["label"], agent=agent, comment=comment
    )
    if incident is not None and incident.request_id != row.request_id:
        # An incident's other report closes with it; only its first report is transferred,
        # so intake closes this one rather than wait for a transfer of its own.
        actions = [a for a in actions if a != "transfer"]
    await stage(
        session,
        StatusChanged(
            request_id=row.request_id,
            tracking_code=row.tracking_code,
            from_status=row.status,
            status=target["code"],
            label=target["label"],
            phase=target["phase"],
            final=target["final"],
            transition=transition,
            actions=actions,
            changed_at=at,
            sequence=sequence,
            **incidents.event_fields(incident),
        ).envelope(tenant=row.tenant, subject=str(row.request_id), occurred_at=at),
    )


async def _act(
    session: AsyncSession,
    row: Any,
    act: dict[str, Any],
    now: datetime,
    *,
    agent: str | None,
    pieces: list[str] | None,
) -> None:
    """The actions routing carries out itself (assign) or asks intake to (legal acts)."""
    subject = str(row.request_id)
    if act["type"] == "request_pieces":
        await stage(
            session,
            PiecesRequested(
                request_id=row.request_id,
                tracking_code=row.tracking_code,
                pieces=pieces or act["pieces"],
                due_in_days=act["due_in_days"],
                requested_by=agent,
                requested_at=now,
            ).envelope(tenant=row.tenant, subject=subject, occurred_at=now),
        )
    elif act["type"] == "transfer":
        await stage(
            session,
            TransferRequested(
                request_id=row.request_id,
                tracking_code=row.tracking_code,
                tenant=act.get("tenant"),
                administration_name=act.get("administration_name"),
                administration_url=act.get("administration_url"),
                reason=act["reason"],
                requested_at=now,
            ).envelope(tenant=row.tenant, subject=subject, occurred_at=now),
        )
    elif act["type"] == "assign":
        await _reassign(session, row, act, now, by=agent)


async def _reassign(
    session: AsyncSession, row: Any, act: dict[str, Any], now: datetime, *, by: str | None
) -> None:
    values: dict[str, Any] = {}
    if "agent" in act:
        values["agent"] = act["agent"]
    if "service" in act:
        values.update(service_code=act["service"], team_code=act.get("team"), assigned_at=now)
    await repository.update_assignment(session, row.request_id, values)
    if "service" not in act or act["service"] == row.service_code:
        where = act.get("team") or act.get("agent")
        await repository.add_history(
            session, row.request_id, now, row.status, f"Attribuée à {where}", agent=by
        )
        return
    service = await repository.get_service(session, row.tenant, act["service"])
    assert service is not None, "validated when the workflow was saved"
    await repository.add_history(
        session, row.request_id, now, row.status, f"Transmise au service : {service.name}", agent=by
    )
    why = "transmise par le circuit de traitement"
    await _announce(session, row.tenant, row, service, act.get("team"), why, now)


async def _announce(
    session: AsyncSession,
    tenant: str,
    request: Any,
    service: Any,
    team: str | None,
    why: str,
    now: datetime,
) -> None:
    """`routing.request.assigned.v1`: intake shows the service, notifications tells the
    citizen. `request` is the received event or the assignment row (same field names)."""
    await stage(
        session,
        RequestAssigned(
            request_id=request.request_id,
            tracking_code=request.tracking_code,
            procedure_code=request.procedure_code,
            channel=request.channel,
            service_code=service.code,
            service_name=service.name,
            rule=why,
            assigned_at=now,
            team_code=team,
        ).envelope(tenant=tenant, subject=str(request.request_id), occurred_at=now),
    )


async def _settle(
    session: AsyncSession,
    request_id: uuid.UUID,
    definition: dict[str, Any],
    now: datetime,
    depth: int = 0,
) -> None:
    """A request entering a status moves on at once when an automatic transition's
    condition on the form already holds."""
    row = await repository.get_assignment(session, request_id)
    assert row is not None, "settled within the transaction that wrote it"
    move = workflows.on_entry(definition, row.status, row.payload or {})
    if move is not None:
        await _apply(session, row, definition, move, now, agent=None, comment=None, depth=depth)


async def fire_due(db: Database, now: datetime | None = None, limit: int = 100) -> int:
    """Fire every timed transition whose delay ran out; returns how many fired."""
    now = now or datetime.now(UTC)
    fired = 0
    async with db.transaction() as session:
        for row in await repository.timers_due(session, now, limit):
            # The request's own version: a circuit edited since changes nothing here.
            definition = await _definition(session, row)
            again = not row.transfer_refused
            move = workflows.timed(definition, row.status, row.status_since, now, transfers=again)
            if move is None:
                at = workflows.timer_at(definition, row.status, row.status_since, transfers=again)
                await repository.update_assignment(session, row.request_id, {"auto_at": at})
                continue
            await _apply(session, row, definition, move, now, agent=None, comment=None)
            fired += 1
    return fired


async def on_pieces_received(session: AsyncSession, envelope: Envelope) -> None:
    """Intake says the citizen's pieces arrived: the transition waiting for them fires."""
    event = PiecesReceived.model_validate(envelope.data)
    row = await repository.lock_assignment(session, event.request_id)
    if row is None:
        log.warning("pieces received for unknown request %s ignored", event.request_id)
        return
    now = datetime.now(UTC)
    await repository.update_assignment(session, row.request_id, {"pieces_arrived_at": now})
    definition = await _definition(session, row)
    move = workflows.triggered(
        definition, row.status, "pieces_received", transfers=not row.transfer_refused
    )
    if move is not None:
        await _apply(session, row, definition, move, now, agent=None, comment=None)


# The pseudo-transition that gives back a request whose transfer intake could not make.
TRANSFER_NOT_MADE = "transmission_non_aboutie"


async def on_transfer_refused(session: AsyncSession, envelope: Envelope) -> None:
    """Intake could not make the transfer a workflow asked for (R12): the request is still
    this administration's, its clock running. Its service takes it back, in the status
    the transfer left (with the incident's other reports it closed, R30), why in its
    history; the citizen hears of it if they heard of the transfer."""
    event = TransferRefused.model_validate(envelope.data)
    row = await repository.lock_assignment(session, event.request_id)
    if row is None:
        log.warning("refused transfer of unknown request %s ignored", event.request_id)
        return
    note = f"Transmission à {event.destination} non aboutie : {event.detail}"
    if not row.closed or row.transfer_from is None:
        # No workflow's transfer closed it (an agent's own, or answered since): noted.
        await repository.add_history(
            session,
            row.request_id,
            event.refused_at,
            row.status,
            "Transmission non aboutie",
            comment=note,
        )
        return
    back = [await _take_back(session, row, event, note)]
    if row.transfer_incident is not None:
        for joined in await incidents.reopen(session, row.transfer_incident):
            other = await repository.lock_assignment(session, joined)
            await repository.add_history(
                session,
                joined,
                event.refused_at,
                other.status,
                "Rattaché au premier signalement du même problème au même endroit, après "
                f"la transmission non aboutie de {row.tracking_code}.",
            )
        for report in await repository.reports_closed_by_transfer(
            session, row.transfer_incident, row.request_id
        ):
            back.append(await _take_back(session, report, event, note))
    # Once all are back (the incident open again, were one to close with it): the
    # transitions that waited for pieces which came while the transfer was pending.
    for request_id, definition, move in filter(None, back):
        moved = await repository.lock_assignment(session, request_id)
        if moved.closed or moved.status not in move["from"]:
            continue  # closed meanwhile with its incident, by its first report's move
        await _apply(session, moved, definition, move, event.refused_at, agent=None, comment=None)


async def _take_back(
    session: AsyncSession, row: Any, event: TransferRefused, note: str
) -> tuple[uuid.UUID, dict[str, Any], dict[str, Any]] | None:
    """One request back in the status its transfer left, the label saying why. If the
    pieces it waited for came meanwhile, its timers (to close it for want of them...)
    no longer run; returns what waits for them, to fire, unless that was the transfer."""
    definition = await _definition(session, row)
    status = workflows.status(definition, row.transfer_from)
    base = status["label"]
    label = next(
        text
        for text in (f"{base} (transmission à {event.destination} non aboutie)", base)
        if len(text) <= 200  # the column's size; a status label fits
    )
    waiting = workflows.triggered(definition, status["code"], "pieces_received")
    arrived = (
        waiting is not None
        and row.pieces_arrived_at is not None
        and row.pieces_arrived_at >= row.status_since  # since the transfer closed it
    )
    await _record_status(
        session,
        row,
        {**status, "label": label},
        TRANSFER_NOT_MADE,
        ["notify"] if row.transfer_told else [],
        event.refused_at,
        None,
        note,
        None,
    )
    timers = workflows.timer_at(definition, status["code"], event.refused_at, transfers=False)
    await repository.update_assignment(
        session, row.request_id, {"auto_at": None if arrived else timers}
    )
    if waiting is None or not arrived or workflows.action(waiting, "transfer") is not None:
        return None
    return row.request_id, definition, waiting


async def put_team(
    db: Database,
    tenant: str,
    service_code: str,
    code: str,
    body: TeamWrite,
    principal: Principal = SYSTEM,
) -> bool:
    _may_configure(principal, tenant, service_code)
    async with db.transaction() as session:
        if await repository.get_tenant(session, tenant) is None:
            raise unknown_tenant(tenant)
        if await repository.get_service(session, tenant, service_code) is None:
            raise _unknown_service(service_code)
        return await repository.upsert_team(session, tenant, service_code, code, body.name)


async def _unknown_in_workflow(
    session: AsyncSession, tenant: str, definition: dict[str, Any]
) -> list[InvalidParam]:
    """Services and teams the circuit names but the tenant does not have."""
    known = {s.code for s in await repository.list_services(session, tenant)}
    crews = {(t.service_code, t.code) for t in await repository.list_teams(session, tenant)}
    faults = []
    for index, move in enumerate(definition["transitions"]):
        for position, code in enumerate(move.get("services", [])):
            if code not in known:
                faults.append(
                    InvalidParam(
                        name=f"transitions[{index}].services[{position}]",
                        reason=f"Service « {code} » inconnu.",
                    )
                )
        for position, act in enumerate(move["actions"]):
            name = f"transitions[{index}].actions[{position}]"
            if act["type"] != "assign" or "service" not in act:
                continue
            if act["service"] not in known:
                faults.append(
                    InvalidParam(
                        name=f"{name}.service", reason=f"Service « {act['service']} » inconnu."
                    )
                )
            elif "team" in act and (act["service"], act["team"]) not in crews:
                faults.append(
                    InvalidParam(
                        name=f"{name}.team",
                        reason=f"Équipe « {act['team']} » inconnue au service "
                        f"« {act['service']} ».",
                    )
                )
    return faults


def _invalid_workflow(faults: list[InvalidParam]) -> Problem:
    return Problem(
        422,
        "workflow-invalid",
        "Circuit de traitement invalide",
        "Le circuit n'a pas été enregistré : " + " ".join(f"{f.name} : {f.reason}" for f in faults),
        faults,
    )


# -- periodic digests (R28) -------------------------------------------------------------------

DIGEST_ITEMS = 100


def digest_slot(now: datetime, timezone: str, period: str, at: str) -> datetime:
    """The latest scheduled digest instant at or before `now`, in UTC: `at` local time,
    every day, or every Monday for a weekly digest (wall-clock, so 8:00 stays 8:00 across
    daylight saving)."""
    local = now.astimezone(ZoneInfo(timezone))
    hour, minute = (int(part) for part in at.split(":"))
    slot = datetime.combine(local.date(), time(hour, minute), tzinfo=local.tzinfo)
    step = timedelta(days=7 if period == "weekly" else 1)
    if period == "weekly":
        slot -= timedelta(days=slot.weekday())
    while slot > local:
        slot -= step
    return slot.astimezone(UTC)


def _previous_slot(slot: datetime, timezone: str, period: str) -> datetime:
    local = slot.astimezone(ZoneInfo(timezone))
    return (local - timedelta(days=7 if period == "weekly" else 1)).astimezone(UTC)


async def send_digests(db: Database, now: datetime | None = None) -> int:
    """One digest per digest-mode service whose scheduled instant passed; returns how many."""
    now = now or datetime.now(UTC)
    async with db.sessions() as session:
        candidates = await repository.digest_services(session)
    sent = 0
    for candidate in candidates:
        slot = digest_slot(now, candidate.timezone, candidate.digest_period, candidate.digest_time)
        if candidate.last_digest_at is not None and candidate.last_digest_at >= slot:
            continue
        async with db.transaction() as session:
            sent += await _digest(session, candidate, slot)
    return sent


async def _digest(session: AsyncSession, candidate: Any, slot: datetime) -> int:
    service = await repository.lock_service(session, candidate.tenant, candidate.code)
    # Another replica holds it, or sent this one since we looked.
    if service is None or (service.last_digest_at is not None and service.last_digest_at >= slot):
        return 0
    since = service.last_digest_at or _previous_slot(
        slot, candidate.timezone, service.digest_period
    )
    new_total, new = await repository.digest_new(
        session, service.tenant, service.code, since, slot, DIGEST_ITEMS
    )
    overdue_total, overdue = await repository.digest_overdue(
        session, service.tenant, service.code, slot, DIGEST_ITEMS
    )
    await stage(
        session,
        ServiceDigest(
            service_code=service.code,
            service_name=service.name,
            service_email=service.email,
            timezone=candidate.timezone,
            period_start=since,
            period_end=slot,
            new_total=new_total,
            overdue_total=overdue_total,
            new=[_digest_item(r) for r in new],
            overdue=[_digest_item(r) for r in overdue],
        ).envelope(
            tenant=service.tenant, subject=f"{service.tenant}.{service.code}", occurred_at=slot
        ),
    )
    await repository.update_service(session, service.tenant, service.code, {"last_digest_at": slot})
    return 1


def _digest_item(row: Any) -> DigestItem:
    return DigestItem(
        request_id=row.request_id,
        tracking_code=row.tracking_code,
        procedure_title=row.procedure_title,
        channel=row.channel,
        status_label=row.status_label,
        received_at=row.received_at,
        due_at=row.due_at,
    )


def _unknown_service(code: str) -> Problem:
    return Problem(
        404,
        "service-unknown",
        "Service inconnu",
        f"Le service « {code} » n'existe pas dans cette collectivité.",
        [InvalidParam(name="service", reason="Service inconnu.")],
    )


def _unknown_request() -> Problem:
    return Problem(
        404,
        "request-unknown",
        "Demande introuvable",
        "Aucune demande aiguillée ne porte cet identifiant.",
    )
