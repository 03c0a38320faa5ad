#!/bin/bash
# Remove the gateway installed by deploy/install.sh. The state (/var/lib/gateway: network keys,
# frame counters, identity), the configuration (/etc/gateway, /etc/default/gateway) and the user
# stay unless --purge is given. See docs/install.md.
set -euo pipefail
export LC_ALL=C

PREFIX=/opt/gateway
UNIT_DIR=/usr/local/lib/systemd/system
UNITS=(gateway-radio.service gateway-border-router.service gateway-group-owner.service)
USER_NAME=gateway
RADIO_GROUP=gateway-radio
FACTORY_DIR=/var/lib/gateway-factory
FILES=(/etc/udev/rules.d/60-gateway.rules /etc/sysctl.d/60-gateway.conf
    /etc/modprobe.d/gateway-at86rf230.conf)
STATE=(/var/lib/gateway /etc/gateway /etc/default/gateway)

usage() {
    cat <<USAGE
usage: $0 [--purge] [--root DIR]

Stops and removes the gateway's services, venv and system files. Keeps ${STATE[*]}
and the user "$USER_NAME" unless --purge is given.

  --purge     also remove the state, the configuration and the user and group "$USER_NAME"
              (the Thread network keys and the gateway's identity are lost)
  --root DIR  uninstall from the system image at DIR (runs this script inside it with
              systemd-nspawn)
USAGE
}

purge=0
root_dir=""
while [ $# -gt 0 ]; do
    case "$1" in
        --purge) purge=1; shift ;;
        --root) root_dir=${2:?--root needs a directory}; shift 2 ;;
        --root=*) root_dir=${1#*=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "uninstall.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
die() { echo "uninstall.sh: error: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0 ...)"

if [ -n "$root_dir" ]; then
    [ -x "$root_dir/bin/bash" ] || die "--root $root_dir: no /bin/bash in the image"
    command -v systemd-nspawn >/dev/null || die "--root needs systemd-nspawn (apt-get install systemd-container)"
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    inner=(/bin/bash /run/gateway-uninstall/uninstall.sh)
    [ "$purge" = 0 ] || inner+=(--purge)
    exec systemd-nspawn --quiet --register=no --keep-unit --directory="$root_dir" \
        --private-network --resolv-conf=off \
        --bind-ro="$here:/run/gateway-uninstall" "${inner[@]}"
fi

summary=()
note() {
    summary+=("$(printf '  %-10s %-34s %s' "$1" "$2" "${3-}")")
    printf '==> %-10s %s %s\n' "$1" "$2" "${3-}"
}

# ---- services ---------------------------------------------------------------------------------
present=()
for u in "${UNITS[@]}"; do [ ! -e "$UNIT_DIR/$u" ] || present+=("$u"); done
if [ ${#present[@]} -eq 0 ]; then
    note absent "units"
else
    if [ -d /run/systemd/system ]; then
        systemctl disable --now "${present[@]}" >/dev/null 2>&1 || systemctl stop "${present[@]}" || true
        note stopped "${present[*]}"
    else
        systemctl --root=/ disable "${present[@]}" >/dev/null 2>&1 || true
    fi
    for u in "${present[@]}"; do rm -f "$UNIT_DIR/$u"; done
    note removed "units" "${present[*]}"
    [ ! -d /run/systemd/system ] || systemctl daemon-reload
fi

# ---- files ------------------------------------------------------------------------------------
for f in "${FILES[@]}"; do
    if [ -e "$f" ]; then rm -f "$f"; note removed "$f"; else note absent "$f"; fi
done
if [ -S /run/udev/control ] && command -v udevadm >/dev/null; then udevadm control --reload || true; fi
if [ "$(readlink /usr/local/bin/gwctl 2>/dev/null)" = "$PREFIX/venv/bin/gwctl" ]; then
    rm -f /usr/local/bin/gwctl
    note removed /usr/local/bin/gwctl
fi
if [ -e "$PREFIX" ]; then rm -rf "$PREFIX"; note removed "$PREFIX"; else note absent "$PREFIX"; fi
for cfg in /boot/firmware/config.txt /boot/config.txt; do
    if [ -f "$cfg.gateway-orig" ]; then
        note kept "$cfg" "dtparam=spi=on stays (harmless); the original is $cfg.gateway-orig"
    fi
done

# ---- state, configuration, user ---------------------------------------------------------------
if [ "$purge" = 1 ]; then
    for d in "${STATE[@]}" /run/gateway; do
        if [ -e "$d" ]; then rm -rf "$d"; note removed "$d"; fi
    done
    if getent passwd "$USER_NAME" >/dev/null; then userdel "$USER_NAME"; note removed "user $USER_NAME"; fi
    if getent group "$USER_NAME" >/dev/null; then groupdel "$USER_NAME"; note removed "group $USER_NAME"; fi
    if getent group "$RADIO_GROUP" >/dev/null; then groupdel "$RADIO_GROUP"; note removed "group $RADIO_GROUP"; fi
else
    for d in "${STATE[@]}"; do [ ! -e "$d" ] || note kept "$d" "(--purge removes it)"; done
    getent passwd "$USER_NAME" >/dev/null && note kept "user $USER_NAME" "(--purge removes it)"
fi
# The factory provisioning belongs to the box, not to this installation: never removed.
[ ! -e "$FACTORY_DIR" ] || note kept "$FACTORY_DIR" "(factory provisioning: never removed)"

echo
echo "Gateway uninstall summary"
printf '%s\n' "${summary[@]}"
