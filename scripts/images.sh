#!/usr/bin/env bash
# Build the node SDK's test images locally as OCI archives, with no network and no
# Docker: each image is one gzip layer made with tar, a config and a manifest, written
# as an OCI image layout and packed into FILE.tar. The builds are reproducible (fixed
# mtimes, sorted entries, gzip -n), so building twice yields the same digests.
#
#   scripts/images.sh build   build the archives into /var/lib/node-sdk/images
#   scripts/images.sh push    build, push to the local registries, import the sandbox image
#
# Images:
#   node-sdk/pause:3.10    our own static pause (scripts/images/pause.c): the sandbox image
#   node-sdk/busybox:1.35  Debian busybox-static with every applet linked in /bin
#                          (sh, sleep, httpd, nc, wget, ...), /etc/passwd and /var/www
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

IMAGES_DIR=$NSDK_LIB/images
ARCH=$(dpkg --print-architecture)

sha256() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# oci_archive NAME REF ROOTFS ENTRYPOINT_JSON CMD_JSON: pack ROOTFS as a one-layer image.
oci_archive() {
    local name=$1 ref=$2 rootfs=$3 entrypoint=$4 cmd=$5
    local work layout blobs tag diff_id layer_digest layer_size config_digest config_size manifest_digest manifest_size
    work=$(mktemp -d)
    layout=$work/layout
    blobs=$layout/blobs/sha256
    mkdir -p "$blobs"
    tag=${ref##*:}

    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=posix \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        -C "$rootfs" -cf "$work/layer.tar" .
    diff_id=$(sha256 "$work/layer.tar")
    gzip -n -9 "$work/layer.tar"
    layer_digest=$(sha256 "$work/layer.tar.gz")
    layer_size=$(size "$work/layer.tar.gz")
    mv "$work/layer.tar.gz" "$blobs/$layer_digest"

    printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Entrypoint":%s,"Cmd":%s,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"node-sdk scripts/images.sh %s"}]}' \
        "$ARCH" "$entrypoint" "$cmd" "$diff_id" "$name" >"$work/config.json"
    config_digest=$(sha256 "$work/config.json")
    config_size=$(size "$work/config.json")
    mv "$work/config.json" "$blobs/$config_digest"

    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
        "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$work/manifest.json"
    manifest_digest=$(sha256 "$work/manifest.json")
    manifest_size=$(size "$work/manifest.json")
    mv "$work/manifest.json" "$blobs/$manifest_digest"

    printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"%s","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
        "$manifest_digest" "$manifest_size" "$ARCH" "$ref" "$tag" >"$layout/index.json"

    mkdir -p "$IMAGES_DIR"
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$layout" -cf "$IMAGES_DIR/$name.tar.tmp" .
    mv "$IMAGES_DIR/$name.tar.tmp" "$IMAGES_DIR/$name.tar"
    printf 'sha256:%s\n' "$manifest_digest" >"$IMAGES_DIR/$name.digest"
    rm -rf "$work"
    say "built $IMAGES_DIR/$name.tar ($ref, manifest sha256:${manifest_digest:0:12})"
}

base_rootfs() {
    local root=$1
    mkdir -p "$root"/{bin,etc,tmp,proc,sys,dev,var/www,root}
    chmod 1777 "$root/tmp"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
}

build_pause() {
    local root
    root=$(mktemp -d)
    base_rootfs "$root"
    gcc -static -O2 -s -o "$root/pause" "$here/images/pause.c"
    oci_archive pause "$PAUSE_IMAGE" "$root" '["/pause"]' 'null'
    rm -rf "$root"
}

build_busybox() {
    local root applet
    root=$(mktemp -d)
    base_rootfs "$root"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $("$root/bin/busybox" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
    done
    printf 'node-sdk busybox test image\n' >"$root/var/www/index.html"
    oci_archive busybox "$BUSYBOX_IMAGE" "$root" 'null' '["sh"]'
    rm -rf "$root"
}

build() {
    [ -x /bin/busybox ] || die "/bin/busybox is missing: install Debian's busybox-static (scripts/env.sh install)"
    command -v gcc >/dev/null || die "gcc is missing: install Debian's gcc (scripts/env.sh install)"
    build_pause
    build_busybox
}

# push_one ARCHIVE REF [CREDS]: copy an OCI archive into a registry over plain HTTP.
push_one() {
    local archive=$1 ref=$2 creds=${3:-}
    local args=(copy --quiet --dest-tls-verify=false)
    [ -n "$creds" ] && args+=(--dest-creds "$creds")
    skopeo "${args[@]}" "oci-archive:$archive" "docker://$ref" ||
        die "pushing $archive to $ref failed (is the registry up? scripts/env.sh status; log in $NSDK_LOG)"
}

push() {
    build
    push_one "$IMAGES_DIR/pause.tar" "$PAUSE_IMAGE"
    push_one "$IMAGES_DIR/busybox.tar" "$BUSYBOX_IMAGE"
    push_one "$IMAGES_DIR/busybox.tar" "$AUTH_BUSYBOX_IMAGE" "$AUTH_REGISTRY_USER:$AUTH_REGISTRY_PASSWORD"
    # The sandbox image must be present before any pod starts: containerd does not
    # pull it through the registry mirror settings for sandboxes on every version.
    ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$IMAGES_DIR/pause.tar" >/dev/null ||
        die "importing the sandbox image into containerd failed (log: $NSDK_LOG/containerd.log)"
    say "pushed $PAUSE_IMAGE, $BUSYBOX_IMAGE, $AUTH_BUSYBOX_IMAGE; imported $PAUSE_IMAGE"
}

case "${1:-}" in
build) build ;;
push) push ;;
*) die "usage: $0 build|push" ;;
esac
