"""Text encoders behind one interface (base.TextEncoder), chosen by a spec string (registry.load)."""

from anatomy.encoders.registry import describe_all, load, require_trained

__all__ = ["describe_all", "load", "require_trained"]
