"""``rlx-pipeline``: the one entry point for everything that is not Dagster itself.

Sub-commands live in their own modules (``exchange``, ``lake``, ``capture``, ``demo``) and are imported
lazily, so ``rlx-pipeline --help`` stays fast and one broken area does not break the others.
"""

from __future__ import annotations

import importlib

import click

# name -> (module, attribute, help)
_COMMANDS = {
    "demo": (
        "rlx_pipeline.cli.demo",
        "demo",
        "Simulate, capture, publish and run the whole pipeline on a demo day.",
    ),
    "simulate": (
        "rlx_pipeline.cli.simulate",
        "simulate",
        "Generate a simulated market and write its renderings.",
    ),
    "exchange": ("rlx_pipeline.cli.exchange", "exchange", "The local Binance-protocol exchange server."),
    "lake": (
        "rlx_pipeline.cli.lake",
        "lake",
        "The local Crypto Lake: publish, upload to S3, render from captures.",
    ),
    "capture": (
        "rlx_pipeline.cli.capture",
        "capture",
        "Capture Binance streams as golden samples; import captures.",
    ),
    "unified": ("rlx_pipeline.cli.unified", "unified", "Read the unified stream."),
    "export": (
        "rlx_pipeline.cli.export",
        "export",
        "Export usable days to hftbacktest (.npz) or Tardis CSV.",
    ),
    "status": ("rlx_pipeline.cli.status", "status", "Which days can be used: one line per day and symbol."),
    "faults": (
        "rlx_pipeline.cli.faults",
        "faults_cli",
        "Corrupt a local lake day or capture with a named fault (to see a check fail).",
    ),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in _COMMANDS:
            return None
        module, attr, help_text = _COMMANDS[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise

            @click.command(name=name, help=help_text + " (not implemented yet)")
            def _missing() -> None:
                raise click.ClickException(f"'{name}' is not implemented yet")

            return _missing


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rlx-pipeline")
def main() -> None:
    """rlx_pipeline: crypto market data to a validated, reconstructed, replayable event stream."""
