"""Mapping expressions (hub.mapping.expr) and the functions they may call."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from hub.mapping.expr import ExprError, Lookup, MappingContext, Scope, compile_expr
from hub.mapping.functions import FUNCTIONS, MappingFunctionError

ORDER: dict[str, Any] = {
    "id": 7,
    "email": " Ann@Example.COM ",
    "price": "0.1",
    "tax": "0.2",
    "qty": 3,
    "first": "Ann",
    "last": "Lee",
    "nothing": None,
    "zero": 0,
    "empty": "",
    "customer": {"address": {"city": "Köln"}, "tags": ["a", "b"]},
    "lines": [{"sku": "A", "q": 1}, {"sku": "B", "q": 2}, {"sku": "C", "q": 0}],
}


def ev(
    source: str,
    item: Any = None,
    *,
    root: Any = None,
    meta: dict[str, Any] | None = None,
    lookups: dict[str, Lookup] | None = None,
) -> Any:
    fn, _info = compile_expr(source)
    data = ORDER if item is None else item
    ctx = MappingContext(lookups or {}, None)
    return fn(Scope(data, data if root is None else root, meta or {}, ctx))


# -- paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("customer.address.city", "Köln"),
        ("item.customer.address.city", "Köln"),
        ("root.customer.address.city", "Köln"),
        ("customer['address']['city']", "Köln"),
        ("customer.missing.city", None),
        ("nothing.deeper.still", None),
        ("email.length", None),  # a step into a string is null, not a Python attribute
        ("lines[0].sku", "A"),
        ("lines[-1].sku", "C"),
        ("lines[-3].sku", "A"),
        ("lines[3].sku", None),
        ("lines[-4].sku", None),
        ("lines['0']", None),
        ("nothing[0]", None),
        ("customer.tags[1]", "b"),
        ("lines[1 + 0].sku", "B"),
        ("meta.connection", "shop"),
        ("meta.absent", None),
    ],
)
def test_paths_are_null_safe(source: str, expected: Any) -> None:
    assert ev(source, meta={"connection": "shop"}) == expected


def test_item_and_root_differ_inside_a_list() -> None:
    line = ORDER["lines"][1]
    assert ev("sku", line, root=ORDER) == "B"
    assert ev("item.sku", line, root=ORDER) == "B"
    assert ev("root.id", line, root=ORDER) == 7
    assert ev("id", line, root=ORDER) is None


def test_info_collects_functions_lookups_and_paths() -> None:
    _fn, info = compile_expr("lower(email) + lookup('status', customer.state)")
    assert info.functions == {"lower", "lookup"}
    assert info.lookups == {"status"}
    assert info.paths == ["email", "customer.state"]  # whole dotted paths


# -- literals and operators ----------------------------------------------------------------------


def test_decimal_arithmetic_is_exact() -> None:
    assert ev("decimal(price) + decimal(tax)") == Decimal("0.3")
    assert ev("price + 0") + ev("tax + 0") == Decimal("0.3")
    assert ev("0.1 + 0.2") == Decimal("0.3")
    assert ev("price * qty") == Decimal("0.3")
    assert ev("qty - 0.5") == Decimal("2.5")
    assert ev("qty / 4") == Decimal("0.75")
    assert ev("qty % 2") == Decimal("1")
    assert ev("-qty") == Decimal("-3")
    assert ev("+price") == Decimal("0.1")
    assert isinstance(ev("1 + 1"), Decimal)


def test_arithmetic_with_null_is_null() -> None:
    assert ev("nothing + 1") is None
    assert ev("1 * missing") is None
    assert ev("-nothing") is None


def test_plus_is_arithmetic_even_on_numeric_text_and_never_joins_text() -> None:
    # Sources send amounts as text: "4.50" + "0.86" must be 5.36, not "4.500.86".
    assert ev("'4.50' + '0.86'") == Decimal("5.36")
    assert ev("price + 1") == Decimal("1.1")
    with pytest.raises(MappingFunctionError, match=r"'Ann' is not a number.*concat"):
        ev("first + last")
    with pytest.raises(ExprError, match=r"' ' is text, not a number.*concat"):  # seen statically
        compile_expr("first + ' ' + last")
    with pytest.raises(MappingFunctionError, match="'Ann' is not a number"):
        ev("first + 1")


def test_number_literals_are_exact_as_written() -> None:
    assert ev("19.90") == Decimal("19.90")
    assert ev("12345678901234567.89 + 0") == Decimal("12345678901234567.89")


def test_division_by_zero_says_so() -> None:
    with pytest.raises(MappingFunctionError, match="division by zero"):
        ev("price / 0")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("qty == 3", True),
        ("qty == 3.00", True),
        ("decimal(price) == 0.1", True),
        ("price == '0.1'", True),
        ("str(qty) == '3'", True),
        ("nothing == 3", False),  # null is a value, not a number or text
        ("first == true", False),
        ("qty > 2.5", True),
        ("qty >= 3 and qty <= 3", True),
        ("1 < qty < 5", True),
        ("1 < qty < 2", False),
        ("qty != 3", False),
        ("nothing == null", True),
        ("nothing == None", True),
        ("missing == null", True),
        ("nothing != null", False),
        ("nothing > 1", False),  # ordering with null is false, not an error
        ("nothing < 1", False),
        ("'a' in customer.tags", True),
        ("'z' in customer.tags", False),
        ("'a' in nothing", False),
        ("'a' not in nothing", True),
        ("'@' in email", True),
        ("true", True),
        ("false", False),
        ("null", None),
    ],
)
def test_comparisons(source: str, expected: Any) -> None:
    assert ev(source) is expected


@pytest.mark.parametrize(
    "source", ["first < 1", "price > 0", "qty <= 'x'", "qty == price", "price != 0.1", "empty == 0"]
)
def test_text_against_a_number_is_an_error_not_false(source: str) -> None:
    # Sources often send numbers as text ("4.50"): a silent False would drop data, for
    # ordering and equality alike.
    with pytest.raises(MappingFunctionError, match=r"cannot compare (text|number) "):
        ev(source)


@pytest.mark.parametrize(
    ("source", "kinds"),
    [
        ("str(qty) == 3", "str(qty) == 3"),
        ("'3' != qty + 0", "'3' != qty + 0"),
        ("money(price) > 1", "money(price) > 1"),
        ("0 < length(email) <= '9'", "length(email) <= '9'"),
        ("f'{qty}' == 3", "f'{qty}' == 3"),
    ],
)
def test_text_against_a_number_known_when_loaded_is_refused_then(source: str, kinds: str) -> None:
    # (with a path on one side, as in "price == 0.1", the types are known only at run time)
    with pytest.raises(ExprError) as info:
        compile_expr(source)
    assert str(info.value) == (
        f"cannot compare text with a number ({kinds}); convert one side first, "
        "e.g. decimal(x) or str(x)"
    )


def test_text_orders_by_code_point_not_by_number() -> None:
    # documented: compare numbers held as text after decimal() or int()
    assert ev("'9' > '10'") is True
    assert ev("decimal('9') > decimal('10')") is False
    assert ev("int('9') > 10") is False
    assert ev("'B' < 'a'") is True  # upper case sorts before lower case
    # ISO 8601 timestamps in one format and one zone order as text the way they do in time
    assert ev("'2026-11-22T10:15:00Z' < '2026-11-23T09:00:00Z'") is True


def test_if_else() -> None:
    assert ev("'big' if qty > 2 else 'small'") == "big"
    assert ev("'big' if qty > 5 else 'small'") == "small"
    assert ev("'x' if nothing else 'y'") == "y"
    assert ev("'a' if qty == 1 else 'b' if qty == 3 else 'c'") == "b"


def test_and_or_not_return_operands() -> None:
    assert ev("nothing or empty or 'fallback'") == "fallback"
    assert ev("first or 'x'") == "Ann"
    assert ev("empty or nothing") is None
    assert ev("first and last") == "Lee"
    assert ev("first and nothing and last") is None
    assert ev("zero and 1") == 0
    assert ev("not nothing") is True
    assert ev("not first") is False


def test_f_strings() -> None:
    assert ev("f'{first} {last}'") == "Ann Lee"
    assert ev("f'{first}-{nothing}-{qty}'") == "Ann--3"
    assert ev("f'{price * qty}|{true}|{false}'") == "0.3|true|false"
    assert ev("f'{decimal(\"1E+3\")}'") == "1000"


def test_list_and_object_literals() -> None:
    assert ev("[first, last, nothing]") == ["Ann", "Lee", None]
    assert ev("{'name': first, 'n': qty}") == {"name": "Ann", "n": 3}


# -- what is refused ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("lambda: 1", "lambda is not allowed"),
        ("[x for x in lines]", "a comprehension is not allowed"),
        ("{x: 1 for x in lines}", "DictComp is not allowed"),
        ("(x for x in lines)", "a generator is not allowed"),
        ("(x := 1)", "':=' is not allowed"),
        ("email.lower()", "only functions can be called"),
        ("customer.address.get('city')", "only functions can be called"),
        ("lines[0:1]", "slices are not supported"),
        ("nope(email)", "unknown function nope()"),
        ("eval('1')", "unknown function eval()"),
        ("getattr(email, 'lower')", "unknown function getattr()"),
        ("__import__('os')", "unknown function __import__()"),
        ("lower()", "lower() takes 1 argument, got 0"),
        ("lower(first, last)", "lower() takes 1 argument, got 2"),
        ("money(1, 2, 3)", "money() takes 1 to 2 arguments, got 3"),
        ("coalesce(first)", "coalesce() takes at least 2 arguments, got 1"),
        ("lower(v=first)", "positional arguments only"),
        ("~qty", "operator ~ is not allowed"),
        ("qty ** 2", "operator Pow is not allowed"),
        ("qty << 1", "operator LShift is not allowed"),
        ("nothing is None", "comparison Is is not allowed"),
        ("b'bytes'", "literal b'bytes' is not allowed"),
        ("1j", "literal 1j is not allowed"),
        ("f'{qty:>5}'", "format specs are not supported"),
        ("f'{first!r}'", "format specs are not supported"),
        ("{**customer}", "'**' is not allowed"),
        ("().__class__", "Tuple is not allowed"),
        ("(first, last)", "Tuple is not allowed"),
        ("{1, 2}", "Set is not allowed"),
        ("first +", "syntax error"),
        ("await x", "await is not allowed"),
    ],
)
def test_forbidden_constructs(source: str, message: str) -> None:
    with pytest.raises(ExprError) as info:
        compile_expr(source)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "source",
    [
        "''.__class__",
        "email.__class__",
        "[].__class__",
        "{}.__class__",
        "customer.__dict__",
        "customer['__class__']",
        "root.__class__.__mro__",
        "meta.__class__.__init__.__globals__",
        "item.__class__.__bases__[0].__subclasses__",
        "lines.__len__",
        "lower.__globals__",
        "f'{email.__class__}'",
        "[].__class__ or {}.__class__",
    ],
)
def test_dunder_access_never_reaches_python_objects(source: str) -> None:
    try:
        value = ev(source, meta={"connection": "shop"})
    except ExprError:
        return
    assert value is None or value == "", f"{source} gave {value!r}"


# -- functions ------------------------------------------------------------------------------------


def call(name: str, *args: Any) -> Any:
    return FUNCTIONS[name].impl(*args)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-11-22T11:15:00+01:00", "2026-11-22T10:15:00Z"),
        ("2026-11-22T10:15:00Z", "2026-11-22T10:15:00Z"),
        ("2026-11-22T10:15:00+00:00", "2026-11-22T10:15:00Z"),
        ("2026-11-22T20:15:00-05:00", "2026-11-23T01:15:00Z"),
        ("2026-11-22T10:15:00.5-02:30", "2026-11-22T12:45:00.500Z"),
        ("2026-11-22T10:15:00.123456Z", "2026-11-22T10:15:00.123Z"),
        (" 2026-11-22T10:15:00Z ", "2026-11-22T10:15:00Z"),
        (None, None),
        ("", None),
    ],
)
def test_datetime_utc(given: Any, expected: Any) -> None:
    assert call("datetime_utc", given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("2026-11-22T10:15:00", "has no time zone offset"),
        ("2026-11-22", "has no time zone offset"),
        ("yesterday", "is not an ISO 8601 timestamp"),
        ("2026-13-01T00:00:00Z", "is not an ISO 8601 timestamp"),
    ],
)
def test_datetime_utc_refuses(given: str, message: str) -> None:
    with pytest.raises(MappingFunctionError, match=message):
        call("datetime_utc", given)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("2.345",), "2.34"),  # half-even: to the even neighbour
        (("2.355",), "2.36"),
        (("2.5", 0), "2"),
        (("3.5", 0), "4"),
        ((1,), "1.00"),
        ((Decimal("1E+3"),), "1000.00"),
        (("19.9",), "19.90"),
        (("0.1234", 3), "0.123"),
        (("-0.004",), "0.00"),
        ((None,), None),
        (("",), None),
    ],
)
def test_money_rounds_half_even(args: tuple[Any, ...], expected: Any) -> None:
    assert call("money", *args) == expected


def test_money_refuses_non_numbers() -> None:
    with pytest.raises(MappingFunctionError, match="is not a number"):
        call("money", "12,50")
    with pytest.raises(MappingFunctionError, match="not a finite number"):
        call("money", "NaN")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("2.5",), Decimal("2")),
        (("2.5", 0, "half_up"), Decimal("3")),
        (("2.45", 1, "half_even"), Decimal("2.4")),
        (("2.45", 1, "half_up"), Decimal("2.5")),
        (("2.41", 1, "up"), Decimal("2.5")),
        (("-2.41", 1, "up"), Decimal("-2.5")),
        (("2.49", 1, "down"), Decimal("2.4")),
        (("-2.49", 1, "down"), Decimal("-2.4")),
        ((None,), None),
    ],
)
def test_round_modes(args: tuple[Any, ...], expected: Any) -> None:
    assert call("round", *args) == expected


def test_round_refuses_unknown_mode() -> None:
    with pytest.raises(MappingFunctionError, match="unknown rounding mode 'banker'"):
        call("round", "1", 0, "banker")


def test_int() -> None:
    assert call("int", "3") == 3
    assert call("int", "2.0") == 2
    assert call("int", Decimal("-4")) == -4
    assert call("int", None) is None
    assert call("int", "") is None
    with pytest.raises(MappingFunctionError, match="is not a whole number"):
        call("int", "1.5")
    with pytest.raises(MappingFunctionError, match="expected a number"):
        call("int", True)
    with pytest.raises(MappingFunctionError, match="is not a number"):
        call("int", "three")


def test_decimal_and_str() -> None:
    assert call("decimal", "19.90") == Decimal("19.90")
    assert call("decimal", "") is None
    assert call("str", Decimal("1E+2")) == "100"
    assert call("str", Decimal("0.10")) == "0.10"
    assert call("str", True) == "true"
    assert call("str", 12) == "12"
    assert call("str", None) is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("true", True),
        ("Yes", True),
        (" ON ", True),
        ("1", True),
        (1, True),
        ("false", False),
        ("No", False),
        ("0", False),
        (0, False),
        ("", False),
        (True, True),
        (None, None),
    ],
)
def test_bool(given: Any, expected: Any) -> None:
    assert call("bool", given) is expected


def test_bool_refuses_other_text() -> None:
    with pytest.raises(MappingFunctionError, match="'maybe' is not a boolean"):
        call("bool", "maybe")


def test_phone_e164_reads_a_number_as_written_or_in_its_region() -> None:
    assert call("phone_e164", " +1 (757) 555-0123 ") == "+17575550123"
    assert call("phone_e164", "0151 2345 6789", "de") == "+4915123456789"
    assert call("phone_e164", "0049 151 23456789") == "+4915123456789"
    assert call("phone_e164", None) is None
    # one it cannot read is kept as written (trimmed), so a contact is not held back for it
    assert call("phone_e164", " 0151 2345 6789 ") == "0151 2345 6789"
    assert call("phone_e164", "+1 555", "US") == "+1 555"
    # strict: a dead letter instead, whose message does not repeat the number
    with pytest.raises(MappingFunctionError, match="no default region") as national:
        call("phone_e164", "0151 2345 6789", None, True)
    assert "2345" not in str(national.value)
    with pytest.raises(MappingFunctionError, match="phone number: not"):
        call("phone_e164", "+1 555", "US", True)


def test_text_functions() -> None:
    assert call("split", " a, b,,c ", ",") == ["a", "b", "c"]
    assert call("split", "", ",") == []
    assert call("split", None, ",") is None
    assert call("join", ["a", None, "", "b"], "-") == "a-b"
    assert call("join", [Decimal("1.50"), 2], ", ") == "1.50, 2"
    assert call("join", None, "-") is None
    assert call("replace", "a-b-c", "-", "+") == "a+b+c"
    assert call("replace", None, "-", "+") is None
    assert call("extract", "order #1234 of 5", r"#(\d+)") == "1234"
    assert call("extract", "order #1234", r"(\w+) #(\d+)", 2) == "1234"
    assert call("extract", "abc", "b") == "b"  # no group: the whole match
    assert call("extract", "abc", r"z(\d)") is None
    assert call("extract", None, "a") is None
    assert call("matches", "ABC-1", r"^[A-Z]+-\d$") is True
    assert call("matches", "abc", r"^\d") is False
    assert call("matches", None, ".*") is False
    assert call("pad_left", "42", 5, "0") == "00042"
    assert call("pad_left", 42, 4) == "  42"
    assert call("pad_left", "123456", 3) == "123456"
    assert call("pad_right", "ab", 4, ".") == "ab.."
    assert call("truncate", "hello", 3) == "hel"
    assert call("truncate", "hi", 3) == "hi"
    assert call("truncate", None, 3) is None
    assert call("trim", "  x ") == "x"
    assert call("lower", "ÄB") == "äb"
    assert call("upper", "eur") == "EUR"
    assert call("concat", "a", None, 1, Decimal("2.50")) == "a12.50"


def test_bad_regex_is_a_mapping_error() -> None:
    with pytest.raises(MappingFunctionError, match="bad regular expression"):
        call("matches", "x", "(")


def test_value_and_list_functions() -> None:
    assert call("coalesce", None, "", "x", "y") == "x"
    assert call("coalesce", None, None) is None
    assert call("coalesce", 0, "x") == 0  # 0 is a value
    assert call("default", "", "d") == "d"
    assert call("default", None, "d") == "d"
    assert call("default", False, "d") is False
    assert FUNCTIONS["default"].min_args == FUNCTIONS["default"].max_args == 2
    assert call("sum", ["1.10", "2.20", None, 3]) == Decimal("6.30")
    assert call("sum", []) == Decimal("0")
    assert call("sum", None) is None
    with pytest.raises(MappingFunctionError):
        call("sum", ["1", "x"])
    assert call("pluck", [{"a": 1}, {"b": 2}, "x"], "a") == [1, None, None]
    assert call("pluck", None, "a") is None
    assert call("first", [3, 4]) == 3
    assert call("first", []) is None
    assert call("compact", [1, None, "", 0]) == [1, 0]
    assert call("length", [1, 2]) == 2
    assert call("length", "abc") == 3
    assert call("date", "2026-11-22T23:00:00-05:00") == "2026-11-22"


def test_functions_through_expressions() -> None:
    assert ev("lower(trim(email))") == "ann@example.com"
    assert ev("money(sum(pluck(lines, 'q')))") == "3.00"
    assert ev("join(pluck(lines, 'sku'), '/')") == "A/B/C"
    assert ev("pad_left(str(id), 6, '0')") == "000007"
    assert ev("coalesce(nothing, empty, first)") == "Ann"


def test_lookup_through_an_expression() -> None:
    tables = {
        "status": Lookup("status", {"paid": "paid", "1": "one"}),
        "soft": Lookup("soft", {}, "other", has_default=True),
    }
    assert ev("lookup('status', s)", {"s": "paid"}, lookups=tables) == "paid"
    assert ev("lookup('status', n)", {"n": 1}, lookups=tables) == "one"
    assert ev("lookup('soft', s)", {"s": "x"}, lookups=tables) == "other"
    with pytest.raises(MappingFunctionError, match="'x' is not in lookup table 'status'"):
        ev("lookup('status', s)", {"s": "x"}, lookups=tables)
    with pytest.raises(MappingFunctionError, match="unknown lookup table 'nope'"):
        ev("lookup('nope', s)", {"s": "x"}, lookups=tables)
