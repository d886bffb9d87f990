"""Reports (HTML + Markdown) and Hugging Face model cards of unlearning runs, sweeps and audits."""

from .html import write_report

__all__ = ["write_report"]
