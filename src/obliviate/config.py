"""Settings: every command's configuration as dataclasses — the single source of each setting's default, its
help text, its command-line flag and its validation.

* :class:`FormatConfig`: the prompt (protocol, style, system prompt, max_length, the chat template's date);
* :class:`TrainConfig`: the training loop (fine-tuning and unlearning);
* :class:`RobustConfig`: the robustness wrappers of unlearning (SAM, smoothing, gradient penalty, averaging);
* :class:`EpochEvalConfig`: unlearning's per-epoch evaluation and best-epoch selection;
* :class:`UnlearnConfig`, :class:`FinetuneConfig`, :class:`EvalConfig`: one command's whole configuration,
  made of the above (a *section* is a nested dataclass: its own table in run.json, or, ``flatten``, its
  fields at the level above it, as FormatConfig's ``style`` / ``max_length`` are).

A field made with :func:`setting` and a ``help`` is a command-line flag (``--field-name`` unless ``flag=``);
:func:`add_config_args` derives the flags (type, help, the section's argument group) and
:func:`given_settings` reads back the flags that were given, as a nested dict in the run.json layout.
Every command builds its config the same way: the dataclass defaults, then ``--config FILE`` (a run.json's
``config``, or TOML / YAML with the same keys: :func:`load_config_file`), then the flags given
(:func:`merge`, then ``Config.from_dict``). ``to_dict`` writes the layout back, so
``obliviate unlearn --config runs/npo/run.json --out runs/npo-again`` repeats a run.

Validation is each config's ``validate()``. Its errors are :class:`ConfigError`: they name the field
(``train.lr -1.0: must be a finite number > 0``), and the command line rewrites the field as its flag
(``--lr -1.0: ...``) from the parser it derived.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import difflib
import json
import math
import tomllib
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Callable, ClassVar

from .errors import ObliviateError
from .runtime.files import read_text_file

#: the chat-template date every protocol preset passes (open-unlearning's; never today's date), as
#: data/formatting.py and protocols.py state it
DATE_STRING = "10 Apr 2025"


# ------------------------------------------------------------------------------------------- errors
class ConfigError(ObliviateError):
    """An invalid setting, named by its config field(s): ``fields`` are dotted paths in the run.json layout
    (``train.lr``, ``max_length``, ``eval.limit``); ``template`` is the message with ``{0}``, ``{1}``, ... where
    each field's name goes (no placeholder: the first field's name starts the message). The library prints
    the field names; the command line prints each field's flag instead (:meth:`render`)."""

    def __init__(self, fields: str | tuple[str, ...] | list[str], template: str):
        self.fields = (fields,) if isinstance(fields, str) else tuple(fields)
        self.template = template if "{0}" in template else "{0} " + template
        super().__init__(self.render())

    def render(self, name_of: Callable[[str], str] | None = None) -> str:
        """The message with each field written by ``name_of`` (default: the dotted field path). Placeholders
        are replaced textually, so a value holding braces is printed as it is."""
        text = self.template
        for i, f in enumerate(self.fields):
            text = text.replace("{%d}" % i, name_of(f) if name_of else f)
        return text

    def prefixed(self, prefix: str) -> "ConfigError":
        """The same error with every field under ``prefix`` (a section's name: ``lr`` -> ``train.lr``)."""
        return ConfigError(tuple(prefix + f for f in self.fields), self.template)


@contextlib.contextmanager
def section_errors(prefix: str):
    """Inside the block, a :class:`ConfigError` of a section's ``validate()`` names its fields under ``prefix``."""
    try:
        yield
    except ConfigError as e:
        raise e.prefixed(prefix) from None


def _bad(name: str, value, need: str):
    raise ConfigError(name, f"{value}: must be {need}")


def _check_count(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _bad(name, value, f"an integer >= {minimum}")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def unused(given: list[tuple[str, Any, Any]], where: str, switches: tuple[str, ...] = ()) -> None:
    """Refuse settings that are set but would be ignored: ``given`` holds ``(field, value, default)``; those
    whose value is not the default are named in a :class:`ConfigError` ``"{fields} only apply {where}"``,
    where ``{s0}``, ``{s1}``, ... in ``where`` name the ``switches`` fields."""
    bad = [f for f, v, d in given if v != d]
    if not bad:
        return
    names = ", ".join("{%d}" % i for i in range(len(bad)))
    for k in range(len(switches)):
        where = where.replace("{s%d}" % k, "{%d}" % (len(bad) + k))
    raise ConfigError((*bad, *switches), f"{names} only {'applies' if len(bad) == 1 else 'apply'} {where}")


# ------------------------------------------------------------------------------------------- fields
def setting(default=MISSING, *, help: str | None = None, flag: str | None = None, legacy=MISSING,
            invert: bool = False, type: Callable | None = None, metavar: str | None = None,
            default_factory=MISSING, choices=None, positional: str | None = None, append: bool = False):
    """A config field; with ``help`` it is also a command-line flag (``flag``, default ``--field-name``).
    ``invert``: a boolean whose flag turns it off (``--quiet`` sets ``progress`` False); ``type``: how the
    flag's text is read (default: from the field's annotation); ``legacy``: the value run folders written
    before the field existed implicitly used (a ``--resume`` of such a folder compares against it).
    ``positional``: a positional argument instead of a flag, with this ``nargs`` (``"?"``, ``"*"``: a
    ``--config`` file may give it); ``append``: a repeatable flag whose values make a list (``--min A --min B``)."""
    md = {"help": help, "flag": flag, "invert": invert, "type": type, "metavar": metavar, "choices": choices,
          "positional": positional, "append": append}
    if legacy is not MISSING:
        md["legacy"] = legacy
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=md)
    return field(default=default, metadata=md)


def section(cls, *, flatten: bool = False, partial: bool = False, title: str | None = None):
    """A nested config ``cls``: run.json's table of that name (``flatten``: its fields at this level instead).
    ``partial``: the field may hold a dict of the settings given (or None), completed later from defaults
    that depend on other settings (unlearning's training settings: the method's paper values)."""
    md = {"section": cls, "flatten": flatten, "partial": partial, "title": title}
    if partial:
        return field(default=None, metadata=md)
    return field(default_factory=cls, metadata=md)


def _section(f):
    return f.metadata.get("section")


def flag_of(cls, name: str) -> str:
    """The command-line flag of config field ``name`` (a dotted path through sections, or a plain field)."""
    for path, f in _walk(cls):
        if path == name or (f.name == name and "." not in name):
            return f.metadata.get("flag") or "--" + f.name.replace("_", "-")
    raise KeyError(name)


def _walk(cls, prefix: str = ""):
    """``(path, field)`` of every setting of ``cls``, through its sections, in declaration order."""
    for f in fields(cls):
        sub = _section(f)
        if sub is not None:
            yield from _walk(sub, prefix if f.metadata.get("flatten") else f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, f


def _arg_type(f) -> Callable:
    t = f.metadata.get("type")
    if t is not None:
        return t
    ann = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
    for name, typ in (("int", int), ("float", float)):
        if ann.split("|")[0].strip() == name:
            return typ
    return str


def comma_list(text: str) -> tuple[str, ...]:
    """argparse type of a comma-separated list (``paraq,jailbreak``)."""
    return tuple(v.strip() for v in text.split(",") if v.strip())


def int_list(text: str) -> tuple[int, ...]:
    """argparse type of a comma-separated list of integers (``8,4``)."""
    try:
        return tuple(int(v) for v in comma_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers") from None


def add_config_args(parser, cls, names=None, *, skip=(), groups: bool = True) -> None:
    """Add the flags of ``cls``'s settings that have a ``help`` (``names``: only these paths, in that order;
    ``skip``: leave these out). Each flag's destination is its field's path in the run.json layout and its
    default is "not given" (the attribute is absent: :func:`given_settings`), so that a ``--config`` file and
    the defaults that depend on other settings (unlearning's method) apply under it. A section with a
    ``title`` gets its own argument group in ``--help``."""
    settings = [(p, f) for p, f in _walk(cls) if f.metadata.get("help") and p not in skip]
    if names is not None:
        by_path = dict(settings)
        settings = [(p, by_path[p]) for p in names]
    titles = {}
    if groups:
        for f in fields(cls):
            if _section(f) is not None and f.metadata.get("title"):
                prefix = "" if f.metadata.get("flatten") else f.name + "."
                for p, _ in _walk(_section(f), prefix):
                    titles[p] = f.metadata["title"]
    made: dict[str, Any] = {}
    flags = dict(parser.get_default("config_flags") or {})
    for path, f in settings:
        target = parser
        if path in titles:
            if titles[path] not in made:
                made[titles[path]] = parser.add_argument_group(titles[path])
            target = made[titles[path]]
        if f.metadata.get("positional"):  # named by its metavar (GRID) in --help and in errors
            metavar = f.metadata.get("metavar") or f.name.upper()
            target.add_argument(path, nargs=f.metadata["positional"], default=argparse.SUPPRESS, type=_arg_type(f),
                                metavar=metavar, help=f.metadata["help"])
            flags[path] = metavar
            continue
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        flags[path] = flag
        kw: dict[str, Any] = dict(dest=path, default=argparse.SUPPRESS, help=f.metadata["help"])
        if f.metadata.get("append"):
            kw.update(action="append", type=_arg_type(f), metavar=f.metadata.get("metavar") or f.name.upper())
        elif f.metadata.get("invert"):
            kw.update(action="store_const", const=False)
            # its counterpart (--progress), added first so that --quiet stays the flag errors and --help name:
            # turns back on what a --config file recorded as off
            target.add_argument("--" + f.name.replace("_", "-"), dest=path, action="store_const", const=True,
                                default=argparse.SUPPRESS, help=f"undo {flag} (e.g. one a --config file recorded)")
        elif isinstance(f.default, bool):
            kw.update(action=argparse.BooleanOptionalAction)
        else:
            kw.update(type=_arg_type(f), metavar=f.name.upper())
            for k in ("metavar", "choices"):
                if f.metadata.get(k):
                    kw[k] = f.metadata[k]
        target.add_argument(flag, **kw)
    paths = list(parser.get_default("config_paths") or []) + [p for p, _ in settings]
    parser.set_defaults(config_paths=paths, config_flags=flags)  # config_flags: field path -> flag, for errors


def given_settings(args) -> dict:
    """The settings given as flags (those :func:`add_config_args` added), as a nested dict in the run.json
    layout (``{"train": {"lr": 0.001}, "style": "plain"}``)."""
    out: dict = {}
    for path in getattr(args, "config_paths", None) or []:
        if hasattr(args, path):
            node = out
            *head, last = path.split(".")
            for k in head:
                node = node.setdefault(k, {})
            node[last] = getattr(args, path)
    return out


def flag_names(parser) -> dict[str, str]:
    """Field path -> flag, for every option of ``parser`` (what :class:`ConfigError` messages are rewritten with);
    a positional argument of a config is named by its metavar (``GRID``)."""
    out = {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}
    return {**(parser.get_default("config_flags") or {}), **out}


def merge(base: dict, over: dict) -> dict:
    """``base`` with ``over``'s settings on top; tables are merged key by key."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# ------------------------------------------------------------------------------------------- dict layout
def _plain(v):
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    if is_dataclass(v) and not isinstance(v, type):
        as_dict = getattr(v, "as_dict", None)  # a Protocol
        return as_dict() if as_dict else to_dict(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def to_dict(cfg) -> dict:
    """``cfg`` in the run.json layout: each section a table (a flattened one's fields at this level)."""
    out: dict = {}
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if _section(f) is not None and f.metadata.get("flatten"):
            out.update(to_dict(v))
        elif _section(f) is not None and is_dataclass(v):
            out[f.name] = to_dict(v)
        else:
            out[f.name] = _plain(v)
    return out


def _unknown(data: dict, known, where: str) -> None:
    bad = sorted(set(data) - set(known))
    if bad:
        hints = []
        for k in bad:
            close = difflib.get_close_matches(k, sorted(known), n=1)
            hints.append(f"{where}{k}" + (f" (did you mean {where}{close[0]}?)" if close else ""))
        raise ObliviateError(f"unknown setting(s) {', '.join(hints)}")


def from_dict(cls, data: dict, where: str = ""):
    """``cls`` from a dict in the run.json layout (what :func:`to_dict` writes, a ``--config`` file, the flags
    given): missing settings take their defaults, unknown ones are refused with a did-you-mean, the keys
    ``cls.recorded`` lists (counts of what a run read) are skipped."""
    if not isinstance(data, dict):
        raise ObliviateError(f"{where.rstrip('.') or 'the configuration'}: not a table of settings")
    kw, known = {}, set(getattr(cls, "recorded", ()))
    for f in fields(cls):
        sub = _section(f)
        if sub is not None and f.metadata.get("flatten"):
            names = {g.name for g in fields(sub)} | set(getattr(sub, "recorded", ()))
            kw[f.name] = from_dict(sub, {k: data[k] for k in names if k in data}, where)
            known |= names
            continue
        known.add(f.name)
        if f.name not in data:
            continue
        v = data[f.name]
        if sub is not None and v is not None:
            if not isinstance(v, dict):
                raise ObliviateError(f"{where}{f.name}: not a table of settings")
            if f.metadata.get("partial"):
                _unknown(v, {g.name for g in fields(sub)}, f"{where}{f.name}.")
                v = dict(v)
            else:
                v = from_dict(sub, v, f"{where}{f.name}.")
        kw[f.name] = v
    _unknown(data, known, where)
    return cls(**kw)


def legacy_values(cls) -> dict[str, Any]:
    """Flattened run.json path -> the value runs written before that setting existed used (``legacy=``)."""
    return {p: f.metadata["legacy"] for p, f in _walk(cls) if "legacy" in f.metadata}


class Settings:
    """What every configuration dataclass shares: the run.json layout both ways."""

    recorded: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict):
        return from_dict(cls, data)


# ------------------------------------------------------------------------------------------- files
def load_config_file(path: str | Path, command: str) -> dict:
    """The configuration in ``path`` for ``command``: a run.json's ``config`` (whose ``command`` must match),
    or a TOML / YAML file holding the same keys (``.toml``, ``.yaml`` / ``.yml``; ``.json`` without a
    ``command`` is a bare configuration)."""
    return _load_config_file(path, command)[0]


def _load_config_file(path: str | Path, command: str) -> tuple[dict, bool]:
    """:func:`load_config_file`'s configuration, and whether ``path`` was a run.json obliviate wrote."""
    path = Path(path)
    text = read_text_file(path, "--config ")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ObliviateError(f"--config {path}: reading YAML needs PyYAML (pip install pyyaml); or "
                                     "write the file as TOML or JSON") from None
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ObliviateError(f"--config {path}: not valid {suffix.lstrip('.').upper() or 'JSON'} ({e})") from None
    except Exception as e:  # yaml.YAMLError, without importing yaml where it is not installed
        if type(e).__module__.startswith("yaml"):
            raise ObliviateError(f"--config {path}: not valid YAML ({e})") from None
        raise
    if not isinstance(data, dict):
        raise ObliviateError(f"--config {path}: holds a {type(data).__name__}, not a table of settings")
    if "config" in data and "command" in data:  # a run.json
        if data["command"] != command:
            raise ObliviateError(f"--config {path}: a run.json of `obliviate {data['command']}`, not `{command}`")
        data = data["config"]
        if not isinstance(data, dict):
            raise ObliviateError(f"--config {path}: its config is not a table of settings")
        return data, True
    return data, False


def read_config(cls, path: str | Path, command: str, over: dict | None = None):
    """``cls`` from the file ``path`` (:func:`load_config_file`) with the settings ``over`` on top; errors name
    the file."""
    data, run_json = _load_config_file(path, command)
    upgrade = getattr(cls, "upgrade_record", None)
    if upgrade is not None:  # a record written before it held its config (selection.json's rule)
        data = upgrade(data)
    if run_json or any(k in data for k in getattr(cls, "recorded", ())):  # a run's config obliviate wrote:
        for p, v in legacy_values(cls).items():          # settings added since then take the values it had
            node, (*head, last) = data, p.split(".")
            for k in head:
                node = node.setdefault(k, {}) if isinstance(node.get(k, {}), dict) else {}
            node.setdefault(last, v)
    try:
        return cls.from_dict(merge(data, over or {}))
    except ConfigError:
        raise
    except ObliviateError as e:
        raise ObliviateError(f"--config {path}: {e}") from None


class _Convenience:
    """``Config.of(**keywords)``: a config from keyword arguments, the Python API's convenience. A keyword is a
    field, a field of a flattened section (``style=``), a dotted path (``eval.limit``) or one of the class's
    ``aliases`` (the older keyword names); a section given as an object is kept and the keywords of its
    fields are applied on top."""

    aliases: ClassVar[dict[str, str]] = {}

    @classmethod
    def of(cls, **kw):
        kw = {cls.aliases.get(k, k): v for k, v in kw.items()}
        flat = {g.name: f.name for f in fields(cls) if _section(f) is not None and f.metadata.get("flatten")
                for g in fields(_section(f))}
        names = {f.name: f for f in fields(cls)}
        top: dict = {}
        subs: dict[str, dict] = {}
        for k, v in kw.items():
            if "." in k:
                s, _, n = k.partition(".")
                subs.setdefault(s, {})[n] = v
            elif k not in names and k not in flat:
                raise TypeError(f"{cls.__name__} has no setting {k!r}")
            elif v is None:
                continue  # a keyword left at None (robust=None, protocol=None): the setting's default
            elif k in names:
                top[k] = v
            else:
                subs.setdefault(flat[k], {})[k] = v
        for s, vals in subs.items():
            base = top.get(s)
            if base is None and names[s].metadata.get("partial"):  # completed later (unlearning: the method's)
                top[s] = dict(vals)
                continue
            if base is None:
                base = _section(names[s])()
            elif isinstance(base, dict):
                top[s] = {**base, **vals}
                continue
            top[s] = replace(base, **vals)
        return cls(**top)


def config_of_call(cls, config, args: tuple, settings: dict, names: tuple[str, ...], out=None, *,
                   call: str, required: int = 1, first: str = "model"):
    """The config and the output folder of a ``run_*`` call: ``run_*(config, out)`` with a ``cls`` object, or the
    keyword convenience ``run_*(model, *names..., **settings)``: ``config`` is then the model (the setting
    ``first``: ``run_sweep(grid, out)``) and ``args`` the next positional settings in the order ``names``
    (``"out"`` among them is the output folder), at least ``required`` of them given (positionally or as
    keywords). ``config`` None: the setting ``first`` is one of the keywords (its name or an alias:
    ``run_sweep(grid_path=..., out=...)``, ``select(sweep_dir=...)``), as the older keyword forms were called."""
    signature = f"{call}({first}, {', '.join(names)}, ...)"
    if isinstance(config, cls):
        if len(args) > 1 or settings:
            raise TypeError(f"{call}(config, out): give the settings in the config")
        return config, (args[0] if args else out)
    aliases = getattr(cls, "aliases", {})
    as_first = [k for k in settings if aliases.get(k, k) == first]  # run_sweep(grid_path=...), select(sweep=...)
    if as_first:
        if config is not None or len(as_first) > 1:
            how = ["positionally"] * (config is not None) + as_first
            raise TypeError(f"{signature}: {first} given twice ({', '.join(how)})")
        settings = dict(settings)
        config = settings.pop(as_first[0])
    given_kw = {aliases.get(k, k) for k in settings} | set(settings) | ({"out"} if out is not None else set())
    missing = [n for n in names[len(args):required] if n not in given_kw and aliases.get(n, n) not in given_kw]
    if missing:
        raise TypeError(f"{signature}: give {', '.join(missing)}")
    if len(args) > len(names):
        raise TypeError(f"{signature}: too many positional arguments")
    given = dict(zip(names, args))
    out = given.pop("out", out)
    return cls.of(**{first: config}, **given, **settings), out


# ------------------------------------------------------------------------------------------- the configs
@dataclass
class FormatConfig(Settings):
    """How a (question, answer) pair becomes tokens: a protocol preset (``obliviate ls protocols``) and the
    single settings that override it. None: the protocol's value. :meth:`resolved` fills every field."""
    #: None: the benchmark's default (protocols.default_protocol: open-unlearning for TOFU-format data, muse for
    #: MUSE); a run.json written before protocols existed ran under obliviate's (legacy)
    protocol: Any = setting(None, legacy="obliviate", help=(
        "prompt and scoring protocol (obliviate ls protocols): open-unlearning (default for TOFU-format data), "
        "muse (MUSE's default), tofu, obliviate; --style / --system-prompt / --max-length override single fields"))
    style: str | None = setting(None, help="prompt style: chat, plain, llama2 (default: the protocol's; obliviate: chat)")
    system_prompt: str | None = setting(
        None, help="system prompt for the chat template (default: the protocol's; obliviate: the template's)")
    max_length: int | None = setting(
        None, help="tokens of one prompt + answer; longer answers are cut and counted (default: the protocol's, 512)")
    date_string: str | None = setting(None, legacy=DATE_STRING, help=(
        f"the chat template's date_string (default: the protocol's, {DATE_STRING}; never today's date)"))

    def validate(self) -> None:
        from .data.formatting import STYLES
        from .protocols import PRESETS

        if isinstance(self.protocol, str) and self.protocol not in PRESETS:
            raise ConfigError("protocol", f"{self.protocol!r}: unknown protocol; valid protocols: "
                                          f"{', '.join(sorted(PRESETS))}")
        if self.style is not None and self.style not in STYLES:
            raise ConfigError("style", f"{self.style!r}: unknown prompt style; valid styles: {', '.join(STYLES)}")
        if self.max_length is not None:
            _check_count("max_length", self.max_length, 2)  # room for a prompt token and an answer token
        style = self.style or self.base_protocol().style
        if style != "chat":  # only the chat template has a place for it
            unused([("system_prompt", self.system_prompt, None)],
                   f"with {{s0}} chat ({{s0}} {style} has no system turn)", ("style",))

    def base_protocol(self, benchmark: str = "tofu"):
        """The preset (or recorded protocol) before the single settings; None: ``benchmark``'s default."""
        from .protocols import Protocol, default_protocol, get_protocol, protocol_from_dict

        p = self.protocol
        if p is None:
            return get_protocol(default_protocol(benchmark))
        if isinstance(p, dict):
            return protocol_from_dict(p)
        return p if isinstance(p, Protocol) else get_protocol(p)

    def resolved_protocol(self, **overrides):
        """The protocol with this config's single settings (and ``overrides``) in place."""
        from .protocols import get_protocol

        return get_protocol(self.base_protocol(), style=self.style, system_prompt=self.system_prompt,
                            max_length=self.max_length, date_string=self.date_string, **overrides)

    def resolved(self, protocol_record: bool = False) -> "FormatConfig":
        """Every field filled from the protocol; ``protocol`` stays the preset's name (``protocol_record``: the
        whole resolved protocol, as eval records it)."""
        p = self.resolved_protocol()
        name = self.protocol if isinstance(self.protocol, str) else self.base_protocol().name
        return FormatConfig(protocol=p if protocol_record else name, style=p.style, system_prompt=p.system_prompt,
                            max_length=p.max_length, date_string=p.date_string)

    def recorded_for(self, items) -> "FormatConfig":
        """What a training run's record states for ``items``: QA pairs, :meth:`resolved`; plain texts (MUSE's
        corpus, cut into chunks of min(2048, max_length) tokens: ``data/text.py``), only ``max_length``, the one
        setting that applies to them, with protocol, style, system prompt and date None (they play no role; the
        record given back as a config makes the same chunks)."""
        from .data.text import is_text

        fmt = self.resolved()
        return FormatConfig(max_length=fmt.max_length) if is_text(items) else fmt

    def formatter(self, tokenizer, **overrides):
        """The :class:`obliviate.data.formatting.Formatter` of these settings."""
        from .data.formatting import Formatter

        return Formatter.from_protocol(tokenizer, self.resolved_protocol(), **overrides)


@dataclass
class TrainConfig(Settings):
    """The training loop's settings (fine-tuning and unlearning). Fields with a ``help`` are command-line flags
    (``--epochs``, ...): :func:`add_config_args` derives them, with these defaults."""
    epochs: int = setting(5, help="passes over the data")
    lr: float = setting(1e-5, help="peak learning rate (AdamW; linear warm-up, then linear decay)")
    batch_size: int = setting(8, help="items per optimiser step")
    grad_accum: int = setting(1, help="gradient accumulation steps")
    # fraction of optimiser steps (TOFU warms up for one epoch of five: 0.2)
    warmup_ratio: float = setting(0.1, help="warm-up as a fraction of optimiser steps")
    weight_decay: float = setting(0.01, help="AdamW weight decay")
    seed: int = setting(0, help="seed of the batch order, the retain draws and torch")
    max_grad_norm: float = 1.0
    lora: bool = setting(False, help="train LoRA adapters (merged into the saved model)")
    lora_r: int = setting(8, help="LoRA rank (default 8; with --lora)")
    lora_alpha: int = 16
    grad_checkpointing: bool = setting(
        False, help="recompute decoder layers in backward: far less activation memory, ~1/3 more compute")
    checkpoint_every_epoch: bool = True
    progress: bool = setting(True, flag="--quiet", invert=True, help="no progress bars")
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Refuse settings that would fail deep inside torch (or silently do something else), naming the field."""
        for name in ("epochs", "batch_size", "grad_accum", "lora_r"):
            _check_count(name, getattr(self, name))
        if not (_is_number(self.lr) and math.isfinite(self.lr) and self.lr > 0):
            _bad("lr", self.lr, "a finite number > 0")
        if not (_is_number(self.warmup_ratio) and 0 <= self.warmup_ratio <= 1):
            _bad("warmup_ratio", self.warmup_ratio, "between 0 and 1 (a fraction of the optimiser steps)")
        if not (_is_number(self.weight_decay) and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            _bad("weight_decay", self.weight_decay, "a finite number >= 0")
        if self.max_grad_norm is not None and not (_is_number(self.max_grad_norm) and math.isfinite(self.max_grad_norm)
                                                   and self.max_grad_norm >= 0):
            _bad("max_grad_norm", self.max_grad_norm, "a finite number >= 0 (0 or None: no clipping)")

    def check_unused(self) -> None:
        """A setting given without the switch it belongs to would be ignored: say so instead."""
        if not self.lora:
            unused([("lora_r", self.lora_r, TrainConfig.lora_r)], "with {s0}", ("lora",))


@dataclass
class RobustConfig(Settings):
    """The robustness wrappers of unlearning (Fan et al. 2025; :mod:`obliviate.robust`)."""
    sam_rho: float | None = setting(None, help="sharpness-aware forget gradient, radius R (paper 0.01)")
    smooth_n: int = setting(0, help="randomized smoothing with N Gaussian samples (paper 3); 0: off")
    smooth_sigma: float = setting(1e-4, help="randomized smoothing noise std (default 1e-4)")
    grad_penalty: float | None = setting(None, help="add LAMBDA * ||grad of the forget loss||")
    weight_avg: bool = setting(False, help="save a running average of the weights")
    avg_start: int = setting(100, help="first averaged optimiser step (default 100)")
    avg_every: int = setting(5, help="averaging interval in steps (default 5)")

    def validate(self) -> None:
        for name in ("sam_rho", "smooth_sigma", "grad_penalty"):
            v = getattr(self, name)
            if v is not None and not (_is_number(v) and math.isfinite(v)):
                _bad(name, v, "a finite number")
        chosen = [n for n, on in (("sam_rho", self.sam_rho is not None), ("smooth_n", self.smooth_n > 0),
                                  ("grad_penalty", self.grad_penalty is not None)) if on]
        if len(chosen) > 1:
            got = ", ".join("{%d}" % (3 + i) for i in range(len(chosen)))
            raise ConfigError(("sam_rho", "smooth_n", "grad_penalty", *chosen), f"choose one of {{0}}, {{1}}, {{2}} (got {got})")
        if self.sam_rho is not None and self.sam_rho <= 0:
            _bad("sam_rho", self.sam_rho, "> 0 (the paper uses 0.01)")
        _check_count("smooth_n", self.smooth_n, 0)
        if self.smooth_n and self.smooth_sigma <= 0:
            _bad("smooth_sigma", self.smooth_sigma, "> 0")
        if self.grad_penalty is not None and self.grad_penalty < 0:
            _bad("grad_penalty", self.grad_penalty, ">= 0")
        if self.weight_avg:
            _check_count("avg_start", self.avg_start)
            _check_count("avg_every", self.avg_every)

    def check_unused(self) -> None:
        if self.smooth_n == 0:
            unused([("smooth_sigma", self.smooth_sigma, RobustConfig.smooth_sigma)], "with {s0} N", ("smooth_n",))
        if not self.weight_avg:
            unused([("avg_start", self.avg_start, RobustConfig.avg_start),
                    ("avg_every", self.avg_every, RobustConfig.avg_every)], "with {s0}", ("weight_avg",))

    def active(self) -> list[str]:
        out = []
        if self.sam_rho is not None:
            out.append("sam")
        if self.smooth_n > 0:
            out.append("smoothing")
        if self.grad_penalty is not None:
            out.append("grad_penalty")
        if self.weight_avg:
            out.append("weight_avg")
        return out


@dataclass
class EpochEvalConfig(Settings):
    """Unlearning's TOFU evaluation at the start and after every epoch, and the choice of the best epoch."""
    every_epoch: bool = setting(False, flag="--eval-every-epoch",
                                help="evaluation at the start and after each epoch: TOFU's, or MUSE's on a "
                                     "MUSE-format --forget")
    data: str | None = setting(None, flag="--eval-data", help=(
        "synthetic or tofu; muse-news, muse-books or synthetic-news for MUSE (default: from --forget)"))
    split: str | None = setting(None, flag="--eval-split", help="forget01|forget05|forget10 (default: from --forget)")
    limit: int | None = setting(None, flag="--eval-limit", help=(
        "evaluate only the first N items of each set (forget, retain, holdout, real authors, world facts)"))
    retain_eval: str | None = setting(None, flag="--retain-eval",
                                      help="the retain model's eval folder/log (for forget quality)")
    select: str | None = setting(None, flag="--select", help=(
        "keep the best epoch by this summary key: forget_quality, model_utility, … (max:KEY / min:KEY)"))

    def validate(self) -> None:
        if self.limit is not None:
            _check_count("limit", self.limit)
        from .muse_eval import muse_corpus

        if self.data and ":" in self.data and muse_corpus(self.data) is None:  # MUSE's spec: muse_eval says what
            raise ConfigError(("data", "split"), f"{{0}} {self.data}: takes a TOFU-format family (synthetic or "
                                                 "tofu, loader options after '?'), not a data spec; the split goes "
                                                 "in {1}")

    def check_unused(self) -> None:
        if not (self.every_epoch or self.select):
            unused([(n, getattr(self, n), None) for n in ("retain_eval", "limit", "data", "split")],
                   "with {s0} or {s1}", ("every_epoch", "select"))


@dataclass
class UnlearnConfig(_Convenience, Settings):
    """``obliviate unlearn``'s whole configuration (what run.json's ``config`` holds, resolved)."""
    model: Any = setting(None, help="built-in name, local folder or hub id (the fine-tuned target); required")
    method: str | None = setting(None, help="unlearning method (obliviate ls methods); required")
    #: the method's options (``beta=0.2``: the command line's trailing KEY=VALUE words); resolved: every option
    method_config: dict = setting(default_factory=dict)
    forget: Any = setting(None, help="forget set spec, e.g. synthetic:forget10, tofu:forget10; required")
    retain: Any = setting(None, help="retain set spec, e.g. synthetic:retain90 (methods with a retain term)")
    data_dir: str | None = setting(None, help="local copy of the data sets (tofu, muse-*)")
    format: FormatConfig = section(FormatConfig, flatten=True, title="prompt format")
    #: None or the settings given: the method's paper settings fill the rest (``default_train_config``)
    train: Any = section(TrainConfig, partial=True,
                         title="training (defaults: the method's paper settings; TOFU: batch 32, 1 warm-up epoch)")
    robust: RobustConfig = section(RobustConfig, title="robustness (Fan et al. 2025)")
    #: ``cached`` sequence log-likelihoods computed once, or ``live``: a frozen copy scores them each step
    reference: str = "cached"
    idk_file: str | None = setting(None, help=(
        "refusal answers for idk_nll / idk_dpo (e.g. TOFU's idontknow.jsonl, or a .csv with a text column)"))
    eval: EpochEvalConfig = section(EpochEvalConfig, title="evaluation")

    recorded: ClassVar[tuple[str, ...]] = ("n_forget", "n_retain")
    aliases: ClassVar[dict[str, str]] = {
        "options": "method_config", "cfg": "train", "eval_every_epoch": "eval.every_epoch",
        "retain_eval": "eval.retain_eval", "select": "eval.select", "eval_data": "eval.data",
        "eval_split": "eval.split", "eval_limit": "eval.limit"}

    def __post_init__(self):
        if isinstance(self.method_config, (list, tuple)):  # ["beta=0.2", ...]
            from .methods.base import parse_options

            self.method_config = parse_options(list(self.method_config))
        self.method_config = dict(self.method_config or {})

    def train_config(self) -> TrainConfig:
        """The training settings: those given, the method's paper settings for the rest."""
        if isinstance(self.train, TrainConfig):
            return self.train
        from .unlearn import default_train_config

        return default_train_config(self.method, **(self.train or {}))

    def validate(self) -> None:
        """Every check of the settings alone (the data and the model come later); errors name the field."""
        from .methods.base import get_method

        for name in ("model", "method", "forget"):
            if getattr(self, name) is None:
                raise ConfigError(name, "is required")
        cls = get_method(self.method)
        self.format.validate()
        cfg = self.train_config()
        with section_errors("train."):
            cfg.validate()
            cfg.check_unused()
        with section_errors("robust."):
            self.robust.validate()
            self.robust.check_unused()
        with section_errors("eval."):
            self.eval.validate()
            self.eval.check_unused()
        if self.reference not in ("cached", "live"):
            raise ConfigError("reference", f"{self.reference!r}: valid: cached, live")
        if cfg.lora and not cls.supports_lora:
            raise ConfigError("train.lora", f"{{0}}: method {self.method} trains chosen parameters directly; LoRA "
                                            "is not supported with it")
        if cfg.lora and self.robust.weight_avg:
            raise ConfigError(("robust.weight_avg", "train.lora"), (
                "{0} with {1} would average each adapter's A and B factors separately, and the merged mean(B) "
                "mean(A) is not the mean of the weights B A; train all weights (drop {1}) or drop {0}"))
        if cfg.grad_checkpointing and self.robust.grad_penalty is not None:
            raise ConfigError(("robust.grad_penalty", "train.grad_checkpointing"), (
                "{0} differentiates the gradient itself (double backward), which {1}'s recomputation does not "
                "support; drop one of the two"))
        if self.idk_file and not cls.uses_idk:
            from .registry import METHODS

            idk = ", ".join(sorted(m.name for m in METHODS.entries() if getattr(m.obj, "uses_idk", False)))
            raise ConfigError("idk_file", f"{{0}} is used by {idk} only, not by {self.method}")


@dataclass
class FinetuneConfig(_Convenience, Settings):
    """``obliviate finetune``'s whole configuration."""
    model: Any = setting(None, help="built-in name, local folder or hub id; required")
    data: Any = setting(None, help="data spec, e.g. tofu:full, synthetic:retain90, file.jsonl; required")
    data_dir: str | None = setting(None, help="local copy of the data sets (tofu, muse-*)")
    format: FormatConfig = section(FormatConfig, flatten=True, title="prompt format")
    train: TrainConfig = section(TrainConfig, title="training")

    recorded: ClassVar[tuple[str, ...]] = ("n_items",)
    aliases: ClassVar[dict[str, str]] = {"cfg": "train"}

    def validate(self) -> None:
        for name in ("model", "data"):
            if getattr(self, name) is None:
                raise ConfigError(name, "is required")
        self.format.validate()
        with section_errors("train."):
            self.train.validate()
            self.train.check_unused()


@dataclass
class RelearnConfig(_Convenience, Settings):
    """``obliviate relearn``'s whole configuration: the relearning attack (a few constant-lr AdamW steps, no
    warm-up, no weight decay) and the prompt format of QA items (the same protocol presets as training and
    evaluation, so a model is attacked on the prompts it was trained and is scored on)."""
    model: Any = setting(None, help="the unlearned (or retrain) model: folder, built-in or hub id; required")
    data: Any = setting(None, help="data spec, e.g. synthetic-news:raw/forget, tofu:forget10; required")
    data_dir: str | None = setting(None, help="local copy of the data sets (tofu, muse-*)")
    steps: int | None = setting(None, help="optimiser steps; required")
    lr: float = setting(1e-5, help="learning rate (AdamW, constant, no weight decay)")
    batch_size: int = setting(4, help="items per optimiser step")
    #: None: every item; a run records the count it read, so its run.json repeats the same attack
    n_items: int | None = setting(None, help="relearn on the first N items only")
    seed: int = setting(0, help="seed of the batch order and torch")
    format: FormatConfig = section(FormatConfig, flatten=True, title="prompt format (QA items; text items: chunks "
                                                                    "of min(2048, --max-length) tokens)")

    def validate(self) -> None:
        for name in ("model", "data", "steps"):
            if getattr(self, name) is None:
                raise ConfigError(name, "is required")
        _check_count("steps", self.steps)
        _check_count("batch_size", self.batch_size)
        if self.n_items is not None:
            _check_count("n_items", self.n_items)
        if not (_is_number(self.lr) and math.isfinite(self.lr) and self.lr > 0):
            _bad("lr", self.lr, "a finite number > 0")
        self.format.validate()


@dataclass
class ViewConfig(Settings):
    """The audit views' settings (what ``ctx.settings`` holds in every view of ``obliviate.audit``)."""
    seed: int = setting(0, help="seed of sampling, clue choice, relearning folds and bootstrap resamples")
    #: the forget answers are one sentence; TOFU's 200 new tokens only pay for run-on text
    max_new_tokens: int = setting(64, help="new tokens of a greedy or sampled answer (default 64)")
    batch_size: int = setting(32, help="greedy generation slots")
    n_samples: int = setting(16, help="best_of_n_leak: samples per question")
    temperature: float = setting(1.0, help="best_of_n_leak: sampling temperature")
    top_p: float = setting(1.0, help="best_of_n_leak: nucleus mass (1: the whole distribution)")
    sample_memory_gb: float = setting(2.0, help="best_of_n_leak: memory for the rows sampled together (keys/values of "
                                      "their tokens and prompts, logits); up to 640 rows, fewer where it does not hold them")
    n_clues: int = setting(3, help="chain_of_clues_leak: clue turns before the question")
    folds: int = setting(2, help="relearn_recovery: author folds (train on K-1, test on the held-out fold)")
    relearn_epochs: int = setting(3, help="relearn_recovery: fine-tuning epochs of the attack")
    relearn_lr: float = setting(1e-5, help="relearn_recovery: learning rate of the attack")
    relearn_batch_size: int = setting(8, help="relearn_recovery: items per optimiser step")
    quant_bits: tuple = setting((8, 4), type=int_list, metavar="BITS",
                                help="quantization_delta: bit widths to reload at, of 8 and 4 (default 8,4)")
    n_boot: int = setting(1000, help="bootstrap resamples of each 95 %% interval")
    probe_c: float = setting(1.0, help="masked_probe: inverse L2 strength of the logistic-regression probes")

    def validate(self) -> None:
        for name in ("max_new_tokens", "batch_size", "n_samples", "n_clues", "relearn_epochs",
                     "relearn_batch_size", "n_boot"):
            _check_count(name, getattr(self, name))
        _check_count("folds", self.folds, 2)  # a held-out fold and at least one to train on
        if not (_is_number(self.temperature) and math.isfinite(self.temperature) and self.temperature > 0):
            _bad("temperature", self.temperature, "a finite number > 0 (greedy answers are novel_recall_leak's)")
        if not (_is_number(self.top_p) and 0 < self.top_p <= 1):
            _bad("top_p", self.top_p, "in (0, 1]")
        for name in ("relearn_lr", "probe_c", "sample_memory_gb"):
            v = getattr(self, name)
            if not (_is_number(v) and math.isfinite(v) and v > 0):
                _bad(name, v, "a finite number > 0")
        bits = self.quant_bits
        if not (isinstance(bits, (list, tuple)) and bits and all(b in (4, 8) and not isinstance(b, bool) for b in bits)):
            _bad("quant_bits", ",".join(map(str, bits)) if isinstance(bits, (list, tuple)) else bits,
                 "a non-empty list of 8 and/or 4")


@dataclass
class AuditConfig(_Convenience, Settings):
    """``obliviate audit``'s whole configuration: the audited model and its controls, the data, the views and
    their settings, and the prompt protocol every model is prompted and scored under."""
    model: Any = setting(None, help="the audited (unlearned) model; required")
    full_model: Any = setting(None, help="the model before unlearning (trained on the forget set); required")
    retain_model: Any = setting(None, help="the model that never saw the forget set; required")
    base_model: Any = setting(None, help="the model never fine-tuned on the data set (base control)")
    forget: Any = setting(None, help="forget set spec, e.g. synthetic:forget10, tofu:forget10; required")
    retain: Any = setting(None, help=(
        "retain set spec (masked_probe trains on it; default: the retain split that goes with --forget)"))
    data_dir: str | None = setting(None, help="local copy of the data sets (tofu, muse-*)")
    views: tuple = setting((), type=comma_list, metavar="LIST", help="views to run (obliviate ls audits); default: all")
    limit: int | None = setting(None, help="first N forget items")
    reuse_eval: str | None = setting(None, help="an `obliviate eval` folder of --model: reuse its greedy answers")
    format: FormatConfig = section(FormatConfig, flatten=True, title="prompt format")
    settings: ViewConfig = section(ViewConfig, title="views")

    #: the older keyword forms of run_audit (``n_samples=16``) are the view settings
    aliases: ClassVar[dict[str, str]] = {}

    def validate(self) -> None:
        for name in ("model", "full_model", "retain_model", "forget"):
            if getattr(self, name) is None:
                raise ConfigError(name, "is required")
        if self.limit is not None:
            _check_count("limit", self.limit)
        self.format.validate()
        with section_errors("settings."):
            self.settings.validate()


AuditConfig.aliases = {f.name: f"settings.{f.name}" for f in fields(ViewConfig)}


BENCHMARKS = ("tofu", "muse-news", "muse-books")
VARIANTS = ("paraq", "jailbreak")


@dataclass
class EvalConfig(_Convenience, Settings):
    """``obliviate eval``'s configuration: TOFU on a TOFU-format family, or MUSE on one of its corpora."""
    model: Any = setting(None, help="built-in name, local folder or hub id")
    data: str = setting("tofu", help="TOFU-format family: tofu (default) or synthetic (loader options after '?')")
    split: str = setting("forget10", help="forget01, forget05 or forget10 (default)")
    data_dir: str | None = setting(None, help="local copy of the data sets (tofu, muse-*)")
    limit: int | None = setting(None, help="first N items of forget, retain and holdout")
    utility_limit: int | None = setting(None, help="first N items of real authors and world facts")
    retain_eval: str | None = setting(None, help="the retain model's eval folder (forget quality, privleak)")
    variants: tuple = setting((), type=comma_list, metavar="LIST", help="extra forget-set prompts: paraq,jailbreak")
    generation: bool = setting(True, flag="--no-generation", invert=True, help="skip greedy answers (no ROUGE)")
    gradnorm: bool = setting(True, flag="--no-gradnorm", invert=True,
                             help="skip the GradNorm MIA (one backward per item)")
    #: OpenUnlearning's utility is HM(model utility, fluency); without a classifier utility_score is the first alone
    fluency_classifier: str | None = setting(None, legacy=None, metavar="DIR_OR_ID", help=(
        "gibberish classifier for forget_fluency (mean 'clean' probability of the greedy forget answers), which "
        "enters utility_score: a local folder, or a hub id such as "
        "madhurjindal/autonlp-Gibberish-Detector-492513457 (transformers' cache)"))
    batch_size: int = setting(32, help="generation slots (KV buffer: slots x (prompt + 200 + 32) tokens x ~46 KB "
                                       "for SmolLM2)")
    max_new_tokens: int | None = setting(None, help="new tokens of a greedy answer (default: the protocol's, 200)")
    pad_mask: str | None = setting(None, choices=("correct", "eos"), help=(
        "teacher-forced attention mask: correct, or eos (open-unlearning's pad = EOS, bug compatibility; "
        "default: the protocol's)"))
    format: FormatConfig = section(FormatConfig, flatten=True, title="prompt format")
    benchmark: str = setting("tofu", choices=BENCHMARKS,
                             help="tofu (default) or MUSE on one of its corpora (ls benchmarks)")
    progress: bool = setting(True, flag="--quiet", invert=True, help="no progress bars")

    recorded: ClassVar[tuple[str, ...]] = ("verbmem_tokens", "knowmem_tokens", "privleak_max_tokens")

    def __post_init__(self):
        if isinstance(self.variants, str):
            self.variants = comma_list(self.variants)
        self.variants = tuple(self.variants or ())

    @property
    def is_tofu(self) -> bool:
        return self.benchmark == "tofu"

    def validate(self) -> None:
        if self.model is None:
            raise ConfigError("model", "is required")
        if self.benchmark not in BENCHMARKS:
            raise ConfigError("benchmark", f"{self.benchmark!r}: valid: {', '.join(BENCHMARKS)}")
        for name in ("limit", "utility_limit", "max_new_tokens"):
            if getattr(self, name) is not None:
                _check_count(name, getattr(self, name))
        _check_count("batch_size", self.batch_size)
        for v in self.variants:
            if v not in VARIANTS:
                raise ConfigError("variants", f"unknown {{0}} entry {v!r}; valid: {', '.join(VARIANTS)}")
        if self.pad_mask is not None and self.pad_mask not in ("correct", "eos"):
            raise ConfigError("pad_mask", f"{self.pad_mask!r}: valid: correct, eos")
        if self.fluency_classifier is not None:
            from .metaeval.fluency import classifier_kind

            try:
                classifier_kind(self.fluency_classifier)
            except ObliviateError as e:
                raise ConfigError("fluency_classifier", str(e).replace("fluency classifier", "{0}", 1)) from None
            if self.is_tofu and not self.generation:
                raise ConfigError(("fluency_classifier", "generation"),
                                  "{0} scores the greedy forget answers, which {1} skips")
        if not self.is_tofu:
            d = EvalConfig
            unused([(n, getattr(self, n), getattr(d, n)) for n in
                    ("data", "split", "utility_limit", "variants", "generation", "gradnorm", "max_new_tokens",
                     "pad_mask", "fluency_classifier")]
                   + [(n, getattr(self.format, n), None) for n in ("style", "system_prompt", "max_length", "date_string")],
                   f"to TOFU, not to {{s0}} {self.benchmark} (MUSE takes {{s1}}, {{s2}}, {{s3}}, {{s4}}, {{s5}}); "
                   "they would be ignored", ("benchmark", "data_dir", "limit", "retain_eval", "batch_size", "protocol"))
        elif ":" in self.data:
            raise self._data_hint()
        self.format.validate()

    def _data_hint(self) -> ConfigError:
        """``--data FAMILY:CONFIG``: what to write instead, when it can be told."""
        family, _, config = self.data.partition(":")
        config, _, query = config.partition("?")
        msg = (f"{{0}} {self.data}: {{0}} takes a TOFU-format family (tofu or synthetic, loader options after "
               "'?'), not a data spec")
        split = config.replace("_perturbed", "")
        if family.startswith("muse"):
            msg += f"; MUSE is {{2}} {family} (with {{3}})"
        elif family in ("tofu", "synthetic") and split in ("forget01", "forget05", "forget10"):
            fam = f"'{family}?{query}'" if query else family
            msg += f"; the split goes in {{1}}: {{0}} {fam} {{1}} {split}"
        else:
            msg += "; the split goes in {1} (forget01, forget05 or forget10)"
        return ConfigError(("data", "split", "benchmark", "data_dir"), msg)

    def resolved(self) -> "EvalConfig":
        """Every setting filled: TOFU's from the protocol (recorded whole), MUSE's protocol recorded whole."""
        if not self.is_tofu:
            return replace(self, format=replace(self.format, protocol=self.format.base_protocol(self.benchmark)))
        p = self.format.resolved_protocol(max_new_tokens=self.max_new_tokens, pad_mask=self.pad_mask)
        fmt = FormatConfig(protocol=p, style=p.style, system_prompt=p.system_prompt, max_length=p.max_length,
                           date_string=p.date_string)
        return replace(self, format=fmt, max_new_tokens=p.max_new_tokens, pad_mask=p.pad_mask)

    def protocol(self):
        """The resolved :class:`obliviate.protocols.Protocol`."""
        if not self.is_tofu:
            return self.format.base_protocol(self.benchmark)
        return self.format.resolved_protocol(max_new_tokens=self.max_new_tokens, pad_mask=self.pad_mask)


# ------------------------------------------------------------------------------------------- sweeps, reports
BACKENDS = ("local", "ray")


def _check_backend(value) -> None:
    if value not in BACKENDS:
        raise ConfigError("backend", f"{value!r}: valid: {', '.join(BACKENDS)}")


def _as_tuple(v) -> tuple:
    """A list setting as a tuple (run.json and YAML give lists; one string is one entry)."""
    if v is None:
        return ()
    return (v,) if isinstance(v, (str, Path)) else tuple(v)


@dataclass
class SweepConfig(_Convenience, Settings):
    """``obliviate sweep``'s options (DIR/sweep.json records them): the grid file (YAML, the spec of every point;
    it stays the spec: this config only says which file and how to run it) and how its points run."""
    grid: Any = setting(None, positional="?", metavar="GRID", help=(
        "the grid file (YAML: model, forget, retain, retain_model, fixed, grid); required"))
    workers: int = setting(1, help="points run at once (local: processes; ray: tasks)")
    backend: str = setting("local", choices=BACKENDS,
                           help="local processes, or Ray tasks (RAY_ADDRESS names an existing cluster)")
    retry_failed: bool = setting(False, help="run the points that failed again")
    gpu_mem: str = setting("80GB", help="GPU memory of the --dry-run plan (default 80GB)")
    progress: bool = setting(True, flag="--quiet", invert=True, help="no progress lines")

    aliases: ClassVar[dict[str, str]] = {"grid_path": "grid"}

    def validate(self) -> None:
        if self.grid is None:
            raise ConfigError("grid", "is required")
        _check_count("workers", self.workers)
        _check_backend(self.backend)
        from .sweep.plan import parse_mem

        try:
            parse_mem(self.gpu_mem)
        except ObliviateError:
            raise ConfigError("gpu_mem", f"{self.gpu_mem!r}: write e.g. 80GB, 141GiB or 24") from None


@dataclass
class SelectConfig(_Convenience, Settings):
    """``obliviate select``'s rule (selection.json records it): what ranks a sweep's points, blind."""
    sweep: Any = setting(None, positional="?", metavar="SWEEP",
                         help="the sweep folder (obliviate sweep ... --out DIR); required")
    by: str = setting("forget_quality", help="ranking key (default forget_quality; max:KEY / min:KEY)")
    tie_break: str | None = setting(None, help="second key for equal --by values (e.g. model_utility)")
    min: tuple = setting((), append=True, metavar="KEY=V", help=(
        "drop points below a bound first: KEY=0.5 or KEY=0.9*full (model before unlearning) / KEY=1*retain; "
        "repeatable"))
    max: tuple = setting((), append=True, metavar="KEY=V", help="drop points above a bound")
    epoch: str = setting("last", choices=("last", "best"), help=(
        "rank each point by its final epoch (default) or its best epoch under the same rule"))

    #: the keywords of sweep.select.select (mins=, maxs=)
    aliases: ClassVar[dict[str, str]] = {"mins": "min", "maxs": "max", "sweep_dir": "sweep"}

    def __post_init__(self):
        self.min, self.max = _as_tuple(self.min), _as_tuple(self.max)

    @staticmethod
    def upgrade_record(data: dict) -> dict:
        """A selection.json written before it recorded ``command`` and ``config`` (its ``rule`` and ``sweep``):
        the same rule as settings; any other file unchanged."""
        rule = data.get("rule")
        if "config" in data or not isinstance(rule, dict) or "grid_hash" not in data:
            return data
        return {"sweep": data.get("sweep"),
                **{k: rule[k] for k in ("by", "tie_break", "min", "max", "epoch") if k in rule}}

    def validate(self) -> None:
        from .metrics.keys import metric_direction
        from .sweep.select import parse_bound

        if self.sweep is None:
            raise ConfigError("sweep", "is required")
        for name in ("by", "tie_break"):
            v = getattr(self, name)
            if v is None and name == "tie_break":
                continue
            if not isinstance(v, str):
                _bad(name, v, "a summary key")
            try:
                metric_direction(v)
            except ObliviateError as e:  # "'x': unknown direction; ..."
                raise ConfigError(name, str(e)) from None
        for name in ("min", "max"):
            for text in getattr(self, name):
                try:
                    parse_bound(str(text), name)
                except ObliviateError:
                    raise ConfigError(name, f"{str(text)!r}: write KEY=NUMBER or KEY=FACTOR*full|retain (e.g. "
                                            "model_utility=0.9*full)") from None
        if self.epoch not in ("last", "best"):
            raise ConfigError("epoch", f"{self.epoch!r}: valid: last, best")


@dataclass
class ReportConfig(_Convenience, Settings):
    """``obliviate report``'s inputs and title (the output file is the call's ``out``)."""
    inputs: tuple = setting((), positional="*", metavar="INPUTS", help=(
        "sweep folders, unlearn / eval / meta-eval run folders or audit.json files; at least one (or an --audit)"))
    audit: tuple = setting((), append=True, metavar="AUDIT", help="an audit folder or audit.json (repeatable)")
    title: str = setting("obliviate report", help="the page's title (default: obliviate report)")

    #: the keyword of report.html.write_report (audits=)
    aliases: ClassVar[dict[str, str]] = {"audits": "audit"}

    def __post_init__(self):
        self.inputs, self.audit = _as_tuple(self.inputs), _as_tuple(self.audit)

    def validate(self) -> None:
        if not self.inputs and not self.audit:  # an audit-only report (--audit alone) is fine
            raise ConfigError("inputs", "is required: a sweep folder, a run folder or an audit.json (or an --audit)")
        if not isinstance(self.title, str):
            _bad("title", self.title, "a string")


@dataclass
class MetaEvalConfig(_Convenience, Settings):
    """``obliviate meta-eval``'s options (run.json's ``config``, beside ``pools``: the pools file as it was read,
    recorded). The pools file (YAML) stays the spec of the control models; this config says which file and how
    to score and run it."""
    pools_file: Any = setting(None, positional="?", metavar="POOLS", help=(
        "pools file (YAML): model, data, grid, positives, negatives, attacks; required"))
    keys: tuple | None = setting(None, type=comma_list, metavar="LIST", help=(
        "comma-separated summary keys to meta-evaluate (default: every key with a knowledge orientation that "
        "the evaluations produced)"))
    n_boot: int = setting(1000, help="bootstrap replicates over models (default 1000)")
    seed: int = setting(0, help="bootstrap seed (default 0)")
    workers: int = setting(1, help=(
        "models built at once (default 1): each worker fine-tunes, evaluates and attacks whole models, with "
        "cores // workers torch threads"))
    backend: str = setting("local", choices=BACKENDS, help=(
        "local worker processes, or one Ray task per model (RAY_ADDRESS names a cluster; the --out folder must "
        "be on a file system every node sees)"))
    progress: bool = setting(True, flag="--quiet", invert=True, help="no progress bars")

    #: run.json's expanded pools file (what a --resume compares); a --config run.json reads the file again
    recorded: ClassVar[tuple[str, ...]] = ("pools",)
    aliases: ClassVar[dict[str, str]] = {"pools": "pools_file"}

    def __post_init__(self):
        if isinstance(self.keys, str):
            self.keys = comma_list(self.keys)
        if self.keys is not None:
            self.keys = tuple(self.keys) or None  # `--keys ''`: every key, as no --keys

    def validate(self) -> None:
        from .metaeval.scores import KNOWLEDGE

        if self.pools_file is None:
            raise ConfigError("pools_file", "is required")
        for k in self.keys or ():
            if k not in KNOWLEDGE:
                raise ConfigError("keys", f"{{0}}: {k!r} has no knowledge orientation; valid: {', '.join(KNOWLEDGE)}")
        _check_count("n_boot", self.n_boot)
        _check_count("workers", self.workers)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            _bad("seed", self.seed, "an integer")
        _check_backend(self.backend)
