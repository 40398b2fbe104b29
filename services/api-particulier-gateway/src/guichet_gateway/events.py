"""Events the gateway publishes."""

from __future__ import annotations

import uuid
from typing import ClassVar

from guichet_gateway.policy import Dataset, Outcome
from guichet_plumbing.envelope import EventData


class ConsultationRecorded(EventData):
    """A State API consultation was traced (rule R16). Carries no personal data of the citizen:
    statistics and the processing register can use it, a decision cannot."""

    event_type: ClassVar[str] = "gateway.consultation.recorded.v1"

    consultation_id: uuid.UUID
    dataset: Dataset
    procedure: str
    purpose: str
    consent: bool
    agent_id: str
    provider: str | None
    outcome: Outcome
    status_code: int


PUBLISHED: tuple[type[EventData], ...] = (ConsultationRecorded,)
