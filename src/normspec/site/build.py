"""`normspec site build DIR`: the spec as a static mkdocs-material site, one folder per spec version.

DIR/<version>/ holds a released text (with --all-versions, every release, each from the last git
commit that carries its version line); DIR/draft/ the working text when the CHANGELOG lists
unreleased changes (else the working text is DIR/<version>/). DIR/latest/ redirects to the newest
release, DIR/index.html to latest/, and DIR/versions.json lists the folders (mkdocs-material's version
selector reads it).

The build is offline: search is mkdocs' own (the offline plugin makes it work from file://), the
theme's web fonts are off, and MathJax (SVG output, no font files to fetch) is copied into each
folder from the django-static-mathjax package, a PyPI package of MathJax's files.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from importlib.resources import files
from pathlib import Path

from normspec import changelog, clauses
from normspec.errors import UsageError
from normspec.site import findings_pages, matrix, pages, reports

DRAFT = "draft"
SPEC_ORDER = ("README.md", "general.md", "normalization.md", "ops/batch_norm.md", "ops/layer_norm.md",
              "ops/group_norm.md", "ops/instance_norm.md", "ops/rms_norm.md", "numerics.md", "errors.md",
              "gradients.md", "scalers.md", "ops/standard_scaler.md", "ops/minmax_scaler.md")
INFORMATIVE = ("defaults.md", "rationale.md", "CHANGELOG.md")
# The clauses whose section shows the accuracy comparison figure (the bound and its kappa).
ACCURACY_CLAUSES = ("NUM-1.1", "NUM-1.2")
WHY_FIGURE = "accuracy/why.png"


def _page(document: str) -> str:
    return "index.md" if document == "README.md" else document


def _key(version: str) -> tuple:
    return tuple(int(part) for part in version.split("."))


def _documents(text_dir: Path) -> dict:
    """{document path relative to the text folder: its text} of every spec Markdown file."""
    found = {p.relative_to(text_dir).as_posix(): p.read_text(encoding="utf-8")
             for p in sorted(text_dir.glob("*.md")) + sorted(text_dir.glob("ops/*.md"))}
    if "README.md" not in found:
        raise UsageError(f"{text_dir}: no README.md: not a spec folder")
    return found


def _version_line(readme: str) -> str:
    match = clauses._VERSION.search(readme)
    if not match:
        raise UsageError("spec README.md has no 'Version: X.Y.Z' line")
    return match.group(1)


def _mathjax_source() -> Path:
    try:
        import mathjax  # django-static-mathjax: MathJax's files, no Django needed to read them
    except ImportError:
        raise UsageError("the site needs MathJax from the django-static-mathjax package: pip install "
                         "'normspec[site]'") from None
    return Path(mathjax.__path__[0]) / "static" / "mathjax" / "es5"


def _copy_mathjax(docs: Path) -> None:
    source, target = _mathjax_source(), docs / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "tex-svg.js", target / "tex-svg.js")
    for folder in ("input/tex/extensions", "a11y", "ui"):
        if (source / folder).is_dir():
            shutil.copytree(source / folder, target / folder, dirs_exist_ok=True)
    license_file = source.parent / "LICENSE"
    if license_file.is_file():
        shutil.copy2(license_file, target / "LICENSE")


_MATHJAX_CONFIG = """window.MathJax = {
  tex: {inlineMath: [["\\\\(", "\\\\)"]], displayMath: [["\\\\[", "\\\\]"]], processEscapes: true,
        processEnvironments: true},
  svg: {fontCache: "global"},
  options: {ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex"}
};
"""

_CSS = """.clause-meta { font-size: 0.72rem; color: var(--md-default-fg-color--light); margin-top: -0.4rem; }
.ns-matrix { overflow-x: auto; }
.md-main__inner:has(.ns-matrix) { max-width: none; }
.ns-matrix table { border-collapse: collapse; font-size: 0.68rem; }
.ns-matrix th, .ns-matrix td { border: 1px solid var(--md-default-fg-color--lightest); padding: 0.15rem 0.4rem;
  vertical-align: top; }
.ns-matrix tr:target { outline: 2px solid var(--md-accent-fg-color); }
.ns-pass { background: #e3f4e1; }
.ns-pass- { background: #eef7e9; }
.ns-finding { background: #fff1cc; }
.ns-fail { background: #f9d4d4; font-weight: bold; }
.ns-not-run { background: #eeeeee; color: #666; }
.ns-na { color: #aaa; }
.ns-untested { background: #e8e4f4; }
.md-typeset h2[id], .md-typeset h3[id], .md-typeset h4[id] { scroll-margin-top: 3.5rem; }
"""


def _mkdocs_config(label: str, docs: Path, site: Path, nav: list, spec_version: str) -> dict:
    return {
        "site_name": f"normspec {spec_version}" if label != DRAFT else f"normspec {spec_version} + unreleased changes",
        "docs_dir": str(docs), "site_dir": str(site), "use_directory_urls": False,
        "theme": {"name": "material", "font": False, "features": ["navigation.top", "toc.follow", "search.highlight"],
                  "palette": {"primary": "indigo"}},
        "plugins": ["search", "offline"],
        "markdown_extensions": ["attr_list", "md_in_html", "tables", "admonition", "pymdownx.details",
                                "pymdownx.superfences", {"pymdownx.arithmatex": {"generic": True}},
                                {"toc": {"permalink": True}}],
        "extra_javascript": ["javascripts/mathjax-config.js", "mathjax/tex-svg.js"],
        "extra_css": ["stylesheets/normspec.css"],
        # The offline plugin adds a CDN copy of the iframe-worker shim unless a polyfill of that name is given.
        "extra": {"version": {"provider": "mike"}, "polyfills": ["javascripts/iframe-worker-shim.js"]},
        "nav": nav,
    }


def build_version(text_dir: Path, label: str, out: Path, *, implementations: list, accuracy_dir: Path | None,
                  history_releases) -> Path:
    """One folder of the site, out/label, from the spec text in text_dir."""
    documents = _documents(Path(text_dir))
    spec_version = _version_line(documents["README.md"])
    index = {}
    for document, text in documents.items():
        for clause in clauses._parse(document, text):
            index[clause.id] = _page(document)
    histories = changelog.histories(history_releases)
    mine = [i for i in implementations if i.spec_version == spec_version]
    figure = accuracy_dir is not None and (accuracy_dir / "why.png").is_file()

    def meta(clause_id, page):
        line = (f"*{changelog.history_line(histories.get(clause_id))}* · "
                f"{matrix.clause_summary(mine, clause_id, page)}\n{{: .clause-meta }}")
        if figure and clause_id in ACCURACY_CLAUSES:
            image = pages.relative(page, WHY_FIGURE)
            line += (f"\n\n[![Error over the NUM-1.1 bound against kappa and n: one-pass variance crosses the bound, "
                     f"two-pass does not]({image})]({pages.relative(page, 'accuracy.md')})")
        return line

    with tempfile.TemporaryDirectory(prefix="normspec-site-") as work:
        docs = Path(work) / "docs"
        banner = ("!!! warning \"Unreleased text\"\n    This is spec " + spec_version + " with the changes listed under "
                  "Unreleased in the [CHANGELOG](CHANGELOG.md), on their way to the next release. Cite a released "
                  "version.\n\n") if label == DRAFT else ""
        for document, text in documents.items():
            page = _page(document)
            target = docs / page
            target.parent.mkdir(parents=True, exist_ok=True)
            rendered = pages.render(text.replace("](README.md)", "](index.md)"), page, index, meta)
            if banner and page in [_page(d) for d in SPEC_ORDER]:
                rendered = banner.replace("](CHANGELOG.md)", f"]({pages.relative(page, 'CHANGELOG.md')})") + rendered
            target.write_text(rendered, encoding="utf-8")
        (docs / matrix.PAGE).write_text(matrix.page(mine, index, spec_version), encoding="utf-8")
        finding_pages = []
        for adapter in sorted({i.adapter for i in mine}):
            found = []
            for implementation in (i for i in mine if i.adapter == adapter):
                found += [f for f in findings_pages.findings_of(implementation) if f.id not in {g.id for g in found}]
            page = matrix.findings_page(adapter)
            (docs / page).parent.mkdir(parents=True, exist_ok=True)
            (docs / page).write_text(findings_pages.page(
                adapter, found, lambda c, p=page: f"{pages.relative(p, index[c])}#{c}" if c in index else "#"),
                encoding="utf-8")
            finding_pages.append(page)
        _accuracy_page(docs, accuracy_dir)
        (docs / "javascripts").mkdir()
        (docs / "javascripts" / "mathjax-config.js").write_text(_MATHJAX_CONFIG, encoding="utf-8")
        assets = files("normspec.site").joinpath("assets")
        for name in ("iframe-worker-shim.js", "iframe-worker.LICENSE"):
            (docs / "javascripts" / name).write_text(assets.joinpath(name).read_text(encoding="utf-8"),
                                                     encoding="utf-8")
        (docs / "stylesheets").mkdir()
        (docs / "stylesheets" / "normspec.css").write_text(_CSS, encoding="utf-8")
        _copy_mathjax(docs)
        def titled(document):
            title = next((line[2:].strip() for line in documents[document].splitlines() if line.startswith("# ")),
                         document)
            return {("Introduction" if document == "README.md" else title.split(":")[0]): _page(document)}
        nav = [{"Specification": [titled(d) for d in SPEC_ORDER if d in documents]},
               {"Informative": [titled(d) for d in INFORMATIVE if d in documents]},
               {"Conformance": [{"Matrix": matrix.PAGE}] + [{f"Findings: {p[9:-3]}": p} for p in finding_pages]},
               {"Accuracy": [{"Accuracy plots": "accuracy.md"}]}]
        site = Path(out) / label
        if site.exists():
            shutil.rmtree(site)
        _mkdocs(_mkdocs_config(label, docs, site, nav, spec_version), Path(work))
    # The index of the text this folder shows, for `normspec site check` (every clause's anchor).
    (site / "clauses.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    return site


def _accuracy_page(docs: Path, accuracy_dir: Path | None) -> None:
    lines = ["# Accuracy", "",
             "How far computed outputs are from the exact ones, in units of the bound of "
             "[NUM-1.1](numerics.md#NUM-1.1): below 1 conforms, above 1 violates it. The bound grows with the "
             "conditioning κ ([NUM-1.2](numerics.md#NUM-1.2)) and the reduction length n, because the admitted "
             "algorithms' errors do: the two-pass and updating (Welford) algorithms have a relative variance error of "
             "order n u κ. The one-pass formula mean(x²) − mean(x)² has one of order n u κ², so its ratio to the bound "
             "grows with κ and crosses 1: that is why fast-variance kernels fail NUM-1.1 on inputs with a common "
             "offset and two-pass kernels do not. Made with `normspec accuracy TARGET ... --out DIR`.", ""]
    if accuracy_dir is None or not any(accuracy_dir.glob("*.png")):
        lines += ["No accuracy figures in this build (`normspec site build DIR` draws them unless `--no-accuracy`)."]
    else:
        target = docs / "accuracy"
        target.mkdir(parents=True, exist_ok=True)
        for png in sorted(accuracy_dir.glob("*.png"), key=lambda p: (p.name != "why.png", p.name)):
            shutil.copy2(png, target / png.name)
            lines += [f"![{png.stem}](accuracy/{png.name})", ""]
    (docs / "accuracy.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _mkdocs(config: dict, work: Path) -> None:
    """mkdocs build --strict of the configuration, in its own process (mkdocs keeps global state)."""
    try:
        import mkdocs  # noqa: F401
        import material  # noqa: F401
    except ImportError:
        raise UsageError("the site needs mkdocs and mkdocs-material: pip install 'normspec[site]'") from None
    import sys
    config_file = work / "mkdocs.yml"
    config_file.write_text(json.dumps(config, indent=1), encoding="utf-8")  # JSON is YAML
    completed = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-f", str(config_file)],
                               capture_output=True, text=True)
    if completed.returncode:
        raise UsageError(f"mkdocs build failed:\n{completed.stderr[-4000:]}")


def released_texts(repository: Path) -> dict:
    """{version: commit} of every released spec text in the git history of `repository`: the last commit
    that changed spec/ while spec/README.md carried that version line and the CHANGELOG listed nothing
    as unreleased (editorial commits of the same version, such as a note, belong to its text; a commit
    on the way to the next release does not)."""
    try:
        log = subprocess.run(["git", "-C", str(repository), "log", "--format=%H", "--", "spec"],
                             capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError) as error:
        raise UsageError(f"--all-versions reads the spec's git history, and {repository} has none ({error})") from None
    found = {}
    for commit in log:  # newest first: the first commit seen with a version line is the newest text of it
        readme = subprocess.run(["git", "-C", str(repository), "show", f"{commit}:spec/README.md"],
                                capture_output=True, text=True).stdout
        log_text = subprocess.run(["git", "-C", str(repository), "show", f"{commit}:spec/CHANGELOG.md"],
                                  capture_output=True, text=True).stdout
        match = clauses._VERSION.search(readme)
        if match and match.group(1) not in found and f"\n## {changelog.UNRELEASED}" not in log_text:
            found[match.group(1)] = commit
    return found


def _export(repository: Path, commit: str, target: Path) -> Path:
    import io
    import tarfile
    archive = subprocess.run(["git", "-C", str(repository), "archive", "--format=tar", commit, "spec"],
                             capture_output=True, check=True).stdout
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target / "spec"


def _redirect(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'<!doctype html><html><head><meta charset="utf-8"><title>normspec</title>'
                    f'<meta http-equiv="refresh" content="0; url={target}"><link rel="canonical" href="{target}">'
                    f'</head><body><a href="{target}">{target}</a></body></html>\n', encoding="utf-8")


def build(out, *, report_paths=(), all_versions: bool = False, accuracy_dir=None, repository=None) -> list:
    """Build the site into `out`; returns the version folders built."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    implementations = reports.load(report_paths)
    accuracy_dir = Path(accuracy_dir) if accuracy_dir else None
    entries = changelog.releases()
    current = Path(str(files("normspec.spec")))
    pending = changelog.unreleased(entries) is not None
    working_label = DRAFT if pending else clauses.spec_version()
    built = [build_version(current, working_label, out, implementations=implementations, accuracy_dir=accuracy_dir,
                           history_releases=entries)]
    if all_versions:
        repository = Path(repository) if repository else Path.cwd()
        released = {r.version for r in entries if r.released}
        with tempfile.TemporaryDirectory(prefix="normspec-spec-") as work:
            for version, commit in sorted(released_texts(repository).items(), key=lambda kv: _key(kv[0])):
                if version not in released or version == working_label:
                    continue
                text = _export(repository, commit, Path(work) / version)
                history = [r for r in entries if r.released and _key(r.version) <= _key(version)]
                built.append(build_version(text, version, out, implementations=implementations,
                                           accuracy_dir=accuracy_dir, history_releases=history))
    _index(out)
    return built


def _index(out: Path) -> None:
    """versions.json, latest/ (the newest release present, else the draft) and index.html."""
    folders = [p.name for p in out.iterdir() if p.is_dir() and (p / "index.html").is_file() and p.name != "latest"]
    releases = sorted((f for f in folders if f != DRAFT and all(part.isdigit() for part in f.split("."))),
                      key=_key, reverse=True)
    newest = releases[0] if releases else (DRAFT if DRAFT in folders else None)
    if newest is None:
        return
    versions = [{"version": v, "title": v, "aliases": ["latest"] if v == newest else []} for v in releases]
    if DRAFT in folders:
        versions.insert(0, {"version": DRAFT, "title": "draft (unreleased)", "aliases": []})
    (out / "versions.json").write_text(json.dumps(versions, indent=1), encoding="utf-8")
    _redirect(out / "latest" / "index.html", f"../{newest}/index.html")
    _redirect(out / "index.html", f"{newest}/index.html")
