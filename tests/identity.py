"""Callers for tests: bearer tokens signed with the development key every test app trusts."""

from __future__ import annotations

from datetime import timedelta

from guichet_plumbing.auth import Kind, Principal, Role, TokenKeys, development_keys

KEYS = TokenKeys(development_keys())


def bearer(principal: Principal) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS.issue(principal, timedelta(minutes=30))}"}


def agent(
    *roles: Role, services: tuple[str, ...] = (), tenant: str = "admiville", subject: str = ""
) -> Principal:
    return Principal(
        Kind.agent,
        subject=subject or f"{'-'.join(roles)}-{'-'.join(services) or tenant}",
        tenant=tenant,
        roles=frozenset(roles),
        services=frozenset(services),
    )


def handler(*services: str, tenant: str = "admiville") -> dict[str, str]:
    """A case handler of these services."""
    return bearer(agent(Role.case_handler, services=services, tenant=tenant))


def admin(tenant: str = "admiville") -> dict[str, str]:
    return bearer(agent(Role.administrator, tenant=tenant))


def dpo(tenant: str = "admiville") -> dict[str, str]:
    return bearer(agent(Role.dpo, tenant=tenant))


def counter(tenant: str = "admiville", subject: str = "") -> dict[str, str]:
    return bearer(agent(Role.counter_agent, tenant=tenant, subject=subject))


def citizen(subject: str) -> Principal:
    return Principal(Kind.citizen, subject=subject)


def client(*scopes: str, tenant: str = "admiville") -> dict[str, str]:
    return bearer(
        Principal(Kind.client, subject=f"client-{tenant}", tenant=tenant, scopes=frozenset(scopes))
    )


ADMIVILLE_SERVICES = ("etat-civil", "citoyennete", "accueil", "guichet-unique", "voirie")


def staff(tenant: str = "admiville", subject: str = "staff") -> dict[str, str]:
    """Every role but the DPO's, for all the demo services: for tests of behaviour, not access
    (the authorisation matrix tests access)."""
    return bearer(
        agent(
            Role.administrator,
            Role.service_head,
            Role.case_handler,
            Role.counter_agent,
            services=ADMIVILLE_SERVICES,
            tenant=tenant,
            subject=subject,
        )
    )
