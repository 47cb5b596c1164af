#!/usr/bin/env bash
# System tools the tests need, from Debian's packages: headless Chromium for the UI's end-to-end
# tests (these machines cannot download browser builds, so Playwright drives the system Chromium
# through executable_path), shellcheck for the shell scripts' lint test, the PostgreSQL server
# that the shared-gallery tests start in a temporary directory, and podman + runc + debootstrap
# (+ iptables: the emulated Services' port mapping) for the container tests (the images are built here:
# scripts/base-image.sh, `facesim images build`).
set -euo pipefail
missing=()
for tool in chromium shellcheck podman runc debootstrap iptables; do # each command comes in the Debian package of the same name
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql-15)
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-tools: ${missing[*]} missing and installing needs root: run" \
      "'sudo apt-get install -y ${missing[*]}' (or leave out the browser and container tests:" \
      "-m 'not browser and not container')" >&2
    exit 1
  fi
  echo "install-tools: installing ${missing[*]} (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Podman's settings for a sandbox without CAP_SYS_RESOURCE: a container that asks for rlimits above
# the hard limits fails ("setrlimit ... operation not permitted"), so every container gets limits at
# or below them; and the runc runtime (the one checked here; crun is not installed).
conf=/etc/containers/containers.conf
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
limit() { # min(wanted, hard limit); "unlimited" is no limit
  if [[ $2 == unlimited || $2 -ge $1 ]]; then echo "$1"; else echo "$2"; fi
}
ulimits="default_ulimits = [\"nofile=$(limit 1024 "$nofile"):$(limit 1024 "$nofile")\", \"nproc=$(limit 1024 "$nproc"):$(limit 1024 "$nproc")\"]"
if ! grep -qs '^# facesim: container settings' "$conf"; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-tools: $conf needs the facesim container settings (see this script); run it as root" >&2
    exit 1
  fi
  if grep -qsE '^\[(containers|engine)\]' "$conf"; then
    echo "install-tools: $conf already has [containers] or [engine] tables: add by hand" \
      "'$ulimits' under [containers] and 'runtime = \"runc\"' under [engine]" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$conf")"
  printf '\n# facesim: container settings (scripts/install-tools.sh)\n[containers]\n%s\n\n[engine]\nruntime = "runc"\n' \
    "$ulimits" >>"$conf"
  echo "install-tools: wrote the container settings into $conf"
fi
