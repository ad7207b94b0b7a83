"""ecgproto.explain."""
