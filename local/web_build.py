"""`python -m local.web_build`: build the Postbacks page (web/) when its sources changed.

`make run` calls it before starting the stack; the browser tests call `ensure_built()`. The
dependencies come from the committed lock file (`npm ci`, re-run only when package.json or
package-lock.json changed); the build (`npm run build`: type check, then Vite) runs only when a
source file changed since the last build. Both decisions use a hash of the inputs, stored in
`web/node_modules/.postbacks-deps` and `web/dist/.postbacks-build`.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

WEB = Path(__file__).resolve().parent.parent / "web"
DIST = WEB / "dist"
DEPENDENCY_INPUTS = ("package.json", "package-lock.json")
BUILD_INPUTS = ("index.html", "vite.config.ts", "tsconfig.json", "openapi.json", "src", "public")
DEPS_STAMP = WEB / "node_modules" / ".postbacks-deps"
BUILD_STAMP = DIST / ".postbacks-build"


class WebBuildError(RuntimeError):
    """npm is missing or a step failed."""


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(WEB)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _files(names: tuple[str, ...]) -> list[Path]:
    found: list[Path] = []
    for name in names:
        path = WEB / name
        if path.is_dir():
            found.extend(child for child in path.rglob("*") if child.is_file())
        elif path.is_file():
            found.append(path)
    return found


def _stamp_matches(stamp: Path, value: str) -> bool:
    return stamp.is_file() and stamp.read_text().strip() == value


def _npm(*args: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise WebBuildError("npm is not installed: install Node.js 20.19+ (it brings npm) to build the page")
    completed = subprocess.run([npm, *args], cwd=WEB, check=False)
    if completed.returncode != 0:
        raise WebBuildError(f"npm {' '.join(args)} failed (exit {completed.returncode})")


def ensure_built(log: bool = True) -> bool:
    """Install and build when needed; True when something was rebuilt."""
    deps = _digest(_files(DEPENDENCY_INPUTS))
    rebuilt = False
    if not _stamp_matches(DEPS_STAMP, deps):
        if log:
            print("web: npm ci (package-lock.json changed or node_modules missing)", file=sys.stderr, flush=True)
        _npm("ci", "--no-audit", "--no-fund")
        DEPS_STAMP.write_text(deps)
        rebuilt = True
    build = _digest(_files(DEPENDENCY_INPUTS + BUILD_INPUTS))
    if rebuilt or not _stamp_matches(BUILD_STAMP, build):
        if log:
            print("web: building the page (web/dist)", file=sys.stderr, flush=True)
        _npm("run", "build")
        BUILD_STAMP.write_text(build)
        return True
    if log:
        print("web: the page is up to date (web/dist)", file=sys.stderr, flush=True)
    return rebuilt


def main() -> int:
    try:
        ensure_built()
    except WebBuildError as exc:
        print(f"web: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
