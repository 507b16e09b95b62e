"""The calculator: hand-computed values, its bounds, and parity with Python's exact arithmetic."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from genlab.tools.base import ToolError
from genlab.tools.calculator import MAX_DIGITS, calculate, evaluate, format_number


@pytest.mark.parametrize(
    ("expression", "result"),
    [
        ("345 + 678", "1023"),
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("10 - 4 - 3", "3"),  # left to right
        ("2 ^ 10", "1024"),
        ("2 ** 3 ** 2", "512"),  # powers group to the right
        ("-2 ^ 2", "-4"),  # as in Python: the sign applies after the power
        ("2 ^ -1", "0.5"),
        ("17 % 7", "3"),
        ("-7 % 3", "2"),  # the remainder takes the divisor's sign, as in Python
        ("400 / 1400", "0.285714"),
        ("1 / 8", "0.125"),
        ("0.1 + 0.2", "0.3"),  # exact, not 0.30000000000000004
        ("2 / 3", "0.666667"),
        ("-1 / 3", "-0.333333"),
        ("1 / 300", "0.00333333"),  # six significant decimals below 1
        ("1234.5678", "1234.5678"),
        ("0.9999999", "1"),
        ("12.50 * 2", "25"),
        (".5 + 3.", "3.5"),
        ("2 ^ 100", "1267650600228229401496703205376"),
        ("  ( ( 7 ) )  ", "7"),
    ],
)
def test_values(expression: str, result: str) -> None:
    assert calculate(expression) == result


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("1 / 0", "division by zero"),
        ("5 % (2 - 2)", "division by zero"),
        ("0 ^ -1", "division by zero"),
        ("9^9^9^9", f"more than {MAX_DIGITS} digits"),
        ("10**10**10", f"more than {MAX_DIGITS} digits"),
        ("10 ^ 51", f"more than {MAX_DIGITS} digits"),
        ("99999999999999999999 * 99999999999999999999 * 99999999999999999999", "digits"),
        ("1" * 31, "more than 30 digits"),
        ("2 ^ 0.5", "whole-number exponents"),
        ("(" * 40 + "1" + ")" * 40, "nests more than 32"),
        ("-" * 40 + "1", "nests more than 32"),
        ("1" + " + 1" * 100, "longer than 200"),
        ("", "empty expression"),
        ("1 +", "ends too early"),
        ("(1 + 2", "ends too early"),
        ("1 + 2)", "unexpected ')'"),
        ("1 2", "unexpected '2'"),
        ("* 3", "expected a number"),
        ("__import__('os')", "unexpected character '_'"),
        ("1e5", "unexpected character 'e'"),
        ("\u0663 + 1", "unexpected character"),  # an Arabic-Indic three is not an ASCII digit
    ],
)
def test_refusals(expression: str, reason: str) -> None:
    with pytest.raises(ToolError, match=re.escape(reason)):
        calculate(expression)


def test_results_up_to_the_bound_are_exact() -> None:
    assert calculate("10 ^ 49") == "1" + "0" * 49
    assert calculate("1 ^ 100000000000000000000") == "1"  # a power of one is never large
    assert calculate("(-1) ^ 99999999999999999999") == "-1"


def test_format_number() -> None:
    assert format_number(Fraction(7)) == "7"
    assert format_number(Fraction(-12, 4)) == "-3"
    assert format_number(Fraction(1, 3_000_000)) == "0.000000333333"
    assert format_number(Fraction(-5, 2)) == "-2.5"
    assert format_number(Fraction(29, 100)) == "0.29"


# --- parity with Python on random expressions -----------------------------------------------

_numbers = st.one_of(
    st.integers(0, 999).map(str),
    st.tuples(st.integers(0, 99), st.integers(0, 99)).map(lambda t: f"{t[0]}.{t[1]:02d}"),
)
_expressions = st.recursive(
    _numbers,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "%"]), inner).map(" ".join),
        inner.map(lambda e: f"({e})"),
        inner.map(lambda e: f"-{e}"),
        st.tuples(st.one_of(_numbers, inner.map(lambda e: f"({e})")), st.integers(-3, 3)).map(
            lambda t: f"{t[0]} ** {t[1]}"
        ),  # whole exponents (chained powers, whose exponent may be a fraction, are checked above)
    ),
    max_leaves=8,
)


def _python(expression: str) -> Fraction:
    """Python's own value of the expression, every number an exact Fraction (test-only eval of
    text this test generated)."""
    exact = re.sub(r"[0-9]+(?:\.[0-9]+)?", lambda m: f"Fraction('{m[0]}')", expression)
    return eval(exact, {"Fraction": Fraction})


@settings(max_examples=400, deadline=None)
@given(_expressions, st.booleans())
def test_parity_with_python_fractions(expression: str, caret: bool) -> None:
    written = expression.replace("**", "^") if caret else expression
    try:
        expected = _python(expression)
    except ZeroDivisionError:
        with pytest.raises(ToolError, match="division by zero"):
            evaluate(written)
        return
    try:
        value = evaluate(written)
    except ToolError as e:  # a bound: the refusal is checked by hand above
        assume("digits" not in str(e) and "nests" not in str(e))
        raise
    assert value == expected
    shown = Fraction(calculate(written))
    assert abs(shown - expected) <= max(abs(expected), 1) * Fraction(1, 10**6)
    if expected.denominator == 1:
        assert calculate(written) == str(expected)
