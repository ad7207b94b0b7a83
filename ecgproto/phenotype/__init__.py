"""ecgproto.phenotype."""
