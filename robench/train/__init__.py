"""robench.train."""
