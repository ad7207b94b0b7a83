"""Thin front-ends of the ``ecgproto`` sub-commands (one module each)."""
