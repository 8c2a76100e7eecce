"""Text encoders behind one interface (base.TextEncoder), chosen by a spec string (registry.load)."""
