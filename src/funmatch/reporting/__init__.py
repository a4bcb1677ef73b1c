"""Reporting: what runs produced, for people. Run loading (`runs`), tables (`tables`), figures
(`figures`, matplotlib) and the HTML + markdown page of `funmatch report` (`render`).

Reads workdirs and `evaluation.json` files; imports nothing of funmatch but `errors` and its own modules,
so training can draw its input picture with it. Importing this package imports only numpy.
"""

from funmatch.reporting.figures import plot_class_gaps, plot_comparison, plot_training_curves, save_augmentation_grid
from funmatch.reporting.render import MANIFEST_NAME, write_report
from funmatch.reporting.runs import PNG_SIGNATURE, Run, load_run
from funmatch.reporting.tables import Table, class_gap_table, class_gaps, format_value

__all__ = [
    "MANIFEST_NAME",
    "PNG_SIGNATURE",
    "Run",
    "Table",
    "class_gap_table",
    "class_gaps",
    "format_value",
    "load_run",
    "plot_class_gaps",
    "plot_comparison",
    "plot_training_curves",
    "save_augmentation_grid",
    "write_report",
]
