#!/bin/sh
# notify_master of [vrrp.instance.VI_1] in seed002-mysql/drbd1.toml and drbd2.toml, installed as
# /etc/fulcrum/scripts/mysql-start.sh. It does what the seed did by hand on the new primary
# after `drbdadm primary web`: mount the device on /database and start MySQL. An example: the
# tests do not run it.
set -eu

modprobe nbd
# The volume is promoted when VI_1 becomes MASTER, as this script starts: wait for its export.
tries=0
until nbd-client 127.0.0.1 10809 /dev/nbd0 -N web; do
    tries=$((tries + 1))
    if [ "$tries" -ge 30 ]; then
        echo "mysql-start: no NBD export web on 127.0.0.1:10809 after 30 s" >&2
        exit 1
    fi
    sleep 1
done
mount /dev/nbd0 /database
systemctl start mysqld
