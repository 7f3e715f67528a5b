#!/bin/sh
# notify_backup, notify_fault and notify_stop of [vrrp.instance.VI_1] in seed002-mysql/*.toml,
# installed as /etc/fulcrum/scripts/mysql-stop.sh: undoes mysql-start.sh (the seed's "umount,
# then drbdadm secondary" of a planned switch). It also runs at start-up (INIT -> BACKUP), so
# each step accepts that there is nothing to undo. An example: the tests do not run it.

systemctl stop mysqld
if mountpoint -q /database; then
    # Lazily when the device is already gone: Fulcrum demotes the volume as soon as the
    # instance leaves MASTER, without waiting for this script.
    umount /database || umount -l /database
fi
nbd-client -d /dev/nbd0 2>/dev/null
exit 0
