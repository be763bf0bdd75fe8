#!/bin/sh
# mmdebstrap customize hook of the Debian disk of `cargo xtask bench boot`.
# $1: the root directory; BENCH_PUBKEY: the benchmark's SSH public key file;
# BENCH_IMAGE: the docker-archive preloaded at boot; BENCH_USER: the login.
set -eu
root="$1"

# The login: sudo without a password, in the docker group, the key only.
chroot "$root" useradd --create-home --shell /bin/bash --groups sudo,docker "$BENCH_USER"
install -d -m 700 "$root/home/$BENCH_USER/.ssh"
install -m 600 "$BENCH_PUBKEY" "$root/home/$BENCH_USER/.ssh/authorized_keys"
chroot "$root" chown -R "$BENCH_USER:$BENCH_USER" "/home/$BENCH_USER/.ssh"
echo "$BENCH_USER ALL=(ALL) NOPASSWD:ALL" >"$root/etc/sudoers.d/$BENCH_USER"
chmod 440 "$root/etc/sudoers.d/$BENCH_USER"

# The machine: hostname, root file system, DHCP on the first NIC.
echo debian-bench >"$root/etc/hostname"
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$root/etc/fstab"
cat >"$root/etc/systemd/network/20-wired.network" <<'UNIT'
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
UNIT
chroot "$root" systemctl enable systemd-networkd.service

# The preloaded image: loaded once docker is up, as OxOS loads
# /var/lib/rancher/preload/docker/*.tar at boot.
install -d "$root/var/lib/bench-preload"
install -m 644 "$BENCH_IMAGE" "$root/var/lib/bench-preload/image.tar"
cat >"$root/etc/systemd/system/bench-preload.service" <<'UNIT'
[Unit]
Description=Load the preloaded container image
After=docker.service
Requires=docker.service

[Service]
Type=oneshot
ExecStart=/usr/bin/docker load --input /var/lib/bench-preload/image.tar
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
UNIT
chroot "$root" systemctl enable bench-preload.service
