"""The package layering, read from the source's import statements (every ``import``, top level or inside a
function): the shared file formats and the venues are the ground floor; the pipeline reads captures without the
capture service; production code never imports the local exchange (a local peer for tests and the demo)."""

import ast
from pathlib import Path

import pytest

import rlx_pipeline

ROOT = Path(rlx_pipeline.__file__).parent
GROUND_FLOOR = {"fixed_point", "instruments", "schemas", "storage", "venues", "formats"}


def imported_packages(package: str, root: Path = ROOT) -> dict[str, set[str]]:
    """``rlx_pipeline`` subpackage or module -> the files of ``package`` importing it (relative imports resolved)."""
    found: dict[str, set[str]] = {}
    base = root / package
    files = [base.with_suffix(".py")] if base.with_suffix(".py").is_file() else sorted(base.rglob("*.py"))
    for path in files:
        parts = ["rlx_pipeline", *path.relative_to(root).with_suffix("").parts]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level:
                    anchor = parts[: len(parts) - node.level]
                    mod = ".".join([*anchor, mod] if mod else anchor)
                names = [f"{mod}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                dotted = name.split(".")
                if dotted[0] == "rlx_pipeline" and len(dotted) > 1:
                    found.setdefault(dotted[1], set()).add(str(path.relative_to(root)))
    return found


@pytest.mark.parametrize(
    "package", ["golden", "simulator", "lake", "fidelity", "book", "validation", "export"]
)
def test_the_pipeline_reads_captures_without_the_capture_service_or_the_local_exchange(package):
    imports = imported_packages(package)
    assert {k: v for k, v in imports.items() if k in ("capture", "exchange")} == {}


def test_the_capture_service_never_imports_the_local_exchange():
    assert imported_packages("capture").get("exchange", set()) == set()


def test_only_the_cli_starts_the_local_exchange():
    """The local exchange is a peer for tests and the demo: no production package imports it."""
    packages = {p.stem for p in ROOT.iterdir() if p.suffix == ".py" or any(p.glob("*.py"))}
    importers = {p for p in packages - {"cli", "exchange"} if "exchange" in imported_packages(p)}
    assert importers == set()


@pytest.mark.parametrize("package", sorted(GROUND_FLOOR))
def test_the_ground_floor_imports_only_the_ground_floor(package):
    imports = imported_packages(package)
    assert {k: v for k, v in imports.items() if k not in GROUND_FLOOR} == {}


def test_the_walk_sees_imports_inside_functions_and_relative_ones(tmp_path):
    pkg = tmp_path / "demo_pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text(
        "def f():\n    from rlx_pipeline.capture.service import run_capture\n"
        "from rlx_pipeline import exchange\nfrom ..formats import capture_file\n"
    )
    assert imported_packages("demo_pkg", tmp_path) == {
        "capture": {"demo_pkg/a.py"},
        "exchange": {"demo_pkg/a.py"},
        "formats": {"demo_pkg/a.py"},
    }
