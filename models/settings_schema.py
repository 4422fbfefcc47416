"""Settings fields that carry their own type, allowed values and doc.

One dataclass field declared with :func:`setting` is the whole description of a knob:
the API validates it (:func:`validate`), a chain's ``<property>`` text is parsed into it
(:func:`parse`), and ``--help`` and ``docs/cli-help.txt`` print it (:func:`describe`).
A field with ``word`` takes that word (``auto``, ``none``, ``header``) for ``None``
(``words`` maps several): this module is the one place where that mapping happens.
Torch-free, so a chain is checked before any model is imported.
"""

import re
from dataclasses import MISSING, field, fields
from typing import Dict, Iterable, List, Optional

from models.errors import SettingsError

TRUE = ("true", "1", "yes", "on")
FALSE = ("false", "0", "no", "off")


def setting(default, doc: str, *, kind=None, choices: Optional[Iterable[str]] = None, minimum=None,
            maximum=None, positive: bool = False, word: Optional[str] = None, words: Optional[dict] = None,
            pattern: Optional[str] = None, pattern_text: Optional[str] = None, chain: bool = True):
    """A dataclass field with its schema.

    Args:
        default: the default value (``None`` only together with ``word``).
        doc: one line for ``--help``.
        kind: ``int``, ``float``, ``bool`` or ``str``; taken from ``default`` when not given.
        choices: the allowed values of a ``str`` setting.
        minimum, maximum: the smallest and largest allowed numbers. ``positive``: the number must be > 0.
        word: the property text that means ``None`` (e.g. ``auto``); ``words``: ``{text: value}`` for
            several (the values are allowed besides the kind's).
        pattern: a regular expression the whole ``str`` value must match; ``pattern_text``: how to say it.
        chain: whether a chain may set it as a ``gadgets.dps_recon`` property.
    """
    kind = kind or type(default)
    words = dict(words or {})
    if word is not None:
        words[word] = None
    if default is None and None not in words.values():
        raise TypeError("a setting whose default is None needs the word that means None")
    meta = {"doc": doc, "kind": kind, "choices": tuple(choices) if choices else None, "minimum": minimum,
            "maximum": maximum, "positive": positive, "words": words, "pattern": pattern,
            "pattern_text": pattern_text or pattern, "chain": chain}
    return field(default=default, metadata={"schema": meta})


def schema_fields(cls, chain_only: bool = False) -> List:
    """The fields of ``cls`` declared with :func:`setting` (those a chain may set, with ``chain_only``)."""
    out = [f for f in fields(cls) if "schema" in f.metadata]
    return [f for f in out if f.metadata["schema"]["chain"]] if chain_only else out


def check(name: str, value, meta: dict):
    """Raise :class:`SettingsError` naming ``name`` unless ``value`` is allowed."""
    meant = list(meta["words"].values())
    if value is None:
        if None in meant:
            return
        raise SettingsError(f"{name} must be set")
    if isinstance(value, str) and value in meant:
        return
    kind = meta["kind"]
    if kind is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{name}: expected true/false, got {value!r}")
        return
    if kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
            raise SettingsError(f"{name}: expected {kind.__name__}, got {value!r}")
        if meta["minimum"] is not None and value < meta["minimum"]:
            raise SettingsError(f"{name}: must be >= {meta['minimum']}, got {value!r}")
        if meta["maximum"] is not None and value > meta["maximum"]:
            raise SettingsError(f"{name}: must be <= {meta['maximum']}, got {value!r}")
        if meta["positive"] and not value > 0:
            raise SettingsError(f"{name}: must be > 0{_or_word(meta)}, got {value!r}")
        return
    if not isinstance(value, str) or not value:
        raise SettingsError(f"{name}: expected a non-empty string, got {value!r}")
    if meta["choices"] and value not in meta["choices"]:
        raise SettingsError(f"{name}: {value!r} is not one of {list(meta['choices'])}")
    if meta["pattern"] and not re.fullmatch(meta["pattern"], value):
        raise SettingsError(f"{name}: {value!r} is not {meta['pattern_text']}")


def _or_word(meta) -> str:
    return "".join(f" or {w}" for w in meta["words"])


def validate(instance):
    """Check every schema field of a dataclass instance (call from ``__post_init__``)."""
    for f in schema_fields(type(instance)):
        check(f.name, getattr(instance, f.name), f.metadata["schema"])


def parse(name: str, text: str, meta: dict):
    """A property's text -> the typed value (``word`` -> ``None``); :class:`SettingsError` names ``name``."""
    text = text.strip()
    kind = meta["kind"]
    if text.lower() in meta["words"]:
        return meta["words"][text.lower()]
    if kind is bool:
        if text.lower() in TRUE:
            return True
        if text.lower() in FALSE:
            return False
        raise SettingsError(f"{name}: expected true/false, got {text!r}")
    if kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            raise SettingsError(f"{name}: expected {kind.__name__}{_or_word(meta)}, got {text!r}") from None
    else:
        value = text
    check(name, value, meta)
    return value


def parse_properties(cls, props: Dict[str, str], chain_only: bool = True) -> dict:
    """``{name: text}`` -> ``{name: value}`` for the schema fields of ``cls`` named in ``props``; names that
    are not fields are left to the caller. An empty text means the default's word (``auto`` ...) where the
    default is one, else it is an error: an empty ``contrast`` is a mistake, not a request for FLAIR."""
    out = {}
    for f in schema_fields(cls, chain_only):
        if f.name not in props:
            continue
        if props[f.name].strip() == "":
            if f.default is not None:
                raise SettingsError(f"{f.name}: empty value (the default is {default_text(f)})")
            out[f.name] = None
        else:
            out[f.name] = parse(f.name, props[f.name], f.metadata["schema"])
    return out


def default_text(f) -> str:
    """A field's default as a chain would write it."""
    meta = f.metadata["schema"]
    value = f.default if f.default is not MISSING else f.default_factory()
    for word, meant in meta["words"].items():
        if value is meant:
            return word
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def describe(cls, chain_only: bool = True) -> List[str]:
    """One line per schema field: name, default, allowed values, doc."""
    lines = []
    for f in schema_fields(cls, chain_only):
        meta = f.metadata["schema"]
        if meta["choices"]:
            allowed = " | ".join(meta["choices"])
        elif meta["pattern"]:
            allowed = meta["pattern_text"]
        elif meta["kind"] is bool:
            allowed = "true | false"
        else:
            allowed = meta["kind"].__name__
            if meta["minimum"] is not None:
                allowed += f" >= {meta['minimum']}"
            elif meta["positive"]:
                allowed += " > 0"
            if meta["maximum"] is not None:
                allowed += f" <= {meta['maximum']}"
            allowed += "".join(f" | {w}" for w in meta["words"])
        lines.append(f"{f.name} = {default_text(f)}  ({allowed}): {meta['doc']}")
    return lines
