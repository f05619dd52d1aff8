"""The rendered specification site: `normspec site build DIR` (normspec.site.build) turns spec/
into a static mkdocs-material site, one path per spec version, with each clause's anchor its ID,
its history from the CHANGELOG, its row of the conformance matrix and, for the accuracy clauses,
the accuracy plots. `normspec site check DIR` (normspec.site.check) verifies the anchors and links.

Modules: pages (spec Markdown to site Markdown), matrix (report.json files to the matrix page),
findings_pages (expectations files to finding pages), build (the mkdocs build and the version
folders), check (the built HTML's anchors and links).
"""
