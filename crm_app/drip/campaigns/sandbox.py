"""The sandbox email templates render in: no Python internals, and bounded work.

Jinja's ImmutableSandboxedEnvironment keeps a template away from Python internals, not
from burning the worker: `'a'|center(50000000)` built a 50-million-character string, and
two nested loops took 4 s at save and 9 s on every view of the campaign's page. So every
render runs on a budget (`render_budget()`, one per email):

- steps: each loop turn, call and filter costs one; at most MAX_RENDER_STEPS, and at most
  MAX_RENDER_SECONDS of the thread's CPU time, checked at every step;
- text: an operation that can build a value much larger than its inputs (padding,
  repetition, replace, join, wrapping, formatting, `~`, `+`) has its result's size
  checked before it is built: at most MAX_VALUE_SIZE per value, MAX_BUILT_CHARS per email.

A refusal raises SecurityError; rendering.py turns it into TemplateRenderError: a message
next to the field at save time, a failed (never retried) message at send time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps
from string import Formatter
from typing import Any

from jinja2 import filters as jinja_filters
from jinja2 import nodes, pass_environment, pass_eval_context
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError
from jinja2.runtime import Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_VALUE_SIZE = 100_000
MAX_BUILT_CHARS = 2_000_000
MAX_RENDER_STEPS = 100_000
# CPU time of the rendering thread, not wall time: a render waiting for the GIL behind
# other sending threads, or preempted on a busy machine, is not cut short for it.
MAX_RENDER_SECONDS = 0.5
CLOCK_EVERY = 64
MAX_EXPONENT = 100
MAX_INT_BITS = 10_000


class RenderBudget:
    """What one email's render may still spend."""

    __slots__ = ("chars_left", "deadline", "steps_left")

    def __init__(self) -> None:
        self.steps_left = MAX_RENDER_STEPS
        self.chars_left = MAX_BUILT_CHARS
        # The thread's CPU clock is a system call (7 % of a delivery worker's Python time
        # when read for every render): read first after CLOCK_EVERY steps, which most emails never
        # take, then every CLOCK_EVERY steps. What those first steps cost is noise next
        # to MAX_RENDER_SECONDS.
        self.deadline: float | None = None

    def step(self) -> None:
        self.steps_left -= 1
        if self.steps_left < 0:
            raise SecurityError(
                f"the template does too much work (over {MAX_RENDER_STEPS:,} loop turns and calls)"
            )
        if self.steps_left % CLOCK_EVERY == 0:
            now = time.thread_time()
            if self.deadline is None:
                self.deadline = now + MAX_RENDER_SECONDS
            elif now > self.deadline:
                raise SecurityError(f"the template took over {MAX_RENDER_SECONDS:g} s to render")

    def charge(self, size: int) -> None:
        if size > MAX_VALUE_SIZE:
            raise SecurityError(
                f"a value would be too long ({size:,} characters; at most {MAX_VALUE_SIZE:,})"
            )
        self.chars_left -= size
        if self.chars_left < 0:
            raise SecurityError(f"the template builds over {MAX_BUILT_CHARS:,} characters")


_active_budget: ContextVar[RenderBudget | None] = ContextVar("email_render_budget", default=None)


@contextmanager
def render_budget() -> Iterator[RenderBudget]:
    """Every operation of a template rendered inside this block counts against one budget."""
    token = _active_budget.set(RenderBudget())
    try:
        yield _active_budget.get()  # type: ignore[misc]
    finally:
        _active_budget.reset(token)


def _budget() -> RenderBudget:
    budget = _active_budget.get()
    if budget is None:
        # Jinja folds constant expressions while compiling: refusing here leaves them to
        # render time, where they are counted.
        raise SecurityError("template operations run only inside a render budget")
    return budget


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes) else len(str(value))


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


# --- size estimates, made before the operation runs ---------------------------------------

_PRINTF_FIELD = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


def _printf_size(template: str, values: Any) -> int:
    """An upper bound for `template % values`."""
    if isinstance(values, Mapping):
        values = tuple(values.values())
    elif not isinstance(values, tuple):
        values = (values,)
    longest = max((_size(v) for v in values), default=0)
    total = len(template)
    for field in _PRINTF_FIELD.finditer(template):
        width, precision = field.group(1), field.group(2)
        if "*" in (width, precision):
            raise SecurityError("'*' widths are not allowed in email templates")
        total += longest + int(width or 0) + int(precision or 0)
    return total


def _format_size(template: str, values: Iterable[Any]) -> int:
    """An upper bound for `template.format(...)` (str.format's mini-language)."""
    longest = max((_size(v) for v in values), default=0)
    total = len(template)
    try:
        fields = list(Formatter().parse(template))
    except ValueError:
        return total  # str.format will refuse it
    for _, name, spec, _ in fields:
        if name is None:
            continue
        if "{" in (spec or ""):
            raise SecurityError("nested format fields are not allowed in email templates")
        total += longest + sum(int(n) for n in re.findall(r"\d+", spec or ""))
    return total


def _replace_size(text: str | bytes, old: Any, new: Any, count: int = -1) -> int:
    found = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        found = min(found, count)
    return len(text) + found * max(0, _size(new) - _size(old))


def _method_guard(owner: str | bytes, name: str, args: tuple, kwargs: dict) -> tuple:
    """Check a str/bytes method that can build more than it is given; returns its args
    (join's iterable is materialised once, to be measured)."""
    budget = _budget()
    if name in ("center", "ljust", "rjust", "zfill"):
        width = args[0] if args else kwargs.get("width", 0)
        budget.charge(max(len(owner), _int(width)))
    elif name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        tab = "\t" if isinstance(owner, str) else b"\t"
        budget.charge(len(owner) + owner.count(tab) * _int(tabsize))  # type: ignore[arg-type]
    elif name == "replace" and len(args) >= 2:
        budget.charge(_replace_size(owner, args[0], args[1], _int(args[2]) if args[2:] else -1))
    elif name == "join" and args:
        items = list(args[0])
        budget.charge(sum(_size(i) for i in items) + len(owner) * max(0, len(items) - 1))
        return (items, *args[1:])
    elif name in ("format", "format_map"):
        values = [*args, *kwargs.values()] if name == "format" else list(args[0].values())
        budget.charge(_format_size(str(owner), values))
    elif name in ("translate", "maketrans"):
        raise SecurityError(f"{name}() is not allowed in email templates")
    return args


# --- filters: every one counts a step; those that can amplify are measured first -----------


def _center(value: Any, width: int = 80) -> str:
    _budget().charge(max(_size(value), _int(width)))
    return jinja_filters.do_center(value, width)


def _indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    pad = _int(width) if not isinstance(width, str) else len(width)
    _budget().charge(_size(s) + (str(s).count("\n") + 1) * pad)
    return jinja_filters.do_indent(s, width, first, blank)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    _budget().charge(_printf_size(str(value), kwargs or args))
    return jinja_filters.do_format(value, *args, **kwargs)


@pass_eval_context
def _replace(eval_ctx, s: str, old: str, new: str, count: int | None = None) -> str:
    _budget().charge(_replace_size(str(s), str(old), str(new), -1 if count is None else count))
    return jinja_filters.do_replace(eval_ctx, s, old, new, count)


@pass_environment
def _wordwrap(
    environment,
    s: str,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    wraps_with = wrapstring or environment.newline_sequence
    breaks = len(s) // max(1, _int(width)) + s.count("\n") + 1
    _budget().charge(len(s) + breaks * len(wraps_with))
    return jinja_filters.do_wordwrap(
        environment, s, width, break_long_words, wrapstring, break_on_hyphens
    )


@pass_eval_context
def _join(eval_ctx, value: Iterable, d: str = "", attribute: str | int | None = None) -> str:
    items = list(value)
    if attribute is not None:
        items = list(map(jinja_filters.make_attrgetter(eval_ctx.environment, attribute), items))
    _budget().charge(sum(_size(i) for i in items) + len(d) * max(0, len(items) - 1))
    return jinja_filters.sync_do_join(eval_ctx, items, d)


def _batch(value: Iterable, linecount: int, fill_with: Any = None):
    _budget().charge(_int(linecount))
    return jinja_filters.do_batch(value, linecount, fill_with)


def _slice(value: Iterable, slices: int, fill_with: Any = None):
    _budget().charge(_int(slices))
    return jinja_filters.sync_do_slice(value, slices, fill_with)


@pass_environment
def _sum(environment, iterable: Iterable, attribute: str | int | None = None, start: Any = 0):
    # sum(start=[]) over many lists copies a growing list each time: quadratic.
    if isinstance(start, bool) or not isinstance(start, int | float):
        raise SecurityError("sum adds numbers only in email templates")
    return jinja_filters.sync_do_sum(environment, iterable, attribute, start)


def _fallback(value: Any, default_value: Any = "", boolean: bool = True) -> Any:
    """`default`, and its short name `d`, for an empty value too: a merge field the
    contact has no value for is "", never undefined, so Jinja's own `default` (undefined
    only, unless told `true`) would leave "Hi ," where product.md's fallback
    `{{ contact.first_name | default("there") }}` promises "Hi there,"."""
    return jinja_filters.do_default(value, default_value, boolean)


MEASURED_FILTERS = {
    "default": _fallback,
    "d": _fallback,
    "center": _center,
    "indent": _indent,
    "format": _format,
    "replace": _replace,
    "wordwrap": _wordwrap,
    "join": _join,
    "batch": _batch,
    "slice": _slice,
    "sum": _sum,
}


def _counted(filter_function):
    @wraps(filter_function)  # keeps Jinja's pass_context/pass_environment marks
    def counted(*args: Any, **kwargs: Any) -> Any:
        _budget().step()
        return filter_function(*args, **kwargs)

    return counted


# --- fields by name ------------------------------------------------------------------------


class FieldValues(dict):
    """Fields by name (a contact's custom fields) as a template reads them: `x.name` and
    `x["name"]` are always the field, even one named `items`, `keys` or `get` (a plain
    dict's method would win and render as "<built-in method ...>"); a missing one is
    undefined (renders as nothing, is false), so `| default(...)` applies. A call,
    `x.get("name")` or `x.items()`, is still the method (EmailSandbox.method_of)."""


# --- the compiled template: loop turns counted, `~` measured -------------------------------


class _BudgetedCodeGenerator(CodeGenerator):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._method_callees: set[int] = set()  # ids of the Getattr nodes that are called

    def visit_Call(self, node: nodes.Call, frame: Frame, forward_caller: bool = False) -> None:
        if isinstance(node.node, nodes.Getattr):
            # `x.name(...)` calls a method: looked up by method_of, not by getattr.
            self._method_callees.add(id(node.node))
        super().visit_Call(node, frame, forward_caller=forward_caller)

    def visit_Getattr(self, node: nodes.Getattr, frame: Frame) -> None:
        if id(node) not in self._method_callees:
            super().visit_Getattr(node, frame)
            return
        self.write("environment.method_of(")
        self.visit(node.node, frame)
        self.write(f", {node.attr!r})")

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        if not node.recursive:  # a recursive loop's turns are counted by its loop() calls
            # `for x in environment.budgeted_iter(<iterable>)`: Jinja allows no new node
            # type, but a call of an environment attribute says just that.
            budgeted = nodes.Call(
                nodes.EnvironmentAttribute("budgeted_iter"), [node.iter], [], None, None
            )
            node = nodes.For(
                node.target,
                budgeted.set_lineno(node.lineno),
                node.body,
                node.else_,
                node.test,
                node.recursive,
                lineno=node.lineno,
            )
        super().visit_For(node, frame)

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # Jinja's own, with the parts measured before they are joined.
        if frame.eval_ctx.volatile:
            func_name = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func_name = "markup_join"
        else:
            func_name = "str_join"
        self.write(f"{func_name}(environment.measured_parts((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")


class EmailSandbox(ImmutableSandboxedEnvironment):
    """Immutable sandbox whose every loop turn, call, filter and text-building operation
    counts against the current render's budget."""

    code_generator_class = _BudgetedCodeGenerator
    # Intercepting also stops the compiler from folding these at compile time.
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals.pop("lipsum", None)  # lipsum(n=10**8) would only burn memory
        self.filters = {
            name: _counted(MEASURED_FILTERS.get(name, function))
            for name, function in self.filters.items()
        }

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, FieldValues):
            return self._field(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, FieldValues):
            return self._field(obj, argument)
        return super().getitem(obj, argument)

    def _field(self, fields: FieldValues, name: Any) -> Any:
        try:
            return fields[name]
        except (TypeError, LookupError):
            # A contact without this custom field: nothing, or the template's fallback,
            # not an error (the strict undefined of the other merge fields catches typos
            # at save; a custom field's name is the contact's, not the template's).
            return Undefined(f"the field {name!r} is not set", obj=fields, name=name)

    def method_of(self, obj: Any, name: str) -> Any:
        """What `obj.name(...)` calls: the sandbox's usual lookup (attribute first), also
        on FieldValues, whose read-only methods stay callable (mutating ones are refused)."""
        return super().getattr(obj, name)

    def budgeted_iter(self, iterable: Iterable) -> Iterator:
        budget = _budget()
        for item in iterable:
            budget.step()
            yield item

    def measured_parts(self, parts: tuple) -> tuple:
        _budget().charge(sum(_size(part) for part in parts))
        return parts

    def concat(self, parts: list) -> str:  # a {% set %} block's or a macro's output
        _budget().charge(sum(map(len, parts)))
        return "".join(parts)

    def call(self, context, obj, /, *args: Any, **kwargs: Any) -> Any:
        _budget().step()
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, str | bytes):
            args = _method_guard(owner, getattr(obj, "__name__", ""), args, kwargs)
        return super().call(context, obj, *args, **kwargs)

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "**" and isinstance(right, int) and isinstance(left, int | float):
        bits = max(int(abs(left)).bit_length(), 1) * abs(right)
        if abs(right) > MAX_EXPONENT or bits > MAX_INT_BITS:
            raise SecurityError("a number is too large for an email template")
    elif operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise SecurityError("a number is too large for an email template")
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | bytes | list | tuple) and isinstance(times, int):
                _budget().charge(len(seq) * max(0, times))
    elif operator == "+":
        sequences = (str, bytes, list, tuple)
        if isinstance(left, sequences) and isinstance(right, sequences):
            _budget().charge(len(left) + len(right))
    elif operator == "%" and isinstance(left, str | bytes):
        _budget().charge(_printf_size(str(left), right))
