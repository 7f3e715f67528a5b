#!/bin/sh
# notify_backup, notify_fault and notify_stop of [vrrp.instance.VI_1] in seed003-nfs/*.toml,
# installed as /etc/fulcrum/scripts/nfs-stop.sh: undoes nfs-start.sh. It also runs at start-up
# (INIT -> BACKUP), so each step accepts that there is nothing to undo. An example: the tests
# do not run it.

systemctl stop nfs-server
if mountpoint -q /export; then
    # Lazily when the device is already gone: Fulcrum demotes the volume as soon as the
    # instance leaves MASTER, without waiting for this script.
    umount /export || umount -l /export
fi
nbd-client -d /dev/nbd0 2>/dev/null
exit 0
