"""One schema per file the project reads, checked once where the file is read (pydantic v2).

Every file that arrives from outside (a recipe, a profile, a baseline or bench JSON, a model card, a
targets file) is untrusted: a wrong type, an unknown key, a value out of range, a NaN or an absurd size
becomes ONE line that names the file, the key path and what was expected (:func:`validate`), raised as
a :class:`~edgetransfer.errors.UsageError` subclass so the CLI exits 2 and writes nothing.

Why pydantic: its errors are typed and carry the location of the bad value (``loc``, a key path); a model
with ``extra='forbid'`` rejects unknown keys and ``allow_inf_nan=False`` rejects NaN and infinities; it is
mature and its core is fast (Rust). It has no torch dependency, so the device runtime, which reads cards,
can use it too.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, create_model
from pydantic import Strict as _Strict
from pydantic.fields import FieldInfo

from edgetransfer.errors import UsageError

M = TypeVar("M")
MAX_TEXT_FILE_BYTES = 1_000_000  # a recipe, a profile or a targets file is a few hundred bytes
MAX_JSON_FILE_BYTES = 64_000_000  # a bench.json with every raw timing of many variants

# Strict scalars: no "3" for 3, no true for 1; an int is still a float; no NaN or infinity anywhere.
Int = Annotated[int, _Strict()]
Float = Annotated[float, _Strict(), Field(allow_inf_nan=False)]
Bool = Annotated[bool, _Strict()]
Name = Annotated[str, _Strict(), StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, _Strict(), StringConstraints(max_length=10_000)]


class Schema(BaseModel):
    """The base of every file schema: unknown keys refused, no NaN or infinity, strict types, frozen."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True, frozen=True, defer_build=True)


class FileError(UsageError):
    """A file the user gave (or that a run holds) is not what its schema expects."""


# --------------------------------------------------------------------------- the one-line error


def _model_at(model: Any, loc: tuple) -> Any:
    """The schema class found by following ``loc`` (keys and list indices) from ``model``; None when lost."""
    for part in loc:
        model = _unwrap(model)
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            model = field.annotation
        elif get_origin(model) in (list, tuple, dict, Mapping) or get_origin(model) is not None:
            args = [a for a in get_args(model) if a is not Ellipsis]
            model = args[-1] if args else None
        else:
            return None
    return _unwrap(model)


def _unwrap_annotated(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _unwrap(tp: Any) -> Any:
    """``Annotated[X, ...]`` -> X; ``X | None`` -> X (one non-None member)."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin is Union or type(tp).__name__ == "UnionType":
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) != 1:
                return tp
            tp = members[0]
        else:
            return tp


def known_keys(model: Any, loc: tuple) -> list[str]:
    """The keys the schema allows in the table at ``loc``."""
    found = _model_at(model, loc)
    if isinstance(found, type) and issubclass(found, BaseModel):
        return [f.alias or name for name, f in found.model_fields.items()]
    return []


def _echo(loc: tuple, others: list[tuple]) -> bool:
    """Whether another error lies inside ``loc`` (a list's length error that only counts its bad items)."""
    return any(len(o) > len(loc) and o[: len(loc)] == loc for o in others)


def _shown(value: Any) -> str:
    if isinstance(value, bool) or value is None:  # as the user wrote it: TOML and JSON spell them so
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, (list, tuple, dict)) and len(value) > 10:
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, str) and len(value) > 60:
        return f"{value[:30]!r}... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _key_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def error_line(exc: ValidationError, source: str, model: Any = None, *, flags: bool = False) -> str:
    """``SOURCE: KEY: expected WHAT, got VALUE (and N more)`` for the first error of ``exc``; an unknown key
    names the closest known one (difflib). With ``flags`` the key is a command-line option (``--batch-size``)."""
    errors = exc.errors(include_url=False)
    inner = [e["loc"] for e in errors]  # a list too short "after validation" only echoes its bad items
    errors = [e for e in errors if not (e["type"] in ("too_short", "too_long") and _echo(e["loc"], inner))]
    errors.sort(key=lambda e: e["type"] != "extra_forbidden")  # a misspelt key first: it explains a missing one
    first = errors[0]
    loc = _user_loc(first["loc"])
    kind, msg = first["type"], first["msg"]
    # named: "(and 1 more)" hid a second fix; a missing key says so ("(known: target) (and 1 more: target)" read as
    # the same key twice: a new user's trial)
    rest = [
        _named_key(_user_loc(e["loc"]), flags) + (" missing" if e["type"] == "missing" else "") for e in errors[1:4]
    ]
    named = ": " + ", ".join(rest) + (", ..." if len(errors) > 4 else "") if rest else ""
    more = f" (and {len(errors) - 1} more{named})" if len(errors) > 1 else ""
    lead = f"{source}: " if source else ""
    if kind == "extra_forbidden":
        known = known_keys(model, loc[:-1]) if model is not None else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        allowed = f" (known: {', '.join(known)})" if known and not close else ""
        return f"{lead}unknown key {_key_path(loc)!r}{hint}{allowed}{more}"
    if kind == "missing" and loc and isinstance(loc[-1], int) and isinstance(first.get("input"), (list, tuple)):
        shape = get_args(_model_at(model, loc[:-1]))
        items = len(shape) if shape and Ellipsis not in shape else "more"
        return f"{lead}{_key_path(loc[:-1])}: expected {items} items, got {_shown(first['input'])}{more}"
    if kind == "missing":
        return f"{lead}{_key_path(loc)}: missing (it is required){more}"
    ctx = first.get("ctx") or {}
    if kind == "too_short":
        msg = f"expected at least {ctx.get('min_length')} item(s)"
    elif kind == "too_long":
        msg = f"expected at most {ctx.get('max_length')} item(s)"
    for prefix in ("Input should be ", "String should ", "Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = ("" if prefix.startswith(("Value", "Assertion")) else "expected ") + msg[len(prefix) :]
    msg = msg.replace("expected have ", "expected ").replace("expected match pattern", "expected to match")
    for words, short in _SHORTER:
        msg = msg.replace(words, short)
    if kind == "model_type":  # pydantic's "or instance of ProfileBudget": a class name the user never wrote
        msg = msg.split(" or instance of ")[0]
    got = "" if kind.startswith("value_error") else f", got {_shown(first.get('input'))}"
    return f"{lead}{_named_key(loc, flags)}: {msg}{got}{more}"


def _user_loc(loc: tuple) -> tuple:
    """An error's location without pydantic's validator steps (``function-after[...]``, ``json-or-python[...]``)."""
    return tuple(p for p in loc if not (isinstance(p, str) and p.startswith(("function-", "json-or-python"))))


def _named_key(loc: tuple, flags: bool) -> str:
    """A key as the error names it: ``a.b[0]``, or as a command-line option (``--batch-size``) with ``flags``."""
    below = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
    return "--" + str(loc[0]).replace("_", "-") + below if flags and loc else _key_path(loc)


_SHORTER = [
    ("greater than or equal to ", ">= "),
    ("less than or equal to ", "<= "),
    ("greater than ", "> "),
    ("less than ", "< "),
    ("a valid integer", "a whole number"),
    ("a valid number", "a number"),
    ("a valid string", "a string"),
    ("a valid boolean", "true or false"),
    ("a valid dictionary", "a table"),
    ("a valid list", "a list"),
    ("a valid tuple", "a list"),
]


def validate(model: type[M], data: Any, source: str, *, error: type[UsageError] = FileError, flags: bool = False) -> M:
    """``data`` checked against the schema ``model``; a one-line ``error`` otherwise (see :func:`error_line`)."""
    try:
        return model.model_validate(data)  # type: ignore[attr-defined]
    except ValidationError as exc:
        raise error(error_line(exc, source, model, flags=flags)) from None


def _field_type(tp: Any) -> Any:
    """A dataclass field's type for its schema: scalars strict (``int`` refuses "3" and true; ``float`` takes
    an int, never NaN), strings bounded, containers as pydantic reads them (a TOML list for a tuple)."""
    base = _unwrap(tp)
    scalar = {int: Int, float: Float, bool: Bool, str: Annotated[str, _Strict(), StringConstraints(max_length=4096)]}
    if base in scalar:
        optional = base is not tp
        return scalar[base] | None if optional else scalar[base]
    return Annotated[tp, _Strict(False)]


def dataclass_schema(
    cls: type,
    name: str,
    *,
    constraints: Mapping[str, Any] | None = None,
    partial: bool = False,
    include: Collection[str] | None = None,
):
    """A schema DERIVED from a dataclass's fields (so a field added to the dataclass is checked at once): each
    field's type made strict, the ``constraints`` of a field (a pydantic ``Field(ge=...)`` or a ``Literal``
    type) added, unknown keys refused. ``partial``: every field optional (a recipe names only some);
    ``include``: only these fields."""
    namespace = vars(sys.modules[cls.__module__])
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if include is not None and f.name not in include:
            continue
        hint = eval(f.type, namespace) if isinstance(f.type, str) else f.type  # noqa: S307 - our own annotation
        tp = _field_type(hint)
        extra = (constraints or {}).get(f.name)
        if isinstance(extra, FieldInfo):
            tp = Annotated[tp, extra]
        elif extra is not None:  # a type, e.g. Literal["a", "b"]
            tp = extra | None if type(None) in get_args(_unwrap_annotated(hint)) else extra
        if partial:
            fields[f.name] = (tp | None, None)
        elif f.default is not dataclasses.MISSING:
            fields[f.name] = (tp, f.default)
        elif f.default_factory is not dataclasses.MISSING:
            fields[f.name] = (tp, Field(default_factory=f.default_factory))
        else:
            fields[f.name] = (tp, ...)
    return create_model(name, __base__=Schema, **fields)


def read_text(path: Path, *, what: str, limit: int = MAX_TEXT_FILE_BYTES, error: type[UsageError] = FileError) -> str:
    """A small text file's content: a regular file (no FIFO, device or folder) of at most ``limit`` bytes."""
    path = Path(path)
    if not path.exists():
        raise error(f"{what} not found: {path}")
    if not path.is_file():
        raise error(f"{what} {path} is not a regular file")
    size = path.stat().st_size
    if size > limit:
        raise error(f"{what} {path} is {size:,} bytes (expected at most {limit:,})")
    try:
        return path.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows Notepad's) is no text
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not UTF-8 text") from None
    except OSError as exc:
        raise error(f"{what} {path} cannot be read: {exc.strerror or exc}") from None


def read_toml(path: Path, *, what: str, error: type[UsageError] = FileError) -> dict[str, Any]:
    """A TOML file as a dict; not found, not a file, too big or not TOML is one line."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - python 3.10: the [train] extra brings tomli (a device reads no TOML)
        import tomli as tomllib

    text = read_text(path, what=what, error=error)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} {path} is not valid TOML: {exc}") from None


# --------------------------------------------------------------------------- targets.toml (bench --on)

HostName = Annotated[
    str, _Strict(), StringConstraints(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9_.:\[\]][A-Za-z0-9_.:\[\]-]*$")
]
UserName = Annotated[str, _Strict(), StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
TargetName = Annotated[str, _Strict(), StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class Target(Schema):
    """One device ``bench --on NAME`` can reach over SSH."""

    name: TargetName
    host: HostName
    port: Annotated[int, _Strict(), Field(ge=1, le=65535)] = 22
    user: UserName | None = None
    key: Annotated[str, _Strict(), StringConstraints(min_length=1, max_length=4096)] | None = None  # a private key
    python: Annotated[str, _Strict(), StringConstraints(min_length=1, max_length=4096)] = "python3"
    threads: Annotated[int, _Strict(), Field(ge=1, le=1024)] | None = None
    notes: Text = ""


class TargetsFile(Schema):
    """``targets.toml``: ``[[target]]`` tables, one per device; names are distinct."""

    target: Annotated[list[Target], Field(min_length=1, max_length=1000)]

    def by_name(self) -> dict[str, Target]:
        return {t.name: t for t in self.target}


def load_targets(path: Path | str) -> dict[str, Target]:
    """The devices of a targets file by name; any mistake in it is one :class:`FileError` line."""
    source = str(path)
    raw = read_toml(Path(path), what="targets file")
    if isinstance(raw.get("target"), dict):  # [target] instead of [[target]]: TOML's one table, not a list of them
        raise FileError(f"{source}: write each device as a [[target]] table (two brackets), not [target]")
    parsed = validate(TargetsFile, raw, source)
    names = [t.name for t in parsed.target]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise FileError(f"{source}: target name {twice[0]!r} appears more than once (expected distinct names)")
    return parsed.by_name()
