"""Normalisers: one raw field value in, its comparable form out, or a reason it has none.

Each normaliser is a pure function ``(text, options, record) -> str | None``: ``None`` means the
value is empty once cleaned (missing, not wrong); a value that cannot be normalised raises
:class:`Unnormalisable` with the reason. :func:`normalise_record` applies a configuration to a
record and reports every failure as a :class:`FieldProblem` naming the field, so a bad phone
number never stops the e-mail from matching, and the dashboard can count failures by source
system and field.

Libraries where they know more than we would: ``phonenumbers`` (Google's libphonenumber
metadata: E.164 per region, valid number ranges), ``pycountry`` (ISO 3166 names, alpha-3,
numeric codes). The rest is a few lines each and tested in tests/matching/test_normalise.py.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any, Literal

import phonenumbers
import pycountry

NormaliserName = Literal[
    "email", "phone", "name", "text", "postcode", "country", "date", "identifier", "digits", "none"
]


class Unnormalisable(ValueError):
    """A value that cannot be normalised; the message says why (never repeats the value)."""


@dataclass(frozen=True)
class FieldProblem:
    """A field of a record that failed normalisation: matching goes on without it."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


@dataclass(frozen=True)
class NormaliseOptions:
    """The options of one field's normaliser (``fields.<name>`` in the match configuration)."""

    region: str | None = None  # phone: the region of numbers written without +country
    country_field: str | None = None  # phone, postcode: the record's field giving its country
    date_order: Literal["dmy", "mdy"] = "dmy"  # date: how to read 03/04/1980
    gmail_canonical: bool = False  # email: drop dots and +tags of gmail.com addresses


Normaliser = Callable[[str, NormaliseOptions, Mapping[str, Any]], str | None]


# --- text and names ---------------------------------------------------------------------------

# letters NFKD does not decompose into a base letter plus marks
_FOLD = str.maketrans(
    {"ø": "o", "Ø": "o", "ł": "l", "Ł": "l", "đ": "d", "Đ": "d", "æ": "ae", "Æ": "ae",
     "œ": "oe", "Œ": "oe", "\u0131": "i", "þ": "th", "Þ": "th", "ð": "d", "Ð": "d"}
)  # fmt: skip
_NON_WORD = re.compile(r"[\W_]+")


def fold(text: str) -> str:
    """Case- and accent-folded, punctuation and runs of white space collapsed to one space."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _NON_WORD.sub(" ", bare.casefold()).strip()


def name(value: str, options: NormaliseOptions, record: Mapping[str, Any]) -> str | None:
    return fold(value) or None


def text(value: str, options: NormaliseOptions, record: Mapping[str, Any]) -> str | None:
    return fold(value) or None


def none(value: str, options: NormaliseOptions, record: Mapping[str, Any]) -> str | None:
    return value.strip() or None


def identifier(value: str, options: NormaliseOptions, record: Mapping[str, Any]) -> str | None:
    """Tax ids, VAT numbers, customer numbers: upper-case letters and digits, no separators."""
    out = re.sub(r"[\s\-./_]+", "", value).upper()
    if not out:
        return None
    if not out.isalnum():
        raise Unnormalisable("only letters, digits and separators (space - . / _) allowed")
    return out


def digits(value: str, options: NormaliseOptions, record: Mapping[str, Any]) -> str | None:
    out = re.sub(r"[\s\-./_]+", "", value)
    if not out:
        return None
    if not out.isdigit():
        raise Unnormalisable("expected digits")
    return out


# --- e-mail -----------------------------------------------------------------------------------

_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_EMAIL = re.compile(rf"^[^@\s]+@{_LABEL}(?:\.{_LABEL})+$")
_GMAIL = {"gmail.com", "googlemail.com"}


def email(value: str, options: NormaliseOptions, record: Mapping[str, Any]) -> str | None:
    """Trimmed and lower-cased; the local part too (RFC 5321 lets a server tell case apart,
    none in use does). With ``gmail_canonical``: ``J.Doe+shop@googlemail.com`` →
    ``jdoe@gmail.com`` — off by default, since other providers give dots and ``+`` meaning."""
    out = value.strip().lower()
    if not out:
        return None
    if out.startswith("mailto:"):
        out = out[len("mailto:") :]
    local, at, domain = out.rpartition("@")
    if at and not domain.isascii():
        try:
            out = f"{local}@{domain.encode('idna').decode('ascii')}"  # müller.de → xn--mller-kva.de
        except UnicodeError:
            raise Unnormalisable("not an e-mail address (bad domain name)") from None
    if len(out) > 254 or not _EMAIL.match(out):
        raise Unnormalisable("not an e-mail address (local@domain.tld)")
    if options.gmail_canonical:
        local, domain = out.rsplit("@", 1)
        if domain in _GMAIL:
            out = local.split("+", 1)[0].replace(".", "") + "@gmail.com"
    return out


# --- phone ------------------------------------------------------------------------------------


def phone(value: str, options: NormaliseOptions, record: Mapping[str, Any]) -> str | None:
    """E.164. A number without ``+`` or ``00`` is read in the record's country
    (``country_field``, once normalised) or else in ``region``."""
    raw = value.strip()
    if not raw:
        return None
    region = _record_country(record, options.country_field) or options.region
    if region is None and raw.startswith("00"):  # the ITU's international prefix, as "+"
        raw = "+" + raw[2:]
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise Unnormalisable(
                "no country code (+..) and no default region to read it in"
            ) from None
        raise Unnormalisable("not a phone number") from None
    if not phonenumbers.is_valid_number(parsed):
        where = phonenumbers.region_code_for_number(parsed) or region or "its country"
        raise Unnormalisable(f"not a valid phone number in {where}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


# --- countries and postcodes ------------------------------------------------------------------

_COUNTRY_ALIASES = {
    "UK": "GB", "GREAT BRITAIN": "GB", "ENGLAND": "GB", "SCOTLAND": "GB", "WALES": "GB",
    "NORTHERN IRELAND": "GB", "USA": "US", "U S A": "US", "U S": "US", "AMERICA": "US",
    "HOLLAND": "NL", "DEUTSCHLAND": "DE", "RUSSIA": "RU", "SOUTH KOREA": "KR",
}  # fmt: skip


@lru_cache(maxsize=4096)
def _country(value: str) -> str:
    key = fold(value).upper().removeprefix("THE ")
    if key in _COUNTRY_ALIASES:
        return _COUNTRY_ALIASES[key]
    try:
        return str(pycountry.countries.lookup(value.strip()).alpha_2)
    except LookupError:
        pass
    try:
        return str(pycountry.countries.lookup(key).alpha_2)
    except LookupError:
        raise Unnormalisable("unknown country (expected an ISO 3166 code or name)") from None


def country(value: str, options: NormaliseOptions, record: Mapping[str, Any]) -> str | None:
    """ISO 3166-1 alpha-2 from alpha-2, alpha-3, numeric code or English name."""
    if not value.strip():
        return None
    return _country(value)


def _record_country(record: Mapping[str, Any], field: str | None) -> str | None:
    if not field:
        return None
    raw = record.get(field)
    if raw is None or not str(raw).strip():
        return None
    try:
        return _country(str(raw))
    except Unnormalisable:
        return None  # reported against the country field itself


# country → (pattern of the normalised code, how to clean it)
_DIGIT_POSTCODES = {
    "DE": 5, "FR": 5, "US": 5, "IT": 5, "ES": 5, "FI": 5, "MX": 5,
    "AT": 4, "CH": 4, "BE": 4, "DK": 4, "NO": 4, "AU": 4, "NZ": 4, "LU": 4, "HU": 4,
    "SE": 5, "PL": 5, "CZ": 5, "SK": 5, "GR": 5, "PT": 7, "JP": 7, "BR": 8, "IN": 6,
}  # fmt: skip
_ALNUM_POSTCODES = {
    "GB": re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}$"),
    "NL": re.compile(r"^[1-9][0-9]{3}[A-Z]{2}$"),
    "CA": re.compile(r"^[A-Z][0-9][A-Z][0-9][A-Z][0-9]$"),
    "IE": re.compile(r"^[A-Z][0-9][0-9W][A-Z0-9]{4}$"),
}


def postcode(value: str, options: NormaliseOptions, record: Mapping[str, Any]) -> str | None:
    """Upper-case, no spaces or dashes; where the country is known (``country_field``) also
    checked: digits for DE, FR, US (ZIP+4 kept as its 5 digits), PL (``00-950`` → ``00950``)…,
    letters and digits for GB, NL, CA, IE. Other countries: just cleaned."""
    cleaned = re.sub(r"[\s\-.]+", "", value).upper()
    if not cleaned:
        return None
    if not cleaned.isalnum():
        raise Unnormalisable("only letters, digits, spaces and dashes allowed")
    code = _record_country(record, options.country_field)
    if code is None:
        return cleaned
    if code in _DIGIT_POSTCODES:
        size = _DIGIT_POSTCODES[code]
        if code == "US" and len(cleaned) == 9:
            cleaned = cleaned[:5]
        if not cleaned.isdigit() or len(cleaned) != size:
            raise Unnormalisable(f"a {code} postcode has {size} digits")
    elif code in _ALNUM_POSTCODES and not _ALNUM_POSTCODES[code].match(cleaned):
        raise Unnormalisable(f"not a {code} postcode")
    return cleaned


# --- dates ------------------------------------------------------------------------------------

_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ].*)?$")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_SEPARATED = re.compile(r"^(\d{1,2})[./\- ](\d{1,2})[./\- ](\d{4})$")


def to_date(value: Any, order: Literal["dmy", "mdy"] = "dmy") -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    raw = str(value).strip()
    if m := _ISO.match(raw) or _COMPACT.match(raw):
        y, mo, d = (int(g) for g in m.groups())
    elif m := _SEPARATED.match(raw):
        a, b, y = (int(g) for g in m.groups())
        d, mo = (a, b) if order == "dmy" else (b, a)
    else:
        raise Unnormalisable("not a date (YYYY-MM-DD, YYYYMMDD, DD.MM.YYYY or DD/MM/YYYY)")
    try:
        return date(y, mo, d)
    except ValueError:
        raise Unnormalisable("no such day in the calendar") from None


def date_(value: str, options: NormaliseOptions, record: Mapping[str, Any]) -> str | None:
    if not str(value).strip():
        return None
    return to_date(value, options.date_order).isoformat()


NORMALISERS: dict[str, Normaliser] = {
    "email": email,
    "phone": phone,
    "name": name,
    "text": text,
    "postcode": postcode,
    "country": country,
    "date": date_,
    "identifier": identifier,
    "digits": digits,
    "none": none,
}


MAX_LENGTH = 1000  # characters of one value; longer ones are problems


@dataclass(frozen=True)
class FieldNormaliser:
    field: str
    normaliser: Normaliser
    options: NormaliseOptions


def normalise_record(
    fields: list[FieldNormaliser], record: Mapping[str, Any]
) -> tuple[dict[str, str], list[FieldProblem]]:
    """The record's configured fields, normalised; missing and failed ones left out (failed
    ones listed as problems). Values that are not text are read as text (a postcode given as
    the number 4011, a date); lists, mappings and booleans are problems."""
    values: dict[str, str] = {}
    problems: list[FieldProblem] = []
    for spec in fields:
        raw = record.get(spec.field)
        if raw is None:
            continue
        if isinstance(raw, bool) or isinstance(raw, (list, dict, tuple, set)):
            problems.append(FieldProblem(spec.field, f"expected text, got {type(raw).__name__}"))
            continue
        given = raw.isoformat() if isinstance(raw, (date, datetime)) else str(raw)
        if len(given) > MAX_LENGTH:
            # comparing strings costs length x length: a 1 MB "name" must not stall matching
            problems.append(FieldProblem(spec.field, f"longer than {MAX_LENGTH} characters"))
            continue
        try:
            out = spec.normaliser(given, spec.options, record)
        except Unnormalisable as exc:
            problems.append(FieldProblem(spec.field, str(exc)))
            continue
        if out is not None:
            values[spec.field] = out
    return values, problems
