"""Conditional parameters: ``when: {optimizer: sgd}`` makes a parameter exist only on that branch.

A parameter with ``when`` is *active* in a configuration when every parent it names is itself
active and holds the value (or one of the listed values). Parents must be ``choice``
parameters, so the branches are finite and the grid can enumerate them. Inactive parameters
are not in a trial's ``params`` at all: they are not sampled, not exported, not on the command
line (:func:`render_command` drops the arguments that hold them).

The parser (``space.py``) calls :func:`check_conditions` for the one-line errors: a parent that
does not exist or is not a choice, a value that is not one of the parent's choices, a cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from .param import PLACEHOLDER, Param

Fail = Callable[[str, str, str], Exception]


def parse_when(raw: Any, key: str, fail: Fail) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """``{optimizer: sgd}`` or ``{optimizer: [sgd, adam]}`` -> ``(("optimizer", ("sgd",)),)``."""
    if not isinstance(raw, dict) or not raw:
        raise fail(key, f"expected a mapping of choice parameters to values, got {raw!r}"[:120],
                   "write when: {optimizer: sgd} or when: {optimizer: [sgd, adam]}")
    result = []
    for parent, wanted in raw.items():
        values = tuple(wanted) if isinstance(wanted, list) else (wanted,)
        if not values or any(isinstance(v, (dict, list)) or v is None for v in values):
            raise fail(f"{key}.{parent}", f"expected a value or a list of values, got {wanted!r}"[:120],
                       f"write when: {{{parent}: VALUE}}")
        result.append((str(parent), values))
    return tuple(result)


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps True apart from 1 (choice values may mix them)."""
    return bool(a == b) and isinstance(a, bool) == isinstance(b, bool)


def check_conditions(params: Sequence[Param], fail: Fail) -> None:
    """Every ``when`` names a choice parameter and its values; no parameter depends on itself."""
    by_name = {p.name: p for p in params}
    for param in params:
        for parent, values in param.when:
            key = f"space.{param.name}.when.{parent}"
            other = by_name.get(parent)
            if other is None:
                raise fail(key, f"{parent!r} is not a parameter of this space",
                           "name a choice parameter defined under space:")
            if other.type != "choice":
                raise fail(key, f"{parent!r} is a {other.type} parameter, not a choice",
                           f"make {parent} a choice, or drop the condition")
            for value in values:
                if not any(_same(value, v) for v in other.values):
                    raise fail(key, f"{value!r} is not one of {parent}'s values {list(other.values)}",
                               f"use one of {list(other.values)}")
    _check_cycles(by_name, fail)


def _check_cycles(by_name: Mapping[str, Param], fail: Fail) -> None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            loop = path[path.index(name):] + [name]
            raise fail(f"space.{name}.when", "conditions form a cycle: " + " -> ".join(loop),
                       "a parameter cannot depend on itself, directly or through others")
        state[name] = 1
        for parent, _ in by_name[name].when:
            visit(parent, path + [name])
        state[name] = 2

    for name in by_name:
        visit(name, [])


def is_conditional(params: Sequence[Param]) -> bool:
    return any(p.when for p in params)


def dependency_order(params: Sequence[Param]) -> list[Param]:
    """Parents before children, otherwise the order of the file (the conditions have no cycle)."""
    placed: list[Param] = []
    names: set[str] = set()
    remaining = list(params)
    while remaining:
        for param in remaining:
            if all(parent in names for parent, _ in param.when):
                placed.append(param)
                names.add(param.name)
                remaining.remove(param)
                break
        else:  # unreachable after check_conditions; keep the rest rather than loop forever
            placed.extend(remaining)
            break
    return placed


def is_active(param: Param, config: Mapping[str, Any]) -> bool:
    """True when every parent is present in ``config`` (active) and holds one of the wanted values."""
    for parent, values in param.when:
        if parent not in config or not any(_same(config[parent], v) for v in values):
            return False
    return True


def active_only(params: Sequence[Param], config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` without the parameters its own choices switch off (declaration order kept)."""
    kept: dict[str, Any] = {}
    for param in dependency_order(params):
        if param.name in config and is_active(param, kept):
            kept[param.name] = config[param.name]
    return {p.name: kept[p.name] for p in params if p.name in kept}


def active_names(params: Sequence[Param], config: Mapping[str, Any]) -> set[str]:
    return set(active_only(params, config))


def inactive_names(params: Sequence[Param], config: Mapping[str, Any]) -> list[str]:
    """The parameters a configuration leaves out (their arguments leave the command)."""
    return [p.name for p in params if p.name not in config]


def fits(params: Sequence[Param], config: Mapping[str, Any]) -> bool:
    """Whether ``config`` is a configuration of this space: exactly the active names, each value in range."""
    by_name = {p.name: p for p in params}
    if set(config) - set(by_name) or set(active_only(params, config)) != set(config):
        return False  # a name this space lacks, or one its own choices switch off
    missing = [p for p in params if p.name not in config and is_active(p, config)]
    return not missing and all(_in_range(by_name[n], v) for n, v in config.items())


def _in_range(param: Param, value: Any) -> bool:
    if param.type == "choice":
        return any(_same(value, v) for v in param.values)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if param.type == "int" and value != int(value):
        return False
    return float(param.low) <= float(value) <= float(param.high)  # type: ignore[arg-type]


def render_command(command: Sequence[str], values: Mapping[str, Any], inactive: Collection[str],
                   render: Callable[[str], str]) -> list[str]:
    """Arguments rendered by ``render``; those holding an inactive parameter's placeholder are left out.

    When the left-out argument is exactly ``{name}`` and the one before it is an option flag
    (starts with ``-``), the flag goes too: ``--momentum {momentum}`` vanishes whole, as does
    ``--beta2={beta2}`` (one argument).
    """
    argv: list[str] = []
    previous_kept = False
    for i, arg in enumerate(command):
        if any(name in inactive for name in PLACEHOLDER.findall(arg)):
            if PLACEHOLDER.fullmatch(arg) and previous_kept and command[i - 1].startswith("-"):
                argv.pop()
            previous_kept = False
            continue
        argv.append(render(arg))
        previous_kept = True
    return argv


def check_command(argv: Sequence[str], params: Sequence[Param], fail: Fail) -> None:
    """An argument that is dropped with a conditional parameter must not carry anyone else's value."""
    when = {p.name: p.when for p in params}
    for arg in argv:
        names = [n for n in PLACEHOLDER.findall(arg) if n in when]
        clash = next(((n, o) for n in names if when[n] for o in names if when[o] != when[n]), None)
        if clash:
            name, other = clash
            raise fail("command", f"argument {arg!r} holds {{{name}}} (conditional) and {{{other}}}: "
                       f"it is left out whenever {name} is inactive, and {other} with it",
                       f"give {{{name}}} its own argument, e.g. --{name} {{{name}}}")
