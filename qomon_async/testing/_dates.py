"""Qomon's date formats: reading ISO date-times and date-math, writing the three precisions."""

from __future__ import annotations

import calendar
import re
from datetime import datetime, timedelta, timezone

UTC = timezone.utc

# RFC 3339 with 0-9 fractional digits, `Z`, an offset or no zone (taken as UTC), or a bare
# date: all of these are seen in Qomon's answers and docs.
_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|z|[+-]\d{2}:?\d{2})?$"
)
# Elasticsearch-style date-math, evaluated server-side in UTC: `now`, `now-1h`,
# `now-1d/d`, `now+1y`, chained operations.
_MATH_OP = re.compile(r"([+-])(\d+)([yMwdhHms])|/([yMwdhHms])")


def parse_iso(text: str) -> datetime | None:
    """Parse an ISO 8601 / RFC 3339 date or date-time into an aware UTC datetime.

    Returns None when ``text`` is not one.
    """
    match = _ISO.match(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        value = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micro,
            tzinfo=UTC,
        )
    except ValueError:
        return None
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        value -= sign * offset
    return value


def _add_months(value: datetime, months: int) -> datetime:
    index = value.year * 12 + value.month - 1 + months
    year, month = divmod(index, 12)
    day = min(value.day, calendar.monthrange(year, month + 1)[1])
    return value.replace(year=year, month=month + 1, day=day)


def _round_down(value: datetime, unit: str) -> datetime:
    if unit == "y":
        return value.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    if unit == "M":
        return value.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if unit == "w":
        start = value - timedelta(days=value.weekday())
        return start.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "d":
        return value.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit in ("h", "H"):
        return value.replace(minute=0, second=0, microsecond=0)
    if unit == "m":
        return value.replace(second=0, microsecond=0)
    return value.replace(microsecond=0)


_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "H": 3600, "m": 60, "s": 1}


def parse_date_value(text: str, now: datetime) -> datetime | None:
    """Parse a search date value: an ISO date-time or a date-math expression based on ``now``.

    Returns None when ``text`` is neither.
    """
    text = text.strip()
    if not text.startswith("now"):
        return parse_iso(text)
    value = now
    rest = text[3:]
    position = 0
    while position < len(rest):
        match = _MATH_OP.match(rest, position)
        if match is None:
            return None
        sign, amount, unit, round_unit = match.groups()
        if round_unit is not None:
            value = _round_down(value, round_unit)
        else:
            count = int(amount) * (1 if sign == "+" else -1)
            if unit == "y":
                value = _add_months(value, 12 * count)
            elif unit == "M":
                value = _add_months(value, count)
            else:
                value += timedelta(seconds=count * _UNIT_SECONDS[unit])
        position = match.end()
    return value


def format_micro(value: datetime) -> str:
    """``2026-11-26T10:00:00.123456Z``: the precision of ``CreatedAt``/``UpdatedAt``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_milli(value: datetime) -> str:
    """``2026-11-26T10:00:00.123Z``: the precision of ``lastchange`` and answer dates."""
    text = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text[:-3] + "Z"


def format_seconds(value: datetime) -> str:
    """``1955-07-06T00:00:00Z``: how Qomon reads a stored birthdate back."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
