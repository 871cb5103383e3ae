#!/bin/sh
# Host key and the user's authorized key come from /keys (mounted by the test):
#   /keys/host_key        the server's private host key (ed25519); made here when absent
#   /keys/authorized_keys public keys allowed to log in as `tunnel`
# A Docker socket mounted at /var/run/docker.sock is made usable by `tunnel` (its group).
set -eu
if [ -f /keys/host_key ]; then
  install -m 600 /keys/host_key /etc/ssh/ssh_host_ed25519_key
else
  ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
fi
if [ -f /keys/authorized_keys ]; then
  install -d -m 700 -o tunnel -g tunnel /home/tunnel/.ssh
  install -m 600 -o tunnel -g tunnel /keys/authorized_keys /home/tunnel/.ssh/authorized_keys
fi
if [ -S /var/run/docker.sock ]; then
  gid=$(stat -c %g /var/run/docker.sock)
  group=$(getent group "$gid" | cut -d: -f1)
  if [ -z "$group" ]; then group=dockersock; groupadd -g "$gid" "$group"; fi
  usermod -aG "$group" tunnel
fi
exec "$@"
