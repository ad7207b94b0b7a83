"""ecgproto.data."""
