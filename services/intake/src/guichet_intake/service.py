"""Receiving requests as the law requires: timestamp, store, acknowledge, keep the clock.

One commit point per operation: the request, its history, its signed receipts and
their events are written in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any, NoReturn
from urllib.parse import urlsplit
from weakref import WeakValueDictionary
from zoneinfo import ZoneInfo

import httpx
import orjson
from pydantic import HttpUrl, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guichet_intake import notices, repository
from guichet_intake.deadlines import (
    Clock,
    Deadline,
    Delay,
    PiecesRequest,
    implicit_decision,
    receipt_due,
    registration_due,
)
from guichet_intake.documents import ReceiptDocument, french_date
from guichet_intake.events import (
    ApplicantContact,
    ImplicitDecisionBorn,
    ImplicitDecisionVoid,
    PiecesArrived,
    PiecesRequested,
    ReceiptIssued,
    RequestAssigned,
    RequestReceived,
    RequestTransferred,
    SourceNoticed,
    StatusChanged,
    TransferNotMade,
    TransferRequested,
)
from guichet_intake.identity import GENERAL_FAMILY, mandate_for
from guichet_intake.models import SOURCE_MAX_LENGTH
from guichet_intake.schemas import (
    TRACKING_CODE_PATTERN,
    ZONES_SPREAD,
    Applicant,
    ApplicantKind,
    Channel,
    ContactPreference,
    Identification,
    MissingPiecesCreate,
    OverdueList,
    OverdueReceipt,
    PiecesReceived,
    PostalAddress,
    ProcedureKind,
    ProcedureList,
    ProcedurePublic,
    ProcedureWrite,
    ReceiptKind,
    Regime,
    RequestCreate,
    RequestPublic,
    RequestStatus,
    ServiceContact,
    ServiceWrite,
    SourceList,
    SourcePublic,
    SvaEntry,
    SvaList,
    TransferCreate,
    TransferDocument,
    TransferReceived,
    VerifyResult,
    format_delay,
)
from guichet_intake.settings import IntakeSettings
from guichet_intake.signing import (
    PayloadTooLarge,
    SigningKey,
    canonical_json,
    generate_key,
    jwks,
    key_of,
    resign,
    segment,
    sign,
    signed_by,
    verify,
)
from guichet_plumbing import idempotency
from guichet_plumbing.access_log import record_read
from guichet_plumbing.auth import (
    SYSTEM,
    Kind,
    Principal,
    Role,
    TokenKeys,
    forbidden,
    foreign_tenant,
    proof_digest,
    pseudonym,
    same_digest,
)
from guichet_plumbing.db import CONNECTION_LOST, Database, Grouped, after_commit, grouped_inserts
from guichet_plumbing.envelope import WrittenEnvelope, written
from guichet_plumbing.jsonbody import loads
from guichet_plumbing.observability import ServiceMetrics
from guichet_plumbing.outbox import rows as outbox_rows
from guichet_plumbing.outbox import stage, wake_relays
from guichet_plumbing.problems import InvalidParam, Problem, unknown_tenant, validation_problem
from guichet_plumbing.text import one_line

log = logging.getLogger(__name__)


STATUS_LABELS = {
    RequestStatus.received: "Demande reçue",
    RequestStatus.assigned: "Transmise au service compétent",
    RequestStatus.incomplete: "Dossier incomplet : pièces demandées",
    RequestStatus.transferred: "Transmise à l'administration compétente",
    RequestStatus.processing: "En cours de traitement",
    RequestStatus.closed: "Traitée",
    RequestStatus.implicitly_accepted: "Acceptée implicitement",
    RequestStatus.implicitly_rejected: "Rejetée implicitement",
}

RECEIPT_TITLES = {
    ReceiptKind.accuse_reception: "Accusé de réception",
    ReceiptKind.accuse_enregistrement: "Accusé d'enregistrement",
    ReceiptKind.attestation_acceptation_implicite: "Attestation d'acceptation implicite",
    ReceiptKind.demande_pieces: "Demande de pièces complémentaires",
    ReceiptKind.avis_transmission: "Avis de transmission de votre demande",
}

# Tries of the PostgreSQL submission when its pooled connection turns out dead.
_LOST_TRIES = 3
# Idempotency-Key scope of `POST /v1/requests`.
SUBMIT_SCOPE = "intake.requests"
# R9 looks at what one source sent in the last hour.
R9_WINDOW = timedelta(hours=1)

# A time granted for missing pieces beyond a year would freeze a file indefinitely.
MAX_PIECES_DAYS = 366

# Statuses after which no clock runs and nothing more is owed by this administration.
FINAL = {
    RequestStatus.transferred,
    RequestStatus.closed,
    RequestStatus.implicitly_accepted,
    RequestStatus.implicitly_rejected,
}

# How far back a date declared at entry may go: beyond, a mistyped year.
_DECLARED_DAYS = 366
# How far ahead of this server's clock a connector's may be (its instant of arrival).
_CLOCK_SKEW = timedelta(minutes=2)


def _enters(principal: Principal, tenant: str) -> bool:
    """Who may enter a request received on paper, at the counter or by phone (R22), or
    one another administration hands over: the reception's agents, this guichet's
    systems, and another administration's (its paper mail)."""
    if principal.kind is Kind.agent:
        return principal.has_role(tenant, Role.counter_agent)
    return principal.kind in (Kind.client, Kind.system)


def _check_declared_dates(data: RequestCreate, now: datetime, timezone: str) -> date | None:
    """Refuses a declared day or instant of arrival that cannot be; returns the day of
    reception they declare (None: the day of entry)."""
    today = local_date(now, timezone)
    arrived_on = None
    if data.arrived_at is not None:
        # Compared before any conversion: an instant near year 1 or 9999 has no local date.
        if data.arrived_at > now + _CLOCK_SKEW:
            _declared_date_invalid("arrived_at", "Instant futur : l'envoi n'est pas encore arrivé.")
        if data.arrived_at < now - timedelta(days=_DECLARED_DAYS):
            _declared_date_invalid("arrived_at", "Instant de plus d'un an : vérifiez l'année.")
        # A connector's clock a little ahead of ours says "now", not tomorrow near midnight.
        arrived_on = local_date(min(data.arrived_at, now), timezone)
        if data.received_on is not None and data.received_on != arrived_on:
            _declared_date_invalid(
                "received_on",
                f"Ce n'est pas le jour de l'instant d'arrivée (arrived_at), le "
                f"{french_date(arrived_on)} dans le fuseau de la collectivité.",
            )
    if data.received_on is not None and data.received_on > today:
        _declared_date_invalid(
            "received_on", f"Date future : au plus tard aujourd'hui ({french_date(today)})."
        )
    for name, day in (
        ("received_on", data.received_on),
        ("first_received_on", data.first_received_on),
    ):
        if day is not None and day < today - timedelta(days=_DECLARED_DAYS):
            _declared_date_invalid(
                name, f"Date de plus d'un an : vérifiez l'année ({french_date(day)})."
            )
    declared = data.received_on or arrived_on
    here = declared or today
    if data.first_received_on is not None and data.first_received_on > here + ZONES_SPREAD:
        _declared_date_invalid(
            "first_received_on",
            f"Date postérieure à la réception ici ({french_date(here)}) : l'administration "
            "d'abord saisie l'a reçue avant, ou au plus tard le même jour dans son fuseau.",
        )
    return declared


def _declared_date_invalid(name: str, reason: str) -> NoReturn:
    raise Problem(
        422,
        "declared-date-invalid",
        "Date de réception invalide",
        f"La date indiquée ({name}) n'est pas possible. {reason}",
        [InvalidParam(name=name, reason=reason)],
    )


# What an agent's access to a file is for, as the DPO reads it in the access log.
ACTION_PURPOSES = {
    "follow": "consultation du dossier",
    "qualify": "qualification",
    "instruct": "instruction",
}


@dataclass(frozen=True)
class FollowProof:
    """What an applicant without an account shows beside the tracking code (R15)."""

    factor: str | None = None  # the e-mail address or phone number given at submission
    link: str | None = None  # the signed token of the follow-up link


# Crockford base32: no I, L, O, U, so a code read over the phone is unambiguous.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = str.maketrans({"O": "0", "I": "1", "L": "1"})


def new_tracking_code() -> str:
    """80 random bits, grouped by four: unguessable, easy to dictate."""
    # 16 characters of 5 bits each: every character uniform over the 32 of the alphabet.
    bits = int.from_bytes(secrets.token_bytes(10), "big")
    raw = "".join(_ALPHABET[(bits >> shift) & 31] for shift in range(75, -1, -5))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:12]}-{raw[12:]}"


def normalise_tracking_code(value: str) -> str:
    compact = value.upper().replace("-", "").replace(" ", "").translate(_DECODE)
    return "-".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def local_date(instant: datetime, timezone: str) -> date:
    return instant.astimezone(ZoneInfo(timezone)).date()


def _service(row: Any) -> notices.Service:
    return notices.Service(
        row.service_designation, row.service_postal_address, row.service_email, row.service_phone
    )


def _service_contact(row: Any) -> dict[str, Any]:
    """`ServiceContact`'s fields, as plain data."""
    return {
        "code": row.service_code,
        "designation": row.service_designation,
        "postal_address": row.service_postal_address,
        "email": row.service_email,
        "phone": row.service_phone,
    }


def _json_instant(at: datetime) -> str:
    """An aware datetime as pydantic writes it in JSON (UTC as `Z`); a naive one, which
    `ReceiptDocument` would refuse when the receipt is read, is refused now."""
    if at.tzinfo is None:
        raise ValueError(f"naive datetime in a receipt: {at!r}")
    return orjson.dumps(at, option=orjson.OPT_UTC_Z)[1:-1].decode()


def _family(procedure: Any | None) -> str:
    """The procedure family a citizen's pseudonym is derived for (R15)."""
    return str(procedure.service_code) if procedure is not None else GENERAL_FAMILY


def _owed(channel: Channel, reception: date, tenant: Any) -> dict[str, Any]:
    """R23: a request whose receipt could not be signed is stored all the same, its receipt
    owed within the legal time (R4; R3 for the AE of an electronic send)."""
    return {
        "receipt_due_on": receipt_due(reception),
        "registration_due_on": registration_due(reception, tenant.territory)
        if channel.electronic
        else None,
    }


def owes_acknowledgement(procedure: Any, channel: Channel) -> bool:
    """R1, R2: an AR is owed unless the procedure only delivers a document provided by law;
    that exemption (L112-3) does not apply to electronic sends (L112-11), which always get one
    unless abusive."""
    return bool(procedure.acknowledgement_required) or channel.electronic


_RESERVED_TO = {
    Identification.person: "aux particuliers (personnes physiques)",
    Identification.company: "aux entreprises",
    Identification.association: "aux associations",
}

# R7 (décret 2015-1404 art. 2): an electronic sender identifies by all four; on paper, at the
# counter or by phone only the name is needed, so an agent can enter a request for a citizen
# without e-mail (R22).
_PERSON_FIELDS = (
    ("family_name", "le nom de famille", False),
    ("given_name", "le prénom", False),
    ("postal_address", "l'adresse postale", True),
    ("email", "l'adresse électronique", True),
)


def _identification_problems(
    procedure: Any, applicant: Applicant, channel: Channel, franceconnected: bool = False
) -> list[InvalidParam]:
    """R7: what the procedure requires of the applicant to identify them; a person
    FranceConnect identified has nothing more to give."""
    required = Identification(procedure.identification)
    if required is Identification.none:
        return []
    kind = applicant.kind
    if required is not Identification.any and kind.value != required.value:
        return [
            InvalidParam(
                name="applicant.kind",
                reason=f"Cette démarche est réservée {_RESERVED_TO[required]}.",
            )
        ]
    missing: list[InvalidParam] = []
    if kind is ApplicantKind.person and not franceconnected:
        for field, label, electronic_only in _PERSON_FIELDS:
            if electronic_only and not channel.electronic:
                continue
            if getattr(applicant, field) is None:
                missing.append(
                    InvalidParam(
                        name=f"applicant.{field}", reason=f"Indiquez {label} pour vous identifier."
                    )
                )
    elif kind is ApplicantKind.company and not (applicant.siren or applicant.siret):
        missing.append(
            InvalidParam(
                name="applicant.siret", reason="Une entreprise s'identifie par son SIREN ou SIRET."
            )
        )
    elif kind is ApplicantKind.association and not (
        applicant.rna or applicant.siret or applicant.siren
    ):
        # Alsace-Moselle's associations are entered in a court's register, not in the RNA:
        # those give their SIREN or SIRET, wherever they apply.
        missing.append(
            InvalidParam(
                name="applicant.rna",
                reason="Une association s'identifie par son numéro RNA ou, inscrite au "
                "registre d'un tribunal d'Alsace-Moselle, par son SIREN ou son SIRET.",
            )
        )
    return missing


def _to_identify(missing: list[InvalidParam]) -> str:
    """The note for agents on a request received without what R7 asks (R1)."""
    if missing[0].name == "applicant.kind":  # nothing the applicant can add: to check
        return "Demandeur à vérifier pour cette démarche : " + missing[0].reason
    return "Identification à compléter pour cette démarche : " + " ".join(p.reason for p in missing)


def _source(data: RequestCreate) -> str:
    """Who sent it, for R9: the e-mail, else the phone, else the postal address."""
    applicant = data.applicant
    if applicant.email:
        source = f"email:{str(applicant.email).lower()}"
    elif applicant.phone:
        source = "phone:" + "".join(c for c in applicant.phone if c.isdigit() or c == "+")
    elif applicant.postal_address:
        source = "mail:" + applicant.postal_address.one_line().lower()
    else:
        source = "name:" + applicant.name.lower()
    if len(source) <= SOURCE_MAX_LENGTH:
        return source
    # A valid address can be longer than the column (and a blocked source's key): kept as
    # its digest, the same for every send, so R9 counts and blocks it all the same.
    kind, _, value = source.partition(":")
    return f"{kind}:sha256:{hashlib.sha256(value.encode()).hexdigest()}"


def _content_hash(data: RequestCreate) -> str:
    """R9: what makes two sends the same content, whoever sends them."""
    content = [data.procedure, data.payload, data.location and data.location.model_dump()]
    return hashlib.sha256(canonical_json(content)).hexdigest()


class _CacheMiss(Exception):
    """The caches alone cannot answer: the caller loads with a session."""


@dataclass
class _CachedKey:
    key: SigningKey
    loaded: float


class Keyring:
    """Each tenant's receipt-signing keys: the newest unretired one signs, all are published."""

    ttl = 60.0  # another replica's rotation is picked up within a minute

    def __init__(self) -> None:
        self._active: dict[str, _CachedKey] = {}

    async def active(self, session: AsyncSession | None, tenant: str, now: datetime) -> SigningKey:
        """With no session, from the cache only (`_CacheMiss` when it has nothing)."""
        cached = self._active.get(tenant)
        if cached and time.monotonic() - cached.loaded < self.ttl:
            return cached.key
        if session is None:
            raise _CacheMiss
        live = [
            r for r in await repository.signing_keys_for(session, tenant) if r.retired_at is None
        ]
        if live:
            row = live[-1]
            key = SigningKey(kid=row.kid, private_pem=row.private_pem, created_at=row.created_at)
        else:
            key = await self._create(session, tenant, now)
        # Cached once committed only: a rolled-back key must not sign anything.
        after_commit(session, lambda: self._remember(tenant, key))
        return key

    def _remember(self, tenant: str, key: SigningKey) -> None:
        self._active[tenant] = _CachedKey(key, time.monotonic())

    async def _create(self, session: AsyncSession, tenant: str, now: datetime) -> SigningKey:
        key = generate_key(tenant, now)
        # In a savepoint: on PostgreSQL a failed insert would abort the whole transaction,
        # and with it the request being received (R23 keeps it, its receipt owed).
        async with session.begin_nested():
            await repository.insert_signing_key(
                session,
                {
                    "kid": key.kid,
                    "tenant": tenant,
                    "private_pem": key.private_pem,
                    "created_at": key.created_at,
                },
            )
        return key

    async def rotate(self, session: AsyncSession, tenant: str, now: datetime) -> SigningKey:
        """New key for new receipts; old ones stay published so old receipts still verify."""
        await repository.retire_signing_keys(session, tenant, now)
        key = await self._create(session, tenant, now)
        after_commit(session, lambda: self._remember(tenant, key))
        return key

    @staticmethod
    async def published(session: AsyncSession) -> dict[str, Any]:
        return Keyring.public_keys(await repository.signing_keys_for(session))

    @staticmethod
    def public_keys(rows: Any) -> dict[str, Any]:
        return jwks(
            SigningKey(
                kid=r.kid,
                private_pem=r.private_pem,
                created_at=r.created_at,
                retired_at=r.retired_at,
            )
            for r in rows
        )


def _born(request: Any, at: datetime) -> bool:
    """Whether silence has decided by `at` a request the scheduler has not decided yet."""
    return (
        request.implicit_decision is None
        and request.clock_state in ("running", "suspended")
        and request.decision_due_at is not None
        and request.decision_due_at <= at
    )


def _attests(attestation: Any, request: Any) -> bool:
    """Whether an attestation of implicit acceptance attests the request's decision in
    force: one issued before that decision was born attests a decision since found void."""
    return request.implicit_decision == "accepted" and (
        request.decision_due_at is None or attestation.issued_at >= request.decision_due_at
    )


async def _on_record(
    session: AsyncSession, tenant: str, document: str, payload: dict[str, Any], token: str
) -> bool:
    """Whether the collectivité whose key signed the document keeps it, word for word."""
    with contextlib.suppress(KeyError, TypeError, ValueError):
        if document == "transmission":
            request = await repository.get_request_by_code(session, str(payload["tracking_code"]))
            if request is None or request.tenant != tenant:
                return False
            sent = await repository.outgoing_transfer(session, request.id)
            return sent is not None and "".join(token.split()) == sent.token
        stored = await repository.get_receipt(session, uuid.UUID(str(payload["receipt_id"])))
        return stored is not None and stored.tenant == tenant and stored.document == payload
    return False


@dataclass(frozen=True)
class _Context:
    """What a submission is checked and built against (from the caches when warm)."""

    tenant: Any
    procedure: Any | None
    source: str
    signs: bool  # an AR (or AE) is owed at once
    key: SigningKey | None  # None when it could not be had (R23: the receipt is then owed)
    unidentified: list[InvalidParam]  # what R7 asks that a request on paper lacks
    arrived_on: date | None  # the day of reception declared at entry (None: that day)


@dataclass(frozen=True)
class _Built:
    request: dict[str, Any]
    writes: _Writes
    response: idempotency.StoredResponse


class _Senders:
    """The administrations whose signed transfers this guichet receives (R12) and their
    published keys: fetched when first needed and kept `ttl` seconds; fetched again at
    once, at most every `retry` seconds, when a transfer is signed by a key not seen yet
    (the sender rotated its keys)."""

    ttl = 600.0
    retry = 60.0

    # A JWK Set is a few kB: a larger answer is no key set.
    max_bytes = 1_000_000

    def __init__(self, service: IntakeService) -> None:
        self.service = service
        self._keys: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._fetching: dict[str, asyncio.Lock] = {}

    async def verify(self, token: str) -> tuple[str, str, bool]:
        """The name of the listed sender whose key signed `token`, that key's `kid`, and
        whether the sender has retired it; a 403 problem if none did."""
        senders = self.service.settings.transfer_senders
        for again in (False, True):
            for name, url in senders.items():
                keys = await self._published(str(url), again)
                verified = verify(token, keys)
                if verified is not None:
                    retired = any(k.get("kid") == verified[0] and "retired_at" in k for k in keys)
                    return name, verified[0], retired
        raise Problem(
            403,
            "transfer-not-authentic",
            "Transmission non reconnue",
            "Cette transmission n'est pas signée par une administration dont ce guichet "
            "reçoit les transmissions, ou elle a été modifiée depuis. Envoyez la demande par "
            "courrier, ou faites déclarer votre administration auprès de ce guichet.",
        )

    async def _published(self, url: str, again: bool) -> list[dict[str, Any]]:
        # One fetch at a time per address: the transfers arriving meanwhile wait for it.
        async with self._fetching.setdefault(url, asyncio.Lock()):
            kept = self._keys.get(url)
            if kept is not None and time.monotonic() - kept[0] < (
                self.retry if again else self.ttl
            ):
                return kept[1]
            keys = await self._fetch(url, kept[1] if kept is not None else [])
            self._keys[url] = (time.monotonic(), keys)
            return keys

    async def _fetch(self, url: str, known: list[dict[str, Any]]) -> list[dict[str, Any]]:
        timeout = self.service.settings.transfer_timeout
        http = self.service.http or httpx.AsyncClient(timeout=timeout)
        try:
            # The whole fetch, not each read: a trickling answer holds no lock for long.
            async with asyncio.timeout(timeout), http.stream("GET", url) as answer:
                answer.raise_for_status()
                body = b""
                async for chunk in answer.aiter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise ValueError("answer too large for a key set")
            keys: list[dict[str, Any]] = orjson.loads(body)["keys"]
            if not isinstance(keys, list):
                raise TypeError("keys is not a list")
            return keys
        except (httpx.HTTPError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            # The keys known before still serve; a sender down is tried again later.
            log.warning("keys of transfer sender %s not fetched: %r", url, exc)
            return known
        finally:
            if self.service.http is None:
                await http.aclose()


class IntakeService:
    catalogue_ttl = 5.0
    # Entries cached at most (absences included, which anyone can ask for by the thousand).
    catalogue_max = 10_000
    # PostgreSQL submissions take the two-round-trip path; tests turn it off to compare.
    fast_path = True

    def __init__(
        self,
        db: Database,
        settings: IntakeSettings,
        metrics: ServiceMetrics,
        http: httpx.AsyncClient | None = None,
        token_keys: TokenKeys | None = None,
    ) -> None:
        self.db = db
        # PostgreSQL submissions read and commit in groups (see `Grouped`).
        self.reads = Grouped(self._read_group)
        self.writes = grouped_inserts(db)
        self.settings = settings
        self.token_keys = token_keys or settings.token_keys()
        self.keyring = Keyring()
        self._catalogue: dict[tuple[str, ...], tuple[float, Any]] = {}
        # One loader per tenant at a time: a tenant's misses wait for its loader, and no
        # tenant's misses (an unknown one's included) hold up another's.
        self._loading: WeakValueDictionary[str, asyncio.Lock] = WeakValueDictionary()
        self.http = http
        self.senders = _Senders(self)
        self.receipts_overdue = metrics.gauge(
            "guichet_intake_receipts_overdue",
            "Requests whose receipt (AR) is past its legal due date, by tenant.",
            ("tenant",),
        )
        self.transfers_unaccepted = metrics.gauge(
            "guichet_intake_transfers_unaccepted",
            "Transfers to another administration tried and not accepted yet (R12).",
        )
        self.implicit_decisions = metrics.counter(
            "guichet_intake_implicit_decisions",
            "Implicit decisions born, by outcome.",
            ("decision",),
        )
        # Born, then found void (an act in time read late, a transfer holding an SVA back):
        # those standing are the difference, however often one was held and born again.
        self.implicit_decisions_voided = metrics.counter(
            "guichet_intake_implicit_decisions_voided",
            "Implicit decisions recorded, then found void, by outcome.",
            ("decision",),
        )
        self.flagged = metrics.counter(
            "guichet_intake_abusive_requests", "Requests flagged as abusive (R9)."
        )
        self.blocked_attempts = metrics.counter(
            "guichet_intake_blocked_attempts", "Sends refused because their source is blocked (R9)."
        )
        # An AE of such a send comes after its day (R3): operators see the connector's lag.
        self.read_late = metrics.counter(
            "guichet_intake_sends_read_late",
            "E-mails and SMS entered a day or more after they arrived, or the same day later "
            "than R9's repetition window (arrived_at), by channel.",
            ("channel",),
        )

    # -- receipt of a request --------------------------------------------------------------

    async def submit(
        self,
        data: RequestCreate,
        idempotency_key: str | None,
        now: datetime | None = None,
        principal: Principal = SYSTEM,
    ) -> idempotency.StoredResponse:
        """`now` is the server's clock; tests pass a fixed instant."""
        # What a replay is compared by: only a keyed submission is ever replayed.
        body_print = ""
        if idempotency_key is not None:
            body_print = idempotency.fingerprint(data.model_dump_json().encode())
            idempotency_key = idempotency.own_key(
                idempotency_key, str(principal.kind), principal.subject
            )
        if data.entered_by is not None and principal.kind not in (Kind.agent, Kind.system):
            raise forbidden(
                "Seul un agent connecté saisit une demande pour le compte d'un usager (entered_by)."
            )
        if not data.channel.electronic and not _enters(principal, data.tenant):
            # R22: what came to the counter, by phone or by post is entered by the
            # administration (its reception staff); a sender declaring it, or a mediator
            # acting for a citizen, would escape R7's and R9's checks.
            raise forbidden(
                "Une demande reçue au guichet, par téléphone ou par courrier est saisie par "
                "un agent d'accueil. En ligne, choisissez le canal « web »."
            )
        if (data.received_on or data.arrived_at) is not None and not _enters(
            principal, data.tenant
        ):
            # A sender dating its own courriel would choose its reception date (R22, R23).
            raise forbidden(
                "Seuls l'accueil de la collectivité et ses systèmes (relève de la messagerie) "
                "indiquent quand une demande est arrivée (received_on, arrived_at). Envoyez "
                "votre demande sans ces champs : elle est datée du jour de sa réception."
            )
        if data.first_received_on is not None and not _enters(principal, data.tenant):
            raise forbidden(
                "Seule l'administration qui reçoit une demande transmise indique quand "
                "l'administration d'abord saisie l'a reçue (first_received_on)."
            )
        if principal.outside(data.tenant):  # the policy sees no tenant in a body
            raise foreign_tenant(data.tenant)
        try:
            if self.db.is_postgres and self.fast_path and not principal.acting_for:
                # A mandate is read from the database: those few take the session path.
                return await self._submit_postgres(
                    data, idempotency_key, body_print, now, principal
                )
            return await self._submit_once(data, idempotency_key, body_print, now, principal)
        except IntegrityError:
            # A concurrent retry with the same key committed first: replay its answer.
            if idempotency_key is None:
                raise
            async with self.db.transaction() as session:
                stored = await idempotency.replay(
                    session, SUBMIT_SCOPE, idempotency_key, body_print
                )
            if stored is None:
                raise
            return stored

    async def _submit_once(
        self,
        data: RequestCreate,
        idempotency_key: str | None,
        body_print: str,
        now: datetime | None,
        principal: Principal,
    ) -> idempotency.StoredResponse:
        """Any engine, through SQLAlchemy: every read and write in one transaction."""
        async with self.db.transaction() as session:
            if idempotency_key is not None:
                stored = await idempotency.replay(
                    session, SUBMIT_SCOPE, idempotency_key, body_print
                )
                if stored is not None:
                    return stored
            # The server's clock, never the client's, fixes the legal date of reception.
            received_at = now or datetime.now(UTC)
            context = await self._context(session, data, received_at, principal)
            content_hash = _content_hash(data)
            activity = await repository.source_activity(
                session,
                data.tenant,
                context.source,
                *self._r9_bounds(received_at, content_hash),
            )
            owner = await self._owner(
                session, principal, data.tenant, _family(context.procedure), received_at
            )
            built = self._build(
                data, context, content_hash, activity, received_at, principal, owner
            )
            await repository.insert_request(session, built.request)
            await built.writes.flush(session)
            if idempotency_key is not None:
                await idempotency.remember(
                    session, SUBMIT_SCOPE, idempotency_key, body_print, built.response
                )
            return built.response

    async def _submit_postgres(
        self,
        data: RequestCreate,
        idempotency_key: str | None,
        body_print: str,
        now: datetime | None,
        principal: Principal,
    ) -> idempotency.StoredResponse:
        """PostgreSQL: the same work in two round trips, one read and one atomic write.

        The read (idempotent replay, R9 history of the source) runs on a bare connection;
        the write is ONE statement, so the request, its history, its receipt, its events
        and its idempotency record commit together or not at all. Each goes out in a
        group with the reads or writes of the submissions that arrived meanwhile
        (`Grouped`): one round trip and one commit serve many requests under load.
        """
        received_at = now or datetime.now(UTC)
        source = _source(data)
        content_hash = _content_hash(data)
        kept, activity = await self.reads(
            repository.SubmissionRead(
                idempotency_key,
                data.tenant,
                source,
                *self._r9_bounds(received_at, content_hash),
            )
        )
        if kept is not None:
            return idempotency.stored_answer(*kept, body_print)
        try:
            context = await self._context(None, data, received_at, principal)
        except _CacheMiss:
            # Once per TTL one submission loads the catalogue (and creates a first key) in
            # a session; those arriving meanwhile wait for it instead of loading it too.
            lock = self._loading.setdefault(data.tenant, asyncio.Lock())
            async with lock:
                try:
                    context = await self._context(None, data, received_at, principal)
                except _CacheMiss:
                    async with self.db.transaction() as session:
                        context = await self._context(session, data, received_at, principal)
        owner = self._pseudonym(principal, data.tenant, _family(context.procedure))
        built = self._build(data, context, content_hash, activity, received_at, principal, owner)
        remembered = (
            [idempotency.record(SUBMIT_SCOPE, idempotency_key, body_print, built.response)]
            if idempotency_key is not None
            else []
        )
        # Never tried twice: a write's fate is unknown once its connection is lost.
        await repository.insert_submission(
            self.writes,
            built.request,
            [vars(h) for h in built.writes.history_rows],
            built.writes.receipts,
            outbox_rows(built.writes.events),
            remembered,
        )
        wake_relays()
        return built.response

    async def _read_group(
        self, reads: list[repository.SubmissionRead]
    ) -> list[tuple[repository.Kept | None, repository.SourceActivity] | BaseException]:
        attempt = 1
        while True:
            try:
                async with self.db.raw() as conn:
                    found = await repository.submission_reads(conn, SUBMIT_SCOPE, reads)
                    return [*found]
            except CONNECTION_LOST:
                # A connection a database restart left dead in the pool: a read is safe
                # to try again on another one (a write never is: its fate is unknown).
                if attempt == _LOST_TRIES:
                    raise
                attempt += 1

    async def _context(
        self, session: AsyncSession | None, data: RequestCreate, now: datetime, sender: Principal
    ) -> _Context:
        """Who receives it and under which procedure; refusals before anything is stored.

        With no session it answers from the caches alone, or raises `_CacheMiss`."""
        tenant = await self._tenant(session, data.tenant)
        arrived_on = _check_declared_dates(data, now, tenant.timezone)
        source = _source(data)
        # L112-11 lets the system block electronic sends only: the counter stays open (R22).
        if data.channel.electronic and await self._blocked(
            session, data.tenant, source, arrived_on, data.arrived_at, tenant.timezone
        ):
            self.blocked_attempts.inc()
            raise Problem(
                403,
                "source-blocked",
                "Envois bloqués",
                "Les envois de cette adresse sont bloqués après des envois "
                "abusifs, comme vous en avez été informé. Pour toute "
                "réclamation, adressez-vous à l'accueil de la mairie.",
            )
        procedure = None
        unidentified: list[InvalidParam] = []
        if data.procedure is not None:
            procedure = await self._procedure(session, data.tenant, data.procedure)
            unidentified = self._check_against_procedure(procedure, data, sender)
        # Whether an AR (or, with no procedure yet, an AE) is owed, and the key to sign it.
        signs = (
            owes_acknowledgement(procedure, data.channel) if procedure else data.channel.electronic
        )
        key = None
        if signs:
            try:
                key = await self.keyring.active(session, tenant.code, now)
            except _CacheMiss:
                raise
            except Exception:
                # R23: the request is stored all the same; its receipt is owed (the sweep).
                log.exception("no signing key for %s: the receipt will be owed", tenant.code)
        return _Context(tenant, procedure, source, signs, key, unidentified, arrived_on)

    def _build(
        self,
        data: RequestCreate,
        context: _Context,
        content_hash: str,
        activity: repository.SourceActivity,
        received_at: datetime,
        principal: Principal,
        owner: str | None,
    ) -> _Built:
        """The request, its history, its receipt, its events and the answer, in memory."""
        tenant, procedure = context.tenant, context.procedure
        # Entered later on the citizen's behalf: the day it arrived (R22).
        entered_on = local_date(received_at, tenant.timezone)
        reception = context.arrived_on or entered_on
        # L112-11 concerns electronic sends: an agent's entry is never flagged (R22). Nor is
        # a send read late (a mailbox connector down): its rhythm is the reading's, not the
        # sender's, and a technical failure is never held against the sender (R23). Read
        # the same day, the connector's instant of arrival tells how late.
        read_late = data.channel.electronic and (
            reception < entered_on
            or (
                data.arrived_at is not None
                and received_at - data.arrived_at >= self._repeat_window()
            )
        )
        if read_late:
            self.read_late.labels(data.channel.value).inc()
        abuse = self._abuse(activity) if data.channel.electronic and not read_late else None
        request_id = uuid.uuid4()
        values: dict[str, Any] = {
            "id": request_id,
            "tenant": data.tenant,
            "tracking_code": new_tracking_code(),
            "procedure_code": data.procedure,
            "channel": data.channel.value,
            "applicant": data.applicant.model_dump(mode="json"),
            "contact_preference": data.contact_preference.value,
            "payload": data.payload,
            "location": data.location.model_dump(mode="json") if data.location else None,
            "entered_by": self._entered_by(principal, data),
            "owner": owner,
            "owner_family": _family(procedure) if owner is not None else None,
            "follow_proofs": [
                proof_digest(str(request_id), factor)
                for factor in (data.applicant.email, data.applicant.phone)
                if factor
            ],
            "source": context.source,
            "content_hash": content_hash,
            "received_at": received_at,
            "reception_date": reception,
            # Handed over by the administration first seized: SVR runs from then (R13).
            "first_received_on": data.first_received_on or reception,
            "status": RequestStatus.received.value,
            "abusive": abuse is not None,
            "abuse_reason": abuse,
            "read_late": read_late,
            "arrived_at": min(data.arrived_at, received_at) if data.arrived_at else None,
            "regime": None,
            "delay_value": None,
            "delay_unit": None,
            "extend_to_working_day": False,
            "procedure_kind": None,
            "appeal_text": None,
            "registration_due_on": None,
            "receipt_due_on": None,
            "receipt_issued_at": None,
            "clock_state": "none",
            "decision_last_day": None,
            "decision_due_at": None,
            "implicit_decision": None,
            "assigned_service_code": None,
            "assigned_service_name": None,
            "transferred_to": None,
            "status_detail": None,
        }
        out = _Writes()
        out.history(
            request_id,
            received_at,
            RequestStatus.received.value,
            STATUS_LABELS[RequestStatus.received],
        )
        # RequestReceived's JSON form, field for field (tests hold it to the model).
        received = {
            "request_id": request_id,
            "tracking_code": values["tracking_code"],
            "procedure_code": data.procedure,
            "procedure_title": procedure.title if procedure else None,
            "procedure_kind": str(procedure.kind) if procedure else None,
            "channel": data.channel.value,
            "received_at": received_at,
            "reception_date": reception,
            "applicant": _contact(data),
            "contact_preference": data.contact_preference.value,
            "payload": data.payload,
            "location": values["location"],
            "abusive": abuse is not None,
        }
        out.events.append(
            written(
                RequestReceived,
                received,
                tenant=data.tenant,
                subject=str(request_id),
                occurred_at=received_at,
            )
        )
        if context.unidentified:
            # Received all the same (R1): the agents ask for what R7 requires (R11).
            out.history(
                request_id,
                received_at,
                "identification_incomplete",
                _to_identify(context.unidentified),
            )
        request = SimpleNamespace(**values)
        if abuse is not None:
            # R9: kept and visible to agents, but owed no receipt.
            self.flagged.inc()
            out.history(request_id, received_at, "flagged", f"Envoi signalé comme abusif : {abuse}")
        elif procedure is not None:
            values.update(_regime_snapshot(procedure))
            request = SimpleNamespace(**values)
            deadline = self._clock(request, tenant, pieces=())
            values.update(_clock_values(deadline, tenant))
            request = SimpleNamespace(**values)
            if context.signs:
                if self._signed(
                    context.key,
                    lambda key: self._acknowledge(
                        out, key, tenant, procedure, request, deadline, received_at
                    ),
                ):
                    values["receipt_issued_at"] = received_at
                else:
                    values.update(_owed(data.channel, reception, tenant))
        elif context.signs:
            # R3: an electronic sender gets an AE at once; R4: the AR within 7 days.
            values["receipt_due_on"] = receipt_due(reception)
            if not self._signed(
                context.key,
                lambda key: self._make_receipt(
                    out,
                    key,
                    tenant,
                    request,
                    ReceiptKind.accuse_enregistrement,
                    notices.registration(
                        reception_date=reception,
                        registered_on=entered_on,
                        issued_on=entered_on,
                        receipt_due_on=values["receipt_due_on"],
                        tracking_code=request.tracking_code,
                        tenant_name=tenant.name,
                    ),
                    received_at,
                    None,
                ),
            ):
                values.update(_owed(data.channel, reception, tenant))
        else:
            values["receipt_due_on"] = receipt_due(reception)  # R4, paper or phone
        created = _public_of(
            SimpleNamespace(**values), out.history_rows, out.receipt_rows, [], procedure
        )
        created["follow_url"] = self._follow_url(values["tracking_code"], received_at)
        # Dates, UUIDs and text only (no payload): orjson writes them as pydantic does.
        response = idempotency.StoredResponse(201, orjson.dumps(created, option=orjson.OPT_UTC_Z))
        return _Built(values, out, response)

    @staticmethod
    def _signed(key: SigningKey | None, sign: Callable[[SigningKey], None]) -> bool:
        """R23: a receipt that cannot be signed never costs the request its storage: it is
        kept, its receipt owed and issued by the scheduler's sweep."""
        if key is None:
            return False
        try:
            sign(key)
        except Exception:
            log.exception("receipt not signed: it will be owed")
            return False
        return True

    @staticmethod
    def _entered_by(principal: Principal, data: RequestCreate) -> str | None:
        """The authenticated agent, never a name the body claims (R22); an aidant acting by
        mandate is named with it (R25)."""
        if principal.acting_for:
            return principal.label()[:200]
        return principal.subject if principal.kind is Kind.agent else data.entered_by

    async def _owner(
        self, session: AsyncSession, principal: Principal, tenant: str, family: str, now: datetime
    ) -> str | None:
        """R15: whose request this is, as a pseudonym for the service; by mandate (R25), the
        citizen's who gave it."""
        if principal.acting_for:
            mandate = await mandate_for(session, principal, self.settings.pseudonym_key(), now)
            if mandate is None or mandate.tenant != tenant:
                raise forbidden(
                    "Ce mandat n'existe pas, n'est plus en vigueur, ou ne vous est pas donné "
                    "pour cette collectivité."
                )
            return str(mandate.owners[family]) if family in mandate.owners else None
        return self._pseudonym(principal, tenant, family)

    def _pseudonym(self, principal: Principal, tenant: str, family: str) -> str | None:
        """A logged-in citizen's identifier for this service, never the FranceConnect sub."""
        if principal.kind is not Kind.citizen:
            return None
        return pseudonym(self.settings.pseudonym_key(), tenant, family, principal.subject)

    def _follow_url(self, tracking_code: str, now: datetime) -> str:
        """The signed, expiring link an anonymous applicant follows the request with."""
        link = self.token_keys.issue_link(
            f"request:{tracking_code}", timedelta(days=self.settings.follow_link_days), now
        )
        return f"{self.settings.public_url}/v1/requests/{tracking_code}?access={link}"

    def _check_against_procedure(
        self, procedure: Any, data: RequestCreate, sender: Principal
    ) -> list[InvalidParam]:
        """Refusals before anything is stored. Returns what R7 asks that a request on paper,
        at the counter or by phone lacks: it is received all the same (R1), and the
        applicant asked for it as missing information (R11)."""
        _check_teleservice(procedure, data.channel, "channel")
        # R7 accepts FranceConnect's identification: a citizen signed in through it, acting
        # for themselves, has given who they are (even with no given name to give).
        franceconnected = (
            sender.kind is Kind.citizen and bool(sender.identity) and sender.acting_for is None
        )
        problems = _identification_problems(
            procedure, data.applicant, data.channel, franceconnected
        )
        if problems and data.channel.electronic:
            raise Problem(
                422,
                "identification-required",
                "Identification incomplète",
                "Cette démarche exige que le demandeur soit identifié : "
                + " ".join(p.reason for p in problems),
                problems,
            )
        if procedure.location_required and data.location is None:
            raise Problem(
                422,
                "location-required",
                "Lieu manquant",
                "Cette démarche concerne un lieu : indiquez sa position (latitude et "
                "longitude), et si possible son adresse ou un repère, pour que le service "
                "puisse intervenir.",
                [InvalidParam(name="location", reason="Ce champ est obligatoire.")],
            )
        return problems

    def _r9_bounds(
        self, now: datetime, content_hash: str
    ) -> tuple[datetime, datetime, str, int, int]:
        """What `source_activity` reads for R9: the last hour, counted up to the flood
        threshold, and this content within the repetition window (inside that hour), counted
        up to the repetition threshold."""
        since = now - R9_WINDOW
        window = now - self._repeat_window()
        return (
            since,
            max(since, window),
            content_hash,
            self.settings.abuse_max_per_hour,
            self._earlier_repeats(),
        )

    def _repeat_window(self) -> timedelta:
        return timedelta(minutes=self.settings.abuse_repeat_window_minutes)

    def _earlier_repeats(self) -> int:
        # A single resend (a citizen retrying after a lost answer, R23) is not abuse.
        return max(self.settings.abuse_repeat_min_count - 1, 1)

    def _abuse(self, activity: repository.SourceActivity) -> str | None:
        """R9: repetition of one content, or a flood, from one source."""
        if activity.same >= self._earlier_repeats():
            return (
                f"même contenu déjà reçu de la même source il y a moins de "
                f"{self.settings.abuse_repeat_window_minutes} minutes"
            )
        if activity.sent >= self.settings.abuse_max_per_hour:
            return (
                f"plus de {self.settings.abuse_max_per_hour} envois de la même source en une heure"
            )
        return None

    # -- receipts ----------------------------------------------------------------------------

    def _acknowledge(
        self,
        out: _Writes,
        key: SigningKey,
        tenant: Any,
        procedure: Any,
        request: Any,
        deadline: Deadline,
        now: datetime,
    ) -> None:
        """The AR with the mentions of R5."""
        mentions = notices.acknowledgement(
            reception_date=request.reception_date,
            tracking_code=request.tracking_code,
            service=_service(procedure),
            # The request's own frame, fixed when it was qualified: not today's catalogue.
            is_demande=request.procedure_kind == ProcedureKind.demande,
            regime=request.regime,
            delay=format_delay(request.delay_value, request.delay_unit),
            deadline=deadline,
            appeal_text=request.appeal_text,
            required_pieces=list(procedure.required_pieces),
            required_information=list(procedure.required_information),
            issued_on=local_date(now, tenant.timezone),
        )
        self._make_receipt(
            out, key, tenant, request, ReceiptKind.accuse_reception, mentions, now, procedure
        )

    def _make_receipt(
        self,
        out: _Writes,
        key: SigningKey,
        tenant: Any,
        request: Any,
        kind: ReceiptKind,
        mentions: list[str],
        now: datetime,
        procedure: Any | None,
    ) -> None:
        """Sign a receipt and queue its row, its history line and its event in `out`."""
        receipt_id = uuid.uuid4()
        # `ReceiptDocument`'s JSON form, field for field (tests hold it to the model):
        # building and dumping the model cost about 35 µs at every submission.
        signed = {
            "kind": kind.value,
            "receipt_id": str(receipt_id),
            "tenant": tenant.code,
            "tenant_name": tenant.name,
            "tracking_code": request.tracking_code,
            "issued_at": _json_instant(now),
            "timezone": tenant.timezone,
            "reception_date": request.reception_date.isoformat(),
            "procedure_title": procedure.title if procedure else None,
            "applicant_name": request.applicant["name"],
            "service_designation": procedure.service_designation if procedure else tenant.name,
            "service_postal_address": procedure.service_postal_address if procedure else "",
            "service_email": procedure.service_email if procedure else None,
            "service_phone": procedure.service_phone if procedure else None,
            "mentions": mentions,
            "verification_url": f"{self.settings.public_url}/v1/receipts/verify",
        }
        out.receipts.append(
            {
                "id": receipt_id,
                "request_id": request.id,
                "tenant": tenant.code,
                "kind": kind.value,
                "issued_at": now,
                "document": signed,
                "token": sign(signed, key),
            }
        )
        out.history(request.id, now, kind.value, f"Document émis : {RECEIPT_TITLES[kind]}")
        # ReceiptIssued's JSON form, field for field (tests hold it to the model).
        issued = {
            "request_id": request.id,
            "receipt_id": receipt_id,
            "tracking_code": request.tracking_code,
            "kind": kind.value,
            "title": RECEIPT_TITLES[kind],
            "issued_at": now,
            "mentions": mentions,
            "document_url": f"{self.settings.public_url}/v1/receipts/{receipt_id}.pdf",
        }
        out.events.append(
            written(
                ReceiptIssued, issued, tenant=tenant.code, subject=str(request.id), occurred_at=now
            )
        )

    async def _issue_acknowledgement(
        self,
        session: AsyncSession,
        tenant: Any,
        procedure: Any,
        request_id: uuid.UUID,
        now: datetime,
    ) -> None:
        row = await repository.get_request(session, request_id)
        out = _Writes()
        key = await self.keyring.active(session, tenant.code, now)
        self._acknowledge(
            out, key, tenant, procedure, row, await self._deadline(session, row, tenant), now
        )
        await out.flush(session)
        await repository.update_request(session, request_id, {"receipt_issued_at": now})

    async def _issue(
        self,
        session: AsyncSession,
        tenant: Any,
        request_id: uuid.UUID,
        kind: ReceiptKind,
        mentions: list[str],
        now: datetime,
        procedure: Any | None = None,
    ) -> None:
        """Sign, store and publish a receipt for a request already stored."""
        row = await repository.get_request(session, request_id)
        if procedure is None and row.procedure_code:
            procedure = await self._procedure_row(session, row.tenant, row.procedure_code)
        out = _Writes()
        key = await self.keyring.active(session, tenant.code, now)
        self._make_receipt(out, key, tenant, row, kind, mentions, now, procedure)
        await out.flush(session)

    async def receipt(self, receipt_id: uuid.UUID) -> tuple[ReceiptDocument, str]:
        async with self.db.sessions() as session:
            row = await repository.get_receipt(session, receipt_id)
        if row is None:
            raise Problem(
                404,
                "receipt-unknown",
                "Accusé introuvable",
                "Aucun accusé ne correspond à cet identifiant.",
            )
        return ReceiptDocument.model_validate(row.document), row.token

    async def verify(self, token: str) -> VerifyResult:
        """R2: authentic if signed by a key of the collectivité the receipt names. On a
        platform hosting many, one collectivité's key never vouches for another's receipt.
        Retired keys stay published (old receipts must still verify), and vouch only for
        what is kept on record."""
        async with self.db.sessions() as session:
            rows = await repository.signing_keys_for(session)
            verified = verify(token, Keyring.public_keys(rows)["keys"])
            if verified is None:
                return VerifyResult(authentic=False, receipt=None)
            kid, payload = verified
            # The same key signs receipts and transfers' hand-overs (R12): the answer says
            # which document it vouches for, so that neither passes for the other.
            document = payload.get("kind")
            if payload.get("type") == TRANSFER_TYPE:
                document = "transmission"
            elif document not in _RECEIPT_KINDS:
                return VerifyResult(authentic=False, receipt=None)
            key = next(r for r in rows if r.kid == kid)
            if "tenant" in payload and key.retired_at is None:
                authentic = payload["tenant"] == key.tenant
            else:
                # Signed before the document named its collectivité, or by a retired key
                # (retired because it leaked, say: whoever holds it signs anything, dated as
                # they please): authentic only as kept on record, word for word, by the
                # collectivité whose key it is.
                authentic = await _on_record(session, key.tenant, document, payload, token)
            if not authentic:
                return VerifyResult(authentic=False, receipt=None)
            void = None
            if document == ReceiptKind.attestation_acceptation_implicite:
                void = await self._void_attestation(session, payload)
        return VerifyResult(authentic=True, document=document, receipt=payload, void=void)

    @staticmethod
    async def _void_attestation(session: AsyncSession, payload: dict[str, Any]) -> str | None:
        """An attestation of a decision since found never born (the service's act, made in
        time, reached intake after the scheduler's pass) proves nothing: say so."""
        stored = await repository.get_receipt(session, uuid.UUID(str(payload["receipt_id"])))
        request = await repository.get_request(session, stored.request_id) if stored else None
        if request is None or _attests(stored, request):
            return None  # no record to judge by, or the acceptance stands
        void = (
            "Cette attestation, authentique, ne vaut pas acceptation : la décision qu'elle "
            "atteste n'est pas née, le service ayant répondu, demandé des pièces ou transmis "
            "la demande avant l'échéance."
        )
        if request.implicit_decision == "accepted":
            void += (
                " La demande a été réputée acceptée depuis, à une autre date : c'est "
                "l'attestation de cette décision qui fait foi."
            )
        return void

    async def jwks(self) -> dict[str, Any]:
        async with self.db.sessions() as session:
            return await Keyring.published(session)

    async def rotate_key(self, tenant: str, now: datetime | None = None) -> str:
        async with self.db.transaction() as session:
            await self._tenant(session, tenant)
            key = await self.keyring.rotate(session, tenant, now or datetime.now(UTC))
        return key.kid

    # -- the clock ----------------------------------------------------------------------------

    async def _deadline(self, session: AsyncSession, row: Any, tenant: Any) -> Deadline:
        if row.regime is None or row.answered_at is not None or row.abusive:
            # No silence to decide, an answer given (R10), or a send owed nothing (R9).
            return Deadline("none")
        pieces = await repository.pieces_for(session, row.id)
        return self._clock(row, tenant, pieces)

    @staticmethod
    def _clock(row: Any, tenant: Any, pieces: Any) -> Deadline:
        if row.regime is None:
            return Deadline("none")
        return implicit_decision(
            Clock(
                regime=row.regime,
                delay=Delay(row.delay_value, row.delay_unit),
                received_on=row.first_received_on,
                competent_received_on=row.reception_date
                if row.reception_date != row.first_received_on
                else None,
                pieces=tuple(
                    PiecesRequest(p.requested_on, p.due_on, p.received_on) for p in pieces
                ),
                extend_to_working_day=row.extend_to_working_day,
                territory=tenant.territory,
            )
        )

    async def _recompute_clock(self, session: AsyncSession, row: Any, tenant: Any) -> Deadline:
        deadline = await self._deadline(session, row, tenant)
        await repository.update_request(session, row.id, _clock_values(deadline, tenant))
        return deadline

    async def decide_due(self, now: datetime | None = None, limit: int = 100) -> int:
        """Turn every expired silence into its implicit decision (R10); returns how many."""
        now = now or datetime.now(UTC)
        async with self.db.transaction() as session:
            due = await repository.decisions_due(session, now, limit)
            for row in due:
                await self._decide(session, row, now)
        return len(due)

    async def _decide(self, session: AsyncSession, row: Any, now: datetime) -> RequestStatus:
        """The implicit decision born at `row.decision_due_at`, its history line and event."""
        accepted = row.regime == Regime.sva
        status = (
            RequestStatus.implicitly_accepted if accepted else RequestStatus.implicitly_rejected
        )
        await repository.update_request(
            session,
            row.id,
            {
                "status": status.value,
                "clock_state": "none",
                "implicit_decision": "accepted" if accepted else "rejected",
            },
        )
        await repository.add_history(
            session,
            row.id,
            row.decision_due_at,
            status.value,
            f"{STATUS_LABELS[status]} : silence gardé jusqu'au "
            f"{notices.midnight_of(row.decision_last_day)}",
        )
        await stage(
            session,
            ImplicitDecisionBorn(
                request_id=row.id,
                tracking_code=row.tracking_code,
                decision="accepted" if accepted else "rejected",
                last_day=row.decision_last_day,
                born_at=row.decision_due_at,
            ).envelope(tenant=row.tenant, subject=str(row.id), occurred_at=now),
        )
        born = self.implicit_decisions.labels("accepted" if accepted else "rejected")
        after_commit(session, born.inc)  # not if a savepoint or the transaction is undone
        return status

    async def _withdraw_decision(
        self,
        session: AsyncSession,
        row: Any,
        act: str,
        acted_at: datetime,
        closed: bool,
        held: bool = False,
    ) -> None:
        """Undo a decision the scheduler recorded for a request the service had acted on in
        time (`act`, one of `_ACTS`: answered, asked for pieces, transferred), with a line
        saying why the decision is void. An answer closes the request unless a later
        status reopened it (incomplete still if pieces are awaited); the other acts then
        apply to it as it was before the pass. A request sent on since (`_still_owed`; only
        an answer voids its decision then) has left: it is transferred, and its notice of
        transfer is corrected. `held`: an acceptance a transfer elsewhere holds back while
        on its way (R13, `decisions_due`), its clock kept for a refusal there."""
        tenant = await self._tenant_row(session, row.tenant)
        after_commit(session, self.implicit_decisions_voided.labels(row.implicit_decision).inc)
        values: dict[str, Any] = {"implicit_decision": None}
        values.update({"clock_state": "running"} if held else _NO_CLOCK)
        if closed or act == "answer" or row.transferred_to is not None:
            values.update(_NOTHING_MORE_DUE)  # an answered file owes no receipt either
        if act == "answer":
            values["answered_at"] = acted_at
        status = RequestStatus.closed
        if row.transferred_to is not None:
            status = RequestStatus.transferred
        elif not closed:
            pieces = await repository.pieces_for(session, row.id)
            awaited = any(p.received_on is None for p in pieces)
            status = RequestStatus.incomplete if awaited else RequestStatus.processing
        await repository.update_request(session, row.id, {"status": status.value, **values})
        acted_on = french_date(local_date(acted_at, tenant.timezone))
        await repository.add_history(
            session,
            row.id,
            row.decision_due_at,
            "implicit_decision_void",
            f"Pas d'acceptation implicite ici : le service avait transmis la demande le "
            f"{acted_on}, avant l'échéance ; le délai court à compter de sa réception par "
            "l'administration compétente"
            if held
            else f"Pas de décision implicite : le service avait {_ACTS[act]} le {acted_on}, "
            "avant l'échéance",
        )
        # Whoever took the announced decision for granted learns it never was.
        now = datetime.now(UTC)
        if row.transferred_to is not None:
            await self._issue(
                session,
                tenant,
                row.id,
                ReceiptKind.avis_transmission,
                notices.transfer_undecided(
                    tracking_code=row.tracking_code,
                    destination=row.transferred_to,
                    act=_ACTS[act],
                    acted_on=local_date(acted_at, tenant.timezone),
                ),
                now,
            )
        await stage(
            session,
            ImplicitDecisionVoid(
                request_id=row.id,
                tracking_code=row.tracking_code,
                decision=row.implicit_decision,
                act=act,
                acted_at=acted_at,
                voided_at=now,
            ).envelope(tenant=row.tenant, subject=str(row.id), occurred_at=now),
        )

    async def issue_owed_receipts(self, now: datetime | None = None, limit: int = 100) -> int:
        """R23: the AR (or AE) of requests stored without one because signing failed at
        reception; the scheduler retries until it succeeds. Returns how many were issued."""
        now = now or datetime.now(UTC)
        issued = 0
        failing: set[str] = set()  # collectivités whose signing fails: the others go on
        async with self.db.transaction() as session:
            closed = [s.value for s in FINAL]
            while issued < limit:
                owed = await repository.receipts_owed(session, closed, limit - issued, failing)
                fails = len(failing)
                for row in owed:
                    if row.tenant in failing:
                        continue
                    try:
                        async with session.begin_nested():
                            await self._issue_owed(session, row, now)
                        issued += 1
                    except Exception:
                        log.exception("owed receipts of %s not issued this pass", row.tenant)
                        failing.add(row.tenant)
                if len(failing) == fails:  # all done, or all that is owed was issued
                    break
        return issued

    async def _issue_owed(self, session: AsyncSession, row: Any, now: datetime) -> None:
        tenant = await self._tenant_row(session, row.tenant)
        if row.procedure_code is None:
            await self._issue(
                session,
                tenant,
                row.id,
                ReceiptKind.accuse_enregistrement,
                notices.registration(
                    reception_date=row.reception_date,
                    registered_on=local_date(row.received_at, tenant.timezone),
                    issued_on=local_date(now, tenant.timezone),
                    receipt_due_on=row.receipt_due_on,
                    tracking_code=row.tracking_code,
                    tenant_name=tenant.name,
                ),
                now,
            )
        else:
            procedure = await self._procedure_row(session, row.tenant, row.procedure_code)
            await self._issue_acknowledgement(session, tenant, procedure, row.id, now)

    async def attestation(
        self,
        tracking_code: str,
        now: datetime | None = None,
        principal: Principal = SYSTEM,
        proof: FollowProof | None = None,
    ) -> uuid.UUID:
        """The signed attestation of implicit acceptance a citizen may ask for (R5)."""
        now = now or datetime.now(UTC)
        async with self.db.transaction() as session:
            # Locked: concurrent asks get the one attestation, not one each.
            row = await self._request(session, tracking_code, for_update=True)
            await self._authorise(session, principal, row, "follow", proof)
            if (
                row.regime == Regime.sva
                and _born(row, now)
                and not await self._on_its_way(session, row)
            ):
                # Born before the scheduler's next pass, as an AR issued late announces:
                # recorded now, as the scheduler would record it (R5, R10).
                await self._decide(session, row, now)
                row = await repository.get_request(session, row.id)
            if row.implicit_decision != "accepted":
                raise Problem(
                    409,
                    "no-implicit-acceptance",
                    "Pas d'acceptation implicite",
                    "Cette demande n'est pas, à ce jour, réputée acceptée : aucune "
                    "attestation ne peut être délivrée.",
                )
            for existing in await repository.receipts_for(session, row.id):
                if existing.kind == ReceiptKind.attestation_acceptation_implicite and _attests(
                    existing, row
                ):
                    return uuid.UUID(str(existing.id))
            tenant = await self._tenant_row(session, row.tenant)
            procedure = await self._procedure_row(session, row.tenant, row.procedure_code)
            await self._issue(
                session,
                tenant,
                row.id,
                ReceiptKind.attestation_acceptation_implicite,
                notices.attestation(
                    tracking_code=row.tracking_code,
                    procedure_title=procedure.title if procedure else "",
                    reception_date=row.reception_date,
                    last_day=row.decision_last_day,
                    delay=format_delay(row.delay_value, row.delay_unit),
                    counts_from=self._clock(
                        row, tenant, await repository.pieces_for(session, row.id)
                    ).counts_from,
                ),
                now,
                procedure,
            )
            receipts = await repository.receipts_for(session, row.id)
        return uuid.UUID(str(receipts[-1].id))

    # -- qualification, incomplete files, transfers ------------------------------------------

    async def qualify(
        self,
        tracking_code: str,
        procedure_code: str,
        now: datetime | None = None,
        principal: Principal = SYSTEM,
    ) -> RequestPublic:
        """An agent names the procedure of a request that came without one: the AR follows."""
        now = now or datetime.now(UTC)
        async with self.db.transaction() as session:
            row, tenant = await self._editable(session, tracking_code, principal, "qualify", now)
            if row.procedure_code is not None:
                raise Problem(
                    409,
                    "already-qualified",
                    "Demande déjà qualifiée",
                    f"Cette demande relève déjà de la démarche « {row.procedure_code} ».",
                )
            procedure = await self._procedure(session, row.tenant, procedure_code)
            _check_teleservice(procedure, Channel(row.channel), "procedure")
            await repository.update_request(
                session, row.id, {"procedure_code": procedure_code, **_regime_snapshot(procedure)}
            )
            await repository.add_history(
                session, row.id, now, "qualified", f"Demande qualifiée : {procedure.title}"
            )
            try:
                applicant = Applicant.model_validate(row.applicant)
            except ValidationError:  # kept under an earlier version's rules: not judged here
                applicant = None
            missing = (
                _identification_problems(procedure, applicant, Channel(row.channel))
                if applicant is not None
                else []
            )
            if missing:
                # Received all the same (R1); what R7 asks for this procedure is to be
                # requested from the applicant as missing information (R11).
                await repository.add_history(
                    session, row.id, now, "identification_incomplete", _to_identify(missing)
                )
            row = await repository.get_request(session, row.id)
            await self._recompute_clock(session, row, tenant)
            if _owes_ar(procedure, row):
                await self._issue_acknowledgement(session, tenant, procedure, row.id, now)
            else:
                await repository.update_request(session, row.id, {"receipt_due_on": None})
            return await self._public(session, row.id)

    async def request_pieces(
        self,
        tracking_code: str,
        body: MissingPiecesCreate,
        now: datetime | None = None,
        principal: Principal = SYSTEM,
    ) -> RequestPublic:
        """R11: tell the applicant what is missing, by when, and what happens to the clock."""
        now = now or datetime.now(UTC)
        async with self.db.transaction() as session:
            row, tenant = await self._editable(session, tracking_code, principal, "instruct", now)
            await self._ask_pieces(session, row, tenant, body, now)
            return await self._public(session, row.id)

    async def _ask_pieces(
        self, session: AsyncSession, row: Any, tenant: Any, body: MissingPiecesCreate, now: datetime
    ) -> None:
        today = local_date(now, tenant.timezone)
        if body.due_on <= today:
            raise Problem(
                422,
                "due-date-past",
                "Date limite dépassée",
                "La date limite de production des pièces doit être postérieure à "
                f"aujourd'hui ({french_date(today)}).",
                [InvalidParam(name="due_on", reason="Choisissez une date à venir.")],
            )
        if body.due_on > today + timedelta(days=MAX_PIECES_DAYS):
            raise Problem(
                422,
                "due-date-too-far",
                "Date limite trop lointaine",
                f"Le délai accordé pour produire des pièces ne peut dépasser "
                f"{MAX_PIECES_DAYS} jours.",
                [InvalidParam(name="due_on", reason="Choisissez une date plus proche.")],
            )
        await repository.insert_pieces_request(
            session,
            {
                "id": uuid.uuid4(),
                "request_id": row.id,
                "pieces": body.pieces,
                "requested_on": today,
                "due_on": body.due_on,
                "requested_by": body.requested_by,
            },
        )
        deadline = await self._recompute_clock(session, row, tenant)
        await repository.update_request(session, row.id, {"status": RequestStatus.incomplete.value})
        await repository.add_history(
            session,
            row.id,
            now,
            RequestStatus.incomplete.value,
            f"Pièces demandées pour le {french_date(body.due_on)} : " + " ; ".join(body.pieces),
        )
        await self._issue(
            session,
            tenant,
            row.id,
            ReceiptKind.demande_pieces,
            notices.missing_pieces(
                pieces=body.pieces,
                due_on=body.due_on,
                # No clock for another reason (no procedure yet, an abusive send, a file
                # answered and reopened): no rule stated, rather than a wrong one.
                regime=row.regime if deadline.state != "none" or row.regime == "none" else None,
                # Its AR, owed once qualified, will state the rule: both are said meanwhile.
                unqualified=row.procedure_code is None
                and not row.abusive
                and row.answered_at is None,
                delay=format_delay(row.delay_value, row.delay_unit) if row.delay_value else "",
                deadline=deadline,
                tracking_code=row.tracking_code,
            ),
            now,
        )

    async def pieces_received(
        self,
        tracking_code: str,
        body: PiecesReceived,
        now: datetime | None = None,
        principal: Principal = SYSTEM,
    ) -> RequestPublic:
        """The pieces arrived: SVA starts, SVR's suspension ends (R11)."""
        now = now or datetime.now(UTC)
        async with self.db.transaction() as session:
            row, tenant = await self._editable(session, tracking_code, principal, "instruct", now)
            today = local_date(now, tenant.timezone)
            received_on = body.received_on or today
            if received_on > today:
                raise Problem(
                    422,
                    "date-in-future",
                    "Date future",
                    "La date de réception des pièces ne peut pas être future.",
                    [InvalidParam(name="received_on", reason="Date future.")],
                )
            awaited = [
                p for p in await repository.pieces_for(session, row.id) if p.received_on is None
            ]
            # The file is complete once every awaited piece is in: not before the last
            # request for pieces, when it was still incomplete (R11).
            last_asked = max((p.requested_on for p in awaited), default=None)
            if last_asked is not None and received_on < last_asked:
                raise Problem(
                    422,
                    "date-before-request",
                    "Date antérieure à la demande de pièces",
                    "Le dossier ne peut pas avoir été complété avant la dernière demande de "
                    f"pièces (le {french_date(last_asked)}) : indiquez la date à laquelle "
                    "toutes les pièces demandées étaient reçues.",
                    [InvalidParam(name="received_on", reason="Date trop ancienne.")],
                )
            if not await repository.mark_pieces_received(session, row.id, received_on):
                raise Problem(
                    409,
                    "no-pieces-awaited",
                    "Aucune pièce attendue",
                    "Aucune pièce n'est attendue pour cette demande.",
                )
            deadline = await self._recompute_clock(session, row, tenant)
            status = RequestStatus.assigned if row.assigned_service_code else RequestStatus.received
            await repository.update_request(session, row.id, {"status": status.value})
            label = f"Pièces reçues le {french_date(received_on)} : dossier complet"
            if deadline.last_day is not None:
                outcome = "acceptée" if row.regime == Regime.sva else "rejetée"
                label += (
                    f" ; demande réputée {outcome} le {notices.midnight_of(deadline.last_day)} "
                    "sans réponse d'ici là"
                )
            await repository.add_history(session, row.id, now, "pieces_received", label)
            await stage(
                session,
                PiecesArrived(
                    request_id=row.id, tracking_code=row.tracking_code, received_on=received_on
                ).envelope(tenant=row.tenant, subject=str(row.id), occurred_at=now),
            )
            procedure = (
                await repository.get_procedure(session, row.tenant, row.procedure_code)
                if row.procedure_code
                else None
            )
            if procedure is not None and _owes_ar(procedure, row):
                # A fresh AR restates the date now that the file is complete.
                await self._issue_acknowledgement(session, tenant, procedure, row.id, now)
            return await self._public(session, row.id)

    async def transfer(
        self,
        tracking_code: str,
        body: TransferCreate,
        now: datetime | None = None,
        principal: Principal = SYSTEM,
    ) -> RequestPublic:
        """R12: send the request on to the competent administration and tell the applicant.

        To another administration, in three steps so that no transaction waits for the
        remote: checked, signed and kept; sent; recorded once accepted. If it is not
        accepted, nothing changes and the agent may try again."""
        now = now or datetime.now(UTC)
        async with self.db.transaction() as session:
            row, tenant = await self._transferable(session, tracking_code, principal, now)
            replaced = await self._transfer(session, row, tenant, body, now, held=True)
            if body.tenant is not None or body.by_post:
                return await self._public(session, row.id)
        try:
            await self._deliver(row.id, now)
        except Problem:
            async with self.db.transaction() as session:
                # Unless the sweep took it over meanwhile (its attempt may be accepted).
                released = await repository.release_outgoing_transfer(
                    session, row.id, now + self._transfer_lease()
                )
                if released and replaced is not None:
                    # Not sent elsewhere after all: the refusal stays for operators to see.
                    await repository.insert_outgoing_transfer(session, replaced)
            raise
        async with self.db.sessions() as session:
            return await self._public(session, row.id)

    async def _transferable(
        self, session: AsyncSession, tracking_code: str, principal: Principal, now: datetime
    ) -> tuple[Any, Any]:
        """`_editable`, and also a request silence rejected after a transfer was asked that
        could not be made (refused there, given up): it must still reach the competent
        administration (R12), at another address, by post or through this guichet."""
        row = await self._request(session, tracking_code, for_update=True)
        kept = await repository.outgoing_transfer(session, row.id)
        if kept is None or kept.refused_at is None or not _still_owed(row, _asked(kept)):
            return await self._checked(session, row, principal, "instruct", now)
        await self._authorise(session, principal, row, "instruct")
        return row, await self._tenant_row(session, row.tenant)

    async def send_transfers(self, now: datetime | None = None, limit: int = 20) -> int:
        """Transfers to other administrations still to be sent: asked by a workflow, or
        interrupted by a crash. The same bytes go under the same key at every attempt, so
        the receiver files each once; returns how many were tried."""
        clock = now is None
        now = now or datetime.now(UTC)
        async with self.db.transaction() as session:
            # Sent one after the other: the n-th is held for n attempts' time.
            due = await repository.claim_outgoing_transfers(
                session, now, self._transfer_lease(), limit
            )
        for request_id in due:
            if clock:
                now = datetime.now(UTC)  # this attempt's time: `Date`, R13 reception date
            try:
                await self._deliver(request_id, now)
            except Exception as exc:
                if isinstance(exc, Problem):
                    why = exc.detail
                else:
                    log.exception("transfer of %s failed", request_id)
                    why = f"Erreur interne ({type(exc).__name__}) : l'envoi sera retenté."
                async with self.db.transaction() as session:
                    # Locked in `_deliver`'s order: the request, then its transfer.
                    row = await repository.get_request(session, request_id, for_update=True)
                    pending = await repository.outgoing_transfer(session, request_id, True)
                    if pending is None:
                        continue
                    if await _cancelled(session, row, pending, now):
                        continue  # closed during the attempt: it stays closed
                    attempts = pending.attempts + 1
                    # Failing since before `first_failed_at` was stored: the act's time,
                    # as it was counted then.
                    failing_since = pending.first_failed_at or (
                        pending.requested_at if pending.attempts else now
                    )
                    values: dict[str, Any] = {
                        "attempts": attempts,
                        "last_error": why[:200],
                        "first_failed_at": failing_since,
                    }
                    if isinstance(exc, _Refused) or now - failing_since >= _GIVE_UP:
                        # Refused for good (wrong address...), or no answer for a day of
                        # attempts: not tried again. The request stays here, its clock
                        # running, until an agent sends it elsewhere; operators see it.
                        values["refused_at"] = now
                        values["token"] = ""  # never sent again: keep no copy of the file
                        await _not_transferred(session, row, now, pending.administration_name, why)
                    else:
                        # 2, 4, 8 ... minutes, then every 6 hours.
                        values["next_attempt_at"] = now + timedelta(minutes=min(2**attempts, 360))
                    await repository.update_outgoing_transfer(session, request_id, values)
        async with self.db.sessions() as session:
            self.transfers_unaccepted.set(
                await repository.unaccepted_transfers(session, [s.value for s in FINAL])
            )
        return len(due)

    def _transfer_lease(self) -> timedelta:
        # Longer than one attempt can last: no one else sends it while it may be in flight.
        return timedelta(seconds=2 * self.settings.transfer_timeout + 30)

    async def _transfer(
        self,
        session: AsyncSession,
        row: Any,
        tenant: Any,
        body: TransferCreate,
        now: datetime,
        *,
        held: bool = False,
    ) -> dict[str, Any] | None:
        """Transfer to another tenant at once; to another administration, keep it to send
        once this transaction has committed: by the caller if `held`, else by the sweep.
        Returns the refused transfer it replaced, if any."""
        kept = await repository.outgoing_transfer(session, row.id)
        replaced = None
        if kept is not None and kept.refused_at is not None:
            replaced = dict(kept._mapping)
            await repository.delete_outgoing_transfer(session, row.id)  # sent elsewhere now
        elif kept is not None:
            raise Problem(
                409,
                "transfer-pending",
                "Transmission en cours",
                "Une transmission de cette demande est déjà en cours : attendez qu'elle "
                "aboutisse avant d'en demander une autre.",
            )
        if body.by_post:
            # Sent by post by the agent: the applicant is told, the request leaves here;
            # when the letter arrives there is not known here (R13).
            await self._record_transfer(
                session, row, tenant, body.administration_name or "", body.reason, None, now
            )
            return None
        if body.tenant is None:
            # Silence rejected the request since the refused one was asked (`_still_owed`):
            # this one stands in for it.
            first = None
            if replaced is not None and row.status in _IMPLICIT:
                first = _asked(kept)
            await self._keep_outgoing(session, row, tenant, body, now, held, first)
            return replaced
        if body.tenant == row.tenant:
            raise Problem(
                422,
                "transfer-to-self",
                "Transmission impossible",
                "La demande ne peut pas être transmise à sa propre collectivité.",
                [InvalidParam(name="tenant", reason="Même collectivité.")],
            )
        target = await self._tenant(session, body.tenant)
        new_id, new_code = await self._transfer_in(session, row, target, now)
        await self._record_transfer(
            session,
            row,
            tenant,
            target.name,
            body.reason,
            local_date(now, target.timezone),
            now,
            destination_tenant=body.tenant,
            new_id=new_id,
            new_code=new_code,
        )
        return None

    async def _record_transfer(
        self,
        session: AsyncSession,
        row: Any,
        tenant: Any,
        destination: str,
        reason: str,
        competent_reception: date | None,
        now: datetime,
        *,
        destination_tenant: str | None = None,
        new_id: uuid.UUID | None = None,
        new_code: str | None = None,
    ) -> None:
        """The request leaves here: no clock left to run, the applicant told (R12, R13).
        Rejected by silence since the transfer was asked (`_still_owed`), it stays so: that
        decision is the competent administration's, and the notice states it."""
        rejected = RequestStatus(row.status) is RequestStatus.implicitly_rejected
        values: dict[str, Any] = {"transferred_to": destination}
        if rejected:
            values.update(receipt_due_on=None, registration_due_on=None)  # owed there (R13)
        else:
            values.update(status=RequestStatus.transferred.value, **_NOTHING_MORE_DUE)
        await repository.update_request(session, row.id, values)
        await repository.add_history(
            session,
            row.id,
            now,
            RequestStatus.transferred.value,
            f"Transmise à {destination} : {reason}",
        )
        await self._issue(
            session,
            tenant,
            row.id,
            ReceiptKind.avis_transmission,
            notices.transfer(
                tracking_code=row.tracking_code,
                destination=destination,
                reason=reason,
                first_reception=row.first_received_on,
                competent_reception=competent_reception,
                new_tracking_code=new_code,
                rejected_on=row.decision_last_day if rejected else None,
            ),
            now,
        )
        await stage(
            session,
            RequestTransferred(
                request_id=row.id,
                tracking_code=row.tracking_code,
                destination=destination,
                destination_tenant=destination_tenant,
                new_request_id=new_id,
                reason=reason,
            ).envelope(tenant=row.tenant, subject=str(row.id), occurred_at=now),
        )

    async def _transfer_in(
        self, session: AsyncSession, row: Any, target: Any, now: datetime, sender: str = ""
    ) -> tuple[uuid.UUID, str]:
        """The competent tenant receives it today (R13), keeping the first reception date;
        returns the new request's id and tracking code. `sender`: the administration it
        comes from, when not one of this guichet's."""
        new_id = uuid.uuid4()
        code = new_tracking_code()
        reception = local_date(now, target.timezone)
        await repository.insert_request(
            session,
            {
                "id": new_id,
                "tenant": target.code,
                "tracking_code": code,
                "procedure_code": None,
                "channel": row.channel,
                "applicant": row.applicant,
                "contact_preference": row.contact_preference,
                "payload": row.payload,
                "location": row.location,
                "entered_by": None,
                # The applicant follows it with the e-mail or phone given at the first one.
                "follow_proofs": [
                    proof_digest(str(new_id), factor)
                    for factor in (row.applicant.get("email"), row.applicant.get("phone"))
                    if factor
                ],
                # Not the citizen's own send: R9 counts it under the transfer, never theirs.
                "source": _transfer_source(sender, row.tracking_code),
                "read_late": False,  # received here the day it was handed over
                "arrived_at": None,
                "content_hash": row.content_hash,
                "received_at": now,
                "reception_date": reception,
                "first_received_on": row.first_received_on,
                "status": RequestStatus.received.value,
                # R4: the competent administration owes the AR within 7 days of its seizure.
                "receipt_due_on": receipt_due(reception),
            },
        )
        await repository.add_history(
            session,
            new_id,
            now,
            RequestStatus.received.value,
            f"Reçue par transmission de la demande {row.tracking_code}"
            + (f" par {sender}" if sender else ""),
        )
        applicant = row.applicant
        address = applicant.get("postal_address")
        await stage(
            session,
            RequestReceived(
                request_id=new_id,
                tracking_code=code,
                procedure_code=None,
                procedure_title=None,
                channel=row.channel,
                received_at=now,
                reception_date=reception,
                applicant=ApplicantContact(
                    name=applicant["name"],
                    email=applicant.get("email"),
                    phone=applicant.get("phone"),
                    postal_address=_address_line(address) if address else None,
                ),
                contact_preference=row.contact_preference,
                payload=row.payload,
                location=row.location,
                abusive=False,
            ).envelope(tenant=target.code, subject=str(new_id), occurred_at=now),
        )
        return new_id, code

    async def receive_transfer(
        self, tenant_code: str, token: str, now: datetime | None = None
    ) -> idempotency.StoredResponse:
        """R12, the receiving end: a request that another administration, not competent,
        signed and sent here. Received today, its first reception date kept (R13: the SVA
        runs from today, the SVR from that date), its AR owed within 7 days (R4). The
        sender sends again until it has an answer: each hand-over is filed once."""
        now = now or datetime.now(UTC)
        async with self.db.sessions() as session:
            target = await self._tenant(session, tenant_code)
        sender, kid, retired = await self.senders.verify(token)
        document = _transfer_document(token)
        if not key_of(kid, document.tenant):
            # A listed sender signs for its own collectivités only (their code in the kid).
            raise Problem(
                403,
                "transfer-not-authentic",
                "Transmission non reconnue",
                "Cette transmission n'est pas signée par une clé de la collectivité qui l'envoie.",
            )
        # One hand-over, one file: whatever key or bytes a sender's retry comes with, and
        # answered as it was filed even if this guichet's checks have changed since.
        handed = idempotency.own_key(document.tracking_code, tenant_code, sender, document.tenant)
        print_ = idempotency.fingerprint(handed.encode())
        async with self.db.sessions() as session:
            kept = await idempotency.replay(session, TRANSFER_IN_SCOPE, handed, print_)
        if kept is not None:
            return kept  # filed before its key was retired: the answer it was owed
        if retired:
            # Whoever holds a retired key (leaked, say) could sign any hand-over, dated as
            # they wish; a Guichet signs its retries again with its new key (`_deliver`).
            raise Problem(
                403,
                "transfer-not-authentic",
                "Transmission non reconnue",
                "Cette transmission est signée par une clé que l'administration qui l'envoie "
                "a retirée : elle doit la signer de nouveau avec sa clé en vigueur.",
            )
        here = f"{self.settings.public_url.rstrip('/')}/v1/transfers/{tenant_code}"
        if _url_key(str(document.to)) != _url_key(here):
            # Signed for another address: never filed twice by replaying it elsewhere.
            raise Problem(
                422,
                "transfer-not-for-here",
                "Transmission adressée ailleurs",
                f"Cette transmission est adressée à {document.to}, pas à {here}.",
                [InvalidParam(name="to", reason="Adresse de réception d'un autre guichet.")],
            )
        data, left_out = _transfer_request(document, tenant_code)
        reception = local_date(now, target.timezone)
        if document.first_received_on > reception + ZONES_SPREAD:
            raise Problem(
                422,
                "transfer-content-invalid",
                "Transmission illisible",
                "La date de première réception est postérieure à demain, même dans le fuseau "
                "horaire de l'administration qui transmet.",
                [InvalidParam(name="first_received_on", reason="Date à venir.")],
            )
        arrival = SimpleNamespace(
            tracking_code=document.tracking_code,
            channel=data.channel.value,
            applicant=data.applicant.model_dump(mode="json"),
            contact_preference=data.contact_preference.value,
            payload=data.payload,
            location=data.location.model_dump(mode="json") if data.location else None,
            content_hash=_content_hash(data),
            first_received_on=document.first_received_on,
        )
        try:
            async with self.db.transaction() as session:
                kept = await idempotency.replay(session, TRANSFER_IN_SCOPE, handed, print_)
                if kept is not None:
                    return kept
                new_id, code = await self._transfer_in(session, arrival, target, now, sender=sender)
                if left_out:
                    await repository.add_history(
                        session,
                        new_id,
                        now,
                        "fields_left_out",
                        "Transmise avec des informations que ce guichet ne sait pas lire, "
                        f"non reprises : {', '.join(left_out)}. L'administration qui l'a "
                        "transmise les conserve.",
                    )
                received = TransferReceived(
                    tracking_code=code,
                    reception_date=reception,
                    first_received_on=document.first_received_on,
                )
                answer = idempotency.StoredResponse(201, received.model_dump_json().encode())
                await idempotency.remember(session, TRANSFER_IN_SCOPE, handed, print_, answer)
        except IntegrityError:
            # The same hand-over sent twice at once: the other send filed it.
            async with self.db.sessions() as session:
                kept = await idempotency.replay(session, TRANSFER_IN_SCOPE, handed, print_)
            if kept is None:
                raise
            return kept
        return answer

    async def _check_destination(self, url: str) -> None:
        """No request to an arbitrary address: listed hosts only if any are listed, and in
        production HTTPS only, never to a private, loopback or link-local address unless
        its host is listed (an agent's form must not reach the city's internal network)."""
        parts = urlsplit(url)
        allowed = self.settings.transfer_allowed_hosts
        listed = parts.hostname in allowed
        production = self.settings.env == "production"
        if (
            (production and parts.scheme != "https")
            or (allowed and not listed)
            or (production and not listed and not await _public_host(parts.hostname))
        ):
            raise Problem(
                422,
                "transfer-destination-refused",
                "Destinataire non autorisé",
                "Cette adresse de transmission n'est pas autorisée pour ce guichet : les "
                "transmissions se font en HTTPS vers les administrations déclarées.",
                [InvalidParam(name="administration_url", reason="Adresse non autorisée.")],
            )

    async def _keep_outgoing(
        self,
        session: AsyncSession,
        row: Any,
        tenant: Any,
        body: TransferCreate,
        now: datetime,
        held: bool,
        first_asked_at: datetime | None,
    ) -> None:
        """Check and sign the hand-over to another administration, and keep it to send.
        If `held`, the caller sends it once committed and the sweep leaves it alone
        meanwhile; it takes it over only if that call never ended (a crash)."""
        await self._check_destination(str(body.administration_url))
        key = await self.keyring.active(session, tenant.code, now)
        try:
            token = sign(
                {
                    "type": TRANSFER_TYPE,
                    "tenant": tenant.code,  # whose key signs it (see `verify`)
                    "from": tenant.name,
                    "tracking_code": row.tracking_code,
                    "first_received_on": row.first_received_on.isoformat(),
                    "received_at": row.received_at.isoformat(),
                    "channel": row.channel,
                    "applicant": row.applicant,
                    "contact_preference": row.contact_preference,
                    "payload": row.payload,
                    "location": row.location,
                    "reason": body.reason,
                    # The receiver files it only at this address: never replayed elsewhere.
                    "to": str(body.administration_url),
                },
                key,
            )
        except PayloadTooLarge as exc:
            raise Problem(
                409,
                "transfer-too-large",
                "Demande trop volumineuse",
                "Cette demande est trop volumineuse pour être transmise par voie "
                f"électronique à {body.administration_name} : elle reste ici. Transmettez-la "
                "par courrier à l'administration compétente.",
                [InvalidParam(name="administration_url", reason="Envoi électronique impossible.")],
            ) from exc
        await repository.insert_outgoing_transfer(
            session,
            _outgoing(
                row.id,
                body,
                now,
                token=token,
                next_attempt_at=now + self._transfer_lease() if held else now,
                first_asked_at=first_asked_at,
            ),
        )

    async def _signed_by_active_key(
        self, session: AsyncSession, tenant: str, pending: Any, now: datetime
    ) -> str:
        """A kept hand-over, signed again if its key was retired since: receivers refuse
        what a retired key signs. Theirs is one file per hand-over, whatever its bytes."""
        key = await self.keyring.active(session, tenant, now)
        if signed_by(pending.token) == key.kid:
            return str(pending.token)
        token = resign(pending.token, key)
        await repository.set_outgoing_token(session, pending.request_id, token)
        return token

    async def _deliver(self, request_id: uuid.UUID, now: datetime) -> None:
        """Send a kept transfer, outside any transaction, and record it once accepted (2xx):
        the competent administration received it today (R13). Raises a 502 problem if it
        was not accepted; then nothing here has changed."""
        async with self.db.transaction() as session:
            pending = await repository.outgoing_transfer(session, request_id)
            if pending is None:
                return  # another attempt recorded it meanwhile
            row = await repository.get_request(session, request_id)
            if await _cancelled(session, row, pending, now):
                return
            token = await self._signed_by_active_key(session, row.tenant, pending, now)
        http = self.http or httpx.AsyncClient(timeout=self.settings.transfer_timeout)
        try:
            async with asyncio.timeout(2 * self.settings.transfer_timeout):
                answer = await http.post(
                    pending.administration_url,
                    content=token,
                    headers={
                        "Content-Type": "application/jose",
                        # A retry after a lost answer must not create a second file there:
                        # same bytes, same key (the time of this attempt goes in `Date`
                        # only). Signed anew after a key rotation, other bytes, another key,
                        # as the Idempotency-Key draft wants; a Guichet files one hand-over
                        # once whatever its bytes, by its sender's number.
                        "Idempotency-Key": f"transfer-{request_id}-"
                        + hashlib.sha256(token.encode()).hexdigest()[:16],
                        "Date": format_datetime(now.astimezone(UTC), usegmt=True),
                    },
                )
        except (httpx.HTTPError, httpx.InvalidURL, UnicodeError, TimeoutError) as exc:
            log.warning(
                "transfer of %s to %s failed: %r", request_id, pending.administration_url, exc
            )
            why = (
                "délai dépassé"
                if isinstance(exc, httpx.TimeoutException | TimeoutError)
                else "adresse invalide"
                if isinstance(exc, httpx.InvalidURL | UnicodeError)
                else "pas de réponse"
            )
            if isinstance(exc, httpx.InvalidURL | UnicodeError):
                raise _Refused(pending.administration_name, why) from exc
            raise _unreachable(pending.administration_name, why) from exc
        finally:
            if self.http is None:
                await http.aclose()
        if not answer.is_success:
            status = answer.status_code
            log.warning(
                "transfer of %s to %s failed: HTTP %s",
                request_id,
                pending.administration_url,
                status,
            )
            if status in _REFUSED_FOR_GOOD:
                raise _Refused(pending.administration_name, f"HTTP {status}")
            raise _unreachable(pending.administration_name, f"HTTP {status}")
        async with self.db.transaction() as session:
            row = await repository.get_request(session, request_id, for_update=True)
            pending = await repository.outgoing_transfer(session, request_id, True)
            if pending is None:
                return
            if _moot(row, _asked(pending)):
                # Closed while it was in flight: the remote has it, the decision here stands.
                log.error("request %s closed while its transfer was accepted", request_id)
                await repository.delete_outgoing_transfer(session, request_id)
                await repository.add_history(
                    session,
                    request_id,
                    await _after_last_line(session, row.id, now),
                    "transfer_after_close",
                    f"Reçue par {pending.administration_name} après sa clôture ici.",
                )
                return
            tenant = await self._tenant(session, row.tenant)
            reception, filed_as = _filed_as(
                answer, row.first_received_on, local_date(now, tenant.timezone)
            )
            await self._record_transfer(
                session,
                row,
                tenant,
                pending.administration_name,
                pending.reason,
                reception,
                now,
                new_code=filed_as,
            )
            await repository.delete_outgoing_transfer(session, request_id)

    # -- catalogue --------------------------------------------------------------------------

    async def list_procedures(self, tenant: str) -> ProcedureList:
        async with self.db.sessions() as session:
            await self._tenant(session, tenant)
            rows = await repository.list_procedures(session, tenant)
        return ProcedureList(tenant=tenant, items=[_procedure_public(r) for r in rows])

    async def sva_procedures(self, tenant: str) -> SvaList:
        """R10: the published list of SVA procedures, with authority and delay."""
        async with self.db.sessions() as session:
            row = await self._tenant(session, tenant)
            rows = await repository.list_procedures(session, tenant, Regime.sva.value)
        return SvaList(
            tenant=tenant,
            tenant_name=row.name,
            items=[
                SvaEntry(
                    code=r.code,
                    title=r.title,
                    authority=f"{row.name} — {r.service_designation}",
                    delay=format_delay(r.delay_value, r.delay_unit),
                )
                for r in rows
            ],
        )

    async def put_procedure(
        self, tenant: str, code: str, body: ProcedureWrite
    ) -> tuple[ProcedurePublic, bool]:
        async with self.db.transaction() as session:
            await self._tenant(session, tenant)
            after_commit(session, self._catalogue.clear)
            if await repository.get_service(session, tenant, body.service) is None:
                raise Problem(
                    422,
                    "service-unknown",
                    "Service inconnu",
                    f"Le service « {body.service} » n'existe pas : créez-le d'abord.",
                    [InvalidParam(name="service", reason="Service inconnu.")],
                )
            created = await repository.upsert_procedure(
                session,
                {
                    "tenant": tenant,
                    "code": code,
                    "title": body.title,
                    "kind": body.kind.value,
                    "service_code": body.service,
                    "regime": body.regime.value,
                    "delay_value": body.delay.value,
                    "delay_unit": body.delay.unit.value,
                    "extend_to_working_day": body.extend_to_working_day,
                    "acknowledgement_required": body.acknowledgement_required,
                    "location_required": body.location_required,
                    "identification": body.identification.value,
                    "required_pieces": body.required_pieces,
                    "required_information": body.required_information,
                    "appeal_text": body.appeal_text,
                    "teleservice_url": str(body.teleservice_url) if body.teleservice_url else None,
                    "updated_at": datetime.now(UTC),
                },
            )
            row = await repository.get_procedure(session, tenant, code)
        return _procedure_public(row), created

    async def put_service(self, tenant: str, code: str, body: ServiceWrite) -> bool:
        async with self.db.transaction() as session:
            await self._tenant(session, tenant)
            after_commit(session, self._catalogue.clear)
            return await repository.upsert_service(
                session,
                {
                    "tenant": tenant,
                    "code": code,
                    "designation": body.designation,
                    "postal_address": body.postal_address,
                    "email": str(body.email) if body.email else None,
                    "phone": body.phone,
                },
            )

    # -- agents' views ------------------------------------------------------------------------

    async def overdue(self, tenant: str, now: datetime | None = None) -> OverdueList:
        now = now or datetime.now(UTC)
        async with self.db.sessions() as session:
            row = await self._tenant(session, tenant)
            rows = await repository.overdue_receipts(
                session, tenant, {tenant: local_date(now, row.timezone)}
            )
        return OverdueList(
            tenant=tenant,
            count=len(rows),
            items=[
                OverdueReceipt(
                    tracking_code=r.tracking_code,
                    received_at=r.received_at,
                    reception_date=r.reception_date,
                    receipt_due_on=r.receipt_due_on,
                    registration_due_on=r.registration_due_on,
                    channel=r.channel,
                )
                for r in rows
            ],
        )

    async def refresh_overdue_gauge(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        async with self.db.sessions() as session:
            tenants = await repository.list_tenants(session)
            rows = await repository.overdue_receipts(
                session, None, {t.code: local_date(now, t.timezone) for t in tenants}
            )
        counts = {t.code: 0 for t in tenants}
        for r in rows:
            counts[r.tenant] += 1
        for code, count in counts.items():
            self.receipts_overdue.labels(code).set(count)

    async def sources(self, tenant: str) -> SourceList:
        async with self.db.sessions() as session:
            await self._tenant(session, tenant)
            rows = await repository.flagged_sources(session, tenant)
        return SourceList(
            tenant=tenant,
            items=[
                SourcePublic(
                    source=r.source,
                    flagged_requests=r.flagged,
                    noticed_at=r.noticed_at,
                    blocked_at=r.blocked_at,
                    reason=r.reason,
                )
                for r in rows
            ],
        )

    async def notice_source(
        self, tenant: str, source: str, reason: str, now: datetime | None = None
    ) -> None:
        """R9: the source is told before it can be blocked, at the address it sent from."""
        now = now or datetime.now(UTC)
        async with self.db.transaction() as session:
            row = await self._tenant(session, tenant)
            latest = await repository.latest_from_source(session, tenant, source)
            if latest is None:
                raise Problem(
                    404,
                    "source-unknown",
                    "Source inconnue",
                    "Aucun envoi n'a été reçu de cette source : il n'y a personne à informer.",
                )
            await repository.upsert_source(
                session, tenant, source, {"noticed_at": now, "reason": reason}
            )
            applicant = latest.applicant
            address = applicant.get("postal_address")
            await stage(
                session,
                SourceNoticed(
                    source=source,
                    request_id=latest.id,
                    tracking_code=latest.tracking_code,
                    name=applicant["name"],
                    email=applicant.get("email"),
                    postal_address=_address_line(address) if address else None,
                    title="Information sur le caractère abusif de vos envois",
                    notice=notices.abusive_source(tenant_name=row.name, reason=reason),
                    noticed_at=now,
                ).envelope(tenant=tenant, subject=str(latest.id), occurred_at=now),
            )

    async def block_source(
        self, tenant: str, source: str, reason: str, now: datetime | None = None
    ) -> None:
        now = now or datetime.now(UTC)
        async with self.db.transaction() as session:
            await self._tenant(session, tenant)
            known = await repository.get_source(session, tenant, source)
            if known is None or known.noticed_at is None:
                raise Problem(
                    409,
                    "source-not-noticed",
                    "Source non informée",
                    "Informez d'abord la source du caractère abusif de ses envois "
                    "(R9) avant de la bloquer.",
                )
            flagged = await repository.flagged_count(session, tenant, source)
            needed = self.settings.abuse_block_min_flagged
            if flagged < needed:
                # L112-11 speaks of abuse by number, repetition or system: a few flagged
                # sends do not make a source abusive enough to be shut out.
                raise Problem(
                    409,
                    "source-not-abusive-enough",
                    "Envois abusifs trop peu nombreux",
                    f"Cette source n'a que {flagged} envoi(s) signalé(s) comme abusif(s) ; "
                    f"un blocage en suppose au moins {needed}.",
                )
            # Blocked again (a reason restated): still from the first day, which decides
            # what arrived before the block (`_blocked`).
            await repository.upsert_source(
                session, tenant, source, {"blocked_at": known.blocked_at or now, "reason": reason}
            )
            after_commit(session, self._catalogue.clear)

    async def unblock_source(self, tenant: str, source: str) -> None:
        async with self.db.transaction() as session:
            await self._tenant(session, tenant)
            await repository.upsert_source(session, tenant, source, {"blocked_at": None})
            after_commit(session, self._catalogue.clear)

    # -- reads -----------------------------------------------------------------------------

    async def get_request(
        self,
        tracking_code: str,
        principal: Principal = SYSTEM,
        proof: FollowProof | None = None,
    ) -> RequestPublic:
        async with self.db.sessions() as session:
            row = await self._request(session, tracking_code)
            service = await self._authorise(session, principal, row, "follow", proof, journal=False)
            public = await self._public(session, row.id)
        if principal.kind is Kind.agent or principal.acting_for:
            # Journaled before the file is handed over: no read escapes the DPO (R21).
            async with self.db.transaction() as session:
                await record_read(
                    session,
                    principal,
                    tenant=row.tenant,
                    file=str(row.id),
                    service=service,
                    purpose="consultation du dossier",
                )
        return public

    async def _file_service(self, session: AsyncSession, row: Any) -> str | None:
        """The service a file belongs to: the one it was routed to, else its procedure's."""
        if row.assigned_service_code:
            return str(row.assigned_service_code)
        if row.procedure_code:
            procedure = await self._procedure_row(session, row.tenant, row.procedure_code)
            if procedure is not None:
                return str(procedure.service_code)
        return None

    async def _authorise(
        self,
        session: AsyncSession,
        principal: Principal,
        row: Any,
        action: str,
        proof: FollowProof | None = None,
        *,
        journal: bool = True,
    ) -> str | None:
        """R21: who may follow (`follow`), qualify or instruct (`instruct`) this file.

        Refusals read as "unknown request": a tracking code tells nothing to whoever may
        not see its file. Agents' accesses are journaled for the DPO.
        """
        service = await self._file_service(session, row)
        if principal.kind is Kind.system:
            return service
        allowed = False
        if principal.acting_for:
            # R25: by mandate, what the citizen who gave it may do, and no more.
            mandate = await mandate_for(
                session, principal, self.settings.pseudonym_key(), datetime.now(UTC)
            )
            allowed = (
                action == "follow"
                and mandate is not None
                and row.owner is not None
                and row.owner in mandate.owners.values()
            )
        elif principal.kind is Kind.agent:
            counter = principal.has_role(row.tenant, Role.counter_agent)
            allowed = principal.handles(row.tenant, service) or (
                counter
                and (
                    # Unqualified files are qualified at reception; counter agents follow
                    # what they entered for someone (R22), nothing else.
                    (service is None and action in ("follow", "qualify"))
                    or (row.entered_by == principal.subject and action == "follow")
                )
            )
        elif action == "follow":
            if principal.kind is Kind.citizen and row.owner is not None:
                allowed = row.owner == pseudonym(
                    self.settings.pseudonym_key(), row.tenant, row.owner_family, principal.subject
                )
            if not allowed and proof is not None:
                allowed = self._proof_holds(row, proof)
        if not allowed:
            raise self._unknown_request()
        if journal and (principal.kind is Kind.agent or principal.acting_for):
            await record_read(
                session,
                principal,
                tenant=row.tenant,
                file=str(row.id),
                service=service,
                purpose=ACTION_PURPOSES[action],
            )
        return service

    def _proof_holds(self, row: Any, proof: FollowProof) -> bool:
        if proof.link is not None and self.token_keys.verify_link(
            proof.link, f"request:{row.tracking_code}"
        ):
            return True
        if proof.factor is not None:
            return same_digest(proof_digest(str(row.id), proof.factor), row.follow_proofs or [])
        return False

    async def _public(self, session: AsyncSession, request_id: uuid.UUID) -> RequestPublic:
        row = await repository.get_request(session, request_id)
        entries = await repository.history(session, row.id)
        receipts = await repository.receipts_for(session, row.id)
        pieces = await repository.pieces_for(session, row.id)
        procedure = (
            await self._procedure_row(session, row.tenant, row.procedure_code)
            if row.procedure_code
            else None
        )
        shown = _public_of(row, entries, receipts, pieces, procedure)
        if shown["implicit_decision"] and await self._on_its_way(session, row):
            shown["implicit_decision"]["state"] = "transfer_pending"
        return RequestPublic.model_validate(shown)

    # -- catalogue cache: the hot path reads it on every request -------------------------

    async def _tenant_row(self, session: AsyncSession | None, code: str) -> Any:
        return await self._cached(
            ("tenant", code), session, lambda s: repository.get_tenant(s, code)
        )

    async def _procedure_row(self, session: AsyncSession | None, tenant: str, code: str) -> Any:
        return await self._cached(
            ("procedure", tenant, code),
            session,
            lambda s: repository.get_procedure(s, tenant, code),
        )

    async def _blocked(
        self,
        session: AsyncSession | None,
        tenant: str,
        source: str,
        arrived_on: date | None,
        arrived_at: datetime | None,
        timezone: str,
    ) -> bool:
        """R9: blocked sources, read once per TTL rather than once per request. A send that
        reached the mailbox before the block (its instant `arrived_at` when the connector
        gives it, else its day `arrived_on`), read late, was not made after it (L112-11
        concerns sends to come; R23)."""

        async def load(s: AsyncSession) -> dict[str, datetime]:
            return await repository.blocked_sources(s, tenant)

        blocked: dict[str, datetime] = await self._cached(("blocked", tenant), session, load)
        since = blocked.get(source)
        if since is None:
            return False
        if arrived_at is not None:
            return arrived_at >= since
        return arrived_on is None or arrived_on >= local_date(since, timezone)

    async def _cached(
        self,
        key: tuple[str, ...],
        session: AsyncSession | None,
        load: Callable[[AsyncSession], Awaitable[Any]],
    ) -> Any:
        """The catalogue entry under `key`; with no session, `_CacheMiss` unless cached."""
        hit = self._catalogue.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        if session is None:
            raise _CacheMiss
        row = await load(session)
        # Absences too (an unknown procedure asked again and again costs one read per TTL).
        # Edits made on this replica clear the cache at once; others see them within the
        # TTL. A request's regime is fixed at reception either way.
        now = time.monotonic()
        if len(self._catalogue) >= self.catalogue_max:
            # In place: commits clear this very dict (`after_commit`).
            for stale in [k for k, (until, _) in self._catalogue.items() if until <= now]:
                del self._catalogue[stale]
            if len(self._catalogue) >= self.catalogue_max:
                self._catalogue.clear()
        self._catalogue[key] = (now + self.catalogue_ttl, row)
        return row

    async def _tenant(self, session: AsyncSession | None, code: str) -> Any:
        tenant = await self._tenant_row(session, code)
        if tenant is None:
            raise unknown_tenant(code)
        return tenant

    async def _procedure(self, session: AsyncSession | None, tenant: str, code: str) -> Any:
        procedure = await self._procedure_row(session, tenant, code)
        if procedure is None:
            raise Problem(
                404,
                "procedure-unknown",
                "Démarche inconnue",
                f"La démarche « {code} » n'existe pas pour cette collectivité. La "
                f"liste des démarches est publiée sur /intake/v1/procedures?tenant="
                f"{tenant}.",
                [InvalidParam(name="procedure", reason="Démarche inconnue.")],
            )
        return procedure

    async def _request(
        self, session: AsyncSession, tracking_code: str, for_update: bool = False
    ) -> Any:
        row = await repository.get_request_by_code(
            session, normalise_tracking_code(tracking_code), for_update=for_update
        )
        if row is None:
            raise self._unknown_request()
        return row

    @staticmethod
    def _unknown_request() -> Problem:
        return Problem(
            404,
            "request-unknown",
            "Demande introuvable",
            "Aucune demande ne correspond à ce numéro de suivi et à ce justificatif. "
            "Vérifiez-les : le numéro figure sur votre accusé de réception ; le "
            "justificatif est l'adresse électronique ou le téléphone donné au dépôt, ou "
            "le lien de suivi reçu.",
        )

    async def _on_its_way(self, session: AsyncSession, row: Any) -> bool:
        """Whether the request's SVA is held back by a transfer elsewhere on its way (R13):
        while it is, none is recorded here, whatever the date; accepted there, none is
        born here, and sent nowhere, it was born at its date."""
        if row.regime != Regime.sva:
            return False
        pending = await repository.outgoing_transfer(session, row.id)
        return pending is not None and _sva_on_its_way(row, pending)

    async def _editable(
        self,
        session: AsyncSession,
        tracking_code: str,
        principal: Principal,
        action: str,
        at: datetime,
    ) -> tuple[Any, Any]:
        """The request, locked for this transaction, and its tenant; closed ones refuse, and
        so does one whose silence has decided at `at`, the act's time, even if the
        scheduler has not recorded that decision yet (R10), or would have but for a
        transfer on its way, which decides whether it has (R13)."""
        row = await self._request(session, tracking_code, for_update=True)
        return await self._checked(session, row, principal, action, at)

    async def _checked(
        self, session: AsyncSession, row: Any, principal: Principal, action: str, at: datetime
    ) -> tuple[Any, Any]:
        """`_editable`'s checks on a request already read and locked."""
        await self._authorise(session, principal, row, action)
        self._open(row)
        if _born(row, at):
            if await self._on_its_way(session, row):
                raise Problem(
                    409,
                    "transfer-pending",
                    "Transmission en cours",
                    "La demande est en cours de transmission à l'administration compétente, "
                    "et le délai au terme duquel le silence vaudrait acceptation est passé : "
                    "attendez l'issue de la transmission. Reçue là-bas, elle y est traitée ; "
                    "sans suite, l'acceptation est née à son terme.",
                )
            outcome = "acceptation" if row.regime == Regime.sva else "rejet"
            raise Problem(
                409,
                "implicit-decision-born",
                "Décision implicite née",
                f"Le silence gardé jusqu'au {notices.midnight_of(row.decision_last_day)} vaut "
                f"{outcome} de cette demande : elle ne peut plus être modifiée.",
            )
        return row, await self._tenant_row(session, row.tenant)

    @staticmethod
    def _open(row: Any) -> None:
        if RequestStatus(row.status) in FINAL:
            raise Problem(
                409,
                "request-closed",
                "Demande close",
                f"Cette demande est close ({STATUS_LABELS[RequestStatus(row.status)]}"
                ") : elle ne peut plus être modifiée.",
            )

    # -- consumers ----------------------------------------------------------------------------

    async def on_request_assigned(self, session: AsyncSession, envelope: Any) -> None:
        """Routing chose the competent service: the applicant sees it when following."""
        event = RequestAssigned.model_validate(envelope.data)
        # Locked: a status the other consumer commits meanwhile is read, not overwritten.
        row = await repository.get_request(session, event.request_id, for_update=True)
        if row is None:
            # Not ours (another environment's event): retrying would block the partition.
            log.warning("assignment for unknown request %s ignored", event.request_id)
            return
        values: dict[str, Any] = {
            "assigned_service_code": event.service_code,
            "assigned_service_name": event.service_name,
        }
        if row.status == RequestStatus.received:
            values["status"] = RequestStatus.assigned.value
        await repository.update_request(session, event.request_id, values)
        await repository.add_history(
            session,
            event.request_id,
            event.assigned_at,
            RequestStatus.assigned.value,
            f"Transmise au service : {event.service_name}",
        )

    async def on_status_changed(self, session: AsyncSession, envelope: Any) -> None:
        """The service moved the request along its workflow: the citizen follows it here.

        A final status is the explicit answer: the implicit-decision clock stops (an
        explicit decision taken in time leaves no room for silence to decide)."""
        event = StatusChanged.model_validate(envelope.data)
        # Locked: the scheduler deciding this request meanwhile waits, or skips it.
        row = await repository.get_request(session, event.request_id, for_update=True)
        if row is None:
            log.warning("status change for unknown request %s ignored", event.request_id)
            return
        answered_in_time = (
            event.final
            and "transfer" not in event.actions
            # (an answer recorded after silence decided does not hide an earlier one)
            and (row.answered_at is None or event.changed_at < row.answered_at)
            and (row.decision_due_at is None or event.changed_at < row.decision_due_at)
        )
        late = event.sequence and row.status_seq is not None and event.sequence <= row.status_seq
        if answered_in_time and row.implicit_decision is not None:
            # The answer reached intake after the scheduler's pass, but it was given before
            # silence could decide: no decision was born (R10). Closed by that answer,
            # unless a later status already applied reopened the file.
            reopened = bool(late) and row.workflow_final is False
            await self._withdraw_decision(
                session, row, "answer", event.changed_at, closed=not reopened
            )
            row = await repository.get_request(session, row.id)
        status = RequestStatus(row.status)
        if late:
            # An earlier status delivered late (each routing replica relays its own
            # outbox): what the request is and what the citizen reads stay as they are.
            # An answer it carried, given before silence could decide, still stops the
            # clock for good (R10); one given after, the scheduler's decision precedes.
            if answered_in_time and status not in FINAL:
                await repository.update_request(
                    session, row.id, {"answered_at": event.changed_at, **_NOTHING_MORE_DUE}
                )
            await repository.add_history(
                session, event.request_id, event.changed_at, event.status, event.label
            )
            return
        if (
            event.final
            and status not in FINAL
            and row.decision_due_at is not None
            and event.changed_at >= row.decision_due_at
        ):
            # The answer came after silence had decided (R10): that decision stands, even
            # if the scheduler has not recorded it yet; the answer is recorded after it.
            # (An SVA a transfer on its way held back too: answered here, the request is
            # not sent on, so that transfer changes nothing and the date stands, R13.)
            status = await self._decide(session, row, event.changed_at)
        values: dict[str, Any] = {"status_detail": event.label, "workflow_final": event.final}
        if event.sequence:
            values["status_seq"] = event.sequence
        # A transfer ends the request here through its own event (R12), in whatever order
        # the two arrive: closing it first would make intake refuse the transfer.
        if status not in FINAL and "transfer" not in event.actions:
            if event.final:
                values.update(
                    status=RequestStatus.closed.value,
                    answered_at=event.changed_at,
                    **_NOTHING_MORE_DUE,
                )
            elif status is not RequestStatus.incomplete:
                # (An incomplete file stays so until its pieces arrive, whatever the
                # workflow's step: R11's clock rule depends on it.)
                values["status"] = RequestStatus.processing.value
        elif status is RequestStatus.closed and not event.final:
            # The service took back what its workflow had closed (a transfer that failed,
            # a reopening): open here again; the answer stopped the clock for good.
            values["status"] = RequestStatus.processing.value
        elif status in _IMPLICIT and event.final and "transfer" not in event.actions:
            # An answer after silence decided: the decision stands; should it be found void
            # (an act made in time, consumed late), this answer still stops the clock.
            values["answered_at"] = event.changed_at
        await repository.update_request(session, event.request_id, values)
        await repository.add_history(
            session, event.request_id, event.changed_at, event.status, event.label
        )

    async def on_pieces_requested(self, session: AsyncSession, envelope: Any) -> None:
        """The service's workflow asks for pieces: intake issues the legal request (R11)."""
        event = PiecesRequested.model_validate(envelope.data)

        async def act(row: Any, tenant: Any) -> None:
            today = local_date(event.requested_at, tenant.timezone)
            body = MissingPiecesCreate(
                pieces=event.pieces,
                due_on=today + timedelta(days=event.due_in_days),
                requested_by=event.requested_by,
            )
            await self._ask_pieces(session, row, tenant, body, event.requested_at)

        await self._on_routing_act(session, event.request_id, event.requested_at, "pieces", act)

    async def on_transfer_requested(self, session: AsyncSession, envelope: Any) -> None:
        """The service's workflow sends the request on: intake transfers it (R12)."""
        event = TransferRequested.model_validate(envelope.data)
        at = event.requested_at
        asked: list[TransferCreate] = []

        async def act(row: Any, tenant: Any) -> None:
            try:
                body = TransferCreate.model_validate(
                    event.model_dump(
                        include={"tenant", "administration_name", "administration_url", "reason"},
                        exclude_none=True,
                    )
                )
            except ValidationError as exc:  # a circuit written before routing checked it
                raise Problem(
                    422,
                    "transfer-invalid",
                    "Transmission impossible",
                    "La transmission demandée par le circuit ne désigne pas une destination "
                    "valide : une collectivité, ou une administration avec son adresse.",
                ) from exc
            asked.append(body)
            await self._transfer(session, row, tenant, body, at)

        async def refused(problem: Problem) -> None:
            # Not made (its savepoint undone): the workflow's service takes the request
            # back, unless it was closed or decided before it could be, which the sweep
            # also answers so.
            if problem.slug == "transfer-pending":
                return  # the pending transfer's own outcome will be told
            row = await repository.get_request(session, event.request_id)
            destination = event.administration_name or "l'administration compétente"
            if event.tenant is not None:
                named = await repository.get_tenant(session, event.tenant)
                destination = named.name if named else event.tenant
            elsewhere = bool(asked) and asked[0].tenant is None
            if _moot(row, at) and not (elsewhere and _held_back(row, at)):
                # Closed or decided: not made, and a transfer asked before and in flight
                # is left to its own outcome. (Silence's decision not recorded yet is no
                # reason: an act made in time and consumed later may still show it void.
                # One held back is refused as if read in time: the acceptance stands.)
                await _cancellation(session, row, destination, at)
                return
            if elsewhere:
                # Refused here before any send (host not allowed, too large to sign): kept
                # as refused, so operators see it too.
                await repository.delete_outgoing_transfer(session, row.id)
                await repository.insert_outgoing_transfer(
                    session,
                    _outgoing(
                        row.id,
                        asked[0],
                        at,
                        token="",
                        next_attempt_at=at,
                        attempts=1,
                        first_failed_at=at,
                        last_error=problem.detail[:200],
                        refused_at=at,
                    ),
                )
            await _not_transferred(session, row, at, destination, problem.detail)

        # A transfer to an outside administration takes effect once accepted there. Asked
        # before the deadline, it holds an SVA back until then (`decisions_due`, R13), even
        # when read after the pass recorded it; an SVR's rejection stands, and the transfer
        # is made all the same (`_still_owed`).
        await self._on_routing_act(
            session, event.request_id, at, "transfer", act, refused, voids=event.tenant is not None
        )

    async def _on_routing_act(
        self,
        session: AsyncSession,
        request_id: uuid.UUID,
        at: datetime,
        what: str,
        act: Callable[[Any, Any], Awaitable[None]],
        refused: Callable[[Problem], Awaitable[None]] | None = None,
        voids: bool = True,
    ) -> None:
        """Run a legal act routing asked for (`what`, one of `_ACTS`), or log why it cannot
        be: a refusal (closed request, impossible destination, content intake refuses)
        must not block the events that follow.

        Asked before silence decided but reaching intake after the scheduler's pass, an act
        that `voids` (one that takes effect at once) voids the decision the pass recorded
        (R10), as an answer does; if the act is then refused, the decision stands (the
        savepoint undoes both), and `refused` answers it. One that does not (a transfer
        elsewhere, made once accepted there) is made all the same if silence rejected the
        request meanwhile (`_still_owed`)."""
        row = await repository.get_request(session, request_id, for_update=True)
        if row is None:
            log.warning("%s for unknown request %s ignored", what, request_id)
            return
        try:
            async with session.begin_nested():
                voided = (
                    voids
                    # Sent on since silence rejected it (`_still_owed`): not made here,
                    # the act keeps no decision from being born.
                    and row.transferred_to is None
                    and row.implicit_decision is not None
                    and row.status in _IMPLICIT
                    and row.decision_due_at is not None
                    and at < row.decision_due_at
                )
                if voided and what == "pieces" and row.workflow_final:
                    # The workflow has answered since: that answer, not silence, decided;
                    # the pieces it asked for before are no longer awaited.
                    await self._withdraw_decision(session, row, what, at, closed=True)
                    return
                held = not voids and _held_back(row, at)
                if voided or held:
                    await self._withdraw_decision(session, row, what, at, closed=False, held=held)
                elif not voids and _still_owed(row, at):
                    await act(row, await self._tenant_row(session, row.tenant))
                    return
                locked, tenant = await self._editable(
                    session, row.tracking_code, SYSTEM, "instruct", at
                )
                await act(locked, tenant)
        except Problem as problem:
            if problem.status >= 500:
                raise  # the remote administration failed: retry later
            log.warning("%s for request %s refused: %s", what, request_id, problem.detail)
            if refused is not None:
                await refused(problem)
        except ValidationError as invalid:  # what routing accepted and intake does not
            log.warning("%s for request %s refused: %s", what, request_id, invalid)


_RECEIPT_KINDS = frozenset(kind.value for kind in ReceiptKind)
_IMPLICIT = frozenset({RequestStatus.implicitly_accepted, RequestStatus.implicitly_rejected})
# What the service did before the deadline that kept silence from deciding (R10, R11, R12).
_ACTS = {
    "answer": "répondu",
    "pieces": "demandé des pièces",
    "transfer": "transmis la demande",
}
TRANSFER_TYPE = "guichet.transfer.v1"
TRANSFER_IN_SCOPE = "intake.transfer-in"


def _transfer_document(token: str) -> TransferDocument:
    """An authentic hand-over's envelope, its JSON read again from the token by the reader
    every body goes through (depth, NaN, lone surrogates), which JOSE's reader is not."""
    try:
        payload = loads(segment(token, 1))
        return TransferDocument.model_validate(payload)
    except json.JSONDecodeError as exc:
        raise Problem(
            422,
            "transfer-content-invalid",
            "Transmission illisible",
            f"La transmission est bien signée, mais son contenu n'est pas lisible : {exc.msg}",
        ) from exc
    except ValidationError as exc:
        raise validation_problem(exc.errors()) from exc


def _transfer_request(document: TransferDocument, tenant: str) -> tuple[RequestCreate, list[str]]:
    """The request handed over, checked as a submission's would be, and the fields left
    out: those a newer sender adds (to the applicant, the location) that this version
    does not know. Refusing them would leave the request with no competent administration
    (R12); the sender keeps them, and the history names them."""
    applicant = document.applicant if isinstance(document.applicant, dict) else {}
    # Absent from a sender that does not say: the first way to reach the applicant.
    preference = document.contact_preference or next(
        (way for way, field in _CONTACTS if applicant.get(field)), ContactPreference.email
    )
    handed = {
        "tenant": tenant,
        "channel": document.channel,
        # An earlier version (or another product) let line breaks or tabs into a name or
        # an address: made spaces rather than the hand-over refused (R12).
        "applicant": _one_line_texts(document.applicant),
        "contact_preference": preference,
        "payload": document.payload,
        "location": _one_line_texts(document.location),
        "first_received_on": document.first_received_on,
    }
    try:
        return RequestCreate.model_validate(handed), []
    except ValidationError as exc:
        unknown = [
            tuple(map(str, e["loc"])) for e in exc.errors() if e["type"] == "extra_forbidden"
        ]
        if not unknown:
            raise validation_problem(exc.errors()) from exc
        names = [part for loc in unknown for part in loc]
        if len(unknown) > _LEFT_OUT_MAX or not all(map(_FIELD_NAME.fullmatch, names)):
            # Not a newer version's fields but something else: refused, as before.
            raise validation_problem(exc.errors()) from exc
        for loc in unknown:
            handed = _without(handed, loc)
        try:
            return RequestCreate.model_validate(handed), [".".join(loc) for loc in unknown]
        except ValidationError as still:
            raise validation_problem(still.errors()) from still


# What a newer version's field can be named, and how many are left out before the
# hand-over reads as something other than a newer version's (and is refused).
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_LEFT_OUT_MAX = 10


def _without(data: dict[str, Any], loc: tuple[str, ...]) -> dict[str, Any]:
    """`data` without the entry at `loc`, the original left as it is. Only objects hold
    unknown fields here (the applicant, its address, the place): no list in the path."""
    head, *rest = loc
    if not rest:
        return {k: v for k, v in data.items() if k != head}
    return {**data, head: _without(data[head], tuple(rest))}


def _url_key(url: str) -> str:
    """An address as HTTP compares it: scheme and host in lower case, IDN as punycode, no
    default port, no trailing slash (`HttpUrl`'s normal form)."""
    try:
        return str(HttpUrl(url)).rstrip("/")
    except ValidationError:
        return url


def _transfer_source(sender: str, tracking_code: str) -> str:
    """Where a request transferred in comes from, for R9: never its applicant's own send."""
    if not sender:
        return f"transfer:{tracking_code}"
    source = f"transfer:{sender}:{tracking_code}"
    if len(source) <= SOURCE_MAX_LENGTH:
        return source
    return f"transfer:sha256:{hashlib.sha256(source.encode()).hexdigest()}"


_CONTACTS = (
    (ContactPreference.email, "email"),
    (ContactPreference.letter, "postal_address"),
    (ContactPreference.sms, "phone"),
)


# Transferred (R12) or answered: no implicit decision, and no receipt left to issue here.
_NO_CLOCK = {"clock_state": "none", "decision_last_day": None, "decision_due_at": None}
_NOTHING_MORE_DUE = {**_NO_CLOCK, "receipt_due_on": None, "registration_due_on": None}


def _owes_ar(procedure: Any, row: Any) -> bool:
    """An AR to issue, or issue again, for a request already stored: not if the procedure
    owes none (R1), for a flagged send (R9, now or later), nor once the service answered
    (no silence left to announce, R10)."""
    return (
        owes_acknowledgement(procedure, Channel(row.channel))
        and not row.abusive
        and row.answered_at is None
    )


def _check_teleservice(procedure: Any, channel: Channel, field: str) -> None:
    """R8 (L112-9): where a dedicated téléservice exists, it is the electronic way in; an
    e-mail or an SMS does not regularly seize the administration of it, and no silence
    can run on it."""
    if procedure.teleservice_url and channel in (Channel.email, Channel.sms):
        raise Problem(
            422,
            "teleservice-required",
            "Téléservice dédié",
            "Cette démarche se fait en ligne sur son téléservice dédié : "
            f"{procedure.teleservice_url}. Une demande envoyée par courriel ou par SMS "
            "ne peut pas être instruite : indiquez ce téléservice au demandeur.",
            [InvalidParam(name=field, reason="Utilisez le téléservice de la démarche.")],
        )


def _address_line(address: dict[str, Any]) -> str:
    """A stored postal address on one line, as letters are addressed (its country if abroad);
    one an earlier version kept with a line break or a tab is read with spaces instead."""
    return PostalAddress.model_validate(_one_line_texts(address)).one_line()


def _one_line_texts(value: Any) -> Any:
    """`value`'s strings, however deep, with what one-line text refuses made spaces."""
    if isinstance(value, str):
        return one_line(value)
    if isinstance(value, dict):
        return {k: _one_line_texts(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_one_line_texts(v) for v in value]
    return value


def _regime_snapshot(procedure: Any) -> dict[str, Any]:
    return {
        "regime": procedure.regime if procedure.kind == ProcedureKind.demande else "none",
        "delay_value": procedure.delay_value,
        "delay_unit": procedure.delay_unit,
        "extend_to_working_day": procedure.extend_to_working_day,
        "procedure_kind": str(procedure.kind),
        "appeal_text": procedure.appeal_text,
        # A receipt is owed only if the procedure owes one (R1).
        "receipt_due_on": None,
    }


def _contact(data: RequestCreate) -> dict[str, Any]:
    """`ApplicantContact`'s JSON form."""
    address = data.applicant.postal_address
    return {
        "name": data.applicant.name,
        "email": str(data.applicant.email) if data.applicant.email else None,
        "phone": data.applicant.phone,
        "postal_address": address.one_line() if address else None,
    }


def _procedure_public(r: Any) -> ProcedurePublic:
    return ProcedurePublic(
        code=r.code,
        title=r.title,
        kind=r.kind,
        regime=r.regime,
        delay=format_delay(r.delay_value, r.delay_unit) if r.regime != Regime.none else None,
        extend_to_working_day=r.extend_to_working_day,
        acknowledgement_required=r.acknowledgement_required,
        location_required=r.location_required,
        identification=r.identification,
        required_pieces=list(r.required_pieces),
        required_information=list(r.required_information),
        appeal_text=r.appeal_text,
        teleservice_url=r.teleservice_url,
        service=ServiceContact(**_service_contact(r)),
    )


async def _public_host(host: str | None) -> bool:
    """Whether every address `host` resolves to is a public one. The client resolves it
    again when it connects: a DNS answer changed in between (rebinding) is not caught
    here, the list of hosts (`transfer_allowed_hosts`) is the strict guard."""
    if not host:
        return False
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, None)
    except UnicodeError:
        return False  # not a host name (a label past 63 characters, say)
    except OSError:
        return True  # unresolvable: the connection fails, with its own answer (502)
    return all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_global for info in found)


def _outgoing(
    request_id: uuid.UUID, body: TransferCreate, requested_at: datetime, **more: Any
) -> dict[str, Any]:
    """An `outgoing_transfers` row for `body`'s administration."""
    return {
        "request_id": request_id,
        "administration_name": body.administration_name or "",
        "administration_url": str(body.administration_url),
        "reason": body.reason,
        "requested_at": requested_at,
        **more,
    }


def _asked_before_silence(row: Any, asked_at: datetime, decided: RequestStatus) -> bool:
    """Whether silence decided the request (`decided`) after a transfer elsewhere was asked
    at `asked_at`, and this administration has not answered the applicant since."""
    return (
        row.status == decided
        and row.decision_due_at is not None
        and asked_at < row.decision_due_at
        and row.answered_at is None
    )


def _still_owed(row: Any, asked_at: datetime) -> bool:
    """Whether a transfer asked at `asked_at` is to be made although silence has rejected
    the request since: that rejection, dated from the first reception (R13), is the
    competent administration's, which must have the request all the same (R12) and may
    still answer it. Not once this administration answered the applicant itself, nor
    once the request was sent on."""
    return (
        _asked_before_silence(row, asked_at, RequestStatus.implicitly_rejected)
        and row.transferred_to is None
    )


def _sva_on_its_way(row: Any, pending: Any) -> bool:
    """Whether a kept transfer elsewhere, asked before the deadline, holds the SVA back
    while on its way (R13), as `decisions_due` reads it."""
    return (
        row.regime == Regime.sva
        and row.implicit_decision is None
        and row.clock_state in ("running", "suspended")
        and pending.refused_at is None
        and row.decision_due_at is not None
        and pending.requested_at < row.decision_due_at
    )


def _asked(pending: Any) -> datetime:
    """When a kept transfer was asked, as `_still_owed` reads it."""
    asked: datetime = pending.first_asked_at or pending.requested_at
    return asked


def _held_back(row: Any, asked_at: datetime) -> bool:
    """Whether a transfer elsewhere asked at `asked_at`, read after the scheduler recorded
    an acceptance, holds it back as it would have, read in time (`decisions_due`): asked
    before it was born (R13: it runs from the competent administration's reception), and
    the service not having answered since."""
    return _asked_before_silence(row, asked_at, RequestStatus.implicitly_accepted)


def _moot(row: Any, asked_at: datetime) -> bool:
    """Whether a transfer asked at `asked_at` is not to be made any more: the request was
    closed or decided since."""
    return RequestStatus(row.status) in FINAL and not _still_owed(row, asked_at)


async def _cancelled(session: AsyncSession, row: Any, pending: Any, now: datetime) -> bool:
    """A kept transfer not to send or retry (`_moot`): drops it, with a line in the
    history, and says so."""
    if not _moot(row, _asked(pending)):
        return False
    await repository.delete_outgoing_transfer(session, row.id)
    await _cancellation(session, row, pending.administration_name, now)
    return True


async def _cancellation(session: AsyncSession, row: Any, destination: str, at: datetime) -> None:
    """The line saying a transfer is not made: the request was closed or decided."""
    status = RequestStatus(row.status)
    await repository.add_history(
        session,
        row.id,
        await _after_last_line(session, row.id, at),
        "transfer_cancelled",
        f"Transmission à {destination} annulée : la demande est close ({STATUS_LABELS[status]}).",
    )


async def _after_last_line(session: AsyncSession, request_id: uuid.UUID, at: datetime) -> datetime:
    """`at`, or the request's last history line's time if later: a line that follows what
    closed the request reads after it, whatever order its events arrived in."""
    lines = await repository.history(session, request_id)
    return max(at, lines[-1].at) if lines else at


async def _not_transferred(
    session: AsyncSession, row: Any, at: datetime, destination: str, detail: str
) -> None:
    """A transfer given up: the applicant reads that it stays here (`detail`, why, is for
    the agents), or, rejected by silence since it was asked (`_still_owed`), that it will
    be sent otherwise; routing gives the request back to its service."""
    what_now = "elle reste traitée par notre administration."
    if row.status == RequestStatus.implicitly_rejected:
        what_now = (
            "notre administration la transmettra par un autre moyen à l'administration compétente."
        )
    await stage(
        session,
        TransferNotMade(
            request_id=row.id,
            tracking_code=row.tracking_code,
            destination=destination,
            detail=detail,
            refused_at=at,
        ).envelope(tenant=row.tenant, subject=str(row.id), occurred_at=at),
    )
    await repository.add_history(
        session,
        row.id,
        at,
        "transfer_refused",
        f"La transmission de votre demande à {destination} n'a pas abouti : {what_now}",
    )


def _filed_as(answer: httpx.Response, first: date, today: date) -> tuple[date, str | None]:
    """The competent administration's reception date and the number it filed the request
    under, for the applicant's notice, as a receiving guichet answers (`TransferReceived`:
    its own date, in its own time zone, kept across a lost answer's retries); today and no
    number from a receiver that does not say. A date before the first reception, or past
    tomorrow (the time zones' spread), is no date of reception: today instead."""
    try:
        said = answer.json()
    except ValueError:
        return today, None
    if not isinstance(said, dict):
        return today, None
    code = said.get("tracking_code")
    number = code if isinstance(code, str) and re.fullmatch(TRACKING_CODE_PATTERN, code) else None
    try:
        received = date.fromisoformat(str(said["reception_date"]))
    except (KeyError, ValueError):
        return today, number
    if not first <= received <= today + timedelta(days=1):
        return today, number
    return received, number


# Answers that no retry will change: the address or the hand-over itself is wrong.
# 401/403 are not: a receiver that has not fetched a rotated key yet, an expired token.
_REFUSED_FOR_GOOD = frozenset({400, 404, 405, 410, 413, 415, 422})
# A transfer no attempt could deliver for this long since the first one failed is given up
# like a refusal: counted from then, not from the act, which a workflow may have made long
# before intake read it (a consumer down for a weekend).
_GIVE_UP = timedelta(days=1)


class _Refused(Problem):
    def __init__(self, name: str, why: str) -> None:
        super().__init__(
            502,
            "transfer-refused",
            "Transmission refusée",
            f"{name} a refusé la transmission ({why}) : la demande reste ici. "
            "Vérifiez l'adresse de réception ou transmettez-la par courrier.",
        )


def _unreachable(name: str, why: str) -> Problem:
    return Problem(
        502,
        "transfer-failed",
        "Transmission impossible",
        f"{name} n'a pas accepté la transmission ({why}). La demande reste ici ; "
        "réessayez plus tard.",
    )


def _public_of(
    row: Any, entries: Any, receipts: Any, pieces: Any, procedure: Any | None
) -> dict[str, Any]:
    """The public view of a request from its row and its children (loaded or just built),
    as plain data in `RequestPublic`'s shape: the answer to a submission is serialised
    from it directly (at every submission), a read validates it into the model; tests
    check the submission's bytes against the model's own."""
    status = RequestStatus(row.status)
    label = STATUS_LABELS[status]
    if status is RequestStatus.assigned and row.assigned_service_name:
        label = f"Transmise au service : {row.assigned_service_name}"
    elif status is RequestStatus.transferred and row.transferred_to:
        label = f"Transmise à {row.transferred_to}"
    elif status is RequestStatus.implicitly_rejected and row.transferred_to:
        label = f"{label}, puis transmise à {row.transferred_to}"  # `_still_owed`
    elif status in {RequestStatus.processing, RequestStatus.closed} and row.status_detail:
        label = row.status_detail
    decision = None
    if row.regime is not None:
        decision = {
            "regime": Regime(row.regime).value,
            "delay": format_delay(row.delay_value, row.delay_unit)
            if row.regime != Regime.none
            else None,
            "state": row.clock_state,
            "decision_date": row.decision_last_day,
            "decided": row.implicit_decision,
        }
    # The latest AR (restated when the file was completed, R11), else the AE (R3).
    acknowledgements = [
        r
        for r in receipts
        if r.kind in (ReceiptKind.accuse_reception, ReceiptKind.accuse_enregistrement)
    ]
    shown = next(
        (r for r in reversed(acknowledgements) if r.kind == ReceiptKind.accuse_reception),
        acknowledgements[-1] if acknowledgements else None,
    )
    acknowledgement = None
    if shown is not None:
        is_ar = shown.kind == ReceiptKind.accuse_reception
        acknowledgement = {
            "kind": ReceiptKind(shown.kind).value,
            "receipt_id": shown.id,
            "issued_at": shown.issued_at,
            "reception_date": row.reception_date,
            "tracking_code": row.tracking_code,
            "service": _service_contact(procedure) if is_ar and procedure else None,
            "implicit_decision": decision if is_ar else None,
            "mentions": shown.document["mentions"],
            "token": shown.token,
        }
    return {
        "id": row.id,
        "tracking_code": row.tracking_code,
        "tenant": row.tenant,
        "procedure": row.procedure_code,
        "channel": Channel(row.channel).value,
        "status": status.value,
        "status_label": label,
        "received_at": row.received_at,
        "reception_date": row.reception_date,
        "arrived_at": row.arrived_at,
        "assigned_service": row.assigned_service_name,
        "acknowledgement": acknowledgement,
        "implicit_decision": decision,
        "receipts": [
            {
                "id": r.id,
                "kind": ReceiptKind(r.kind).value,
                "issued_at": r.issued_at,
                "mentions": r.document["mentions"],
                "token": r.token,
            }
            for r in receipts
        ],
        "missing_pieces": [
            {
                "id": p.id,
                "pieces": p.pieces,
                "requested_on": p.requested_on,
                "due_on": p.due_on,
                "received_on": p.received_on,
            }
            for p in pieces
        ],
        "history": [{"at": e.at, "status": e.status, "label": e.label} for e in entries],
    }


def _clock_values(deadline: Deadline, tenant: Any) -> dict[str, Any]:
    return {
        "clock_state": deadline.state,
        "decision_last_day": deadline.last_day,
        "decision_due_at": deadline.decision_instant(tenant.timezone),
    }


@dataclass
class _Writes:
    """Rows and events gathered in memory, then written in a few statements."""

    history_rows: list[SimpleNamespace] = field(default_factory=list)
    receipts: list[dict[str, Any]] = field(default_factory=list)
    events: list[WrittenEnvelope] = field(default_factory=list)

    def history(self, request_id: uuid.UUID, at: datetime, status: str, label: str) -> None:
        self.history_rows.append(
            SimpleNamespace(request_id=request_id, at=at, status=status, label=label)
        )

    @property
    def receipt_rows(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(**r) for r in self.receipts]

    async def flush(self, session: AsyncSession) -> None:
        await repository.add_history_rows(session, [vars(h) for h in self.history_rows])
        if self.receipts:
            await repository.insert_receipts(session, self.receipts)
        if self.events:
            await stage(session, *self.events)
