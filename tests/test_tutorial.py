"""The tutorial runs as written, and its page is its notebook: docs/examples/make_tutorial.py
is the one source of both (the notebook's cells; the page rendered from the executed notebook)."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
NOTEBOOK = DOCS / "tutorial.ipynb"


def _generator() -> dict:
    return runpy.run_path(str(DOCS / "examples" / "make_tutorial.py"))


def test_the_notebook_has_the_generator_cells_and_its_outputs():
    gen = _generator()
    nb = json.loads(NOTEBOOK.read_text())
    assert gen["cell_sources"](nb) == gen["cell_sources"](gen["notebook"]())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert outputs, "the checked-in notebook is the executed one (make_tutorial.py --execute)"
    text = "".join(gen["_output_text"](o) for o in outputs)
    assert "verdict:" in text and "->" in text
    assert "warning" not in text.lower() and "Traceback" not in text  # no warnings in what the page shows


def test_the_page_is_the_rendered_notebook():
    gen = _generator()
    assert (DOCS / "tutorial.md").read_text() == gen["render"](json.loads(NOTEBOOK.read_text()))


@pytest.mark.slow
def test_the_tutorial_notebook_executes():
    pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    from nbclient.exceptions import CellExecutionError

    gen = _generator()
    try:
        nb = gen["execute"](gen["notebook"]())
    except CellExecutionError:
        raise  # a cell failed: the tutorial does not run as written
    except Exception as err:  # noqa: BLE001 - no kernel on this machine is a skip, not a failure
        pytest.skip(f"the notebook kernel cannot start here ({type(err).__name__}: {err})")
    text = "".join(gen["_output_text"](o) for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"])
    assert "verdict:" in text and "eps" in text and "->" in text
    assert "warning" not in text.lower()
