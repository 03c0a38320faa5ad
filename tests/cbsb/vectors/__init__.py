"""Frozen CBSB-1 known-answer vectors and the script that generated them once."""
