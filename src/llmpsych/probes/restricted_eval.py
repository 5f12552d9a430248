"""A restricted evaluator for model-written arithmetic (out-of-context reasoning: "write f as Python").

A model's answer such as `3 * x + 2` or `(x - 1) // 2` is checked by running it on held-out inputs.
Running model text with `eval` would run anything; this walks the syntax tree instead and allows
only numbers, the named variables, + - * / // % ** and unary signs, with bounded exponents and
magnitudes. Anything else (names, calls, attributes, subscripts, strings, comprehensions, lambdas)
is refused with `UnsafeExpression` before a single operation runs.
"""

from __future__ import annotations

import ast
import operator

MAX_EXPONENT = 64
MAX_MAGNITUDE = 10**18
MAX_LENGTH = 200
BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
          ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


class UnsafeExpression(ValueError):
    """The text is not a plain arithmetic expression over the allowed variables."""


def parse_expression(text: str, variables: tuple[str, ...] = ("x",)) -> ast.Expression:
    """Parse and check an expression; raises UnsafeExpression naming what is not allowed."""
    text = text.strip()
    if len(text) > MAX_LENGTH:
        raise UnsafeExpression(f"expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise UnsafeExpression("not a Python expression") from None
    for node in ast.walk(tree):
        if isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Load)) or type(node) in BINARY \
                or type(node) in UNARY:
            continue
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            if abs(node.value) > MAX_MAGNITUDE:
                raise UnsafeExpression(f"constant {node.value!r} is out of bounds")
            continue
        if isinstance(node, ast.Name) and node.id in variables:
            continue
        raise UnsafeExpression(f"{type(node).__name__} is not allowed"
                               + (f" ({node.id!r})" if isinstance(node, ast.Name) else ""))
    return tree


def evaluate(text: str, values: dict[str, float]) -> float:
    """The value of an arithmetic expression for the given variables (UnsafeExpression if refused;
    ArithmeticError for division by zero, overflow or out-of-bounds results)."""
    tree = parse_expression(text, tuple(values))
    return _value(tree.body, values)


def _value(node: ast.AST, values: dict[str, float]) -> float:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return values[node.id]
    if isinstance(node, ast.UnaryOp):
        return UNARY[type(node.op)](_value(node.operand, values))
    left, right = _value(node.left, values), _value(node.right, values)
    if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
        raise OverflowError(f"exponent {right} is larger than {MAX_EXPONENT}")
    result = BINARY[type(node.op)](left, right)
    if isinstance(result, complex) or abs(result) > MAX_MAGNITUDE:
        raise OverflowError("result out of bounds")
    return result


def matches(text: str, reference, inputs: list[float], variable: str = "x", tolerance: float = 1e-9) -> bool:
    """Whether the expression agrees with `reference` (a callable) on every input; refused or failing
    expressions do not match."""
    try:
        parse_expression(text, (variable,))
        return all(abs(evaluate(text, {variable: x}) - reference(x)) <= tolerance for x in inputs)
    except (UnsafeExpression, ArithmeticError, ValueError, TypeError):
        return False
