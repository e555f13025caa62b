"""The functions mapping expressions may call. Each is registered with its arity.

Functions are null-tolerant: given ``null`` where a value is expected they return ``null``
(so a missing optional input leaves the output field unset), except where documented.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .expr import Lookup


class MappingFunctionError(ValueError):
    """A function got a value it cannot work with."""


@dataclass(frozen=True)
class Function:
    name: str
    impl: Callable[..., Any]
    min_args: int
    max_args: int | None
    doc: str
    # what the implementation takes before its arguments: the mapping's lookup tables or the
    # golden-id resolver (not counted as an argument)
    context: Literal["lookups", "resolver"] | None = None
    lookup_table_arg: bool = False

    def arity_text(self) -> str:
        if self.max_args == self.min_args:
            return f"{self.min_args} argument{'s' if self.min_args != 1 else ''}"
        if self.max_args is None:
            return f"at least {self.min_args} arguments"
        return f"{self.min_args} to {self.max_args} arguments"


FUNCTIONS: dict[str, Function] = {}


def fn(
    min_args: int,
    max_args: int | None = -1,
    *,
    name: str | None = None,
    context: Literal["lookups", "resolver"] | None = None,
    lookup_table_arg: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(impl: Callable[..., Any]) -> Callable[..., Any]:
        key = name or impl.__name__.rstrip("_")
        FUNCTIONS[key] = Function(
            key,
            impl,
            min_args,
            min_args if max_args == -1 else max_args,
            (impl.__doc__ or "").strip(),
            context,
            lookup_table_arg,
        )
        return impl

    return register


# conversions ---------------------------------------------------------------------------------


def to_decimal(v: Any) -> Decimal:
    kind = type(v)
    if kind is Decimal:
        return v  # type: ignore[no-any-return]
    if kind is str:  # the common case: sources send amounts as text
        try:
            d = Decimal(v)
        except InvalidOperation:
            d = _text_decimal(v)
        if d.is_finite():
            return d
        raise MappingFunctionError(f"{v!r} is not a finite number")
    if kind is int:
        return Decimal(v)
    return _other_decimal(v)


def _text_decimal(v: str) -> Decimal:
    try:
        return Decimal(v.strip())
    except InvalidOperation:
        raise MappingFunctionError(f"{v!r} is not a number") from None


def _other_decimal(v: Any) -> Decimal:
    if isinstance(v, Decimal):
        return v
    if isinstance(v, bool):
        raise MappingFunctionError(f"expected a number, got {v!r}")
    if isinstance(v, int):
        return Decimal(v)
    if isinstance(v, float):
        return Decimal(repr(v))
    if isinstance(v, str):
        try:
            d = Decimal(v.strip())
        except InvalidOperation:
            raise MappingFunctionError(f"{v!r} is not a number") from None
        if not d.is_finite():
            raise MappingFunctionError(f"{v!r} is not a finite number")
        return d
    raise MappingFunctionError(f"expected a number, got {type(v).__name__}")


@fn(1, name="decimal")
def decimal_(v: Any) -> Decimal | None:
    """Exact decimal from a number or numeric string: ``decimal('19.90')``."""
    return None if v is None or v == "" else to_decimal(v)


@fn(1, name="int")
def int_(v: Any) -> int | None:
    """Integer; refuses values with a fractional part: ``int('3')``."""
    if v is None or v == "":
        return None
    d = to_decimal(v)
    if d != d.to_integral_value():
        raise MappingFunctionError(f"{v!r} is not a whole number")
    return int(d)


@fn(1, name="str")
def str_(v: Any) -> str | None:
    """Text; decimals keep their exact digits: ``str(id)``."""
    kind = type(v)
    if kind is str:
        return v  # type: ignore[no-any-return]
    if kind is int:
        return str(v)
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Decimal):
        return format(v, "f")
    return str(v)


@fn(1, name="bool")
def bool_(v: Any) -> bool | None:
    """Boolean from true/false, yes/no, 1/0 (any case)."""
    if v is None or isinstance(v, bool):
        return v
    text = str(v).strip().lower()
    if text in ("true", "yes", "y", "1", "on"):
        return True
    if text in ("false", "no", "n", "0", "off", ""):
        return False
    raise MappingFunctionError(f"{v!r} is not a boolean")


_EXPONENTS = {n: Decimal(1).scaleb(-n) for n in range(0, 7)}


@fn(1, 2)
def money(v: Any, places: Any = 2) -> str | None:
    """Decimal string rounded half-even to ``places`` (default 2): ``money(total_price)``."""
    if v is None or v == "":
        return None
    exp = _EXPONENTS.get(places) or Decimal(1).scaleb(-int(places))
    amount = to_decimal(v).quantize(exp, rounding=ROUND_HALF_EVEN)
    # an amount that rounds to zero is "0.00", never "-0.00"
    return format(amount.copy_abs() if amount.is_zero() else amount, "f")


_ROUNDING = {
    "half_even": ROUND_HALF_EVEN,
    "half_up": ROUND_HALF_UP,
    "up": ROUND_UP,
    "down": ROUND_DOWN,
}


@fn(1, 3, name="round")
def round_(v: Any, places: Any = 0, mode: str = "half_even") -> Decimal | None:
    """Round a decimal: ``round(x, 2, 'half_up')``; modes half_even, half_up, up, down."""
    if v is None:
        return None
    if mode not in _ROUNDING:
        raise MappingFunctionError(f"unknown rounding mode {mode!r} ({', '.join(_ROUNDING)})")
    return to_decimal(v).quantize(Decimal(1).scaleb(-int(places)), rounding=_ROUNDING[mode])


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MappingFunctionError(
            f"unknown time zone {name!r} (use IANA names like 'Europe/Berlin')"
        ) from None


def _parse_timestamp(v: Any, assume: Any) -> datetime:
    if isinstance(v, datetime):
        dt = v
    else:
        text = str(v).strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise MappingFunctionError(f"{v!r} is not an ISO 8601 timestamp") from None
    if dt.tzinfo is None:
        if assume is None:
            raise MappingFunctionError(
                f"{v!r} has no time zone offset; give the zone it is in, "
                "e.g. datetime_utc(x, 'Europe/Berlin')"
            )
        dt = dt.replace(tzinfo=_zone(str(assume)))
    return dt


@fn(1, 2)
def datetime_utc(v: Any, assume_zone: Any = None) -> str | None:
    """RFC 3339 UTC from an ISO 8601 timestamp: ``'2026-11-22T10:15:00Z'``.

    A timestamp without an offset is refused unless the zone it is in is given:
    ``datetime_utc(created, 'Europe/Berlin')`` (daylight saving time is applied)."""
    if v is None or v == "":
        return None
    dt = _parse_timestamp(v, assume_zone).astimezone(UTC)
    text = dt.isoformat(timespec="milliseconds" if dt.microsecond else "seconds")
    return text.replace("+00:00", "Z")


@fn(2, 3)
def format_datetime(v: Any, pattern: Any, zone: Any = "UTC") -> str | None:
    """A timestamp in a destination's format and zone, with strftime codes:
    ``format_datetime(created_at, '%d.%m.%Y %H:%M', 'Europe/Berlin')``."""
    if v is None or v == "":
        return None
    dt = _parse_timestamp(v, None).astimezone(_zone(str(zone)))
    return dt.strftime(str(pattern))


@fn(1, name="date")
def date_(v: Any) -> str | None:
    """The calendar date (YYYY-MM-DD) of a date or timestamp, as written."""
    if v is None or v == "":
        return None
    text = str(v).strip()
    try:
        return date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        raise MappingFunctionError(f"{v!r} is not a date") from None


# text ------------------------------------------------------------------------------------------


def _s(v: Any) -> str:
    s = str_(v)
    return "" if s is None else s


@fn(1)
def trim(v: Any) -> str | None:
    """Remove surrounding whitespace."""
    return None if v is None else _s(v).strip()


@fn(1)
def lower(v: Any) -> str | None:
    """Lower case."""
    return None if v is None else _s(v).lower()


@fn(1)
def upper(v: Any) -> str | None:
    """Upper case."""
    return None if v is None else _s(v).upper()


@fn(1, None)
def concat(*parts: Any) -> str:
    """Join values as text, skipping nulls: ``concat(first_name, ' ', last_name)``."""
    return "".join(_s(p) for p in parts if p is not None)


@fn(2)
def join(values: Any, sep: Any) -> str | None:
    """Join a list with a separator, skipping nulls and empty strings."""
    if values is None:
        return None
    return _s(sep).join(_s(v) for v in values if v is not None and v != "")


@fn(2)
def split(v: Any, sep: Any) -> list[str] | None:
    """Split text into a trimmed list, dropping empty parts: ``split(tags, ',')``."""
    if v is None:
        return None
    return [p.strip() for p in _s(v).split(_s(sep)) if p.strip()]


@fn(3)
def replace(v: Any, old: Any, new: Any) -> str | None:
    """Replace every occurrence of ``old`` with ``new``."""
    return None if v is None else _s(v).replace(_s(old), _s(new))


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise MappingFunctionError(f"bad regular expression {pattern!r}: {exc}") from None


@fn(2)
def matches(v: Any, pattern: Any) -> bool:
    """True if the regular expression matches anywhere in the text."""
    return v is not None and _regex(_s(pattern)).search(_s(v)) is not None


@fn(2, 3)
def extract(v: Any, pattern: Any, group: Any = 1) -> str | None:
    """The given group (default 1, or 0 without groups) of the first regex match, or null."""
    if v is None:
        return None
    rx = _regex(_s(pattern))
    m = rx.search(_s(v))
    if m is None:
        return None
    g = int(group) if rx.groups else 0
    return m.group(g)


@fn(2, 3)
def pad_left(v: Any, width: Any, fill: Any = " ") -> str | None:
    """Pad on the left to ``width``: ``pad_left(number, 8, '0')``."""
    return None if v is None else _s(v).rjust(int(width), _s(fill)[:1] or " ")


@fn(2, 3)
def pad_right(v: Any, width: Any, fill: Any = " ") -> str | None:
    """Pad on the right to ``width``."""
    return None if v is None else _s(v).ljust(int(width), _s(fill)[:1] or " ")


@fn(2)
def truncate(v: Any, length: Any) -> str | None:
    """Cut text to at most ``length`` characters."""
    return None if v is None else _s(v)[: int(length)]


@fn(1, 3)
def phone_e164(v: Any, region: Any = None, strict: Any = False) -> str | None:
    """A phone number in E.164 (``+4930123456``), as master data's ``phone`` normaliser
    reads it (Google's libphonenumber): a number with ``+`` or ``00`` as written, another in
    ``region`` (ISO 3166 alpha-2, e.g. ``'DE'``). Empty gives null. A number it cannot read
    (not valid, or national with no region) is kept as written, trimmed: a contact is not held
    back for its phone, and master data's quality report counts it by system and field. With
    ``strict`` true such a number fails instead (the event is a dead letter to fix and replay)."""
    from hub.matching.normalise import NormaliseOptions, Unnormalisable, phone

    if v is None:
        return None
    text = _s(v)
    try:
        return phone(text, NormaliseOptions(region=_s(region).upper() if region else None), {})
    except Unnormalisable as exc:  # its message does not repeat the number (personal data)
        if strict is True:
            raise MappingFunctionError(f"phone number: {exc}") from None
        return text.strip() or None


# values and lists ------------------------------------------------------------------------------


@fn(2, None)
def coalesce(*values: Any) -> Any:
    """The first value that is neither null nor an empty string."""
    for v in values:
        if v is not None and v != "":
            return v
    return None


FUNCTIONS["default"] = Function(
    "default", coalesce, 2, 2, "A value, or the fallback when it is null or empty."
)


@fn(1)
def length(v: Any) -> int | None:
    """Number of elements of a list or characters of a text."""
    return None if v is None else len(v)


@fn(1, name="sum")
def sum_(values: Any) -> Decimal | None:
    """Exact decimal sum of a list, ignoring nulls."""
    if values is None:
        return None
    return sum((to_decimal(v) for v in values if v is not None), Decimal(0))


@fn(1)
def first(values: Any) -> Any:
    """First element of a list, or null."""
    return values[0] if values else None


@fn(1)
def compact(values: Any) -> list[Any] | None:
    """The list without nulls and empty strings."""
    return None if values is None else [v for v in values if v is not None and v != ""]


@fn(2)
def pluck(values: Any, key: Any) -> list[Any] | None:
    """The ``key`` of each object in a list: ``pluck(line_items, 'sku')``."""
    if values is None:
        return None
    return [v.get(key) if isinstance(v, dict) else None for v in values]


# lookups and master data ----------------------------------------------------------------------


@fn(2, context="lookups", lookup_table_arg=True)
def lookup(tables: Mapping[str, Lookup], table: Any, key: Any) -> Any:
    """Value from a lookup table declared in the mapping: ``lookup('order_status', status)``.

    An unknown key gives the table's ``default``, or fails if the table declares none."""
    t = tables.get(table)
    if t is None:
        raise MappingFunctionError(f"unknown lookup table {table!r}")
    k = str_(key) if key is not None else "null"
    if k in t.values:
        return t.values[k]
    if t.has_default:
        return t.default
    raise MappingFunctionError(f"{key!r} is not in lookup table {table!r} and it has no default")


@fn(3, context="resolver")
def golden_id(resolver: Any, entity: Any, system: Any, external_id: Any) -> str | None:
    """The golden id of the ``entity`` known in ``system`` as ``external_id`` (master data)."""
    if external_id is None or external_id == "":
        return None
    result: str = resolver.golden_id(str(entity), str(system), _s(external_id))
    return result


@fn(3, context="resolver")
def external_id(resolver: Any, entity: Any, system: Any, golden_id: Any) -> str | None:
    """``system``'s id of the ``entity`` whose golden id is given (the crosswalk's reverse
    lookup), or null when none is linked: address an update to the object a destination
    already has, ``external_id('customer', 'crm', id)``."""
    if golden_id is None or golden_id == "":
        return None
    result: str | None = resolver.external_id(str(entity), str(system), _s(golden_id))
    return result
