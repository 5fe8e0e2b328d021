"""Evaluation (``import catalog.evaluation``): metrics exact against their reference implementations,
and evaluation reports."""
