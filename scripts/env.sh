#!/usr/bin/env bash
# The node SDK's real node environment: a project-owned containerd, two local image
# registries (plain and htpasswd-authenticated), CNI plugins and the test images.
#
#   scripts/env.sh install   install the Debian packages that are missing (nothing else)
#   scripts/env.sh up        install, write configs, start what is not running, push images
#   scripts/env.sh status    say what runs and whether it answers; exit 1 if anything is down
#   scripts/env.sh down      stop what these scripts started (pid files), nothing else
#
# All of it is idempotent. It never touches a host containerd (/run/containerd), the
# host's /etc/cni/net.d or /etc/containerd: see scripts/lib.sh for the paths used.
# Facts behind the settings are in ../shared/TESTENV.md (oom_score_adj, CNI bin dir,
# sandbox image, registry hosts).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

install_packages() {
    local missing=() entry cmd pkg
    for entry in "${NSDK_PACKAGES[@]}"; do
        cmd=${entry%%:*}
        pkg=${entry#*:}
        if [ -n "$cmd" ] && command -v "$cmd" >/dev/null 2>&1; then continue; fi
        if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then continue; fi
        missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        say "packages: all present"
        return
    fi
    say "installing missing Debian packages: ${missing[*]}"
    apt-get update -q >"$NSDK_LOG/apt.log" 2>&1 || die "apt-get update failed (see $NSDK_LOG/apt.log)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
        >>"$NSDK_LOG/apt.log" 2>&1 || die "apt-get install ${missing[*]} failed (see $NSDK_LOG/apt.log)"
    # Debian's packages ship services; without systemd nothing starts, but a host with
    # an init system might have started them: we leave any such service alone.
}

# write_if_changed FILE: replace FILE with stdin when the content differs.
write_if_changed() {
    local file=$1 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [ -f "$file" ] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
        return 1
    fi
    mkdir -p "$(dirname "$file")"
    mv "$tmp" "$file"
    chmod 0644 "$file"
    return 0
}

write_configs() {
    local changed=0
    write_if_changed "$CONTAINERD_CONFIG" <<TOML && changed=1
# Written by scripts/env.sh: the node SDK's own containerd (CRI v1), separate from any
# host containerd: its own root, state, socket, CNI conf dir and registry hosts.
version = 2
root = "$NSDK_LIB/containerd"
state = "$NSDK_RUN/containerd/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$CONTAINERD_SOCK"

[ttrpc]
  address = "$NSDK_RUN/containerd/containerd.sock.ttrpc"

[debug]
  address = ""
  level = "info"

# containerd's own Prometheus metrics, with gRPC server-side handling-time histograms:
# the benchmarks compare what our client observes with what containerd reports.
[metrics]
  address = "$CONTAINERD_METRICS"
  grpc_histogram = true

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # No CAP_SYS_RESOURCE here: runc cannot lower oom_score_adj (TESTENV.md fact 1).
  restrict_oom_score_adj = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$CNI_CONF_DIR"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$NSDK_ETC/containerd/certs.d"
TOML
    local reg
    for reg in "$REGISTRY" "$AUTH_REGISTRY"; do
        write_if_changed "$NSDK_ETC/containerd/certs.d/$reg/hosts.toml" <<TOML || true
# Written by scripts/env.sh: the local test registry speaks plain HTTP.
server = "http://$reg"

[host."http://$reg"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
TOML
    done
    # The pods' default network: bridge + host-local + portmap + firewall, on a bridge
    # and subnet of our own. containerd uses the first conflist in CNI_CONF_DIR.
    write_if_changed "$CNI_CONF_DIR/10-node-sdk.conflist" <<'JSON' || true
{
  "cniVersion": "1.0.0",
  "name": "node-sdk",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "nsdk0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "10.88.0.0/16" }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": "/var/lib/node-sdk/cni/networks"
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "firewall" }
  ]
}
JSON
    local name port auth
    for name in registry auth-registry; do
        if [ "$name" = registry ]; then port=5000; auth=""; else
            port=5001
            auth="auth:
  htpasswd:
    realm: node-sdk-test
    path: $NSDK_ETC/registry/htpasswd"
        fi
        write_if_changed "$NSDK_ETC/registry/$name.yml" <<YAML || true
# Written by scripts/env.sh: a local test registry ($name).
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $NSDK_LIB/$name
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: node-sdk-local-test-registry
$auth
YAML
    done
    if ! [ -s "$NSDK_ETC/registry/htpasswd" ] ||
        ! htpasswd -vb "$NSDK_ETC/registry/htpasswd" "$AUTH_REGISTRY_USER" "$AUTH_REGISTRY_PASSWORD" >/dev/null 2>&1; then
        htpasswd -Bbc "$NSDK_ETC/registry/htpasswd" "$AUTH_REGISTRY_USER" "$AUTH_REGISTRY_PASSWORD" 2>/dev/null
    fi
    CONFIG_CHANGED=$changed
}

cri_answers() { ctr --address "$CONTAINERD_SOCK" version; }
registry_answers() { curl -fsS -o /dev/null "http://$1/v2/"; }
# The authenticated registry answers 401 to an anonymous /v2/ and 200 with credentials.
auth_registry_answers() { curl -fsS -o /dev/null -u "$AUTH_REGISTRY_USER:$AUTH_REGISTRY_PASSWORD" "http://$AUTH_REGISTRY/v2/"; }

# start NAME CHECK_FN CHECK_ARG COMMAND...: start COMMAND in the background unless the
# pid file says it runs; wait until CHECK_FN answers.
start() {
    local name=$1 check=$2 arg=$3
    shift 3
    local pidfile=$NSDK_RUN/$name.pid log=$NSDK_LOG/$name.log
    if pid_alive "$pidfile"; then
        if "$check" $arg >/dev/null 2>&1; then
            say "$name: already running (pid $(pid_of "$pidfile"))"
            return
        fi
    else
        rm -f "$pidfile"
    fi
    if ! pid_alive "$pidfile"; then
        say "$name: starting (log: $log)"
        setsid "$@" >>"$log" 2>&1 </dev/null &
        echo "$! $1" >"$pidfile"
    fi
    if ! wait_for 30 "$name" "$check" $arg; then
        if ! pid_alive "$pidfile"; then
            rm -f "$pidfile"
            die "$name exited right after start; last lines of $log:
$(tail -n 20 "$log")"
        fi
        die "$name (pid $(pid_of "$pidfile")) does not answer after 30 s; last lines of $log:
$(tail -n 20 "$log")"
    fi
    say "$name: up (pid $(pid_of "$pidfile"))"
}

write_env_file() {
    cat >"$NSDK_ENV_FILE.tmp" <<ENV
# Written by scripts/env.sh up: what the node SDK's tests find in the environment.
NODE_SDK_CRI_ENDPOINT=unix://$CONTAINERD_SOCK
NODE_SDK_CONTAINERD_CONFIG=$CONTAINERD_CONFIG
NODE_SDK_CONTAINERD_METRICS=$CONTAINERD_METRICS
NODE_SDK_CNI_BIN_DIR=$CNI_BIN_DIR
NODE_SDK_CNI_CONF_DIR=$CNI_CONF_DIR
NODE_SDK_REGISTRY=$REGISTRY
NODE_SDK_AUTH_REGISTRY=$AUTH_REGISTRY
NODE_SDK_AUTH_REGISTRY_USER=$AUTH_REGISTRY_USER
NODE_SDK_AUTH_REGISTRY_PASSWORD=$AUTH_REGISTRY_PASSWORD
NODE_SDK_PAUSE_IMAGE=$PAUSE_IMAGE
NODE_SDK_PAUSE_DIGEST=$(cat "$NSDK_LIB/images/pause.digest")
NODE_SDK_BUSYBOX_IMAGE=$BUSYBOX_IMAGE
NODE_SDK_BUSYBOX_DIGEST=$(cat "$NSDK_LIB/images/busybox.digest")
NODE_SDK_AUTH_BUSYBOX_IMAGE=$AUTH_BUSYBOX_IMAGE
ENV
    mv "$NSDK_ENV_FILE.tmp" "$NSDK_ENV_FILE"
}

up() {
    require_root up
    mkdir -p "$NSDK_RUN/containerd" "$NSDK_LIB" "$NSDK_LOG" "$NSDK_ETC"
    install_packages
    [ -d /proc/sys/net/ipv4 ] || die "no IPv4 networking in this kernel"
    # Pods on the bridge reach each other and the host through the kernel's forwarding.
    sysctl -q -w net.ipv4.ip_forward=1 >/dev/null 2>&1 || say "warning: could not set net.ipv4.ip_forward=1"
    modprobe br_netfilter >/dev/null 2>&1 || true
    write_configs
    if [ "$CONFIG_CHANGED" = 1 ] && pid_alive "$NSDK_RUN/containerd.pid"; then
        say "containerd: config changed, restarting"
        stop_one containerd
    fi
    start registry registry_answers "$REGISTRY" docker-registry serve "$NSDK_ETC/registry/registry.yml"
    start auth-registry auth_registry_answers "" docker-registry serve "$NSDK_ETC/registry/auth-registry.yml"
    start containerd cri_answers "" containerd --config "$CONTAINERD_CONFIG"
    "$here/images.sh" push
    write_env_file
    say "environment up: CRI at unix://$CONTAINERD_SOCK, registries at $REGISTRY and $AUTH_REGISTRY (user $AUTH_REGISTRY_USER); env in $NSDK_ENV_FILE"
}

status() {
    local bad=0 name pidfile
    for name in registry auth-registry containerd; do
        pidfile=$NSDK_RUN/$name.pid
        if pid_alive "$pidfile"; then
            printf '%-14s running (pid %s)' "$name" "$(pid_of "$pidfile")"
        else
            printf '%-14s not running' "$name"
            bad=1
        fi
        case $name in
        registry) registry_answers "$REGISTRY" 2>/dev/null && printf ', answers on %s\n' "$REGISTRY" || { printf ', no answer on %s\n' "$REGISTRY"; bad=1; } ;;
        auth-registry) auth_registry_answers 2>/dev/null && printf ', answers on %s (auth)\n' "$AUTH_REGISTRY" || { printf ', no answer on %s\n' "$AUTH_REGISTRY"; bad=1; } ;;
        containerd) cri_answers >/dev/null 2>&1 && printf ', answers on %s\n' "$CONTAINERD_SOCK" || { printf ', no answer on %s\n' "$CONTAINERD_SOCK"; bad=1; } ;;
        esac
    done
    if [ -s "$NSDK_ENV_FILE" ]; then printf 'env file      %s\n' "$NSDK_ENV_FILE"; else
        printf 'env file      missing (%s)\n' "$NSDK_ENV_FILE"
        bad=1
    fi
    [ $bad -eq 0 ] || { say "not everything is up: run scripts/env.sh up"; return 1; }
}

stop_one() {
    local name=$1 pidfile=$NSDK_RUN/$1.pid pid i
    if ! pid_alive "$pidfile"; then
        rm -f "$pidfile"
        return
    fi
    pid=$(pid_of "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
    say "$name: stopped (pid $pid)"
}

down() {
    require_root down
    stop_one containerd
    # Shims of our containerd (and the pods they hold) name our socket on their command line.
    pkill -TERM -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null || true
    stop_one auth-registry
    stop_one registry
    rm -f "$NSDK_ENV_FILE"
}

case "${1:-}" in
install) require_root install; mkdir -p "$NSDK_LOG"; install_packages ;;
up) up ;;
status) status ;;
down) down ;;
*) die "usage: $0 install|up|status|down" ;;
esac
