"""The delay arithmetic of implicit decisions (R10), every date worked out by hand."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import holidays
import pytest
from hypothesis import given
from hypothesis import strategies as st

from guichet_intake.deadlines import (
    Clock,
    Delay,
    PiecesRequest,
    add_delay,
    implicit_decision,
    is_working_day,
    receipt_due,
    registration_due,
)
from guichet_intake.schemas import ProcedureWrite


@pytest.mark.parametrize(
    ("reception", "value", "unit", "last_day"),
    [
        # The circular's own example: 12 November + 2 months → 12 January.
        (date(2026, 11, 12), 2, "months", date(2027, 1, 12)),
        (date(2026, 5, 15), 2, "months", date(2026, 7, 15)),
        # No 31 February: the month's last day, leap year or not.
        (date(2026, 12, 31), 2, "months", date(2027, 2, 28)),
        (date(2027, 12, 31), 2, "months", date(2028, 2, 29)),
        (date(2026, 1, 31), 1, "months", date(2026, 2, 28)),
        (date(2028, 1, 31), 1, "months", date(2028, 2, 29)),
        (date(2026, 8, 31), 1, "months", date(2026, 9, 30)),
        (date(2026, 3, 31), 12, "months", date(2027, 3, 31)),
        # Days: the Nth day after reception (reception day not counted).
        (date(2026, 2, 20), 15, "days", date(2026, 3, 7)),
        (date(2028, 2, 20), 15, "days", date(2028, 3, 6)),
        # Weeks: the same weekday N weeks later (Monday 2 March → Monday 16 March).
        (date(2026, 3, 2), 2, "weeks", date(2026, 3, 16)),
    ],
)
def test_r10_delay_ends_on_hand_computed_day(
    reception: date, value: int, unit: str, last_day: date
) -> None:
    assert add_delay(reception, value, unit) == last_day


def test_r10_no_extension_for_weekends_or_holidays_by_default() -> None:
    # 1 March 2026 + 2 months = Friday 1 May 2026, a public holiday: kept as is, by the
    # engine and by a procedure that does not say otherwise.
    clock = Clock("sva", Delay(2, "months"), date(2026, 3, 1))
    assert implicit_decision(clock).last_day == date(2026, 5, 1)
    assert ProcedureWrite.model_fields["extend_to_working_day"].default is False


def test_unknown_unit_and_negative_delay_are_refused() -> None:
    with pytest.raises(ValueError, match="unit"):
        add_delay(date(2026, 1, 1), 1, "fortnights")
    with pytest.raises(ValueError, match="negative"):
        add_delay(date(2026, 1, 1), -1, "days")


@given(
    st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)),
    st.integers(min_value=1, max_value=24),
)
def test_month_delay_keeps_the_day_number_or_ends_the_month(reception: date, months: int) -> None:
    end = add_delay(reception, months, "months")
    assert (end.year * 12 + end.month) - (reception.year * 12 + reception.month) == months
    if end.day != reception.day:
        assert end.day < reception.day
        assert (end + timedelta(days=1)).day == 1, "only the month's last day may stand in"


@given(
    st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)),
    st.integers(min_value=0, max_value=400),
)
def test_day_and_week_delays_never_count_the_reception_day(reception: date, n: int) -> None:
    assert (add_delay(reception, n, "days") - reception).days == n
    assert add_delay(reception, n, "weeks").weekday() == reception.weekday()


# --- The clock of implicit decisions: incomplete files, transfers, extension -------------

TWO_MONTHS = Delay(2, "months")


def test_r11_sva_clock_starts_when_file_complete() -> None:
    # Received 15 May; pieces asked 20 May, received 3 June → counts from 3 June → 3 August.
    clock = Clock(
        "sva",
        TWO_MONTHS,
        date(2026, 5, 15),
        pieces=(PiecesRequest(date(2026, 5, 20), date(2026, 6, 20), date(2026, 6, 3)),),
    )
    deadline = implicit_decision(clock)
    assert deadline.counts_from == date(2026, 6, 3)
    assert deadline.last_day == date(2026, 8, 3)


def test_r11_sva_no_date_while_pieces_are_missing() -> None:
    clock = Clock(
        "sva",
        TWO_MONTHS,
        date(2026, 5, 15),
        pieces=(PiecesRequest(date(2026, 5, 20), date(2026, 6, 20)),),
    )
    deadline = implicit_decision(clock)
    assert deadline.state == "waiting_pieces"
    assert deadline.last_day is None


def test_r11_svr_suspended_for_the_time_granted() -> None:
    # 15 May + 2 months = 15 July; asked 20 May, 31 days granted (to 20 June), never produced:
    # suspended 31 days → 15 August.
    clock = Clock(
        "svr",
        TWO_MONTHS,
        date(2026, 5, 15),
        pieces=(PiecesRequest(date(2026, 5, 20), date(2026, 6, 20)),),
    )
    deadline = implicit_decision(clock)
    assert deadline.state == "suspended"
    assert deadline.suspended_days == 31
    assert deadline.last_day == date(2026, 8, 15)


def test_r11_svr_incomplete_file_answered_early_ends_the_suspension() -> None:
    # Same file, pieces produced on 30 May: suspended 20 May → 30 May = 10 days → 25 July.
    clock = Clock(
        "svr",
        TWO_MONTHS,
        date(2026, 5, 15),
        pieces=(PiecesRequest(date(2026, 5, 20), date(2026, 6, 20), date(2026, 5, 30)),),
    )
    deadline = implicit_decision(clock)
    assert deadline.state == "running"
    assert deadline.suspended_days == 10
    assert deadline.last_day == date(2026, 7, 25)


def test_r11_svr_overlapping_requests_suspend_once() -> None:
    # 1–11 June and 6–16 June overlap: suspended 1 → 16 June = 15 days. 15 July + 15 = 30 July.
    clock = Clock(
        "svr",
        TWO_MONTHS,
        date(2026, 5, 15),
        pieces=(
            PiecesRequest(date(2026, 6, 1), date(2026, 6, 30), date(2026, 6, 11)),
            PiecesRequest(date(2026, 6, 6), date(2026, 6, 30), date(2026, 6, 16)),
        ),
    )
    assert implicit_decision(clock).last_day == date(2026, 7, 30)


def test_r11_pieces_asked_after_the_decision_was_born_change_nothing() -> None:
    late = (PiecesRequest(date(2026, 7, 20), date(2026, 8, 20)),)
    for regime in ("sva", "svr"):
        clock = Clock(regime, TWO_MONTHS, date(2026, 5, 15), pieces=late)  # type: ignore[arg-type]
        assert implicit_decision(clock).last_day == date(2026, 7, 15)


def test_r13_transfer_sva_counts_from_competent_reception() -> None:
    # First seized 15 May, received by the competent service 2 June → 2 August.
    clock = Clock("sva", TWO_MONTHS, date(2026, 5, 15), competent_received_on=date(2026, 6, 2))
    assert implicit_decision(clock).last_day == date(2026, 8, 2)


def test_r13_transfer_svr_counts_from_first_reception() -> None:
    clock = Clock("svr", TWO_MONTHS, date(2026, 5, 15), competent_received_on=date(2026, 6, 2))
    assert implicit_decision(clock).last_day == date(2026, 7, 15)


def test_r10_extension_to_working_day_only_when_procedure_asks() -> None:
    # 1 March + 2 months = Friday 1 May 2026 (Labour Day) → Saturday 2 May if extended.
    plain = Clock("sva", TWO_MONTHS, date(2026, 3, 1))
    extended = Clock("sva", TWO_MONTHS, date(2026, 3, 1), extend_to_working_day=True)
    assert implicit_decision(plain).last_day == date(2026, 5, 1)
    assert implicit_decision(extended).last_day == date(2026, 5, 2)
    assert implicit_decision(extended).notes == ("Échéance reportée au premier jour ouvrable.",)


def test_r10_extension_past_good_friday_in_alsace_moselle() -> None:
    # 26 January 2027 + 2 months = Friday 26 March 2027, Good Friday: a holiday in Moselle
    # only. Extended, it moves to Saturday 27 March (neither a Sunday nor a holiday there).
    moselle = Clock(
        "sva", TWO_MONTHS, date(2027, 1, 26), extend_to_working_day=True, territory="57"
    )
    assert implicit_decision(moselle).last_day == date(2027, 3, 27)
    # Elsewhere in metropolitan France that Friday is a working day: nothing moves.
    assert implicit_decision(replace(moselle, territory=None)).last_day == date(2027, 3, 26)


def test_r10_extension_moves_a_sunday_end_but_not_a_saturday_end() -> None:
    # Only a Sunday or a public holiday moves the end ("Computing a delay").
    # 18 May + 2 months = Saturday 18 July 2026: it stays.
    saturday = Clock("sva", TWO_MONTHS, date(2026, 5, 18), extend_to_working_day=True)
    assert implicit_decision(saturday).last_day == date(2026, 7, 18)
    # 19 May + 2 months = Sunday 19 July 2026: Monday 20 July.
    sunday = replace(saturday, received_on=date(2026, 5, 19))
    assert implicit_decision(sunday).last_day == date(2026, 7, 20)
    # 14 May + 2 months = Tuesday 14 July (Fête nationale): Wednesday 15 July.
    holiday = replace(saturday, received_on=date(2026, 5, 14))
    assert implicit_decision(holiday).last_day == date(2026, 7, 15)
    # Alsace-Moselle: 26 December is a holiday there only. 26 October + 2 months =
    # Saturday 26 December 2026, then Sunday 27: Monday 28 December in Moselle.
    moselle = replace(saturday, received_on=date(2026, 10, 26), territory="57")
    assert implicit_decision(moselle).last_day == date(2026, 12, 28)
    assert implicit_decision(replace(moselle, territory=None)).last_day == date(2026, 12, 26)


def test_r11_pieces_asked_while_the_end_is_extended_past_a_holiday_still_count() -> None:
    # 1 March 2026 + 2 months = Friday 1 May (Labour Day), extended to Saturday 2 May:
    # pieces asked on 2 May come before the decision is born.
    asked = PiecesRequest(date(2026, 5, 2), date(2026, 5, 20))
    sva = Clock("sva", TWO_MONTHS, date(2026, 3, 1), pieces=(asked,), extend_to_working_day=True)
    assert implicit_decision(sva).state == "waiting_pieces"
    # Produced Sunday 10 May: SVA counts from then, 10 May + 2 months = Friday 10 July.
    produced = PiecesRequest(date(2026, 5, 2), date(2026, 5, 20), received_on=date(2026, 5, 10))
    sva = replace(sva, pieces=(produced,))
    assert implicit_decision(sva).last_day == date(2026, 7, 10)
    # SVR: nothing was left of the delay but its extension (2 May); suspended from 2 to
    # 10 May, 8 days: Sunday 10 May, then Monday 11 May.
    svr = replace(sva, regime="svr")
    assert (implicit_decision(svr).suspended_days, implicit_decision(svr).last_day) == (
        8,
        date(2026, 5, 11),
    )
    # Never produced: suspended until the time granted ends, 2 May + 18 days = Wednesday 20 May.
    waiting = implicit_decision(replace(svr, pieces=(asked,)))
    assert (waiting.state, waiting.last_day) == ("suspended", date(2026, 5, 20))
    # Asked on Sunday 3 May, once the decision was born: nothing changes.
    late = (PiecesRequest(date(2026, 5, 3), date(2026, 5, 20)),)
    for clock in (sva, svr):
        assert implicit_decision(replace(clock, pieces=late)).last_day == date(2026, 5, 2)


@pytest.mark.parametrize("asked", [date(2026, 5, 1), date(2026, 5, 2)])
def test_r11_svr_pieces_asked_on_the_last_day_or_during_its_extension_give_one_date(
    asked: date,
) -> None:
    # The last day is Friday 1 May (a holiday), extended to Saturday 2 May. Pieces asked
    # on either day and produced Sunday 10 May: a shorter suspension never gives a later
    # date. From 1 May, 9 days end on Sunday 10 May; asked on 2 May, nothing of the delay
    # was left but its extension: it ends with the suspension, on 10 May too; both then
    # move to Monday 11 May.
    produced = PiecesRequest(asked, date(2026, 5, 20), received_on=date(2026, 5, 10))
    clock = Clock(
        "svr", TWO_MONTHS, date(2026, 3, 1), pieces=(produced,), extend_to_working_day=True
    )
    assert implicit_decision(clock).last_day == date(2026, 5, 11)


def test_decision_is_born_at_midnight_local_time() -> None:
    # Received 12 November: deemed accepted at the end of 12 January, relied on from 13 January.
    deadline = implicit_decision(Clock("sva", TWO_MONTHS, date(2026, 11, 12)))
    assert deadline.last_day == date(2027, 1, 12)
    paris = deadline.decision_instant("Europe/Paris")
    martinique = deadline.decision_instant("America/Martinique")
    assert paris is not None and martinique is not None
    assert paris.isoformat() == "2027-01-13T00:00:00+01:00"
    assert martinique.isoformat() == "2027-01-13T00:00:00-04:00"
    assert (martinique - paris) == timedelta(hours=5)


def test_r3_registration_due_within_one_working_day() -> None:
    # Friday 8 May 2026 is a holiday: received Thursday 7 May → due Monday 11 May.
    assert registration_due(date(2026, 5, 7)) == date(2026, 5, 11)
    # Received Tuesday 3 March → due Wednesday 4 March.
    assert registration_due(date(2026, 3, 3)) == date(2026, 3, 4)


def test_r3_working_days_follow_the_territory() -> None:
    # 22 May is a holiday in Martinique (abolition of slavery), not in metropolitan France;
    # there, the weekend and Whit Monday (25 May 2026) follow: due Tuesday 26 May.
    # Good Friday (3 April 2026) and 26 December are holidays in Alsace-Moselle only.
    assert registration_due(date(2026, 5, 21)) == date(2026, 5, 22)
    assert registration_due(date(2026, 5, 21), "972") == date(2026, 5, 26)
    assert is_working_day(date(2026, 4, 3))
    assert not is_working_day(date(2026, 4, 3), "57")
    assert not is_working_day(date(2026, 12, 26), "6AE")


def test_r4_deferred_receipt_due_seven_days_after_competent_reception() -> None:
    assert receipt_due(date(2026, 12, 28)) == date(2027, 1, 4)


@given(
    st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)),
    st.integers(min_value=0, max_value=90),
    st.integers(min_value=1, max_value=60),
    st.one_of(st.none(), st.integers(min_value=0, max_value=90)),
)
def test_svr_suspension_never_exceeds_time_granted(
    received: date, asked_after: int, granted: int, produced_after: int | None
) -> None:
    asked = received + timedelta(days=asked_after)
    due = asked + timedelta(days=granted)
    produced = None if produced_after is None else asked + timedelta(days=produced_after)
    clock = Clock("svr", TWO_MONTHS, received, pieces=(PiecesRequest(asked, due, produced),))
    deadline = implicit_decision(clock)
    base = add_delay(received, 2, "months")
    assert deadline.last_day is not None
    assert 0 <= deadline.suspended_days <= granted
    assert deadline.last_day == base + timedelta(days=deadline.suspended_days)
    if asked > base:
        assert deadline.suspended_days == 0


@given(
    st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)),
    st.integers(min_value=0, max_value=120),
)
def test_sva_never_ends_before_the_file_is_complete_plus_delay(
    received: date, completed_after: int
) -> None:
    completed = received + timedelta(days=completed_after)
    clock = Clock(
        "sva",
        TWO_MONTHS,
        received,
        pieces=(PiecesRequest(received, completed + timedelta(days=30), completed),),
    )
    deadline = implicit_decision(clock)
    assert deadline.last_day == add_delay(completed, 2, "months")


TERRITORIES = [None, "57", "971", "972", "973", "974", "976"]


def _off(day: date, territory: str | None) -> bool:
    return day.weekday() == 6 or day in holidays.France(subdiv=territory, years=day.year)


# Holidays of every territory falling on a weekday before a weekend: where an extension
# could land on a Saturday.
LATE_WEEK_HOLIDAYS = sorted(
    {
        (day, territory)
        for territory in TERRITORIES
        for day in holidays.France(subdiv=territory, years=range(2020, 2041))
        if day.weekday() in (3, 4, 5)
    },
    key=lambda held: (held[0], held[1] or ""),
)


@given(
    st.one_of(
        st.tuples(
            st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)),
            st.sampled_from(TERRITORIES),
        ),
        st.sampled_from(LATE_WEEK_HOLIDAYS),
    )
)
def test_r10_an_extended_end_moves_only_off_a_sunday_or_holiday_to_the_next_day_neither(
    held: tuple[date, str | None],
) -> None:
    end, territory = held
    # A one-day delay: the day after reception is the end to extend or keep.
    clock = Clock(
        "sva",
        Delay(1, "days"),
        end - timedelta(days=1),
        extend_to_working_day=True,
        territory=territory,
    )
    extended = implicit_decision(clock).last_day
    assert extended is not None
    if _off(end, territory):
        assert extended > end and not _off(extended, territory)
        assert all(_off(end + timedelta(days=n), territory) for n in range((extended - end).days))
    else:
        assert extended == end  # a Saturday or a working day stays


@pytest.mark.parametrize("regime", ["sva", "svr"])
def test_r11_pieces_or_a_longer_suspension_never_bring_an_extended_decision_forward(
    regime: str,
) -> None:
    # Around every end on a holiday before a weekend, 2024-2030 (Labour Day on a Friday,
    # Good Friday in Moselle...), with the extension on: asking for pieces never makes the
    # decision come sooner than asking none; producing them a day later never either (an
    # SVA runs from them, an SVR is suspended until them, R11); the extension never gives a
    # date before the plain one. Every case, not a sample: few combinations of days break
    # such a rule.
    def last_day(clock: Clock) -> date:
        day = implicit_decision(clock).last_day
        assert day is not None
        return day

    for end, territory in LATE_WEEK_HOLIDAYS:
        if not 2024 <= end.year <= 2030:
            continue
        none = Clock(
            regime,
            Delay(30, "days"),
            end - timedelta(days=30),
            territory=territory,
            extend_to_working_day=True,
        )
        # Asked at reception (an SVA then runs from the pieces, ending near the holiday),
        # or around the end.
        received = none.received_on
        for asked in (received, *(end + timedelta(days=n) for n in range(-3, 6))):
            after = [
                replace(
                    none,
                    pieces=(
                        PiecesRequest(asked, asked + timedelta(days=40), asked + timedelta(days=n)),
                    ),
                )
                for n in range(0, 9)
            ]
            case = (end, territory, asked)
            for n, clock in enumerate(after):
                assert last_day(clock) >= last_day(none), case
                plain = replace(clock, extend_to_working_day=False)
                assert last_day(clock) >= last_day(plain), case
                if n:
                    assert last_day(clock) >= last_day(after[n - 1]), (*case, n)


def test_r11_a_file_completed_after_two_requests_for_pieces_says_so_once() -> None:
    # SVA received 15 May 2026; pieces asked on 15 July (the last day) and 20 July, all in
    # on 31 July: accepted at the end of 30 September; the note is given once.
    asked = (
        PiecesRequest(date(2026, 7, 15), date(2026, 7, 30), received_on=date(2026, 7, 31)),
        PiecesRequest(date(2026, 7, 20), date(2026, 8, 5), received_on=date(2026, 7, 31)),
    )
    deadline = implicit_decision(Clock("sva", TWO_MONTHS, date(2026, 5, 15), pieces=asked))
    assert deadline.last_day == date(2026, 9, 30)
    assert deadline.notes == ("Le délai court à compter de la réception des pièces manquantes.",)


def test_r11_svr_pieces_produced_the_day_they_were_asked_suspend_nothing_and_say_so() -> None:
    # Received 15 May 2026, SVR two months: 15 July. Pieces asked on 20 May and produced the
    # same day: no day of suspension, and the citizen is not told of one.
    produced = PiecesRequest(date(2026, 5, 20), date(2026, 6, 1), received_on=date(2026, 5, 20))
    deadline = implicit_decision(Clock("svr", TWO_MONTHS, date(2026, 5, 15), pieces=(produced,)))
    assert (deadline.suspended_days, deadline.last_day) == (0, date(2026, 7, 15))
    assert deadline.notes == (
        "Pièces demandées le 20 mai 2026 et produites le jour même : le délai n'a pas été "
        "suspendu.",
    )
