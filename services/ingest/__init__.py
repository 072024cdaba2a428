"""Ingest: fetch, decode and hash each upload (eraser.uploads → eraser.hashes)."""
