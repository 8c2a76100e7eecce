"""Reports: the audit's findings, tables and figures as report.md and a self-contained index.html."""
