"""Every normaliser: what it makes of good input, and a clear error naming the field for bad."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from hub.matching.normalise import (
    NORMALISERS,
    FieldNormaliser,
    FieldProblem,
    NormaliseOptions,
    Unnormalisable,
    fold,
    normalise_record,
)

PLAIN = NormaliseOptions()


def norm(kind: str, value: str, record: dict[str, object] | None = None, **options: object):
    return NORMALISERS[kind](value, NormaliseOptions(**options), record or {})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("  Ann.Lee@Example.COM ", "ann.lee@example.com"),
        ("mailto:ann@example.com", "ann@example.com"),
        ("J.Doe+shop@GMail.com", "j.doe+shop@gmail.com"),  # gmail rules off by default
        ("ann@müller.de", "ann@xn--mller-kva.de"),
        ("   ", None),
    ],
)
def test_email(given: str, expected: str | None) -> None:
    assert norm("email", given) == expected


def test_email_gmail_canonical_only_for_gmail() -> None:
    assert norm("email", "J.Doe+shop@googlemail.com", gmail_canonical=True) == "jdoe@gmail.com"
    assert norm("email", "j.doe+shop@example.com", gmail_canonical=True) == "j.doe+shop@example.com"


@pytest.mark.parametrize("bad", ["ann", "ann@", "@example.com", "ann@example", "a b@example.com"])
def test_email_rejects(bad: str) -> None:
    with pytest.raises(Unnormalisable, match="not an e-mail address"):
        norm("email", bad)


def test_phone_to_e164_in_default_region_and_record_country() -> None:
    assert norm("phone", "030 12345678", region="DE") == "+493012345678"
    assert norm("phone", "+44 20 7946 0958", region="DE") == "+442079460958"
    assert norm("phone", "0049 30 12345678", region="DE") == "+493012345678"
    # the record's country wins over the default region
    record = {"country": "United Kingdom"}
    assert norm("phone", "020 7946 0958", record, region="DE", country_field="country") == (
        "+442079460958"
    )


@pytest.mark.parametrize(
    ("bad", "region", "reason"),
    [
        ("030 12345678", None, "no country code"),
        ("call me", "DE", "not a phone number"),
        ("+49 30 1", "DE", "not a valid phone number in DE"),
    ],
)
def test_phone_rejects(bad: str, region: str | None, reason: str) -> None:
    with pytest.raises(Unnormalisable, match=reason):
        norm("phone", bad, region=region)


def test_fold_names_case_accents_punctuation() -> None:
    assert fold("  José   María  O'Neil-Ångström ") == "jose maria o neil angstrom"
    assert fold("STRAßE Łódź Søren Æbelø") == "strasse lodz soren aebelo"
    assert norm("name", " Müller ") == "muller"
    assert norm("name", " -- ") is None
    assert norm("text", "Flat 2/98, Latchford  Barracks") == "flat 2 98 latchford barracks"


@pytest.mark.parametrize(
    ("given", "country", "expected"),
    [
        ("sw1a 1aa", "GB", "SW1A1AA"),
        ("1234 ab", "NL", "1234AB"),
        ("10115", "DE", "10115"),
        ("75008", "France", "75008"),
        ("94105-1234", "USA", "94105"),
        ("00-950", "PL", "00950"),
        ("k1a 0b1", "CA", "K1A0B1"),
        ("4011", None, "4011"),
        ("ab-12 3", None, "AB123"),
    ],
)
def test_postcode(given: str, country: str | None, expected: str) -> None:
    record = {"country": country}
    assert norm("postcode", given, record, country_field="country") == expected


@pytest.mark.parametrize(
    ("bad", "country", "reason"),
    [
        ("1011", "DE", "a DE postcode has 5 digits"),
        ("ABCDE", "FR", "a FR postcode has 5 digits"),
        ("12345", "GB", "not a GB postcode"),
        ("1234#", None, "only letters, digits"),
    ],
)
def test_postcode_rejects(bad: str, country: str | None, reason: str) -> None:
    with pytest.raises(Unnormalisable, match=reason):
        norm("postcode", bad, {"country": country}, country_field="country")


@pytest.mark.parametrize(
    ("given", "expected"),
    [("de", "DE"), ("DEU", "DE"), ("Germany", "DE"), ("276", "DE"), ("uk", "GB"),
     ("United Kingdom", "GB"), ("Côte d'Ivoire", "CI"), ("the netherlands", "NL")],
)  # fmt: skip
def test_country(given: str, expected: str) -> None:
    assert norm("country", given) == expected


def test_country_rejects() -> None:
    with pytest.raises(Unnormalisable, match="unknown country"):
        norm("country", "Atlantis")


@pytest.mark.parametrize(
    ("given", "order", "expected"),
    [
        ("1980-03-04", "dmy", "1980-03-04"),
        ("19800304", "dmy", "1980-03-04"),
        ("04.03.1980", "dmy", "1980-03-04"),
        ("04/03/1980", "dmy", "1980-03-04"),
        ("03/04/1980", "mdy", "1980-03-04"),
        ("1980-03-04T10:00:00Z", "dmy", "1980-03-04"),
    ],
)
def test_date(given: str, order: str, expected: str) -> None:
    assert norm("date", given, date_order=order) == expected


@pytest.mark.parametrize(
    ("bad", "reason"), [("1980-02-30", "no such day"), ("yesterday", "not a date")]
)
def test_date_rejects(bad: str, reason: str) -> None:
    with pytest.raises(Unnormalisable, match=reason):
        norm("date", bad)


def test_identifier_and_digits() -> None:
    assert norm("identifier", "de 123.456-789") == "DE123456789"
    assert norm("digits", "123 456") == "123456"
    with pytest.raises(Unnormalisable, match="only letters, digits"):
        norm("identifier", "DE#1")
    with pytest.raises(Unnormalisable, match="expected digits"):
        norm("digits", "12a")
    assert norm("none", "  As Is ") == "As Is"


def test_normalise_record_reports_each_failing_field_and_keeps_the_rest() -> None:
    fields = [
        FieldNormaliser(name, NORMALISERS[kind], NormaliseOptions(region="DE"))
        for name, kind in [("email", "email"), ("phone", "phone"), ("dob", "date"),
                           ("last_name", "name"), ("tags", "text"), ("flag", "text")]
    ]  # fmt: skip
    record = {
        "email": "Ann@Example.com",
        "phone": "not a number",
        "dob": date(1980, 3, 4),
        "last_name": None,
        "tags": ["a"],
        "flag": True,
    }
    values, problems = normalise_record(fields, record)
    assert values == {"email": "ann@example.com", "dob": "1980-03-04"}
    assert problems == [
        FieldProblem("phone", "not a phone number"),
        FieldProblem("tags", "expected text, got list"),
        FieldProblem("flag", "expected text, got bool"),
    ]
    assert str(problems[0]) == "phone: not a phone number"


def test_numbers_and_datetimes_are_read_as_text() -> None:
    fields = [
        FieldNormaliser("postcode", NORMALISERS["postcode"], PLAIN),
        FieldNormaliser("seen", NORMALISERS["date"], PLAIN),
    ]
    values, problems = normalise_record(
        fields, {"postcode": 4011, "seen": datetime(2020, 1, 2, 3, 4)}
    )
    assert (values, problems) == ({"postcode": "4011", "seen": "2020-01-02"}, [])


def test_problems_never_repeat_the_value() -> None:
    secretish = "+49 1 SECRET-VALUE"
    fields = [FieldNormaliser("phone", NORMALISERS["phone"], NormaliseOptions(region="DE"))]
    _, problems = normalise_record(fields, {"phone": secretish})
    assert problems and "SECRET" not in str(problems[0])


def test_over_long_values_are_problems_not_slow_comparisons() -> None:
    fields = [FieldNormaliser("last_name", NORMALISERS["name"], PLAIN)]
    values, problems = normalise_record(fields, {"last_name": "x" * 1_000_000})
    assert values == {}
    assert problems == [FieldProblem("last_name", "longer than 1000 characters")]
