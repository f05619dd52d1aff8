"""The normative text of normspec, as Markdown files (read by normspec.clauses)."""
