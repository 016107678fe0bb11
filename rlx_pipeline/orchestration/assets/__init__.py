"""Assets by pipeline stage, each module exporting ``assets``, ``checks`` and optionally ``sensors``."""
