"""Decoding YAML manifests quickly, with PyYAML's meaning.

PyYAML's ``CSafeLoader`` scans and parses in C (libyaml) but builds every node and value in
Python: 10,000 Ingresses with their Services and EndpointSlices (9 MB) take 5-10 s. ``yaml_rs``
(a Rust YAML library, saphyr's parser) builds the same Python values about 13x faster. It reads
YAML 1.2 while PyYAML (like the Kubernetes tools' YAML 1.1 heritage) reads YAML 1.1, and the two
disagree on a few plain scalars (``yes``/``on``/``off``, ``0755``, ``1e3``, ``1:20``, dates), merge
keys, tags and some malformed input. So the fast path is taken only for text where they cannot
disagree; anything else (such a scalar, a tag, an anchor or merge key, a tab, a directive, a
control character, and every error) is read by PyYAML, so that the result and every error message
are exactly PyYAML's.

>>> load_all("a: 1\\n---\\nb: [x, 'yes']\\n")
[{'a': 1}, {'b': ['x', 'yes']}]
>>> load_all("enabled: yes\\n")  # YAML 1.1's boolean, as PyYAML reads it
[{'enabled': True}]
"""

from __future__ import annotations

import re

import re2
import yaml

try:  # an optional dependency: without it every file goes through PyYAML
    import yaml_rs
except ImportError:  # pragma: no cover - exercised by the fallback test with FAST = None
    yaml_rs = None

PYYAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it
FAST = yaml_rs

# Where a plain scalar may start: the start of a line (after indentation), after "key: ", "- ",
# "? " (each with its space: "ns-000" is one scalar) and after the flow indicators. What follows
# is a scalar YAML 1.1 and 1.2 resolve differently, up to where a plain scalar ends.
_START = r"(?:^[ ]*|[:\-?][ ]+|[\[{,][ ]*)"
_END = r"(?:[ ]*(?:$|[#,\]}]|:[ ]|:$))"
_DIFFERENT_SCALARS = (
    r"(?:yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF)",  # booleans in 1.1 only
    r"[-+]?0[0-9_]+",  # 1.1 octal (1.2: decimal)
    r"[-+]?0o[0-7_]+",  # 1.2 octal (1.1: a string)
    r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?",  # 1.1 sexagesimal
    r"[-+]?(?:[0-9][0-9_]*)?\.?[0-9_]*[eE][-+]?[0-9]+",  # exponent: 1.2 float, 1.1 float only with a dot
    r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}[^\n#,\]}]*",  # timestamps (1.1 only)
    r"=",  # 1.1's value key
)
# RE2 (linear time, one pass over the text): Python's re takes 100x longer on this alternation.
_DIFFERENT = re2.compile(
    r"(?m)[\t\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x{9f}\x{feff}\x{2028}\x{2029}]"  # tabs, controls, BOM
    r"|^[ ]*%"  # directives
    r"|^\.\.\."  # explicit document ends
    r"|(?:^|[ \[{,])[!&*]"  # tags, anchors, aliases
    r"|<<"  # merge keys
    r"|" + _START + r"(?:\?|:(?:[ ]|$))"  # explicit and empty keys (libyaml reads "[?x]" as a key)
    r"|" + _START + "(?:" + "|".join(_DIFFERENT_SCALARS) + ")" + _END)
_DOCUMENT_START = re.compile(r"^---(?:[ ]|$)", re.MULTILINE)
_CONTENT = re.compile(r"^[ ]*[^\s#]", re.MULTILINE)


def load_all(text: str) -> list:
    """Every non-empty document of ``text``, as PyYAML's safe loader reads them.

    Raises ``yaml.YAMLError`` (PyYAML's, with its line and column) for text that does not parse."""
    if FAST is not None and not _DIFFERENT.search(text):
        documents = _fast(text)
        if documents is not None:
            return documents
    return [doc for doc in yaml.load_all(text, Loader=PYYAML_LOADER) if doc is not None]


def _fast(text: str) -> list | None:
    """``yaml_rs``'s reading, or None where it cannot be trusted to equal PyYAML's."""
    try:
        result = FAST.loads(text, parse_datetime=False, duplicate_key_policy=FAST.DuplicateKeyPolicy.LastWins)
    except Exception:  # noqa: BLE001 - PyYAML reads it again and gives its own error
        return None
    # yaml_rs returns one document as itself and several as a list: count the documents to tell
    # a stream of two documents from one document that is a list of two.
    starts = [m.start() for m in _DOCUMENT_START.finditer(text)]
    count = len(starts) + (1 if _CONTENT.search(text, 0, starts[0] if starts else len(text)) else 0)
    if count <= 1:
        documents = [result]
    elif isinstance(result, list) and len(result) == count:
        documents = result
    else:
        return None
    return [doc for doc in documents if doc is not None]
