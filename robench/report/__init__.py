"""robench.report."""
