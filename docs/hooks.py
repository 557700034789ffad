"""MkDocs hooks: the command-line reference is generated from the parser at build time.

`reference/cli.md` is never written by hand, so it cannot drift from `clbounds --help`: each
command's page section is its argparse help, formatted at a fixed width, with the
machine-dependent default store path left out.
"""

from __future__ import annotations

import argparse
import logging
import os
import re

from mkdocs.structure.files import File, Files

CLI_PAGE = "reference/cli.md"
log = logging.getLogger("mkdocs.hooks.clbounds")


def _help(parser: argparse.ArgumentParser) -> str:
    text = parser.format_help()
    return re.sub(r"; now [^)]*\)", ")", text)  # "(default: $CLBOUNDS_HOME or ./runs; now /home/…)" names the build machine


def cli_reference() -> str:
    """The Markdown of the command-line reference: `clbounds --help`, then every command's."""
    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal width: fix it so the page is the same everywhere
    from clbounds.experiments.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {c.dest: c.help for c in commands._choices_actions}
    out = ["# Command line", "",
           "Generated from the parser (`docs/hooks.py`) at every build, so it is what `clbounds COMMAND --help` prints. "
           "Usage errors exit 2 with one line; runtime errors exit 1 with what failed and what was kept "
           "([What happens when](../what-happens-when.md)).", "",
           "## clbounds", "", "```text", _help(parser).rstrip(), "```", ""]
    for name, sub in commands.choices.items():
        out += [f"## clbounds {name}", "", summaries.get(name) or "", "", "```text", _help(sub).rstrip(), "```", ""]
    return "\n".join(out)


def on_files(files: Files, config, **kwargs) -> Files:
    files.append(File.generated(config, CLI_PAGE, content=cli_reference()))
    return files


def undocumented(api_page: str) -> list[str]:
    """The public names on the API page without a docstring: every module named by a `:::`
    line, each name of its ``__all__`` (else each public function and class defined in it)."""
    import importlib
    import inspect

    missing = []
    for line in api_page.splitlines():
        if not line.startswith("::: "):
            continue
        path = line[4:].strip()
        module_name, _, attr = path.rpartition(".")
        try:
            module = importlib.import_module(path)
        except ModuleNotFoundError:
            module = None
        if module is None:  # a function or class: check it alone
            obj = getattr(importlib.import_module(module_name), attr)
            if not inspect.getdoc(obj):
                missing.append(path)
            continue
        names = getattr(module, "__all__", None) or [n for n, v in vars(module).items()
                                                     if not n.startswith("_") and (inspect.isfunction(v) or inspect.isclass(v))
                                                     and v.__module__ == module.__name__]
        missing += [f"{path}.{n}" for n in names
                    if (inspect.isfunction(getattr(module, n)) or inspect.isclass(getattr(module, n))) and not inspect.getdoc(getattr(module, n))]
    return missing


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    if page.file.src_uri == "reference/api.md":
        for name in undocumented(markdown):
            log.warning(f"reference/api.md: {name} has no docstring")  # a warning fails the strict build
    return markdown
