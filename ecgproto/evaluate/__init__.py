"""ecgproto.evaluate."""
