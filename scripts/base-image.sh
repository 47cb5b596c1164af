#!/usr/bin/env bash
# A python:3.11-slim-bookworm-compatible base image made here (no image registry is reachable from
# these machines): debootstrap's minbase Debian 12 from this machine's apt mirror, with Debian's
# Python 3.11 in a venv at /opt/python whose bin/ leads PATH, so `python` and `pip` work as in the
# official image (Debian's own python is "externally managed", PEP 668: pip refuses it).
# Imported with `podman import`; a rerun is instant while the image exists (--rebuild makes it anew).
#   bash scripts/base-image.sh [--rebuild] [IMAGE]   (default IMAGE: localhost/facesim-base:3.11-bookworm)
set -euo pipefail
rebuild=0
if [[ ${1:-} == --rebuild ]]; then
  rebuild=1
  shift
fi
image=${1:-localhost/facesim-base:3.11-bookworm}
runtime=${FACESIM_CONTAINER_RUNTIME:-podman}
if [[ $rebuild -eq 0 ]] && "$runtime" image exists "$image" 2>/dev/null; then
  echo "base-image: $image exists ($runtime)"
  exit 0
fi
for tool in debootstrap "$runtime"; do
  command -v "$tool" >/dev/null || {
    echo "base-image: $tool missing: run scripts/install-tools.sh" >&2
    exit 1
  }
done
if [[ $(id -u) -ne 0 ]]; then
  echo "base-image: debootstrap needs root" >&2
  exit 1
fi
# The mirror apt uses here (deb822 .sources or one-line sources.list), for the suite bookworm.
mirror=$(
  { cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } |
    awk '/^URIs:/ {uri=$2} /^Suites:/ && / bookworm( |$)/ {print uri; exit}'
)
if [[ -z $mirror ]]; then
  mirror=$({ cat /etc/apt/sources.list 2>/dev/null || true; } | awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}')
fi
mirror=${mirror:-http://deb.debian.org/debian}
root=$(mktemp -d /var/tmp/facesim-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
started=$SECONDS
echo "base-image: debootstrap bookworm from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
  tail -20 "$root.log" >&2
  exit 1
}
rm -f "$root.log"
chroot "$root" python3 -m venv /opt/python
chroot "$root" /opt/python/bin/python -m pip --version
# What the slim image leaves out too: docs, man pages, apt's lists and caches.
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
  "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/var/log/*.log
tar -C "$root" -c . | "$runtime" import --quiet \
  --change 'ENV PATH=/opt/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --message "debootstrap minbase bookworm + python3 venv (facesim scripts/base-image.sh)" \
  - "$image" >/dev/null
echo "base-image: $image built in $((SECONDS - started)) s: $("$runtime" image inspect --format '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}')"
