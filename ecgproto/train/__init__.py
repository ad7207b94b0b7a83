"""ecgproto.train."""
