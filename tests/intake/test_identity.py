"""Logins against a real OpenID Connect provider: FranceConnect-style citizens (R14) and
the collectivité's agents (R21); forged or replayed answers refused."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey

from guichet_intake.app import create_app
from guichet_intake.identity import Identity
from guichet_intake.settings import IntakeSettings
from guichet_plumbing.localinfra import free_port
from guichet_plumbing.oidc import LoginRefused
from tests.identity import KEYS, admin
from tests.support import serve

PIVOT = {
    "given_name": "Angela Claire Louise",
    "family_name": "DUBOIS",
    "gender": "female",
    "birthdate": "1962-08-24",
    "birthplace": "75107",
    "birthcountry": "99100",
    "email": "angela.dubois@example.org",
}


@dataclass
class Site:
    client: httpx.AsyncClient
    provider: httpx.AsyncClient
    identity: Identity


@pytest.fixture
async def site(oidc_provider: str, data_dir: Path) -> AsyncIterator[Site]:
    port = free_port()
    settings = IntakeSettings(
        data_dir=data_dir,
        public_url=f"http://127.0.0.1:{port}",
        agent_oidc_issuer=oidc_provider,
        agent_oidc_client_secret="secret-of-the-agents-client",
        franceconnect_issuer=oidc_provider,
        franceconnect_client_secret="secret-of-the-franceconnect-client",
        franceconnect_post_logout_redirect_uri=f"http://127.0.0.1:{port}/au-revoir",
    )
    app = create_app(settings)
    async with (
        serve(app, port) as base,
        httpx.AsyncClient(base_url=base) as client,
        httpx.AsyncClient(base_url=oidc_provider) as provider,
    ):
        yield Site(client, provider, app.state.identity)


async def authorize(site: Site, url: str, sub: str) -> str:
    """The user picks `sub` at the provider; the redirection back to Guichet."""
    answer = await site.provider.post(url, data={"sub": sub})
    assert answer.status_code == 302, answer.text
    location: str = answer.headers["location"]
    return location


def local(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(("", "", parts.path, parts.query, ""))


async def start(site: Site, provider: str, **params: str) -> tuple[str, dict[str, list[str]]]:
    answer = await site.client.get(f"/v1/auth/{provider}/login", params=params)
    assert answer.status_code == 302, answer.text
    url: str = answer.headers["location"]
    return url, parse_qs(urlsplit(url).query)


async def test_r14_franceconnect_round_trip_prefills_the_request(site: Site) -> None:
    await site.provider.put("/users/fc-angela", json=PIVOT)
    url, query = await start(site, "franceconnect")
    assert query["acr_values"] == ["eidas1"]
    assert query["scope"] == ["openid identite_pivot email"]
    assert query["state"][0] and query["nonce"][0]
    assert query["redirect_uri"] == [f"{site.client.base_url}/v1/auth/franceconnect/callback"]

    back = await authorize(site, url, "fc-angela")
    answer = await site.client.get(local(back))
    assert answer.status_code == 200, answer.text
    token = answer.json()
    assert KEYS.verify(token["access_token"]) is not None

    me = await site.client.get(
        "/v1/me", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert me.status_code == 200, me.text
    assert me.json()["identity"] == PIVOT
    assert me.json()["applicant"] == {
        "kind": "person",
        "name": "Angela Claire Louise DUBOIS",
        "family_name": "DUBOIS",
        "given_name": "Angela Claire Louise",
        "email": "angela.dubois@example.org",
        "phone": None,
        "postal_address": None,
        "siren": None,
        "siret": None,
        "rna": None,
    }

    # Logout ends the FranceConnect session too, back to the registered address.
    logout = await site.client.get(
        "/v1/auth/franceconnect/logout", params={"id_token_hint": token["id_token_hint"]}
    )
    assert logout.status_code == 302
    end = urlsplit(logout.headers["location"])
    assert f"{end.scheme}://{end.netloc}" == str(site.provider.base_url).rstrip("/")
    params = parse_qs(end.query)
    assert params["id_token_hint"] == [token["id_token_hint"]]
    assert params["post_logout_redirect_uri"] == [f"{site.client.base_url}/au-revoir"]
    confirm = await site.provider.get(local(logout.headers["location"]))
    assert confirm.status_code == 200


async def test_wrong_nonce_is_refused(site: Site) -> None:
    url, query = await start(site, "franceconnect")
    parts = urlsplit(url)
    replayed = {k: v[0] for k, v in query.items()} | {"nonce": "une-autre-valeur"}
    back = await authorize(site, urlunsplit(parts._replace(query=urlencode(replayed))), "fc-eve")
    answer = await site.client.get(local(back))
    assert answer.status_code == 401
    assert answer.json()["type"].endswith("/login-refused")


async def test_callback_from_another_browser_is_refused(site: Site) -> None:
    url, _ = await start(site, "franceconnect")
    back = await authorize(site, url, "fc-eve")
    site.client.cookies.clear()
    answer = await site.client.get(local(back))
    assert answer.status_code == 401


def _tamper(token: str, **claims: object) -> str:
    head, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body.update(claims)
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{signature}"


async def test_tampered_id_token_is_refused(site: Site) -> None:
    url, query = await start(site, "franceconnect")
    nonce = query["nonce"][0]
    back = await authorize(site, url, "fc-angela")
    provider = site.identity.providers["franceconnect"]
    code = parse_qs(urlsplit(back).query)["code"][0]
    claims, id_token, _ = await provider.finish(code, nonce)
    assert claims["sub"] == "fc-angela"

    with pytest.raises(LoginRefused):
        await provider.verify_id_token(_tamper(id_token, sub="fc-someone-else"), nonce)
    # Signed, but by a key that is not the provider's.
    own = RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    foreign = jwt.encode({"alg": "RS256", "kid": "attacker"}, dict(claims), own)
    with pytest.raises(LoginRefused):
        await provider.verify_id_token(foreign, nonce)
    # Genuine, but answering another login.
    with pytest.raises(LoginRefused):
        await provider.verify_id_token(id_token, "another-nonce")
    assert (await provider.verify_id_token(id_token, nonce))["sub"] == "fc-angela"


async def test_r21_agents_get_the_roles_their_administrator_granted(site: Site) -> None:
    granted = await site.client.put(
        "/v1/agents/marie.curie",
        params={"tenant": "admiville"},
        json={"name": "Marie Curie", "roles": ["case_handler"], "services": ["voirie"]},
        headers=admin(),
    )
    assert granted.status_code == 204, granted.text

    url, _ = await start(site, "agents", tenant="admiville")
    answer = await site.client.get(local(await authorize(site, url, "marie.curie")))
    assert answer.status_code == 200, answer.text
    agent = KEYS.verify(answer.json()["access_token"])
    assert agent is not None
    assert (agent.kind, agent.tenant, agent.subject) == ("agent", "admiville", "marie.curie")
    assert sorted(agent.roles) == ["case_handler"]
    assert agent.services == frozenset({"voirie"})

    url, _ = await start(site, "agents", tenant="admiville")
    stranger = await site.client.get(local(await authorize(site, url, "pierre.inconnu")))
    assert stranger.status_code == 403
    assert stranger.json()["type"].endswith("/agent-not-enabled")


async def test_demo_logins_exist_only_where_allowed(data_dir: Path) -> None:
    opened = create_app(IntakeSettings(data_dir=data_dir))
    async with serve(opened) as base, httpx.AsyncClient(base_url=base) as http:
        token = (await http.post("/v1/auth/demo/admin")).json()["access_token"]
        admin_principal = KEYS.verify(token)
        assert admin_principal is not None
        assert sorted(admin_principal.roles) == ["administrator"]
    closed = create_app(IntakeSettings(data_dir=data_dir / "closed", demo_logins=False))
    async with serve(closed) as base, httpx.AsyncClient(base_url=base) as http:
        answer = await http.post("/v1/auth/demo/admin")
        assert answer.status_code == 404


async def test_other_administrations_get_scoped_tokens_and_rotate_secrets(
    data_dir: Path,
) -> None:
    settings = IntakeSettings(data_dir=data_dir, client_secret_grace_hours=0)
    async with serve(create_app(settings)) as base, httpx.AsyncClient(base_url=base) as http:
        created = await http.post(
            "/v1/clients",
            params={"tenant": "admiville"},
            json={"name": "Préfecture de l'Exemple", "scopes": ["transfers:write"]},
            headers=admin(),
        )
        assert created.status_code == 201, created.text
        first = created.json()

        async def token(secret: str, scope: str | None = None) -> httpx.Response:
            form = {"grant_type": "client_credentials", "client_id": first["client_id"]}
            form["client_secret"] = secret
            if scope:
                form["scope"] = scope
            return await http.post("/v1/auth/token", data=form)

        granted = await token(first["client_secret"])
        assert granted.status_code == 200, granted.text
        assert granted.json()["scope"] == "transfers:write"
        system = KEYS.verify(granted.json()["access_token"])
        assert system is not None
        assert (system.kind, system.tenant) == ("client", "admiville")
        assert (await token(first["client_secret"], "open311:write")).status_code == 400
        assert (await token("not-the-secret")).status_code == 401

        # With its token the system transfers requests in, and reads none.
        bearer_header = {"Authorization": f"Bearer {granted.json()['access_token']}"}
        sent = await http.post(
            "/v1/requests",
            json={
                "tenant": "admiville",
                "procedure": "reservation-salle",
                "channel": "mail",
                "applicant": {"name": "Angela Dubois", "email": PIVOT["email"]},
                "payload": {},
            },
            headers=bearer_header,
        )
        assert sent.status_code == 201, sent.text
        read = await http.get(f"/v1/requests/{sent.json()['tracking_code']}", headers=bearer_header)
        assert read.status_code == 403

        rotated = await http.post(
            f"/v1/clients/{first['client_id']}/secret",
            params={"tenant": "admiville"},
            headers=admin(),
        )
        assert rotated.status_code == 200
        assert (await token(rotated.json()["client_secret"])).status_code == 200
        # No grace period here: the old secret stops at once.
        assert (await token(first["client_secret"])).status_code == 401
