#!/bin/bash
# Slate's dracut module: in the initrd, `slate admin prepare-root` builds the
# root of the deployment that the kernel command line names (slate=...):
# /usr read-only from the deployment, /etc and /var as the OS keeps them,
# the machine id from the OS's state. Installed into images by slate compose,
# with the Slate built without network code at /usr/lib/slate/slate-initrd,
# which the initrd gets as its slate where the image has it. A deployment
# whose /usr is a verity image is mapped with losetup and dmsetup (taken
# where the image has them) and the loop, dm-verity and erofs modules; the
# image's trusted keys (remotes.d), where it has them when dracut runs,
# let prepare-root check the root hash's signature.

check() {
    require_binaries slate || return 1
    return 0
}

depends() {
    echo systemd
    return 0
}

installkernel() {
    hostonly='' instmods loop dm-verity erofs
}

install() {
    inst_multiple -o losetup dmsetup modprobe
    local f
    for f in "${dracutsysrootdir-}"/usr/lib/slate/remotes.d/*.toml; do
        if [[ -f $f ]]; then
            inst_simple "${f#"${dracutsysrootdir-}"}"
        fi
    done
    if [[ -x ${dracutsysrootdir-}/usr/lib/slate/slate-initrd ]]; then
        inst_binary /usr/lib/slate/slate-initrd /usr/bin/slate
    else
        inst_binary slate
    fi
    inst_simple "$moddir/slate-prepare-root.service" \
        "$systemdsystemunitdir/slate-prepare-root.service"
    $SYSTEMCTL -q --root "$initdir" add-wants initrd-root-fs.target slate-prepare-root.service
}
