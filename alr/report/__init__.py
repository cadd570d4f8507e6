"""Tables and figures built from the result records."""
