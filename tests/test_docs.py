"""The documentation: a short README whose links resolve, a CLI reference generated from the
parser, and an API page whose every public name has a docstring. `make docs` (run by
`make test`) builds the whole site with `mkdocs build --strict`."""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_is_short_and_its_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def test_every_nav_page_exists_or_is_generated():
    import yaml

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]

    def pages(items):
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            yield from (pages(value) if isinstance(value, list) else [value])

    hooks = _hooks()
    for page in pages(nav):
        assert (ROOT / "docs" / page).is_file() or page == hooks.CLI_PAGE, page


def test_the_cli_reference_has_every_command_with_its_examples():
    pytest.importorskip("mkdocs")
    from clbounds.experiments.cli import COMMAND_EXAMPLES, build_parser

    text = _hooks().cli_reference()
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name in commands:
        assert f"## clbounds {name}\n" in text
        assert all(example in text for example, _ in COMMAND_EXAMPLES[name])
    assert "; now " not in text  # no path of the machine that built it


def test_every_public_name_on_the_api_page_has_a_docstring():
    pytest.importorskip("mkdocs")
    page = (ROOT / "docs" / "reference" / "api.md").read_text()
    assert "::: clbounds.experiments.api.measure" in page
    assert _hooks().undocumented(page) == []
