"""Find when a usage or rate limit resets, from a printed message, as epoch seconds (the generic grammar).

It knows phrases, not engines: relative waits, clock times, dates (also localised), zones and the usual
API fields. Engine plugins call it through ``aq_core.enginekit.reset_at``; an engine's own peculiar
forms live in its plugin.
"""

from __future__ import annotations

import datetime
import math
import os
import re
import unicodedata
from collections.abc import Callable
from zoneinfo import ZoneInfo

__all__ = ["format_reset", "local_zone", "parse_reset"]

# Terminal colour and cursor codes would split words ("resets \x1b[1m8pm"), so they go before any matching.
_ANSI = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")
_SPACE = re.compile(r"\s+")

# Month names and abbreviations in English, Spanish, Portuguese, French and German, keyed without accents
# or trailing dots; a CLI may localise its absolute form ("10 de jul. de 2026, 11:52").
_MONTH_WORDS = {
    1: "jan january ene enero janeiro janv janvier januar jaen jaenner janner",
    2: "feb february febrero fev fevereiro fevr fevrier februar",
    3: "mar march marzo marco mars marz maerz mrz",
    4: "apr april abr abril avr avril",
    5: "may mayo mai maio",
    6: "jun june junio junho juin juni",
    7: "jul july julio julho juil juillet juli",
    8: "aug august ago agosto aout",
    9: "sep sept september septiembre setiembre set setembro septembre",
    10: "oct october octubre out outubro octobre okt oktober",
    11: "nov november noviembre novembro novembre",
    12: "dec december dic diciembre dez dezembro decembre dezember",
}
_MONTHS = {word: number for number, words in _MONTH_WORDS.items() for word in words.split()}
# "resets Mon 9am": the weekday narrows a time of day to that day; before a date it is only decoration.
_WEEKDAYS = re.compile(
    r"(?P<day>mon|tue|wed|thu|fri|sat|sun)(?:day|s|sday|nesday|rsday|urday|r|rs|\.)?\.?,?\s+(?=\d|[^\W\d_]{3})",
    re.IGNORECASE,
)
_WEEKDAY_INDEX = {name: index for index, name in enumerate(["mon", "tue", "wed", "thu", "fri", "sat", "sun"])}

_NUM = r"(?:\d+(?:\.\d+)?\s*|(?:an?|one)\s+)"
# Longer unit names first so "ms" is not read as minutes and "min" not as "m" + "in".
_UNIT = r"(?:milliseconds?|msecs?|ms|weeks?|wks?|w|days?|d|hours?|hrs?|h|minutes?|mins?|m|seconds?|secs?|s)(?![^\W\d_])"
_PART = re.compile(rf"({_NUM})({_UNIT})", re.IGNORECASE)
_DURATION = re.compile(rf"{_NUM}{_UNIT}(?:(?:\s*,\s*|\s+and\s+|\s*){_NUM}{_UNIT})*", re.IGNORECASE)
_BARE_SECONDS = re.compile(r"(\d+(?:\.\d+)?)(?![\w.:])")
_UNIT_SECONDS = {"ms": 0.001, "w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}

# Words that introduce a wait ("try again in 2 hours") or a moment ("resets 8pm", "try again at Jul 5th").
_TRIGGER = re.compile(
    r"\b(?:try(?:ing)?\s+again|retry(?:-after)?|resets?|reset|available(?:\s+again)?|wait|until)\b"
    r"(?P<prep>\s*(?:(?:in|after|at|on)\b|:))?\s*",
    re.IGNORECASE,
)
# API bodies and headers: "resets_at": 1751652000, "resets_in_seconds": 3600, ratelimit-...-reset: 1751652000.
_JSON_AT = re.compile(
    r"\b(?:resets?_at|reset_time|ratelimit-[\w-]*reset)\"?\s*[:=]\s*\"?"
    r"(?:(?P<epoch>\d{9,13}(?:\.\d+)?)\b|(?P<iso>\d{4}-\d{2}-\d{2}[T ][\d:.]+(?:Z|[+-]\d{2}:?\d{2})?))",
    re.IGNORECASE,
)
_JSON_IN = re.compile(
    r"\b(?:resets?_in_seconds|retry_after(?:_seconds)?)\"?\s*[:=]\s*\"?(\d+(?:\.\d+)?)", re.IGNORECASE
)

_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:T|\s+)?")
_MONTH_FIRST = re.compile(r"([^\W\d_]{3,})\.?\s*(\d{1,2})(?:st|nd|rd|th)?\b\.?(?:\s*,\s*|\s+)?(?:(\d{4})\b)?", re.I)
_DAY_FIRST = re.compile(
    r"(\d{1,2})(?:st|nd|rd|th|er|º|°)?\.?\s*(?:de\s+)?([^\W\d_]{3,})\b\.?(?:\s*(?:de\s+)?(\d{4})\b)?", re.IGNORECASE
)
# Between a date and its time: "Jul 7, 2pm", "Jul 7 at 2pm", "10 de jul. de 2026, 11:52", "10. Juli 2026 um 11:52".
_DATE_TIME_GAP = re.compile(r"\s*(?:,\s*)?(?:(?:at|um|à|a\s+las|às|as|-)\s+)?", re.IGNORECASE)
_TIME = re.compile(
    r"(?P<h>\d{1,2})(?:[:h](?P<m>\d{2})(?::(?P<s>\d{2}))?)?\s*(?P<ap>[ap])?(?(ap)\.?\s?m\b\.?)(?!\d)", re.IGNORECASE
)
# A zone printed after the time: "(America/New_York)", "(UTC)", " UTC", " GMT+2", " Z", " +05:30".
_ZONE = re.compile(
    r"\s*(?:\(\s*(?P<name>[A-Za-z][\w+-]*(?:/[\w+-]+)*)\s*\)"
    r"|(?P<utc>UTC|GMT|Z)(?P<utcoff>[+-]\d{1,2}(?::?\d{2})?)?\b|(?P<off>[+-]\d{2}:?\d{2})\b)"
)


def local_zone() -> datetime.tzinfo:
    """Return the host's zone, preferring a named zone so that DST rules apply to future times."""
    # A fixed offset from astimezone() would be wrong across a DST change, so look for the IANA rules first.
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        # When TZ is set the C library follows it, not /etc/localtime, so only astimezone() can stand in for it.
        return _zone_named(name) or _fixed_local_zone()
    try:
        link = os.path.realpath("/etc/localtime")
        if "zoneinfo/" in link:
            zone = _zone_named(link.split("zoneinfo/", 1)[1])
            if zone is not None:
                return zone
        with open("/etc/localtime", "rb") as rules:
            return ZoneInfo.from_file(rules, key="localtime")
    except Exception:  # no /etc/localtime or unreadable rules: fall through to the C library's offset
        return _fixed_local_zone()


def _fixed_local_zone() -> datetime.tzinfo:
    return datetime.datetime.now().astimezone().tzinfo or datetime.UTC


def _zone_named(name: str) -> datetime.tzinfo | None:
    try:
        return ZoneInfo(name)
    except Exception:  # unknown names, path-like keys and missing tzdata all mean "not this zone"
        return None


def _offset_zone(text: str) -> datetime.tzinfo | None:
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = (digits, "0") if len(digits) <= 2 else (digits[:-2], digits[-2:])
    try:
        return datetime.timezone(sign * datetime.timedelta(hours=int(hours), minutes=int(minutes)))
    except ValueError:
        return None


def _month(word: str) -> int | None:
    plain = unicodedata.normalize("NFKD", word.lower()).encode("ascii", "ignore").decode().rstrip(".")
    return _MONTHS.get(plain) or _MONTHS.get(plain.replace("ae", "a"))


def _to_epoch(day: datetime.date, clock: datetime.time, zone: datetime.tzinfo, fold: int = 0) -> float:
    # Build the wall-clock time in the zone and convert: zoneinfo then applies the offset valid on that day.
    return datetime.datetime.combine(day, clock, tzinfo=zone).replace(fold=fold).timestamp()


def _next_time_of_day(clock: datetime.time, zone: datetime.tzinfo, now: float, weekday: int | None = None) -> float:
    """The first moment strictly after ``now`` whose wall clock in ``zone`` reads ``clock`` (on ``weekday``)."""
    today = datetime.datetime.fromtimestamp(now, zone).date()
    for offset in range(-1, 9):
        day = today + datetime.timedelta(days=offset)
        if weekday is not None and day.weekday() != weekday:
            continue
        # fold=0 then fold=1 so that a time repeated when clocks go back picks its later instance if needed.
        for fold in (0, 1):
            moment = _to_epoch(day, clock, zone, fold)
            if moment > now:
                return moment
    return _to_epoch(today + datetime.timedelta(days=1), clock, zone)


def _parse_duration(text: str) -> float:
    total = 0.0
    for number, unit in _PART.findall(text):
        number = number.strip().lower()
        value = 1.0 if number in {"a", "an", "one"} else float(number)
        unit = unit.lower()
        if unit.startswith(("ms", "msec", "milli")):
            key = "ms"
        elif unit.startswith("mi") or unit == "m":
            key = "m"
        else:
            key = unit[0]
        total += value * _UNIT_SECONDS[key]
    return total


def _parse_relative(text: str, pos: int, now: float, bare_seconds: bool) -> float | None:
    match = _DURATION.match(text, pos)
    if match:
        return now + _parse_duration(match.group(0))
    if bare_seconds:
        # "Retry-After: 120" carries plain seconds, as the HTTP header does.
        bare = _BARE_SECONDS.match(text, pos)
        if bare:
            return now + float(bare.group(1))
    return None


def _parse_date(text: str, pos: int) -> tuple[int, int, int | None, int] | None:
    """Read a calendar date at ``pos``: (month, day, year or None, end)."""
    iso = _ISO_DATE.match(text, pos)
    if iso:
        year, month, day = int(iso.group(1)), int(iso.group(2)), int(iso.group(3))
        return (month, day, year, iso.end()) if 1 <= month <= 12 else None
    # Month first ("Jul 5th, 2026") before day first ("10 de jul. de 2026"); a word that is no month means no date.
    for pattern, month_group, day_group in ((_MONTH_FIRST, 1, 2), (_DAY_FIRST, 2, 1)):
        found = pattern.match(text, pos)
        month = _month(found.group(month_group)) if found else None
        if found and month:
            year = int(found.group(3)) if found.group(3) else None
            return month, int(found.group(day_group)), year, found.end()
    return None


def _parse_clock(text: str, pos: int) -> tuple[datetime.time, int] | None:
    match = _TIME.match(text, pos)
    if not match or (match.group("m") is None and match.group("ap") is None):
        return None  # a bare number is not a time of day
    hour, minute = int(match.group("h")), int(match.group("m") or 0)
    second = int(match.group("s") or 0)
    if match.group("ap"):
        if not 1 <= hour <= 12:
            return None
        # 12am is midnight and 12pm is noon.
        hour = hour % 12 + (12 if match.group("ap").lower() == "p" else 0)
    if hour > 23 or minute > 59 or second > 59:
        return None
    return datetime.time(hour, minute, second), match.end()


def _parse_zone(text: str, pos: int, default: datetime.tzinfo) -> datetime.tzinfo:
    match = _ZONE.match(text, pos)
    if not match:
        return default
    if match.group("name"):
        # An unknown name falls back to the default zone rather than failing the whole phrase.
        return _zone_named(match.group("name")) or default
    if match.group("utc"):
        offset = match.group("utcoff")
        return (_offset_zone(offset) if offset else datetime.UTC) or default
    return _offset_zone(match.group("off")) or default


def _parse_absolute(text: str, pos: int, now: float, local_tz: datetime.tzinfo) -> float | None:
    weekday = _WEEKDAYS.match(text, pos)
    start = weekday.end() if weekday else pos
    date = _parse_date(text, start)
    clock_at = start
    if date:
        clock_at = _DATE_TIME_GAP.match(text, date[3]).end()
    clock = _parse_clock(text, clock_at)
    if not date and not clock:
        return None
    end = clock[1] if clock else date[3] if date else pos
    zone = _parse_zone(text, end, local_tz)
    time_of_day = clock[0] if clock else datetime.time(0, 0)
    if not date:
        day_index = _WEEKDAY_INDEX[weekday.group("day").lower()] if weekday else None
        return _next_time_of_day(time_of_day, zone, now, day_index)
    month, day, year, _ = date
    if year is not None:
        try:
            return _to_epoch(datetime.date(year, month, day), time_of_day, zone)
        except (ValueError, OverflowError):
            return None
    # No year: this year's date unless it is already over; a moment passed by under a day is kept (the message
    # may be a little stale), since pushing it a year out would park the job for a year.
    this_year = datetime.datetime.fromtimestamp(now, zone).year
    for candidate in (this_year, this_year + 1):
        try:
            moment = _to_epoch(datetime.date(candidate, month, day), time_of_day, zone)
        except ValueError:
            continue  # Feb 29 outside a leap year
        if moment > now - 86400:
            return moment
    return None


def _epoch_value(raw: str) -> float:
    value = float(raw)
    # Thirteen digits are milliseconds.
    return value / 1000.0 if value > 1e11 else value


def parse_reset(text: str, now: float, local_tz: datetime.tzinfo | None = None) -> float | None:
    """Find the first reset-time phrase in ``text`` and return it as epoch seconds, or None."""
    try:
        return _parse_reset(text, float(now), local_tz)
    except Exception:  # the caller is classifying a failure already; a parse error must never add another
        return None


def _parse_reset(text: str, now: float, local_tz: datetime.tzinfo | None) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    zone = local_tz or local_zone()
    # Wrapped lines and colour codes must not break a phrase in two.
    flat = _SPACE.sub(" ", _ANSI.sub("", text))
    candidates: list[tuple[int, Callable[[], float | None]]] = []
    for match in _JSON_AT.finditer(flat):
        candidates.append((match.start(), lambda m=match: _json_at(m)))
    for match in _JSON_IN.finditer(flat):
        candidates.append((match.start(), lambda m=match: now + float(m.group(1))))
    for match in _TRIGGER.finditer(flat):
        candidates.append((match.start(), lambda m=match: _after_trigger(flat, m, now, zone)))
    for _, parse in sorted(candidates, key=lambda item: item[0]):
        try:
            result = parse()
        except (ValueError, OverflowError, OSError):  # e.g. a truncated ISO stamp; a later phrase may still read
            continue
        if result is not None and math.isfinite(result):
            return float(result)
    return None


def _json_at(match: re.Match[str]) -> float | None:
    if match.group("epoch"):
        return _epoch_value(match.group("epoch"))
    iso = match.group("iso").replace("Z", "+00:00")
    moment = datetime.datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _after_trigger(text: str, match: re.Match[str], now: float, zone: datetime.tzinfo) -> float | None:
    prep = (match.group("prep") or "").strip().lower()
    pos = match.end()
    word = match.group(0).lower()
    if prep in {"in", "after", ":", ""}:
        relative = _parse_relative(text, pos, now, bare_seconds=word.startswith("retry") and prep != "in")
        if relative is not None:
            return relative
    if prep == "in":
        return None  # "in" announces a wait; a clock after it ("in 8pm") is not a phrase we know
    return _parse_absolute(text, pos, now, zone)


def format_reset(epoch: float, tz: datetime.tzinfo | None = None) -> str:
    """Return a short human form of a reset moment for status lines, e.g. ``2026-11-26 20:00 EST``."""
    try:
        moment = datetime.datetime.fromtimestamp(float(epoch), tz or local_zone())
        return moment.strftime("%Y-%m-%d %H:%M %Z").strip()
    except Exception:  # a status line must never crash on an odd value
        return str(epoch)
