#!/usr/bin/env bash
# Provide the Docker Compose v2 CLI plugin so tests can run `docker compose config`.
# Debian bookworm ships only Compose v1; the next Debian release has v2. The package is fetched from the
# same Debian archive the machine already uses, into a private apt state (the system's apt setup is not
# touched), and the plugin is put in $DOCKER_CONFIG/cli-plugins. Prints the DOCKER_CONFIG to use.
set -euo pipefail
dir="${1:-/tmp/meditron-compose}"
if docker compose version >/dev/null 2>&1; then echo "${DOCKER_CONFIG:-$HOME/.docker}"; exit 0; fi
if [ -x "$dir/cfg/cli-plugins/docker-compose" ]; then echo "$dir/cfg"; exit 0; fi
command -v docker >/dev/null && command -v apt-get >/dev/null || exit 1
mirror="$(grep -hoE '^URIs: *[^ ]+/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')"
[ -n "$mirror" ] || mirror="$(grep -hoE '^deb +[^ ]+/debian/? ' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')"
[ -n "$mirror" ] || exit 1
mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/cfg/cli-plugins" "$dir/x"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" > "$dir/sources.list"
opts=(-o "Dir::Etc::sourcelist=$dir/sources.list" -o "Dir::Etc::sourceparts=-" -o "Dir::State::Lists=$dir/lists"
      -o "Dir::Cache=$dir/cache" -o "APT::Get::List-Cleanup=0" -qq)
apt-get "${opts[@]}" update >&2
(cd "$dir" && apt-get "${opts[@]}" download docker-compose >&2)
dpkg-deb -x "$dir"/docker-compose_*.deb "$dir/x"
cp "$(find "$dir/x" -path '*cli-plugins/docker-compose' -type f | head -1)" "$dir/cfg/cli-plugins/docker-compose"
chmod +x "$dir/cfg/cli-plugins/docker-compose"
echo "$dir/cfg"
