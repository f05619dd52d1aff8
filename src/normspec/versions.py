"""The rule that ties the package's version to the spec version it carries (spec/README.md,
"Versions"): package release X.Y.Z carries spec X.Y.Z; a development version X.Y.Z.devN is on
its way to spec X.Y.Z and carries the last released spec, newer than which the CHANGELOG lists
only its "Unreleased" section."""
from __future__ import annotations

import re

from normspec import changelog

_PACKAGE = re.compile(r"^(?P<base>[0-9]+\.[0-9]+\.[0-9]+)(?:\.dev(?P<dev>[0-9]+))?$")


def _key(version: str) -> tuple:
    return tuple(int(part) for part in version.split("."))


def problems(package_version: str, spec_version: str, releases=None) -> list:
    """What breaks the rule for this package version, spec version line and CHANGELOG
    (`normspec.changelog.parse` result, newest first; default the bundled one). Empty if none."""
    releases = changelog.releases() if releases is None else releases
    found = []
    match = _PACKAGE.match(package_version)
    if not match:
        return [f"package version {package_version!r} is neither X.Y.Z (a release) nor X.Y.Z.devN (a development "
                f"version)"]
    latest, pending = changelog.latest_release(releases), changelog.unreleased(releases)
    if latest is None or latest.version != spec_version:
        found.append(f"spec/README.md says Version: {spec_version}, but the newest release in spec/CHANGELOG.md is "
                     f"{latest.version if latest else 'none'}")
    if pending is not None and releases[0] is not pending:
        found.append("the Unreleased section of spec/CHANGELOG.md is not its first section")
    base = match["base"]
    if match["dev"] is None:
        if base != spec_version:
            found.append(f"package release {base} must carry spec {base}, but the spec is {spec_version}: set "
                         f"'Version: {base}' in spec/README.md (and CITATION.cff), or make the package "
                         f"{base}.devN while the spec is prepared")
        if pending is not None:
            found.append(f"package release {base} with an Unreleased section in spec/CHANGELOG.md: release those "
                         f"changes as ## {base} (or make the package a development version)")
    elif _key(base) <= _key(spec_version):
        found.append(f"development version {package_version} must lead to a spec newer than the one it carries "
                     f"({spec_version}); when spec {spec_version} is released the package is {spec_version}, and the "
                     f"next development version is a higher X.Y.Z.devN")
    return found

