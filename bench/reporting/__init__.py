"""Reporting: from job records to what a reader sees — leaderboard.md/.csv, headline.csv, the discrimination,
truth-tier and replicate tables, figures, report.html and the comparison of runs.

Imports from scoring and running; nothing it renders is computed again here."""
