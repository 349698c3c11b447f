"""Refresh the vendored frontend builds from the npm registry (``make vendor``).

Downloads pinned packages with ``npm pack``, copies their built files into
``src/sharedcare/web/static/vendor/`` and removes the NHS.UK stylesheet's ``@font-face``
rules: they load the licensed Frutiger font from assets.nhs.uk, which an open-source
deployment may not use and a closed network cannot reach. The font stack then falls
back to Arial, as NHS.UK frontend intends.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[1] / "src" / "sharedcare" / "web" / "static" / "vendor"
PACKAGES = {
    "nhsuk-frontend@10.6.1": {
        "dist/nhsuk/nhsuk-frontend.min.css": "nhsuk-frontend/nhsuk-frontend.min.css",
        "dist/nhsuk/nhsuk-frontend.min.js": "nhsuk-frontend/nhsuk-frontend.min.js",
        "dist/nhsuk/assets": "nhsuk-frontend/assets",
    },
    "htmx.org@2.0.11": {"dist/htmx.min.js": "htmx/htmx.min.js", "LICENSE": "htmx/LICENSE"},
    "vega@6.4.0": {"build/vega.min.js": "vega/vega.min.js", "LICENSE": "vega/LICENSE-vega"},
    "vega-lite@6.4.3": {
        "build/vega-lite.min.js": "vega/vega-lite.min.js",
        "LICENSE": "vega/LICENSE-vega-lite",
    },
    "vega-embed@7.3.0": {
        "build/vega-embed.min.js": "vega/vega-embed.min.js",
        "LICENSE": "vega/LICENSE-vega-embed",
    },
}
FONT_FACE = re.compile(r"@font-face\{[^}]*\}")


def strip_font_faces(css: str) -> str:
    """Remove every ``@font-face`` rule from minified CSS."""
    return FONT_FACE.sub("", css)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for spec, files in PACKAGES.items():
            out = subprocess.run(
                ["npm", "pack", spec, "--silent"], cwd=tmp, check=True, capture_output=True,
                text=True,
            )  # fmt: skip
            tgz = Path(tmp) / out.stdout.strip().splitlines()[-1]
            unpacked = Path(tmp) / tgz.stem
            with tarfile.open(tgz) as archive:
                archive.extractall(unpacked, filter="data")
            for source, target in files.items():
                src, dst = unpacked / "package" / source, VENDOR / target
                dst.parent.mkdir(parents=True, exist_ok=True)
                if src.is_dir():
                    shutil.rmtree(dst, ignore_errors=True)
                    shutil.copytree(src, dst)
                else:
                    shutil.copy2(src, dst)
    css = VENDOR / "nhsuk-frontend" / "nhsuk-frontend.min.css"
    css.write_text(strip_font_faces(css.read_text()))
    print(f"vendored {len(PACKAGES)} packages into {VENDOR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
