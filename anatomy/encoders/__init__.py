"""Text encoders behind one interface (base.TextEncoder), chosen by a spec string (registry.load).

FAMILIES maps each spec prefix to its Family (anatomy.encoders.family); the built-in families are
registered here, one line per module that defines them. A new family: a module with `FAMILIES = {...}`
and one entry in _BUILTIN.
"""

import importlib

from anatomy.encoders.family import FAMILIES, Family, LoadRequest, Spec, register
from anatomy.encoders.registry import describe_all, load, load_tokenizer, parse_spec, require_trained

# modules under anatomy.encoders that define FAMILIES (prefix -> Family), in the order `encoders` lists them
_BUILTIN = ("sam3_family", "mobileclip", "openclip", "hf", "student")

for _name in _BUILTIN:
    for _prefix, _family in importlib.import_module(f"anatomy.encoders.{_name}").FAMILIES.items():
        register(_prefix, _family)

__all__ = [
    "FAMILIES",
    "Family",
    "LoadRequest",
    "Spec",
    "describe_all",
    "load",
    "load_tokenizer",
    "parse_spec",
    "require_trained",
]
