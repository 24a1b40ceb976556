#!/bin/bash
# Slate's dracut module: in the initrd, `slate admin prepare-root` builds the
# root of the deployment that the kernel command line names (slate=...):
# /usr read-only from the deployment, /etc and /var as the OS keeps them,
# the machine id from the OS's state. Installed into images by slate compose,
# with the Slate built without network code at /usr/lib/slate/slate-initrd,
# which the initrd gets as its slate where the image has it.

check() {
    require_binaries slate || return 1
    return 0
}

depends() {
    echo systemd
    return 0
}

install() {
    if [[ -x ${dracutsysrootdir-}/usr/lib/slate/slate-initrd ]]; then
        inst_binary /usr/lib/slate/slate-initrd /usr/bin/slate
    else
        inst_binary slate
    fi
    inst_simple "$moddir/slate-prepare-root.service" \
        "$systemdsystemunitdir/slate-prepare-root.service"
    $SYSTEMCTL -q --root "$initdir" add-wants initrd-root-fs.target slate-prepare-root.service
}
