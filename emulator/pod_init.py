"""Inside a pod's new mount namespace (`python -m facesim.emulator.pod_init SPEC.json`): lay out
its filesystem, then exec the container's command. Mounts never reach the host: the namespace
was made with private propagation.

Order matters: everything read from the host (spec, hosts file, volumes, YuNet weights) is read
or bound before /tmp and /home are covered with empty tmpfs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def _bind(source: str, target: str, read_only: bool) -> None:
    if source == "tmpfs":  # an emptyDir
        Path(target).mkdir(parents=True, exist_ok=True)
        _mount("-t", "tmpfs", "tmpfs", target)
        return
    if Path(source).is_dir():
        Path(target).mkdir(parents=True, exist_ok=True)
    _mount("--bind", source, target)
    if read_only:
        _mount("-o", "remount,bind,ro", target)


def _cover(root: str, mode: str, keep: list[str]) -> None:
    """An empty tmpfs on `root`, with the `keep` folders below it (the "image": Python, facesim)
    bound back in place through a parking spot under /mnt."""
    kept = [path for path in keep if path.startswith(root.rstrip("/") + "/")]
    parked = [f"/mnt/.keep{i}" for i in range(len(kept))]
    for path, spot in zip(kept, parked, strict=True):
        _bind(path, spot, read_only=False)
    _mount("-t", "tmpfs", "-o", f"mode={mode}", "tmpfs", root)
    for path, spot in zip(kept, parked, strict=True):
        _bind(spot, path, read_only=False)
        subprocess.run(["umount", spot], check=True)
        Path(spot).rmdir()


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    yunet = Path(spec["yunet"]).read_bytes() if spec.get("yunet") else None
    _mount("-t", "tmpfs", "-o", "mode=755", "tmpfs", "/mnt")  # the image's /mnt: empty
    for mount in sorted(spec["mounts"], key=lambda m: m["target"].count("/")):
        _bind(mount["source"], mount["target"], mount["read_only"])
    _mount("--bind", spec["hosts"], "/etc/hosts")
    _cover("/tmp", "1777", spec["keep"])
    _cover("/home", "755", spec["keep"])
    home = Path(spec["home"])
    home.mkdir(parents=True)
    if yunet is not None:
        target = Path(spec["yunet_target"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(yunet)
    os.chdir(home)
    argv, env = spec["argv"], spec["env"]
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as error:
        print(f"emulated container: cannot run {argv[0]}: {error.strerror}", file=sys.stderr)
        sys.exit(127)


if __name__ == "__main__":
    main(sys.argv[1])
