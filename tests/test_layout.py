"""The package layout's promises: no import cycle, each layer imports only those below it, and results and reports
load without torch (so a results.json can be checked and rendered on a machine without it)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_graph_has_no_cycle_and_respects_layers() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "import_graph.py")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 problems" in run.stdout


def test_results_and_reports_import_no_torch() -> None:
    code = ("import sys, kdscope, kdscope.results, kdscope.results.checks, kdscope.reports, kdscope.reports.notebook; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]", run.stdout


def test_public_names_load_from_the_package() -> None:
    import kdscope

    for name in kdscope.__all__:
        assert getattr(kdscope, name) is not None, name


def test_train_stays_the_function_once_its_module_is_imported() -> None:
    import kdscope.train
    from kdscope import train

    assert callable(train) and train is kdscope.train and train.__module__ == "kdscope.train"
