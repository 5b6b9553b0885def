"""The report: records -> ``summary.parquet``, ``report.md`` and figures.

* :mod:`.relation`: the one vocabulary for how an extractor relates to a cloak
  (``targeted``, ``oblivious-past``, ``oblivious-undated``, ``oblivious-future``, ``adaptive``);
* :mod:`.tables`: the summary table and the markdown tables;
* :mod:`.figures`: the PNG figures;
* :mod:`.adaptive`: the adaptive trainer's sections;
* :mod:`.paper`: the comparison with the paper's headline cells (reference values, one table);
* :mod:`.render`: ``write_report`` and the rule's entry point ``run_report``.

Submodules are imported where used (``from cloakbench.report.render import run_report``).
"""
