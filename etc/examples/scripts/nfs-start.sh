#!/bin/sh
# notify_master of [vrrp.instance.VI_1] in seed003-nfs/manager.toml and manager_bak.toml,
# installed as /etc/fulcrum/scripts/nfs-start.sh. It does what heartbeat's haresources did after
# drbddisk::r0: Filesystem::/dev/drbd0::/export::xfs, then the NFS services. An example: the
# tests do not run it.
#
# /etc/exports on both nodes should pin the export's fsid, so that the clients' file handles
# stay valid when the export moves to the other node (the seed's "no Stale NFS file handle"):
#   /export 192.168.0.0/24(rw,sync,no_subtree_check,fsid=1)
set -eu

modprobe nbd
# The volume is promoted when VI_1 becomes MASTER, as this script starts: wait for its export.
tries=0
until nbd-client 127.0.0.1 10809 /dev/nbd0 -N r0; do
    tries=$((tries + 1))
    if [ "$tries" -ge 30 ]; then
        echo "nfs-start: no NBD export r0 on 127.0.0.1:10809 after 30 s" >&2
        exit 1
    fi
    sleep 1
done
mount -t xfs /dev/nbd0 /export
# The seed also moved dhcpd and xinetd (for its diskless PXE clients): start them here too.
systemctl start rpcbind nfs-server
