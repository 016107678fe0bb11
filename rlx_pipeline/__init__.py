"""rlx_pipeline: crypto market data to a validated, reconstructed, replayable event stream.

The domain modules (``simulator``, ``exchange``, ``lake``, ``capture``, ``book``, ``validation``,
``fidelity`` and the contract modules beside this file) are plain Python over Arrow/Polars and import no
Dagster. ``rlx_pipeline.orchestration`` is the thin Dagster layer; ``rlx_pipeline.definitions`` exposes ``defs``.
"""

__version__ = "0.1.0"
