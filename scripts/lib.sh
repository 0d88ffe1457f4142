# Shared settings and helpers for the node SDK's environment scripts.
# Sourced by scripts/env.sh, scripts/images.sh and scripts/test.sh; not run directly.
#
# Everything the scripts start or write lives under project-owned paths, so a host
# containerd, registry or CNI setup is never touched:
#   /run/node-sdk/      sockets, pid files, the env file the tests read
#   /var/lib/node-sdk/  containerd root, registry storage, built images, logs
#   /etc/node-sdk/      containerd config, registry configs, CNI conflists, certs.d

NSDK_NAME=node-sdk
NSDK_RUN=${NSDK_RUN:-/run/node-sdk}
NSDK_LIB=${NSDK_LIB:-/var/lib/node-sdk}
NSDK_ETC=${NSDK_ETC:-/etc/node-sdk}
NSDK_LOG=$NSDK_LIB/log
NSDK_ENV_FILE=$NSDK_RUN/env

CONTAINERD_SOCK=$NSDK_RUN/containerd/containerd.sock
CONTAINERD_CONFIG=$NSDK_ETC/containerd/config.toml
CONTAINERD_METRICS=127.0.0.1:10338
CNI_BIN_DIR=/usr/lib/cni
CNI_CONF_DIR=$NSDK_ETC/cni/net.d

REGISTRY=127.0.0.1:5000
AUTH_REGISTRY=127.0.0.1:5001
AUTH_REGISTRY_USER=nodesdk
AUTH_REGISTRY_PASSWORD=nodesdk-test-password

# Locally built test images (scripts/images.sh). The sandbox image is our own pause.
PAUSE_IMAGE=$REGISTRY/node-sdk/pause:3.10
BUSYBOX_IMAGE=$REGISTRY/node-sdk/busybox:1.35
AUTH_BUSYBOX_IMAGE=$AUTH_REGISTRY/node-sdk/busybox:1.35

# Debian packages the environment needs, as "command:package" (command empty when
# the package is checked by dpkg alone).
NSDK_PACKAGES=(
    containerd:containerd
    runc:runc
    :containernetworking-plugins
    iptables:iptables
    nft:nftables
    conntrack:conntrack
    ip:iproute2
    docker-registry:docker-registry
    skopeo:skopeo
    :busybox-static
    ipset:ipset
    htpasswd:apache2-utils
    gcc:gcc
    curl:curl
)

say() { printf '[node-sdk] %s\n' "$*" >&2; }
die() { printf '[node-sdk] error: %s\n' "$*" >&2; exit 1; }

require_root() {
    [ "$(id -u)" -eq 0 ] || die "this needs root (containerd, network namespaces, iptables): run it as root, e.g. sudo $0 $*"
}

# pid_alive FILE: the pid recorded in FILE runs and is still the program we started
# (the pid file holds "PID PROGRAM"; a pid reused by another program does not count).
pid_alive() {
    local f=$1 pid prog cmdline
    [ -s "$f" ] || return 1
    read -r pid prog <"$f" || true
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    [ -z "$prog" ] && return 0
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    case " $cmdline" in *" $prog "* | *"/$prog "*) return 0 ;; *) return 1 ;; esac
}

# pid_of FILE: the pid recorded in FILE.
pid_of() { cut -d' ' -f1 "$1"; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds.
wait_for() {
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    return 1
}
