"""ecgproto.model."""
