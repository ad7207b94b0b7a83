"""ecgproto.score."""
