"""Bundled protocols (installed as robench.protocols, read as package data)."""
