"""`make package`: build the Lambda deployment package and the SAM template of one stage.

    python -m infrastructure.package --stage dev [--output dist]

1. Copy `functions/` into the git-ignored `vendor/functions/` (Chalice ships `app.py`, the contents
   of `vendor/` and the `requirements.txt` dependencies, and nothing else of the project).
2. `chalice package --stage STAGE --merge-template infrastructure/template.json OUTPUT` (needs a
   region, no credentials).
3. Rewrite `deployment.zip`: drop the AWS SDK (the Lambda Python runtime provides boto3, botocore,
   s3transfer and jmespath; see docs/deploy.md) and caches, refuse test-only packages, and add
   `.pyc` files compiled with unchecked hashes (sources keep their zip timestamps, so only unchecked
   hash-based `.pyc` are valid in Lambda) when this interpreter matches the function runtime.
4. `cfn-lint` on the generated template.

Exit status 0 when every step succeeded.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import py_compile
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infrastructure" / "template.json"

# Top-level names the Lambda Python runtime already provides (and pynamodb pulls in via botocore).
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath")
# Subpackages of `functions/` that are not Lambda code: the on-call tool.
LEFT_OUT_OF_ZIP = ("cli",)
# Never in a deployment package.
FORBIDDEN = ("tests", "pytest", "_pytest", "moto", "hypothesis", "mypy", "ruff", "cfnlint", "pip", "setuptools")


class PackagingError(RuntimeError):
    """The package could not be built or failed a check."""


def _top_level(name: str) -> str:
    head = name.split("/", 1)[0]
    for suffix in (".dist-info", ".data", ".py", ".pth"):
        if head.endswith(suffix):
            head = head[: -len(suffix)]
            break
    return head.split("-", 1)[0].lower()


def _is_stripped(name: str) -> bool:
    return _top_level(name) in RUNTIME_PROVIDED or "/__pycache__/" in f"/{name}" or name.endswith(".pyc")


def vendor_functions(root: Path = ROOT) -> Path:
    target = root / "vendor" / "functions"
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        shutil.rmtree(target)
    caches = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", "tests")

    def ignore(directory: str, names: list[str]) -> set[str]:
        # The on-call tool (`functions/cli`, installed with `pip install .[oncall]`) never runs in a Lambda.
        left_out = set(caches(directory, names))
        if Path(directory) == root / "functions":
            left_out.update(set(names) & set(LEFT_OUT_OF_ZIP))
        return left_out

    shutil.copytree(root / "functions", target, ignore=ignore)
    return target


def chalice_package(stage: str, output: Path, root: Path = ROOT) -> None:
    if output.exists():
        shutil.rmtree(output)
    env = dict(os.environ)
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    # The package is built from the code, never from a developer's local endpoint or credentials.
    env.pop("AWS_ENDPOINT_URL", None)
    # In AWS, API Gateway runs the JWT authorizer in front of the protected routes (docs/api.md).
    env["POSTBACKS_API_AUTHORIZER"] = "1"
    chalice = Path(sys.executable).with_name("chalice")
    command = [str(chalice), "package", "--stage", stage, "--merge-template", str(TEMPLATE), str(output)]
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:
        raise PackagingError(f"chalice package failed:\n{result.stdout}\n{result.stderr}")


def _runtime_version(template_path: Path) -> str | None:
    template = json.loads(template_path.read_text(encoding="utf-8"))
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            runtime = resource["Properties"].get("Runtime")
            return str(runtime) if runtime else None
    return None


def rewrite_zip(zip_path: Path, compile_pyc: bool) -> list[str]:
    """Strip runtime-provided and cached files, check for test-only packages, add .pyc; returns names."""
    with tempfile.TemporaryDirectory() as scratch:
        tree = Path(scratch) / "tree"
        with zipfile.ZipFile(zip_path) as source:
            members = [info for info in source.infolist() if not _is_stripped(info.filename)]
            forbidden = sorted({_top_level(info.filename) for info in members} & set(FORBIDDEN))
            if forbidden:
                raise PackagingError(f"test-only packages in the deployment package: {', '.join(forbidden)}")
            for info in members:
                source.extract(info, tree)
            modes = {info.filename: info.external_attr for info in members}
        if compile_pyc:
            ok = compileall.compile_dir(
                str(tree),
                quiet=1,
                workers=1,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
            if not ok:
                raise PackagingError("compileall failed on the package")
        rebuilt = zip_path.with_suffix(".tmp")
        names: list[str] = []
        with zipfile.ZipFile(rebuilt, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as target:
            for path in sorted(tree.rglob("*")):
                if path.is_dir():
                    continue
                name = path.relative_to(tree).as_posix()
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = modes.get(name, 0o644 << 16) or (0o644 << 16)
                info.compress_type = zipfile.ZIP_DEFLATED
                target.writestr(info, path.read_bytes())
                names.append(name)
        rebuilt.replace(zip_path)
    return names


def cfn_lint(template_path: Path) -> None:
    cfn_lint_bin = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint_bin), str(template_path)], capture_output=True, text=True, timeout=300, check=False
    )
    if result.returncode != 0:
        raise PackagingError(f"cfn-lint found problems in {template_path}:\n{result.stdout}{result.stderr}")


def check_contents(names: Iterable[str]) -> None:
    tops = {_top_level(name) for name in names}
    missing = {"app", "functions"} - tops
    if missing:
        raise PackagingError(f"the deployment package lacks {', '.join(sorted(missing))}")


def build(stage: str, output: Path, root: Path = ROOT, lint: bool = True) -> Path:
    vendor_functions(root)
    chalice_package(stage, output, root)
    template_path = output / "sam.json"
    runtime = _runtime_version(template_path)
    here = f"python{sys.version_info.major}.{sys.version_info.minor}"
    compile_pyc = runtime == here
    if not compile_pyc:
        print(f"note: runtime {runtime} differs from this interpreter ({here}); no .pyc added", file=sys.stderr)
    names = rewrite_zip(output / "deployment.zip", compile_pyc)
    check_contents(names)
    if lint:
        cfn_lint(template_path)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infrastructure.package", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--output", type=Path, default=ROOT / "dist")
    parser.add_argument("--no-lint", action="store_true", help="skip cfn-lint")
    args = parser.parse_args(argv)
    try:
        output = build(args.stage, args.output.resolve(), lint=not args.no_lint)
    except PackagingError as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 1
    size = (output / "deployment.zip").stat().st_size
    print(f"{output / 'deployment.zip'} ({size / 1e6:.1f} MB) and {output / 'sam.json'}: built, cfn-lint clean")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
