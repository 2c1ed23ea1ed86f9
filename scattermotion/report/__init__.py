"""``scattermotion report``: one HTML page (no network) comparing our motion with TV-L1 and DIS per input.

Modules, one job each (INPUT → frames and ground truth: :mod:`scattermotion.clipsets`),
:mod:`~scattermotion.report.analysis` (run and score the methods), :mod:`~scattermotion.report.confidence`
(our network's confidence beside its motion), :mod:`~scattermotion.report.images` (error and confidence
pictures), :mod:`~scattermotion.report.tables` and :mod:`~scattermotion.report.harness` (score tables,
speed plots; the evaluation harness's JSON), :mod:`~scattermotion.report.svg` (inline plots),
:mod:`~scattermotion.report.page` (HTML) and :mod:`~scattermotion.report.build` (writes it all).
"""

from scattermotion.report.build import ReportOptions, ReportResult, build_report

__all__ = ["ReportOptions", "ReportResult", "build_report"]
