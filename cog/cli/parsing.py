"""cog's argument parser: no abbreviations (an abbreviation silently meant another option),
a "did you mean" for unknown options, one-line errors, each real default shown once; list
types; hidden deprecated spellings that print one warning line; dataclass defaults read
without importing their module."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from cog import CogError


def int_list(text: str) -> tuple[int, ...]:
    """argparse type for "1,2,4": a non-empty tuple of integers."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected integers separated by commas"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def name_list(text: str) -> tuple[str, ...]:
    """argparse type for "a,b": a non-empty tuple of names."""
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    if not values:
        raise argparse.ArgumentTypeError("expected at least one name")
    return values


def _show_default(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; each default shown once, and only a real one.

    A help text that already names its default is left alone; options without a default
    (None), flags and positionals get no "(default: ...)".
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or not action.option_strings
            or action.nargs == 0
            or default is None
            or default is argparse.SUPPRESS
            or isinstance(default, bool)
            or (isinstance(default, (list, tuple)) and not default)
        ):
            return text
        return f"{text} (default: {_show_default(default).replace('%', '%%')})"


class CogParser(argparse.ArgumentParser):
    """ArgumentParser with cog's rules: no abbreviations, one-line errors with a hint."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def _all_options(self) -> list[str]:
        names: list[str] = []
        for action in self._actions:
            if action.help is not argparse.SUPPRESS:
                names += [s for s in action.option_strings if s.startswith("--")]
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    if isinstance(sub, CogParser):
                        names += sub._all_options()
        return sorted(set(names))

    def error(self, message: str) -> NoReturn:
        hint = ""
        if message.startswith("unrecognized arguments:"):
            unknown = [t.split("=")[0] for t in message.split(":", 1)[1].split()]
            options = self._all_options()
            for tok in unknown:
                if tok.startswith("-"):
                    close = difflib.get_close_matches(tok, options, n=1, cutoff=0.6)
                    prefix = [o for o in options if o.startswith(tok)]
                    guess = prefix or close
                    if guess:
                        hint = f"; did you mean {guess[0]}?"
                        break
        self.exit(2, f"{self.prog}: error: {message}{hint} (see {self.prog} --help)\n")


class _Deprecated(argparse.Action):
    """A hidden old spelling: warns once, then stores like the new option."""

    def __init__(self, option_strings, dest, new: str, store: Any = None, **kwargs) -> None:
        self.new, self.store = new, store
        kwargs.setdefault("help", argparse.SUPPRESS)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(
            f"warning: {option_string} is deprecated; use {self.new}", file=sys.stderr, flush=True
        )
        value = self.store if self.nargs == 0 else values
        if isinstance(value, list):
            value = _flatten_names(value, self.choices_list, parser, option_string)
        setattr(namespace, self.dest, value)

    choices_list: Sequence[str] | None = None


def _flatten_names(
    values: Sequence[str], choices: Sequence[str] | None, parser, option: str | None
) -> tuple[str, ...]:
    names = tuple(v.strip() for text in values for v in text.replace(",", " ").split())
    if not names:
        parser.error(f"{option}: expected at least one name")
    if choices is not None:
        bad = [n for n in names if n not in choices]
        if bad:
            parser.error(f"{option}: unknown {', '.join(bad)}; choose from {', '.join(choices)}")
    return names


class _Names(argparse.Action):
    """`--datasets a,b`, `--datasets a b` and `--datasets a, b` all give ("a", "b")."""

    choices_list: Sequence[str] | None = None

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(
            namespace, self.dest, _flatten_names(values, self.choices_list, parser, option_string)
        )


def _names_action(base: type, choices: Sequence[str] | None) -> type:
    return type(base.__name__, (base,), {"choices_list": tuple(choices) if choices else None})


def add_deprecated(
    p: argparse.ArgumentParser | argparse._ArgumentGroup, old: str, dest: str, new: str
) -> None:
    """A hidden old flag spelling that sets `dest` to True after one warning line."""
    p.add_argument(old, dest=dest, nargs=0, action=_Deprecated, new=new, store=True, default=False)


def add_deprecated_value(
    p: argparse.ArgumentParser | argparse._ArgumentGroup, old: str, dest: str, new: str
) -> None:
    """A hidden old spelling of an option that takes one value."""
    p.add_argument(old, dest=dest, action=_Deprecated, new=new, metavar="VALUE")


def dataclass_defaults(module: str, cls: str) -> dict[str, Any]:
    """Literal field defaults of dataclass `cls` in `module`, read from its source.

    A CLI shows a library dataclass's defaults in --help without importing the module (and
    torch with it); the dataclass stays the single source of the values. Fields whose
    default is not a literal are left out."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise CogError(f"{module}: module not found; reinstall cog")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    node = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls), None)
    if node is None:
        raise CogError(f"{module}: no class {cls}; reinstall cog")
    out: dict[str, Any] = {}
    for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value:
            try:
                out[item.target.id] = ast.literal_eval(item.value)
            except ValueError:
                continue
    return out
