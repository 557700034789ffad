"""Studies run as scripts (``python -m benchmarks.studies.<name>``), whose outputs the docs
quote: ``convergence`` (have the estimators settled? docs/estimators.md) and
``methods_table`` (docs/methods_table.md). The library never imports them."""
