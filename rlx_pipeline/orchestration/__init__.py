"""The Dagster layer: thin wrappers that call the domain modules. Nothing here computes market data."""
