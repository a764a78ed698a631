"""Command-line overrides checked before Hydra runs: every mistake a user can type becomes one line naming the fix.

Hydra's own messages are right about *what* failed but often wrong about the fix: for a misspelled key
(``trainer.max_step=50``) it suggests appending it with ``+``, which then fails deep inside the Trainer with a
traceback. Here the same composition is tried first and a failure is explained with what the config actually
has: the closest known key or group option ("did you mean"), the other options of a group that do have the key
(``data.path`` needs ``data=text_files``), the type a value must have, and how to quote a value the override
grammar cannot read.

``check_overrides`` is the one entry point (``cli.precheck_overrides`` calls it for every command). It raises
``OverrideError`` whose message is the one line to print.
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from scratchllm.errors import ConfigError


class OverrideError(ConfigError):
    """A command-line override that cannot work; the message names the fix."""


def _close(word: str, candidates: list[str]) -> str | None:
    found = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return found[0] if found else None


def _group_options(conf: Path, group: str) -> list[str]:
    folder = conf / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _groups(conf: Path) -> list[str]:
    return sorted(p.name for p in conf.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _options_with_key(conf: Path, group: str, subkey: str) -> list[str]:
    """The options of ``group`` whose yaml sets ``subkey`` (e.g. which ``data=`` options take ``path``)."""
    found = []
    for option in _group_options(conf, group):
        try:
            node = OmegaConf.load(conf / group / f"{option}.yaml")
        except Exception:  # noqa: BLE001 - a yaml we cannot read simply does not count
            continue
        if _has_key(node, subkey):
            found.append(option)
    return found


def _has_key(node: Any, dotted: str) -> bool:
    """Whether ``dotted`` names a key of ``node``, without resolving anything (``path: ???`` counts)."""
    for part in dotted.split("."):
        if not isinstance(node, DictConfig) or part not in list(node.keys()):
            return False
        node = node._get_node(part)
    return True


def one_line(message: str) -> str:
    """Hydra's multi-line composition message as one line: options listed after a ``…:`` line are comma-joined,
    the config search path and the HYDRA_FULL_ERROR hint are dropped."""
    text = message.split("Config search path")[0]
    parts: list[str] = []
    listing = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("Set the environment variable HYDRA_FULL_ERROR"):
            continue
        if listing and raw.startswith(("\t", "  ")):
            parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line
            continue
        listing = line.endswith(":")
        parts.append(line)
    return " ".join(parts)


def _lexer_hint(arg: str) -> str:
    key, _, value = arg.partition("=")
    if not value:
        return f"cannot read the override {arg!r}: write it as key=value"
    # the shell must pass the quotes through to Hydra: single quotes around the whole, unless the value has one
    quoted = f"'{key}=\"{value}\"'" if "'" not in value else f'"{key}=\\"{value}\\""'
    return (f"cannot read the override {arg!r}: quote the value, e.g. {quoted} (spaces, commas, "
            "accents and other non-ASCII characters, quotes and brackets need quotes)")


class _Checker:
    def __init__(self, conf: Path, config_name: str, overrides: list[Any]) -> None:
        self.conf = conf
        self.config_name = config_name
        self.overrides = overrides

    def compose(self, lines: list[str]) -> DictConfig:
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(str(self.conf), version_base="1.3"):
            return compose(self.config_name, overrides=lines, return_hydra_config=True)

    def base(self, without: str | None = None) -> DictConfig | None:
        """The config with the group choices typed (``model=micro``) but no field changes: the defaults the
        user's fields replace. ``None`` when even that does not compose."""
        groups = _groups(self.conf)
        lines = [o.input_line for o in self.overrides
                 if o.key_or_group in groups and o.key_or_group != without and not o.is_delete()]
        try:
            return self.compose(lines)
        except Exception:  # noqa: BLE001
            try:
                return self.compose([])
            except Exception:  # noqa: BLE001
                return None

    # --- failures of composition ------------------------------------------------------------------------
    def explain_unknown_key(self, key: str, value: str) -> str:
        parent_key, _, leaf = key.rpartition(".")
        base = self.base(without=key)
        parent = base if not parent_key else (OmegaConf.select(base, parent_key) if base is not None else None)
        group = key.split(".")[0] if parent_key else None
        choices = {}
        if base is not None and "hydra" in base:
            choices = dict(base.hydra.runtime.choices)
        if group and group in _groups(self.conf):
            choice = choices.get(group)
            subkey = key[len(group) + 1:]
            others = [o for o in _options_with_key(self.conf, group, subkey) if o != choice]
            if others:
                return _belongs_elsewhere(key, value, group, choice, others)
        candidates: list[str] = []
        if isinstance(parent, DictConfig):
            candidates = [str(k) for k in parent.keys() if str(k) != "hydra"]
        if not parent_key:
            candidates += [g for g in choices if not g.startswith("hydra")]
        guess = _close(leaf, candidates)
        where = f"{parent_key}" if parent_key else self.config_name
        if guess is not None:
            fixed = f"{parent_key}.{guess}" if parent_key else guess
            return f"{key} is not a setting of {where}; did you mean {fixed}={value}?"
        listed = ", ".join(sorted(set(candidates))[:30])
        return f"{key} is not a setting of {where}; its settings are: {listed}"

    def explain_missing_option(self, message: str) -> str | None:
        match = re.search(r"Could not find '([^']+)'", message)
        if not match:
            return None
        plugin = re.fullmatch(r"hydra/(sweeper|launcher)/(\w+)", match.group(1))
        if plugin:  # a recipe asked for a Hydra plugin that is not installed (hparams_search=optuna)
            kind, name = plugin.groups()
            extra = f" (scratchllm's extra: .venv/bin/pip install -e \".[{name}]\")" if name == "optuna" else ""
            return (f"the Hydra {kind} plugin '{name}' is not installed: pip install hydra-{name}-{kind}{extra}")
        # the group is the key the user typed: 'tokenizer/tokenizers/my-32k' is a path given as a tokenizer
        # option, not an option of a group 'tokenizer/tokenizers'
        missing = match.group(1)
        typed = [o for o in self.overrides if missing.startswith(o.key_or_group + "/")
                 and (self.conf / o.key_or_group).is_dir()]
        if not typed:
            return None
        group = max(typed, key=lambda o: len(o.key_or_group)).key_or_group
        option = missing[len(group) + 1:]
        options = _group_options(self.conf, group)
        line = f"{group}={option} is not an option of {group}/ ({', '.join(options)})"
        readers = _options_with_key(self.conf, group, "path")
        if readers and (os.path.exists(option) or "/" in option or Path(option).suffix):
            return (f"{line}; a file or folder goes in {group}.path, with the option that reads it: e.g. "
                    f"{group}={readers[0]} {group}.path={option}")
        guess = _close(option, options)
        return line + (f"; did you mean {group}={guess}?" if guess else "")

    def explain_group_typo(self, message: str) -> str | None:
        match = re.search(r"Could not override '([^'.]+)'\. No match in the defaults list", message)
        if not match:
            return None
        name = match.group(1)
        guess = _close(name, _groups(self.conf))
        return f"{name} is not a config group here" + (f"; did you mean {guess}=…?" if guess else "")

    # --- values that compose but cannot work -------------------------------------------------------------
    def check_types(self, composed: DictConfig) -> None:
        base = None
        for o in self.overrides:
            if o.is_delete() or o.is_add() or o.key_or_group in _groups(self.conf) or o.is_sweep_override():
                continue
            base = base if base is not None else self.base()
            if base is None:
                return
            old = OmegaConf.select(base, o.key_or_group, default=None, throw_on_resolution_failure=False)
            new = OmegaConf.select(composed, o.key_or_group, default=None, throw_on_resolution_failure=False)
            if old is None or new is None:
                continue
            kind = old
            if o.key_or_group in _AUTO_KEYS:
                if new == "auto":
                    continue
                kind = _AUTO_KEYS[o.key_or_group]  # the default may be `auto`: check against the kind it stands for
            elif old == "auto":  # an interpolation of an auto setting (scheduler.total_steps: ${trainer.max_steps})
                source = _interpolated_key(base, o.key_or_group)
                kind = _AUTO_KEYS.get(source, old)
                old = f"${{{source}}}" if source else old
            expected = _expected_type(kind, new)
            if expected:
                or_auto = " or auto" if o.key_or_group in _AUTO_KEYS else ""
                raise OverrideError(f"{o.key_or_group}={new}: expected {expected}{or_auto} (default {old})")

    def check_missing(self, composed: DictConfig) -> None:
        """A required value left at ``???`` (``data=text_files`` without ``data.path``) fails later with
        OmegaConf's traceback; name it now."""
        missing = sorted(k for k in _missing_keys(composed) if not k.startswith("hydra."))
        if missing:
            key = missing[0]
            group = key.split(".")[0]
            choice = composed.hydra.runtime.choices.get(group) if "." in key else None
            which = f" (needed by {group}={choice})" if choice else ""
            raise OverrideError(f"{key} must be set{which}: add {key}=…")

    def check_added_arguments(self, composed: DictConfig) -> None:
        """``+trainer.max_step=50`` composes, then fails inside ``Trainer(...)``: check an added key against the
        signature of the ``_target_`` it will be passed to."""
        for o in self.overrides:
            if not (o.is_add() or o.is_force_add()) or "." not in o.key_or_group:
                continue
            parent_key, _, leaf = o.key_or_group.rpartition(".")
            parent = OmegaConf.select(composed, parent_key, default=None, throw_on_resolution_failure=False)
            if not isinstance(parent, DictConfig) or "_target_" not in parent:
                continue
            params = _target_params(str(parent._target_))
            if params is None or leaf in params:
                continue
            value = o.get_value_element_as_str()
            group = o.key_or_group.split(".")[0]
            others = _options_with_key(self.conf, group, o.key_or_group[len(group) + 1:])
            if others:
                raise OverrideError(_belongs_elsewhere(o.key_or_group, value, group,
                                                       composed.hydra.runtime.choices.get(group), others))
            guess = _close(leaf, [p for p in params if not p.startswith("_")])
            hint = f"; did you mean {parent_key}.{guess}={value}?" if guess else ""
            raise OverrideError(f"+{o.key_or_group}: {parent._target_} takes no argument {leaf!r}{hint}")


def _missing_keys(node: DictConfig, prefix: str = "") -> list[str]:
    """Keys set to ``???``, found without resolving interpolations (OmegaConf.missing_keys resolves them and
    fails on ``${data.path}`` when ``data.path`` is the missing one)."""
    found = []
    for key in node.keys():
        child = node._get_node(key)
        name = f"{prefix}{key}"
        if isinstance(child, DictConfig):
            found += _missing_keys(child, name + ".")
        elif child is not None and child._is_missing() and not child._is_interpolation():
            found.append(name)
    return found


def _belongs_elsewhere(key: str, value: str, group: str, choice: Any, others: list[str]) -> str:
    options = ", ".join(f"{group}={o}" for o in others)
    return f"{key} is not a setting of {group}={choice}; choose an option that reads it ({options}) with {key}={value}"


# settings that also take ``auto`` (resolved at start by training/auto.py), with a value of the kind they stand for
_AUTO_KEYS = {"compile": False, "trainer.max_steps": 1500}


def _interpolated_key(conf: DictConfig, key: str) -> str | None:
    """``trainer.max_steps`` when ``key``'s raw value is ``${trainer.max_steps}``; else None."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(conf, parent_key, default=None) if parent_key else conf
    if not isinstance(parent, DictConfig):
        return None
    raw = OmegaConf.to_container(parent, resolve=False).get(leaf)
    match = re.fullmatch(r"\$\{([\w.]+)\}", raw) if isinstance(raw, str) else None
    return match.group(1) if match else None


def _expected_type(old: Any, new: Any) -> str | None:
    if isinstance(old, bool):
        return None if isinstance(new, bool) else "true or false"
    if isinstance(old, int):
        return None if isinstance(new, int) and not isinstance(new, bool) else "an integer"
    if isinstance(old, float):
        return None if isinstance(new, (int, float)) and not isinstance(new, bool) else "a number"
    return None


def _target_params(target: str) -> set[str] | None:
    """Parameter names of the callable at ``target``; ``None`` when it takes ``**kwargs`` or cannot be found."""
    from hydra._internal.utils import _locate

    try:
        obj = _locate(target)
        sig = inspect.signature(obj)
    except Exception:  # noqa: BLE001 - unknown targets are Hydra's to report
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return set(sig.parameters)


def _first_of_sweeps(overrides: list[Any]) -> list[list[str]]:
    """The override lists to check for a multirun: each sweep's every value, the others at their first."""
    def line(o: Any, value: str) -> str:
        prefix = "++" if o.is_force_add() else "+" if o.is_add() else ""
        return f"{prefix}{o.key_or_group}={value}"

    values: list[list[str]] = []
    for o in overrides:
        if o.is_sweep_override():
            try:
                values.append([line(o, v) for v in o.sweep_string_iterator()])
            except Exception:  # noqa: BLE001 - interval()/tag sweeps are the sweeper's to expand
                values.append([])
        else:
            values.append([o.input_line])
    base = [v[0] for v in values if v]
    lists = [base]
    for i, options in enumerate(values):
        for option in options[1:]:
            changed = [v[0] for v in values[:i] if v] + [option] + [v[0] for v in values[i + 1:] if v]
            lists.append(changed)
    return lists


def check_overrides(config_dir: str, config_name: str, argv: list[str]) -> None:
    """Compose ``config_name`` with ``argv`` as Hydra will; raise ``OverrideError`` (one line, the fix) when it
    cannot work. ``-m``/``--multirun`` is understood (every value of a sweep is checked); other Hydra flags
    (``--cfg``, ``--help``, ``-c``) are left to Hydra."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    args = [a for a in argv if a not in ("-m", "--multirun")]
    if any(a.startswith("-") for a in args):
        return
    parser = OverridesParser.create()
    parsed = []
    for arg in args:
        try:
            parsed += parser.parse_overrides([arg])
        except OverrideParseException:
            raise OverrideError(_lexer_hint(arg)) from None
    conf = Path(config_dir)
    for o in parsed:
        if "." not in o.key_or_group and o.key_or_group in _groups(conf) and not o.is_sweep_override() \
                and o.value() is None and not o.is_delete():
            raise OverrideError(f"{o.input_line}: a config group takes an option name; leave the override out "
                                f"to keep the default (or remove it with ~{o.key_or_group})")
    for lines in _first_of_sweeps(parsed):
        checker = _Checker(conf, config_name, parser.parse_overrides(lines))
        try:
            composed = checker.compose(lines)
        except (HydraException, OmegaConfBaseException) as exc:
            message = str(exc)
            match = re.search(r"Could not override '([^']+)'\.\s+To append to your config use \+\S+?=(.*)", message)
            if match:
                key = match.group(1)
                value = next((o.get_value_element_as_str() for o in checker.overrides if o.key_or_group == key),
                             match.group(2).strip())
                raise OverrideError(checker.explain_unknown_key(key, value)) from None
            explained = checker.explain_missing_option(message) or checker.explain_group_typo(message)
            if explained:
                raise OverrideError(explained) from None
            raise OverrideError(one_line(message)) from None
        checker.check_missing(composed)
        checker.check_types(composed)
        checker.check_added_arguments(composed)
