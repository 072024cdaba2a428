"""Matcher: look hashed uploads up in the registered hashes (eraser.hashes → eraser.verdicts)."""
