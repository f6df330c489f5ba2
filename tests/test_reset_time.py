"""Tests for reading limit-reset moments out of engine output (aq_core.reset_time, the generic grammar).

The real engines' wordings are the test cases; a form only one engine prints is tested with its plugin.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aq_core.reset_time import format_reset, local_zone, parse_reset

NY = ZoneInfo("America/New_York")
TORONTO = ZoneInfo("America/Toronto")
COLOMBO = ZoneInfo("Asia/Colombo")
PARIS = ZoneInfo("Europe/Paris")
DUBAI = ZoneInfo("Asia/Dubai")
UTC = dt.UTC


def at(zone: dt.tzinfo, *fields: int, fold: int = 0) -> float:
    """Epoch of a wall-clock time in ``zone``, computed independently of the module under test."""
    return dt.datetime(*fields, tzinfo=zone, fold=fold).timestamp()  # type: ignore[misc]


# Saturday 2026-07-04 10:00 in New York: the fixed "now" for most cases.
NOW = at(NY, 2026, 7, 4, 10, 0)


# --- Claude Code -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("You've hit your session limit · resets 8pm (America/New_York)", at(NY, 2026, 7, 4, 20)),
        ("You've hit your limit · resets 2pm (America/Toronto)", at(TORONTO, 2026, 7, 4, 14)),
        # 11:30 in Colombo (UTC+5:30) is 02:00 New York time, already past today there: tomorrow in Colombo.
        ("You're out of extra usage · resets 11:30am (Asia/Colombo)", at(COLOMBO, 2026, 7, 5, 11, 30)),
        ("Claude usage limit reached. Your limit will reset at 12am.", at(NY, 2026, 7, 5, 0, 0)),
        ("5-hour limit reached - resets 3pm", at(NY, 2026, 7, 4, 15)),
        ("Claude usage limit reached. Your limit will reset at 1 PM (Asia/Dubai).", at(DUBAI, 2026, 7, 5, 13)),
        (
            "Claude usage limit reached. Your limit will reset at 5pm (Europe/Warsaw).",
            at(ZoneInfo("Europe/Warsaw"), 2026, 7, 4, 17),
        ),
    ],
)
def test_claude_wordings(text: str, expected: float) -> None:
    assert parse_reset(text, NOW, NY) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("You've hit your limit · resets Jul 7, 2pm", at(NY, 2026, 7, 7, 14)),
        ("You've hit your limit · resets Jul 7 at 2pm (Europe/Paris)", at(PARIS, 2026, 7, 7, 14)),
        ("Weekly limit reached · resets Jul 7 (Europe/Paris)", at(PARIS, 2026, 7, 7, 0, 0)),
        ("Weekly limit reached · resets Tue, Jul 7, 9am", at(NY, 2026, 7, 7, 9)),
        ("resets on July 7, 2026 at 2:15pm", at(NY, 2026, 7, 7, 14, 15)),
        # Wordings from anthropics/claude-code #92834, #81647, #65802, #16618 and older "∙" builds.
        ("You've hit your weekly limit · resets Sep 15 at 7pm", at(NY, 2026, 9, 15, 19)),
        ("You've hit your weekly limit · resets Jul 31, 2am (UTC)", at(UTC, 2026, 7, 31, 2)),
        ("You've hit your weekly limit · resets Jun 7, 4pm (Europe/Rome)", at(ZoneInfo("Europe/Rome"), 2027, 6, 7, 16)),
        (" Resets Jan 12, 10:59am (America/New_York)", at(NY, 2027, 1, 12, 10, 59)),
        ("Weekly limit reached ∙ resets Oct 9, 5pm", at(NY, 2026, 10, 9, 17)),
        ("Session limit reached ∙ resets 5:00 PM", at(NY, 2026, 7, 4, 17)),
        (
            "⎿  Weekly limit reached · resets 10am (Asia/Seoul) · /upgrade to Max",
            at(ZoneInfo("Asia/Seoul"), 2026, 7, 5, 10),
        ),
        ("5-hour limit reached ∙ resets 45m", NOW + 45 * 60),
        ("You've hit your limit · resets in 2h 30m", NOW + 2 * 3600 + 30 * 60),
        # A weekday narrows a bare time to that day: 2026-07-04 is a Saturday.
        ("Weekly limit reached · resets Mon 9am", at(NY, 2026, 7, 6, 9)),
        ("Weekly limit reached · resets Saturday 9am", at(NY, 2026, 7, 11, 9)),
        ("Weekly limit reached · resets Sat 11am", at(NY, 2026, 7, 4, 11)),
    ],
)
def test_claude_date_forms(text: str, expected: float) -> None:
    assert parse_reset(text, NOW, NY) == expected


# --- Codex CLI -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (
            "■ You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again in "
            "2 days 17 hours 14 minutes.",
            2 * 86400 + 17 * 3600 + 14 * 60,
        ),
        ("You've hit your usage limit. Try again in 5 hours 3 minutes.", 5 * 3600 + 3 * 60),
        ("try again in 45 seconds", 45),
        ("try again in 1 day, 2 hours and 5 minutes", 86400 + 2 * 3600 + 5 * 60),
        ("Rate limit reached. Please try again in 6m0s.", 360),
        ("Please try again in 1.5s", 1.5),
        ("Please try again in 20ms.", 0.02),
        ("try again in 0 minutes", 0),
    ],
)
def test_codex_relative(text: str, seconds: float) -> None:
    assert parse_reset(text, NOW, NY) == pytest.approx(NOW + seconds)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "You've hit your usage limit. Upgrade to Plus to continue using Codex (https://chatgpt.com/explore/plus),"
            " or try again at Jul 5th, 2026 8:19 PM.",
            at(NY, 2026, 7, 5, 20, 19),
        ),
        (
            "You've hit your usage limit. Upgrade your plan to continue, or try again at 10 de jul. de 2026, 11:52.",
            at(NY, 2026, 7, 10, 11, 52),
        ),
        ("or try again at 10 de jul. de 2026 às 11:52.", at(NY, 2026, 7, 10, 11, 52)),
        ("o intenta de nuevo; try again at 3 de ago. de 2026, 09:05.", at(NY, 2026, 8, 3, 9, 5)),
        ("try again at 1 de set. de 2026, 18:00.", at(NY, 2026, 9, 1, 18)),
        ("try again at 2 de dez. de 2026, 18:00.", at(NY, 2026, 12, 2, 18)),
        ("try again at 10 juil. 2026 à 11:52", at(NY, 2026, 7, 10, 11, 52)),
        ("try again at 12 févr. 2027 à 08:00", at(NY, 2027, 2, 12, 8)),
        ("try again at 10. Juli 2026 um 11:52", at(NY, 2026, 7, 10, 11, 52)),
        ("try again at 3. März 2027, 07:30", at(NY, 2027, 3, 3, 7, 30)),
        ("try again at 5 okt. 2026 14:00", at(NY, 2026, 10, 5, 14)),
        ("try again at 8:19 PM.", at(NY, 2026, 7, 4, 20, 19)),
        ("try again at 2026-07-05 20:19 UTC", at(UTC, 2026, 7, 5, 20, 19)),
        ("try again at 2026-07-05T20:19:00+02:00", at(dt.timezone(dt.timedelta(hours=2)), 2026, 7, 5, 20, 19)),
    ],
)
def test_codex_absolute(text: str, expected: float) -> None:
    assert parse_reset(text, NOW, NY) == expected


def test_codex_api_json() -> None:
    body = '{"error":{"type":"usage_limit_reached","message":"x","resets_at":1751652000,"resets_in_seconds":3600}}'
    # The first phrase wins; here both agree in spirit but resets_at comes first.
    assert parse_reset(body, NOW, NY) == 1751652000.0
    assert parse_reset('{"resets_in_seconds": 3600}', NOW, NY) == NOW + 3600
    assert parse_reset('"resets_at": 1751652000', NOW, NY) == 1751652000.0
    assert parse_reset('"resets_at": "2026-07-05T20:19:00Z"', NOW, NY) == at(UTC, 2026, 7, 5, 20, 19)


def test_exec_json_event_message() -> None:
    event = (
        '{"type":"turn.failed","error":{"message":"You\'ve hit your usage limit. Upgrade to Pro, or try again in '
        '3 hours 2 minutes."}}'
    )
    assert parse_reset(event, NOW, NY) == NOW + 3 * 3600 + 2 * 60


# --- Copilot CLI -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (
            "✗ Sorry, you've hit a rate limit that restricts the number of Copilot model requests you can make within "
            "a specific time period. Please try again in 2 hours. Please review our Terms of Service "
            "(https://docs.github.com/site-policy/github-terms/github-terms-of-service). (Request ID: C0DE:1234:5678)",
            7200,
        ),
        ("Please try again in 2\nhours. (Request ID: AB12:3F)", 7200),
        ("Please try\n  again in 1 minute.", 60),
        ("try again in 30 seconds", 30),
        ("Please try again in an hour.", 3600),
        ("retry after 120 seconds", 120),
        ("Retry-After: 120", 120),
        ("please wait 90 seconds before retrying", 90),
    ],
)
def test_copilot_relative(text: str, seconds: float) -> None:
    assert parse_reset(text, NOW, NY) == NOW + seconds


# --- Clocks, next occurrence, zones --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clock", "expected"),
    [
        ("8pm", at(NY, 2026, 7, 4, 20)),
        ("8 pm", at(NY, 2026, 7, 4, 20)),
        ("8 p.m.", at(NY, 2026, 7, 4, 20)),
        ("11:30am", at(NY, 2026, 7, 4, 11, 30)),
        ("11:30 AM", at(NY, 2026, 7, 4, 11, 30)),
        ("20:00", at(NY, 2026, 7, 4, 20)),
        ("09:15", at(NY, 2026, 7, 5, 9, 15)),  # already past today: tomorrow
        ("12am", at(NY, 2026, 7, 5, 0)),  # midnight
        ("12pm", at(NY, 2026, 7, 4, 12)),  # noon
        ("12:30am", at(NY, 2026, 7, 5, 0, 30)),
    ],
)
def test_clock_forms(clock: str, expected: float) -> None:
    assert parse_reset(f"limit hit · resets {clock}", NOW, NY) == expected


def test_time_equal_to_now_is_next_day() -> None:
    assert parse_reset("resets 10am", NOW, NY) == at(NY, 2026, 7, 5, 10)
    assert parse_reset("resets 10:00", NOW, NY) == at(NY, 2026, 7, 5, 10)
    # One second before the reset it is still today.
    assert parse_reset("resets 10am", NOW - 1, NY) == NOW


def test_time_earlier_today_is_tomorrow_and_later_is_today() -> None:
    assert parse_reset("resets 9am", NOW, NY) == at(NY, 2026, 7, 5, 9)
    assert parse_reset("resets 11am", NOW, NY) == at(NY, 2026, 7, 4, 11)


def test_next_occurrence_across_month_and_year_end() -> None:
    now = at(NY, 2026, 12, 31, 23, 30)
    assert parse_reset("resets 1am", now, NY) == at(NY, 2027, 1, 1, 1)


def test_date_without_year_is_next_occurrence() -> None:
    now = at(NY, 2026, 12, 30, 12)
    assert parse_reset("resets Jan 2, 3pm", now, NY) == at(NY, 2027, 1, 2, 15)
    assert parse_reset("resets Dec 31, 3pm", now, NY) == at(NY, 2026, 12, 31, 15)


def test_date_without_year_just_passed_is_kept() -> None:
    # A message read a little late must not park the job for a year; the caller sees the past time and retries.
    now = at(NY, 2026, 7, 7, 14, 5)
    assert parse_reset("resets Jul 7, 2pm", now, NY) == at(NY, 2026, 7, 7, 14)


def test_explicit_year_in_the_past_is_returned_as_is() -> None:
    assert parse_reset("try again at Jul 5th, 2025 8:19 PM.", NOW, NY) == at(NY, 2025, 7, 5, 20, 19)


def test_zone_in_parentheses_wins_over_local() -> None:
    result = parse_reset("resets 8pm (Asia/Colombo)", NOW, NY)
    assert result == at(COLOMBO, 2026, 7, 4, 20)
    assert result != at(NY, 2026, 7, 4, 20)


def test_unknown_zone_falls_back_to_local() -> None:
    assert parse_reset("resets 8pm (Nowhere/Atlantis)", NOW, NY) == at(NY, 2026, 7, 4, 20)
    assert parse_reset("resets 8pm (../../etc/passwd)", NOW, NY) == at(NY, 2026, 7, 4, 20)


def test_utc_and_gmt_suffixes() -> None:
    assert parse_reset("resets 8pm UTC", NOW, NY) == at(UTC, 2026, 7, 4, 20)
    assert parse_reset("resets 8pm (UTC)", NOW, NY) == at(UTC, 2026, 7, 4, 20)
    assert parse_reset("resets 20:00 GMT+2", NOW, NY) == at(dt.timezone(dt.timedelta(hours=2)), 2026, 7, 4, 20)


def test_default_zone_comes_from_tz_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    tokyo = ZoneInfo("Asia/Tokyo")
    now = at(tokyo, 2026, 7, 4, 10)
    assert isinstance(local_zone(), ZoneInfo)
    assert parse_reset("resets 8pm", now) == at(tokyo, 2026, 7, 4, 20)


def test_default_zone_with_bad_tz_env_does_not_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Not/AZone")
    assert isinstance(parse_reset("resets 8pm", NOW), float)


# --- DST -------------------------------------------------------------------------------------------------------


def test_spring_forward_day_is_23_hours() -> None:
    # New York clocks jump 02:00 -> 03:00 on 2026-03-08.
    # "now" is 8pm itself, so the reset is the next day's 8pm, one wall-clock day but 23 real hours later.
    now = at(NY, 2026, 3, 7, 20, 0)
    result = parse_reset("resets 8pm", now, NY)
    assert result == at(NY, 2026, 3, 8, 20)
    assert result - now == 23 * 3600


def test_fall_back_day_is_25_hours() -> None:
    # New York clocks go 02:00 -> 01:00 on 2026-11-01.
    now = at(NY, 2026, 10, 31, 20, 0)
    result = parse_reset("resets 8pm", now, NY)
    assert result == at(NY, 2026, 11, 1, 20)
    assert result - now == 25 * 3600


def test_time_in_spring_forward_gap_is_read_with_the_offset_before_the_jump() -> None:
    # 02:30 does not exist on 2026-03-08; read as 02:30 EST it is 03:30 EDT.
    now = at(NY, 2026, 3, 8, 0, 30)
    assert parse_reset("resets 2:30am", now, NY) == at(UTC, 2026, 3, 8, 7, 30)


def test_repeated_time_on_fall_back_picks_the_next_instance() -> None:
    first = at(NY, 2026, 11, 1, 1, 30, fold=0)  # 01:30 EDT
    second = at(NY, 2026, 11, 1, 1, 30, fold=1)  # 01:30 EST, an hour later
    assert second - first == 3600
    assert parse_reset("resets 1:30am", at(NY, 2026, 11, 1, 0, 45), NY) == first
    assert parse_reset("resets 1:30am", at(NY, 2026, 11, 1, 1, 45, fold=0), NY) == second


def test_dst_in_printed_zone_not_local() -> None:
    # Europe/Paris switches on 2026-03-29; the host zone (UTC here) does not matter.
    now = at(PARIS, 2026, 3, 28, 21, 0)
    result = parse_reset("resets 8pm (Europe/Paris)", now, UTC)
    assert result == at(PARIS, 2026, 3, 29, 20)
    assert result - now == 22 * 3600


# --- Noise, order, garbage -------------------------------------------------------------------------------------


def test_ansi_codes_are_ignored() -> None:
    assert parse_reset("\x1b[31mYou've hit your limit · resets \x1b[1m8pm\x1b[0m (America/New_York)", NOW, NY) == at(
        NY, 2026, 7, 4, 20
    )


def test_first_phrase_wins() -> None:
    text = "try again in 2 hours. Your limit will reset at 8pm."
    assert parse_reset(text, NOW, NY) == NOW + 7200
    assert parse_reset("Your limit will reset at 8pm. try again in 2 hours.", NOW, NY) == at(NY, 2026, 7, 4, 20)


def test_unparseable_trigger_is_skipped_for_a_later_phrase() -> None:
    assert parse_reset("Please try again later. Limit resets 3pm.", NOW, NY) == at(NY, 2026, 7, 4, 15)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Please try again later.",
        "wait and retry",
        "rate limit exceeded",
        "git reset --hard HEAD",
        "resets at 5",
        "try again at noon-ish",
        '× Model call failed: {"message":"rate limit exceeded","code":"rate_limited"}',
        "You have exceeded your premium request allowance. We have automatically switched you to GPT-4.1",
        "resets 25:00",
        "resets 13pm",
        "try again at Feb 30, 2026 8:00 PM",
    ],
)
def test_nothing_recognised_is_none(text: str) -> None:
    assert parse_reset(text, NOW, NY) is None


def test_bad_candidate_does_not_hide_a_later_phrase() -> None:
    assert parse_reset('"resets_at": "2026-07-05T20:" then try again in 2 hours', NOW, NY) == NOW + 7200


def test_absurd_numbers_are_none() -> None:
    assert parse_reset("try again in " + "9" * 400 + " hours", NOW, NY) is None


def test_non_string_input_is_none() -> None:
    assert parse_reset(None, NOW, NY) is None  # type: ignore[arg-type]
    assert parse_reset(b"resets 8pm", NOW, NY) is None  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(text=st.text(), now=st.floats(min_value=0, max_value=4e9))
def test_any_text_never_raises(text: str, now: float) -> None:
    result = parse_reset(text, now, NY)
    assert result is None or isinstance(result, float)


_PIECES = st.sampled_from(
    [
        "resets ",
        "try again in ",
        "try again at ",
        "retry after ",
        "Retry-After: ",
        "wait ",
        "until ",
        "|",
        "limit reached",
        '"resets_at": ',
        "8pm",
        "12am",
        "99:99",
        "11:30",
        " (America/New_York)",
        " (Bad/Zone)",
        " (",
        "Jul ",
        "de jul. de ",
        "5th, ",
        "2026 ",
        "99999999999999999999",
        "0",
        " hours ",
        " ms",
        "\x1b[1m",
        "\n",
        " ",
    ]
)


@settings(max_examples=300, deadline=None)
@given(text=st.lists(_PIECES, max_size=12).map("".join), now=st.floats(min_value=0, max_value=4e9))
def test_phrase_like_text_never_raises(text: str, now: float) -> None:
    result = parse_reset(text, now, NY)
    assert result is None or isinstance(result, float)


def test_long_noisy_input_is_fast() -> None:
    import time

    text = ("resets " * 5000) + ("1 " * 5000) + ("try again in " * 3000) + "resets 8pm"
    start = time.monotonic()
    assert parse_reset(text, NOW, NY) == at(NY, 2026, 7, 4, 20)
    assert time.monotonic() - start < 2.0


# --- format_reset ----------------------------------------------------------------------------------------------


def test_format_reset() -> None:
    assert format_reset(at(NY, 2026, 11, 26, 20), NY) == "2026-11-26 20:00 EST"
    assert format_reset(at(NY, 2026, 7, 4, 20), NY) == "2026-07-04 20:00 EDT"
    assert format_reset(at(UTC, 2026, 7, 4, 20), UTC) == "2026-07-04 20:00 UTC"


def test_format_reset_default_zone_and_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Colombo")
    assert format_reset(at(COLOMBO, 2026, 7, 4, 11, 30)).startswith("2026-07-04 11:30")
    assert format_reset(float("nan")) == "nan"
