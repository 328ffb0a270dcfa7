"""``Upstash-Retry-Delay``: a millisecond arithmetic expression over ``retried``.

Examples: ``1000``, ``1000 * (1 + retried)``, ``pow(2, retried) * 1000``,
``max(10, pow(2, retried))``. The text is parsed with :mod:`ast` and only
numbers, ``retried``, ``+ - * / // % **``, unary signs and the functions
pow, exp, sqrt, abs, floor, ceil, round, min and max are allowed. Nothing is
ever passed to ``eval``. Arithmetic is done on floats so that no expression
can build a huge integer; an overflow evaluates to infinity (capped later).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable

MAX_EXPRESSION_LENGTH = 512
MAX_NODES = 200

_FUNCTIONS: dict[str, Callable[..., float]] = {
    "pow": lambda x, y: math.pow(x, y),
    "exp": math.exp,
    "sqrt": math.sqrt,
    "abs": abs,
    "floor": lambda x: float(math.floor(x)),
    "ceil": lambda x: float(math.ceil(x)),
    "round": lambda x: float(round(x)),
    "min": min,
    "max": max,
}
_ARITIES: dict[str, tuple[int, int]] = {
    "pow": (2, 2),
    "exp": (1, 1),
    "sqrt": (1, 1),
    "abs": (1, 1),
    "floor": (1, 1),
    "ceil": (1, 1),
    "round": (1, 1),
    "min": (1, 64),
    "max": (1, 64),
}
_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: math.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


class ExpressionError(ValueError):
    """The expression is not one the protocol allows."""


class RetryDelayExpression:
    """A validated retry-delay expression, evaluated per retry."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._tree = _parse(text)

    def evaluate(self, retried: int) -> float | None:
        """Milliseconds to wait, or ``None`` when the maths fails (bad domain, ...)."""
        try:
            return _evaluate(self._tree.body, float(retried))
        except OverflowError:
            return math.inf
        except (ArithmeticError, ValueError):
            return None


def _parse(text: str) -> ast.Expression:
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise ExpressionError(f"cannot parse {text!r}: {error.msg}") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise ExpressionError("expression too large")
    for node in nodes:
        _check(node)
    return tree


def _check(node: ast.AST) -> None:
    if isinstance(node, (ast.Expression, ast.Load, ast.operator, ast.unaryop)):
        if isinstance(node, ast.operator) and type(node) not in _BINARY:
            raise ExpressionError(f"operator {type(node).__name__} not allowed")
        if isinstance(node, ast.unaryop) and type(node) not in _UNARY:
            raise ExpressionError(f"operator {type(node).__name__} not allowed")
        return
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        return
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ExpressionError(f"only numbers are allowed, not {node.value!r}")
        return
    if isinstance(node, ast.Name):
        if node.id != "retried" and node.id not in _FUNCTIONS:
            raise ExpressionError(f"unknown name {node.id!r}; only 'retried' is defined")
        return
    if isinstance(node, ast.Call):
        _check_call(node)
        return
    raise ExpressionError(f"{type(node).__name__} is not allowed in a retry delay")


def _check_call(node: ast.Call) -> None:
    if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
        raise ExpressionError(f"unknown function; allowed: {', '.join(sorted(_FUNCTIONS))}")
    if node.keywords:
        raise ExpressionError("keyword arguments are not allowed")
    low, high = _ARITIES[node.func.id]
    if not low <= len(node.args) <= high:
        raise ExpressionError(f"{node.func.id}() takes {low}..{high} arguments")


def _evaluate(node: ast.expr, retried: float) -> float:
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        if node.id != "retried":
            raise ValueError(f"{node.id} is a function")
        return retried
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_evaluate(node.operand, retried))
    if isinstance(node, ast.BinOp):
        left = _evaluate(node.left, retried)
        right = _evaluate(node.right, retried)
        return float(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        args = [_evaluate(arg, retried) for arg in node.args]
        return float(_FUNCTIONS[node.func.id](*args))
    raise ValueError(f"unexpected node {type(node).__name__}")
