"""The authorisation matrix: every endpoint of every service, against every kind of caller.

Object-level endpoints are called on citizen A's request, which the accueil service
handles; the expected set says exactly who reaches it. "Reached" means the caller got
past authorisation: not 401/403, not the "unknown request" a refused file reads as, and,
for listings, the file is in the answer. A refused route's body is never looked at, so
write bodies are kept harmless (schema-valid but refused by business rules where they
would change state, or `{}` where a 422 proves the caller got through).

A new endpoint fails `test_matrix_covers_every_route` until its line is written here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from guichet_launcher.embedded import create_embedded_app
from guichet_launcher.services import SERVICES
from guichet_plumbing.auth import route_policies, routes_without_policy
from guichet_plumbing.localinfra import free_port
from tests.e2e.flow import REQUEST
from tests.identity import admin, bearer, citizen, client, counter, dpo, handler
from tests.support import eventually, serve

ROLES: dict[str, dict[str, str]] = {
    "anonymous": {},
    "citizen A": bearer(citizen("fc-citizen-a")),
    "citizen B": bearer(citizen("fc-citizen-b")),
    "counter agent": counter(),
    "handler X": handler("accueil"),
    "handler Y": handler("voirie"),
    "admin T": admin("admiville"),
    "admin U": admin("ubourg"),
    "client": client("transfers:write"),
    "dpo T": dpo("admiville"),
}
EVERYONE = frozenset(ROLES)
CITIZENS = frozenset({"citizen A", "citizen B"})
ADMIN_T = frozenset({"admin T"})
DPO_T = frozenset({"dpo T"})
X = frozenset({"handler X"})
AGENTS_WHO_CONSULT = frozenset({"counter agent", "handler X", "handler Y", "admin T"})
T = {"tenant": "admiville"}
OPEN311 = "/routing/open311/v2"


def reached(response: httpx.Response) -> bool:
    if response.status_code in (401, 403):
        return False
    if response.status_code == 404:
        return not response.json().get("type", "").endswith("/request-unknown")
    return True


def open311_reached(response: httpx.Response) -> bool:
    """Open311's own errors are a list of {code, description}: past authorisation."""
    return response.status_code not in (401, 403)


@dataclass(frozen=True)
class Case:
    method: str
    route: str  # the route as declared, with its service prefix
    allowed: frozenset[str]
    url: str = ""  # the concrete URL when the route has parameters
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    data: dict[str, str] | None = None
    check: Callable[[httpx.Response], bool] = reached


def matrix(code: str, request_id: str, receipt: str) -> list[Case]:
    """Reads first, then writes; the transfer, which closes the file, last of intake's."""
    follow = f"/intake/v1/requests/{code}"
    routed = f"/routing/v1/requests/{request_id}"

    def in_inbox(r: httpx.Response) -> bool:
        return r.status_code == 200 and code in [i["tracking_code"] for i in r.json()["items"]]

    def has_deliveries(r: httpx.Response) -> bool:
        return r.status_code == 200 and bool(r.json()["items"])

    cases = [
        # -- intake: requests
        Case(
            "POST",
            "/intake/v1/requests",
            EVERYONE - {"handler X", "handler Y", "admin T", "admin U", "dpo T"},
            json=REQUEST,
        ),
        Case(
            "GET",
            "/intake/v1/requests/{tracking_code}",
            frozenset({"citizen A", "handler X"}),
            follow,
        ),
        Case(
            "POST",
            "/intake/v1/requests/{tracking_code}/qualification",
            X,
            f"{follow}/qualification",
            json={"procedure": "reservation-salle"},
        ),
        Case(
            "POST",
            "/intake/v1/requests/{tracking_code}/missing-pieces",
            X,
            f"{follow}/missing-pieces",
            json={"pieces": ["Plan"], "due_on": "2020-01-01"},
        ),
        Case(
            "POST",
            "/intake/v1/requests/{tracking_code}/pieces-received",
            X,
            f"{follow}/pieces-received",
            json={},
        ),
        Case(
            "POST",
            "/intake/v1/requests/{tracking_code}/attestation",
            frozenset({"citizen A", "handler X"}),
            f"{follow}/attestation",
        ),
        Case(
            "POST",
            "/intake/v1/requests/{tracking_code}/transfer",
            X,
            f"{follow}/transfer",
            json={"tenant": "admiville", "reason": "Essai de droits"},
        ),
        # -- intake: receipts (the receipt's random id is the capability) and catalogue
        Case(
            "GET",
            "/intake/v1/receipts/{receipt_id}.pdf",
            EVERYONE,
            f"/intake/v1/receipts/{receipt}.pdf",
        ),
        Case("GET", "/intake/v1/receipts/{receipt_id}", EVERYONE, f"/intake/v1/receipts/{receipt}"),
        Case("POST", "/intake/v1/receipts/verify", EVERYONE, json={"token": "a.b.c"}),
        Case("GET", "/intake/v1/receipts/verify", EVERYONE),
        Case("GET", "/intake/.well-known/jwks.json", EVERYONE),
        # Open to all: the signature is what is checked (a JSON body gets its 415).
        Case(
            "POST",
            "/intake/v1/transfers/{tenant}",
            EVERYONE,
            "/intake/v1/transfers/admiville",
            json={},
        ),
        Case(
            "GET", "/intake/v1/receipts-overdue", frozenset({"counter agent", "admin T"}), params=T
        ),
        Case("GET", "/intake/v1/procedures", EVERYONE, params=T),
        Case("GET", "/intake/v1/procedures/sva", EVERYONE, params=T),
        Case(
            "PUT",
            "/intake/v1/procedures/{code}",
            ADMIN_T,
            "/intake/v1/procedures/essai",
            params=T,
            json={},
        ),
        Case(
            "PUT",
            "/intake/v1/services/{code}",
            ADMIN_T,
            "/intake/v1/services/accueil",
            params=T,
            json={},
        ),
        Case("POST", "/intake/v1/signing-keys/rotate", ADMIN_T, params=T),
        Case("GET", "/intake/v1/sources", ADMIN_T, params=T),
        Case(
            "POST",
            "/intake/v1/sources/{source}/notice",
            ADMIN_T,
            "/intake/v1/sources/email:x@y.fr/notice",
            params=T,
            json={},
        ),
        Case(
            "POST",
            "/intake/v1/sources/{source}/block",
            ADMIN_T,
            "/intake/v1/sources/email:x@y.fr/block",
            params=T,
            json={},
        ),
        Case(
            "DELETE",
            "/intake/v1/sources/{source}/block",
            ADMIN_T,
            "/intake/v1/sources/email:x@y.fr/block",
            params=T,
        ),
        # -- intake: identity
        Case("GET", "/intake/v1/auth/jwks.json", EVERYONE),
        Case("POST", "/intake/v1/auth/demo/{login}", EVERYONE, "/intake/v1/auth/demo/usager"),
        Case("POST", "/intake/v1/auth/token", EVERYONE, data={}),
        Case(
            "GET",
            "/intake/v1/auth/{provider}/login",
            EVERYONE,
            "/intake/v1/auth/franceconnect/login",
        ),
        Case(
            "GET",
            "/intake/v1/auth/{provider}/callback",
            EVERYONE,
            "/intake/v1/auth/agents/callback",
            params={"code": "c", "state": "s"},
        ),
        Case(
            "GET",
            "/intake/v1/auth/franceconnect/logout",
            EVERYONE,
            params={"id_token_hint": "x" * 20},
        ),
        Case("GET", "/intake/v1/me", CITIZENS),
        Case("POST", "/intake/v1/mandates", CITIZENS, json={}),
        Case(
            "DELETE",
            "/intake/v1/mandates/{mandate_id}",
            CITIZENS,
            "/intake/v1/mandates/00000000-0000-4000-8000-000000000000",
        ),
        Case(
            "PUT",
            "/intake/v1/agents/{subject}",
            ADMIN_T,
            "/intake/v1/agents/marie",
            params=T,
            json={},
        ),
        Case("POST", "/intake/v1/clients", ADMIN_T, params=T, json={}),
        Case(
            "POST",
            "/intake/v1/clients/{client_id}/secret",
            ADMIN_T,
            "/intake/v1/clients/admiville-0000/secret",
            params=T,
        ),
        # -- routing
        Case("GET", "/routing/v1/inbox", X, params=T, check=in_inbox),
        Case("GET", "/routing/v1/routing-table", AGENTS_WHO_CONSULT, params=T),
        Case("PUT", "/routing/v1/rules", ADMIN_T, params=T, json={}),
        Case("POST", "/routing/v1/rules/dry-run", ADMIN_T, params=T, json={}),
        Case("GET", "/routing/v1/neighbourhoods", EVERYONE, params=T),
        Case(
            "PUT",
            "/routing/v1/neighbourhoods/{code}",
            ADMIN_T,
            "/routing/v1/neighbourhoods/centre",
            params=T,
            json={},
        ),
        Case(
            "GET",
            "/routing/v1/workflows/{procedure}",
            AGENTS_WHO_CONSULT,
            "/routing/v1/workflows/reservation-salle",
            params=T,
        ),
        Case(
            "PUT",
            "/routing/v1/workflows/{procedure}",
            ADMIN_T,
            "/routing/v1/workflows/reservation-salle",
            params=T,
            json={},
        ),
        Case("GET", "/routing/v1/requests/{request_id}", X, routed),
        Case(
            "POST",
            "/routing/v1/requests/{request_id}/transitions",
            X,
            f"{routed}/transitions",
            json={"transition": "inexistante"},
        ),
        Case(
            "PUT",
            "/routing/v1/requests/{request_id}/agent",
            X,
            f"{routed}/agent",
            json={"agent": None},
        ),
        Case(
            "POST",
            "/routing/v1/requests/{request_id}/comments",
            X,
            f"{routed}/comments",
            json={"text": "Vu"},
        ),
        Case(
            "PUT",
            "/routing/v1/services/{code}",
            ADMIN_T,
            "/routing/v1/services/accueil",
            params=T,
            json={},
        ),
        Case(
            "PUT",
            "/routing/v1/services/{service_code}/teams/{code}",
            ADMIN_T,
            "/routing/v1/services/accueil/teams/essai",
            params=T,
            json={},
        ),
        Case("GET", "/routing/v1/incident-policy", AGENTS_WHO_CONSULT, params=T),
        Case("PUT", "/routing/v1/incident-policy", ADMIN_T, params=T, json={}),
        # -- routing: Open311 (reads public and without applicant; filing open like the form)
        Case("GET", f"{OPEN311}/discovery.{{fmt}}", EVERYONE, f"{OPEN311}/discovery.json"),
        Case("GET", f"{OPEN311}/services.{{fmt}}", EVERYONE, f"{OPEN311}/services.json"),
        Case(
            "GET",
            f"{OPEN311}/services/{{service_code}}.{{fmt}}",
            EVERYONE,
            f"{OPEN311}/services/signalement-voirie.json",
            check=open311_reached,
        ),
        Case(
            "GET",
            f"{OPEN311}/requests.{{fmt}}",
            EVERYONE,
            f"{OPEN311}/requests.json",
            check=open311_reached,
        ),
        Case(
            "GET",
            f"{OPEN311}/requests/{{service_request_id}}.{{fmt}}",
            EVERYONE,
            f"{OPEN311}/requests/{code}.json",
            check=open311_reached,
        ),
        Case(
            "GET",
            f"{OPEN311}/tokens/{{token}}.{{fmt}}",
            EVERYONE,
            f"{OPEN311}/tokens/{request_id}.json",
            check=open311_reached,
        ),
        Case(
            "POST",
            f"{OPEN311}/requests.{{fmt}}",
            CITIZENS | {"anonymous"},
            f"{OPEN311}/requests.json",
            data={},
            check=open311_reached,
        ),
        # -- notifications and the gateway
        Case(
            "GET",
            "/notifications/v1/deliveries",
            X,
            params={"request": request_id},
            check=has_deliveries,
        ),
        Case(
            "GET",
            "/gateway/v1/quotient-familial",
            frozenset({"counter agent", "handler X", "handler Y"}),
            params=T,
        ),
        Case("GET", "/gateway/v1/audit", DPO_T, params=T),
    ]
    for service in SERVICES:
        cases.append(Case("GET", f"{service.prefix}/v1/access-log", DPO_T, params=T))
        for probe in ("/health", "/ready", "/metrics"):
            cases.append(Case("GET", f"{service.prefix}{probe}", EVERYONE))
    return cases


def declared_routes() -> set[tuple[str, str]]:
    found = set()
    for service in SERVICES:
        app = service.create()
        for method, path, _policy in route_policies(app):
            found.add((method, service.prefix + path.replace(":uuid", "")))
    return found


def test_every_route_declares_its_policy() -> None:
    for service in SERVICES:
        assert routes_without_policy(service.create()) == [], service.name


def test_matrix_covers_every_route() -> None:
    written = {(c.method, c.route) for c in matrix("C", "I", "R")}
    assert written == declared_routes()


async def test_r21_authorisation_matrix(data_dir: Path) -> None:
    port = free_port()  # Open311 reads intake's catalogue over HTTP, from this very app
    app = create_embedded_app(
        data_dir, intake_url=f"http://127.0.0.1:{port}/intake", sender_poll_interval=0.2
    )
    async with serve(app, port) as base, httpx.AsyncClient(base_url=base, timeout=20) as http:
        created = await http.post("/intake/v1/requests", json=REQUEST, headers=ROLES["citizen A"])
        assert created.status_code == 201, created.text
        code, request_id = created.json()["tracking_code"], created.json()["id"]
        receipt = created.json()["acknowledgement"]["receipt_id"]

        async def delivered() -> bool:
            answer = await http.get(
                "/notifications/v1/deliveries",
                params={"request": request_id},
                headers=ROLES["handler X"],
            )
            return answer.status_code == 200 and len(answer.json()["items"]) == 2

        await eventually(delivered, timeout=20, what="request routed and answered")

        wrong = []
        for case in matrix(code, request_id, receipt):
            got = set()
            for role, headers in ROLES.items():
                answer = await http.request(
                    case.method,
                    case.url or case.route,
                    params=case.params,
                    json=case.json,
                    data=case.data,
                    headers=headers,
                )
                assert answer.status_code < 500, (case.route, role, answer.text)
                if case.check(answer):
                    got.add(role)
            if got != case.allowed:
                wrong.append(
                    f"{case.method} {case.route}: unexpected {sorted(got - case.allowed)}, "
                    f"missing {sorted(case.allowed - got)}"
                )
        assert wrong == []
