"""Crypto Lake acquisition: sources (local directory, lakeapi), staging, schemas and quality checks."""
