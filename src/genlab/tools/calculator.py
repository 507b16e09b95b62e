"""The calculator: exact arithmetic on what a model writes, parsed here, never ``eval``-ed.

Toolformer's calculator (Schick et al., 2023) answers the four operations and rounds to two
decimals. This one parses ``+ - * / % ^`` (``**`` too), unary minus, parentheses, integers and
decimals with a small recursive-descent parser and computes with :class:`fractions.Fraction`, so
``0.1 + 0.2`` is ``0.3`` and ``2^100`` is every digit. ``%`` is the remainder, as in Python (a
weekday is a remainder of 7). Powers take whole exponents only (the result stays exact).

Results: an integer exactly (``1023``); otherwise a decimal with six significant decimals (six
places after the point, counted from the first non-zero digit when the value is below 1), trailing
zeros dropped: ``400 / 1400`` is ``0.285714``, ``1 / 8`` is ``0.125``. Six, not the paper's two,
because the answers downstream are checked exactly and two decimals would turn ``1 / 300`` into 0.

Every argument is bounded before work is spent on it: its length, the nesting depth, the digits
of a number, and the size of every intermediate value (a power's size is estimated from its
exponent before it is computed), so ``9^9^9^9`` is refused at once instead of filling memory.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from genlab.tools.base import Tool, ToolError

MAX_LENGTH = 200  # characters of an expression
MAX_DEPTH = 32  # nested parentheses, signs and powers
MAX_NUMBER_DIGITS = 30  # digits of one number as written
MAX_DIGITS = 50  # digits of any value computed (numerator and denominator)
DECIMALS = 6  # significant decimals of a non-integer result

_TOKEN = re.compile(r"\s*(?:([0-9]+(?:\.[0-9]*)?|\.[0-9]+)|(\*\*|[-+*/%^()]))")
_MAX_BITS = math.ceil(MAX_DIGITS / math.log10(2))


def tokenize(expression: str) -> list[str]:
    """Numbers and operators (``**`` as ``^``); :class:`ToolError` on anything else."""
    if len(expression) > MAX_LENGTH:
        raise ToolError(f"expression longer than {MAX_LENGTH} characters")
    tokens, at = [], 0
    while at < len(expression):
        m = _TOKEN.match(expression, at)
        if m is None:
            if expression[at:].isspace():
                break
            bad = expression[at:].lstrip()[0]
            raise ToolError(f"unexpected character {bad!r} in the expression")
        number, op = m.groups()
        if number is not None and len(number.replace(".", "")) > MAX_NUMBER_DIGITS:
            raise ToolError(f"a number has more than {MAX_NUMBER_DIGITS} digits")
        tokens.append(number if number is not None else "^" if op == "**" else op)
        at = m.end()
    return tokens


def _checked(x: Fraction) -> Fraction:
    if max(x.numerator.bit_length(), x.denominator.bit_length()) > _MAX_BITS:
        raise ToolError(f"a value has more than {MAX_DIGITS} digits")
    return x


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1:
        raise ToolError("only whole-number exponents are supported")
    if base == 0 and exponent < 0:
        raise ToolError("division by zero")
    n = abs(exponent.numerator)
    if base != 0:  # |n| * log10 of the larger of numerator and denominator: the result's digits
        size = max(abs(base.numerator), base.denominator)
        if n * math.log10(size) > MAX_DIGITS:
            raise ToolError(f"the result would have more than {MAX_DIGITS} digits")
    return _checked(base**exponent.numerator)


class _Parser:
    """``expr := term (('+'|'-') term)*``, ``term := unary (('*'|'/'|'%') unary)*``,
    ``unary := ('+'|'-') unary | power``, ``power := atom ('^' unary)?``,
    ``atom := number | '(' expr ')'``: Python's precedence (``-2^2`` is -4, ``^`` groups right)."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.at = 0
        self.depth = 0

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise ToolError("the expression ends too early")
        self.at += 1
        return token

    def expr(self) -> Fraction:
        value = self.term()
        while self.peek() in ("+", "-"):
            right = self.term() if self.take() == "+" else -self.term()
            value = _checked(value + right)
        return value

    def term(self) -> Fraction:
        value = self.unary()
        while self.peek() in ("*", "/", "%"):
            op, right = self.take(), self.unary()
            if op != "*" and right == 0:
                raise ToolError("division by zero")
            if op == "*":
                value = _checked(value * right)
            elif op == "/":
                value = _checked(value / right)
            else:
                value = _checked(value % right)
        return value

    def unary(self) -> Fraction:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ToolError(f"the expression nests more than {MAX_DEPTH} deep")
        if self.peek() in ("+", "-"):
            value = self.unary() if self.take() == "+" else -self.unary()
        else:
            value = self.power()
        self.depth -= 1
        return value

    def power(self) -> Fraction:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            return _power(base, self.unary())
        return base

    def atom(self) -> Fraction:
        token = self.take()
        if token == "(":
            value = self.expr()
            if self.take() != ")":
                raise ToolError("a parenthesis is not closed")
            return value
        if token[0].isdigit() or token[0] == ".":
            return Fraction(token)
        raise ToolError(f"expected a number, got {token!r}")


def evaluate(expression: str) -> Fraction:
    """The exact value of an arithmetic expression; :class:`ToolError` when it is malformed,
    divides by zero or exceeds a bound."""
    parser = _Parser(tokenize(expression))
    if parser.peek() is None:
        raise ToolError("empty expression")
    value = parser.expr()
    if parser.peek() is not None:
        raise ToolError(f"unexpected {parser.peek()!r} in the expression")
    return value


def format_number(x: Fraction) -> str:
    """An integer exactly; otherwise :data:`DECIMALS` significant decimals (rounded half to
    even), no trailing zeros."""
    if x.denominator == 1:
        return str(x.numerator)
    size, zeros = abs(x), 0
    while size * 10 ** (zeros + 1) < 1:  # zeros between the point and the first digit
        zeros += 1
    places = DECIMALS + zeros
    digits = str(round(size * 10**places)).rjust(places + 1, "0")
    whole, fraction = digits[:-places], digits[-places:].rstrip("0")
    return ("-" if x < 0 else "") + whole + ("." + fraction if fraction else "")


def calculate(expression: str) -> str:
    return format_number(evaluate(expression))


def calculator_tool() -> Tool:
    return Tool(
        name="calculator",
        description="Compute an arithmetic expression exactly (+ - * / % ^ and parentheses).",
        parameter="expression",
        run=calculate,
        parameter_description="An arithmetic expression, e.g. 400 / 1400 or (3 + 4) * 12.",
    )
