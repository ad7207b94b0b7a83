"""ecgproto: interpretable, case-based 12-lead ECG classification with prototype networks."""

__version__ = "0.1.0"
