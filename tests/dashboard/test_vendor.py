"""The vendored plotly.js partial bundle is the plotly.js that the installed plotly ships."""

from __future__ import annotations

from pathlib import Path

import dashboard

VENDOR = Path(dashboard.__file__).parent / "assets" / "vendor"


def test_the_partial_plotly_bundle_matches_the_installed_plotly() -> None:
    from plotly.offline import get_plotlyjs_version

    (bundle,) = VENDOR.glob("plotly-cartesian-*.min.js")
    version = get_plotlyjs_version()
    assert bundle.name == f"plotly-cartesian-{version}.min.js", (
        f"{bundle} is not plotly.js {version}: see {VENDOR / 'README.md'} to update it"
    )
    assert f"(cartesian - minified) v{version}" in bundle.read_text(encoding="utf-8")[:200]
