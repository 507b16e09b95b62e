"""The calendar: hand-checked dates, parity with datetime, and TinyWorld's own calendar text."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genlab.data.tinyworld.tool_text import tool_text
from genlab.data.tinyworld.worked import format_date
from genlab.data.tinyworld.world import World
from genlab.tools.base import ToolError
from genlab.tools.calendar import answer


@pytest.mark.parametrize(
    ("question", "result"),
    [
        ("5 March 2024", "Tuesday"),
        ("weekday of 2024-03-05", "Tuesday"),
        ("1 January 2000", "Saturday"),
        ("Weekday of 25 december 2023", "Monday"),
        ("10 days after 25 February 2024", "6 March 2024"),  # through 29 February
        ("10 days after 25 February 2023", "7 March 2023"),
        ("1 day before 1 January 2000", "31 December 1999"),
        ("0 days after 2024-03-05", "5 March 2024"),
        ("days from 1 January 2000 to 1 January 2001", "366"),
        ("days from 2024-03-05 to 1 March 2024", "-4"),
        ("days between 2024-03-05 and 1 March 2024", "4"),
        ("  DAYS   between 1 march 2024 and 5 March 2024 ", "4"),
        ("31 December 9999", "Friday"),
        ("1 January 1", "Monday"),
    ],
)
def test_values(question: str, result: str) -> None:
    assert answer(question) == result


@pytest.mark.parametrize(
    ("question", "reason"),
    [
        ("30 February 2024", "no such date '30 february 2024'"),
        ("2024-13-01", "no such date"),
        ("0000-01-01", "no such date"),
        ("1 Brumaire 2024", "unknown month 'brumaire'"),
        ("1 day after 31 December 9999", "outside the years 1 to 9999"),
        ("1 day before 1 January 1", "outside the years 1 to 9999"),
        ("9999999 days after 1 January 2000", "outside the years 1 to 9999"),
        ("9" * 60 + " days after 1 January 2000", "outside the years 1 to 9999"),
        ("tomorrow", "expected a date"),
        ("5 March 2024" + " " * 100, "longer than 100"),
        ("", "expected a date"),
    ],
)
def test_refusals(question: str, reason: str) -> None:
    with pytest.raises(ToolError, match=re.escape(reason)):
        answer(question)


_dates = st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31))


def _written(day: dt.date, iso: bool) -> str:
    return day.isoformat() if iso else format_date(day)


@settings(max_examples=300, deadline=None)
@given(_dates, _dates, st.integers(0, 4_000_000), st.booleans(), st.booleans())
def test_parity_with_datetime(a: dt.date, b: dt.date, n: int, iso: bool, after: bool) -> None:
    assert answer(_written(a, iso)) == a.strftime("%A")
    assert answer(f"days from {_written(a, iso)} to {_written(b, not iso)}") == str((b - a).days)
    assert answer(f"days between {_written(a, iso)} and {_written(b, iso)}") == str(
        abs((b - a).days)
    )
    try:
        expected = format_date(a + dt.timedelta(days=n if after else -n))
    except OverflowError:
        expected = None
    question = f"{n} days {'after' if after else 'before'} {_written(a, iso)}"
    if expected is None:
        with pytest.raises(ToolError, match="outside the years"):
            answer(question)
    else:
        assert answer(question) == expected


def test_agrees_with_tinyworld_calendar_text() -> None:
    """Every weekday and every "N days after" that TinyWorld's tool text states, the calendar
    answers the same (the sentences a Toolformer step would add calendar calls to)."""
    text = " ".join(tool_text(World(seed=3, size=16), n_docs=200))
    date = r"(\d{1,2} [A-Z][a-z]+ \d{4})"
    weekdays = re.findall(rf"on {date}, (?:which was )?a ([A-Z][a-z]+day)", text)
    shifts = re.findall(rf"(\d+) days after {date} it was {date}, a ([A-Z][a-z]+day)", text)
    assert len(weekdays) > 20 and len(shifts) > 10
    for day, weekday in weekdays:
        assert answer(day) == weekday
    for n, start, later, weekday in shifts:
        assert answer(f"{n} days after {start}") == later
        assert answer(f"weekday of {later}") == weekday
        assert answer(f"days from {start} to {later}") == n
