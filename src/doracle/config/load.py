"""Reading params: YAML without surprises (duplicate keys, alias bombs, deep nesting refused),
validation with messages that name the key, partial files completed from their game's default
file, overrides (``--config``) merged in."""

from __future__ import annotations

import copy
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)

from doracle.config import at, gan
from doracle.config.base import DEFAULT_PARAMS
from doracle.config.nas import check_nas
from doracle.config.params import Params
from doracle.errors import ConfigError, did_you_mean


def _field_model(tp: Any) -> tuple[Any, bool]:
    """(the pydantic model a field's type holds or None, whether a mapping / list lies between)."""

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp, False
    if origin is Annotated:
        return _field_model(args[0])
    if origin in (dict, list) and args:
        return _field_model(args[-1])[0], True
    if origin in (typing.Union, types.UnionType):
        for a in args:
            m, container = _field_model(a)
            if m is not None:
                return m, container
    return None, False


def _node_model(model: Any, loc: tuple) -> Any:
    """The pydantic model class at ``loc`` below ``model`` (through optional fields, mappings and
    lists), or None: where an unknown key's valid siblings are listed."""
    node, entry = model, False
    for part in loc:
        if entry:  # a mapping's key or a list's index: its entries have the model already found
            entry = False
            continue
        if node is None or part not in node.model_fields:
            return None
        node, entry = _field_model(node.model_fields[part].annotation)
    return node


def format_errors(err: ValidationError, source: str, prefix: str = "", model: Any = None) -> str:
    """pydantic's errors as ``  key: message (got value)``: the value once (a message that already
    shows it is left as it is), unknown keys with the closest valid key ("did you mean"), wrong
    choices with the closest valid choice. ``model``: the model validated (default Params)."""
    lines = []
    for e in err.errors():
        after = ""
        loc = prefix + (".".join(str(p) for p in e["loc"]) or "<top level>")
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        if (field := re.match(r"([A-Za-z_]\w*): ", msg)) and isinstance(got, dict) and field[1] in got:
            # a model validator's message about one of its fields (Strict._plain_numbers): that key
            loc = (f"{loc}." if e["loc"] else prefix) + field[1]
            msg, got = msg[field.end():], got[field[1]]
        if e["type"] == "extra_forbidden":
            parent = _node_model(model or Params, tuple(e["loc"][:-1]))
            valid = list(parent.model_fields) if parent is not None else []
            hint = did_you_mean(e["loc"][-1], valid)
            msg = f"unknown key; {hint}valid keys: {', '.join(valid)}" if valid else "unknown key"
        elif e["type"] == "literal_error":
            choices = re.findall(r"'([^']*)'", msg.removeprefix("Input should be "))
            after = did_you_mean(got, choices).strip() if isinstance(got, str) else ""
        shown = (e["type"] == "extra_forbidden" or isinstance(got, dict) or repr(got) in msg or f"got {got}" in msg
                 or (isinstance(got, bool) and str(got).lower() in msg))
        suffix = "" if shown else f" (got {got!r})"
        lines.append(f"  {loc}: {msg}{suffix}" + (f"; {after}" if after else ""))
    return f"{source}: invalid params:\n" + "\n".join(lines)


def validate(raw: Any, source: str = "params") -> Params:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_errors(err, source)) from None
    problems = check_nas(params)
    if problems:
        raise ConfigError(f"{source}: invalid params:\n" + "\n".join(f"  {p}" for p in problems))
    for family, res in params.resources:
        if res.cpus_per_task is not None and res.cpus_per_task < params.threads:
            raise ConfigError(f"{source}: invalid params:\n  resources.{family}.cpus_per_task: "
                              f"{res.cpus_per_task} CPUs is fewer than threads ({params.threads}), "
                              "the torch threads every job runs (null = threads)")
    return params


def yaml_error(path: str | Path, exc: yaml.YAMLError) -> str:
    """A YAML syntax error as ``path:line:column: not valid YAML: problem`` (PyYAML's own text
    names ``"<unicode string>"``, not the file)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    what = ": ".join(x for x in (getattr(exc, "context", None), getattr(exc, "problem", None)) if x) or str(exc)
    return f"{where}: not valid YAML (line {mark.line + 1}): {what}" if mark is not None else \
        f"{where}: not valid YAML: {what}"


#: the most aliases (``*name``) a params document may use: each can repeat a whole subtree, so a
#: few nested ones expand without bound ("billion laughs")
MAX_ALIASES = 20


class _ParamsLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing duplicate keys (YAML keeps the last silently) and documents that
    use more than :data:`MAX_ALIASES` aliases."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_ALIASES:
                event = self.peek_event()
                raise yaml.constructor.ConstructorError(
                    None, None, f"more than {MAX_ALIASES} aliases (a document that expands without bound?)",
                    event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) or key is None:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {seen[key].line + 1})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str):
    """A YAML document as doracle reads params and space files (:class:`_ParamsLoader`)."""
    return yaml.load(text, Loader=_ParamsLoader)  # noqa: S506 (a SafeLoader subclass)


def read_raw(path: str | Path, what: str = "params file") -> dict:
    """A params file's YAML (or another YAML file: ``what``) as a mapping (not validated); clear
    errors for a missing file, bad YAML (file and line), an empty file or a non-mapping."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: {what} not found")
    try:
        raw = load_yaml(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error(p, exc)) from None
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply to be a {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the {what} ({type(exc).__name__}: {exc})") from None
    if raw is None or raw == {}:
        hint = (" A params file holds at least the keys it changes (a partial file is completed from its game's "
                "default file); `doracle check-params --params params.yaml --resolved OUT` writes a complete one"
                if what == "params file" else "")
        raise ConfigError(f"{p}: the {what} is empty (no keys).{hint}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def load(path: str | Path = DEFAULT_PARAMS) -> Params:
    """A complete params file, validated on its own (what every job reads). Partial files and
    overrides are resolved first (:func:`resolve`)."""
    return validate(read_raw(path), str(path))


# ---------------------------------------------------------------- overrides and partial files
def merge(base: dict, over: dict) -> dict:
    """``over`` merged into a copy of ``base``: mappings merge key by key (recursively), any other
    value (lists and null included) replaces. Snakemake's own rule for --configfile / --config."""

    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def dotted_tree(overrides: dict[str, Any]) -> dict:
    """``{"do.iterations": 3, "seed": 1}`` -> ``{"do": {"iterations": 3}, "seed": 1}`` (values that
    are mappings stay mappings, to be merged)."""
    out: dict = {}
    for key, value in overrides.items():
        parts = str(key).split(".")
        if not all(parts):
            raise ConfigError(f"override {key!r}: not a dotted params key (e.g. do.iterations)")
        node = out
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {key!r}: {p!r} is given a value and a sub-key at once")
            node = nxt
        node[parts[-1]] = merge(node[parts[-1]], value) if isinstance(node.get(parts[-1]), dict) \
            and isinstance(value, dict) else value
    return out


def set_key(raw: dict, key: str, value: Any) -> dict:
    """A copy of ``raw`` with the dotted ``key`` set to ``value``."""
    return merge(raw, dotted_tree({key: value}))


def default_experiments(root: str | Path = ".") -> list[str]:
    """The experiments a plain ``snakemake -c2`` (and ``doracle dvc-yaml``) runs: ``params.yaml``
    and every ``params-<name>.yaml`` beside it (this repository: params-gan.yaml), one complete
    params file per experiment. ``--configfile X`` (``dvc-yaml --params X``) runs X alone."""
    root = Path(root)
    return [DEFAULT_PARAMS, *sorted(str(p.relative_to(root)) for p in root.glob("params-*.yaml"))]


def base_of(raw: dict, root: str | Path = ".") -> str | None:
    """The default params file that completes a partial one: the first of
    :func:`default_experiments` playing the same game (no ``game`` key: ``at``), else params.yaml;
    None when there is none."""
    root = Path(root)
    files = [f for f in default_experiments(root) if (root / f).is_file()]
    game = raw.get("game", "at")
    for f in files:
        try:
            if read_raw(root / f).get("game", "at") == game:
                return f
        except ConfigError:
            continue
    return DEFAULT_PARAMS if DEFAULT_PARAMS in files else None


def missing_keys(path: str | Path, raw: dict, root: str | Path = ".") -> tuple[str | None, list[str]]:
    """(the default file that completes ``path`` (:func:`base_of`), the top-level keys of it that
    ``raw``, ``path``'s params, lacks): no keys for a complete file, or when there is no default
    file, or ``path`` is it."""
    base = base_of(raw, root)
    if base is None or Path(root, base).resolve() == Path(path).resolve():
        return base, []
    return base, [k for k in read_raw(Path(root, base)) if k not in raw]


#: the top-level sections only one game's files have, as each game's module declares them (the
#: others are in every complete file)
GAME_ONLY_SECTIONS = {"at": at.SECTIONS, "gan": gan.SECTIONS}


def complete_keys(game: str) -> list[str]:
    """The top-level keys of a complete params file of ``game`` (those of its default file:
    tests/test_reliability.py keeps the two equal)."""
    other = {k for g, keys in GAME_ONLY_SECTIONS.items() if g != game for k in keys}
    return [k for k in Params.model_fields if k not in other]


def load_complete(path: str | Path, root: str | Path = ".") -> Params:
    """A params file a job reads: complete (every section of its game, :func:`complete_keys`, as
    the default files have; else every top-level key of its default file, :func:`missing_keys`),
    validated. A file with every section reads no other file: the job's one params input is its
    whole params. A partial file is refused, naming the keys it lacks: a job called by hand would otherwise fill them with the schema's defaults,
    not the default file's (the workflow completes partial files itself and gives its jobs
    results/<exp>/params.yaml, DVC and sweeps complete files)."""
    raw = read_raw(path)
    game = raw.get("game", "at")
    schema_keys = complete_keys(game if game in GAME_ONLY_SECTIONS else "at")
    if all(k in raw for k in schema_keys):  # every section of its game: no default file to read
        return validate(raw, str(path))
    base, missing = missing_keys(path, raw, root)
    if base is None:
        missing = [k for k in schema_keys if k not in raw]
    if missing:
        how = (f"(completed from {base}, as the workflow completes it)" if base else
               "in a folder holding the default params files (params.yaml, params-gan.yaml)")
        raise ConfigError(f"{path} is a partial params file (it has no {', '.join(missing)}): a job reads a complete "
                          f"one. Write it with `doracle check-params --params {path} --resolved complete.yaml` "
                          f"{how} and pass that")
    return validate(raw, str(path))


def resolve(path: str | Path, overrides: dict | None = None, root: str | Path = ".") -> tuple[dict, str | None]:
    """A params file as the workflow reads it: (the complete raw params, the default file it was
    completed from or None).

    A *complete* file has every top-level key of its game's default file (:func:`base_of`) and is
    taken as it stands: what it leaves out of a map (``evaluation.attacks.arc``) is gone. A
    *partial* file (say ``training: {epochs: 3}``, or an empty one) is merged over that default file
    key by key (:func:`merge`), as Snakemake merges a ``--configfile``. ``overrides`` (dotted keys or
    nested mappings, ``--config``'s) are merged last. Not validated: :func:`validate` the result."""
    raw = read_raw(path)
    completed_from = None
    base, missing = missing_keys(path, raw, root)
    if missing:
        raw, completed_from = merge(read_raw(Path(root, base)), raw), base
    if overrides:
        raw = merge(raw, dotted_tree(overrides))
    return raw, completed_from


def load_resolved(path: str | Path, overrides: dict | None = None, given: str = "",
                  root: str | Path = ".") -> tuple[Params, dict, str | None, str]:
    """:func:`resolve` then :func:`validate`: (params, the complete raw params, the default file a
    partial one was completed from or None, the sources as errors and headers name them: ``base +
    path [+ --config given]``). The workflow, ``check-params`` and sweeps read params files so."""
    raw, base = resolve(path, overrides, root)
    source = " + ".join(x for x in (base, str(path), f"--config {given}" if given else "") if x)
    return validate(raw, source), raw, base, source
