#!/bin/bash
# Install (or update) the gateway on Raspberry Pi OS Bookworm or plain Debian 12. Idempotent: a
# second run changes nothing and leaves running services alone. See docs/install.md.
set -euo pipefail
umask 022
export LC_ALL=C

PREFIX=/opt/gateway
VENV=$PREFIX/venv
UNIT_DIR=/usr/local/lib/systemd/system
UNITS=(gateway-radio.service gateway-border-router.service gateway-group-owner.service)
USER_NAME=gateway
RADIO_GROUP=gateway-radio
FACTORY_DIR=/var/lib/gateway-factory
CONFIG=/etc/gateway/gateway.toml
DEFAULTS=/etc/default/gateway
UDEV_RULE=/etc/udev/rules.d/60-gateway.rules
SYSCTL_CONF=/etc/sysctl.d/60-gateway.conf
MODPROBE_CONF=/etc/modprobe.d/gateway-at86rf230.conf
PKG=thing-gateway

usage() {
    cat <<USAGE
usage: $0 [options]

Installs the gateway: apt dependencies, the system user and group "$USER_NAME", a venv in $VENV
with the gateway, the configuration template, /etc/default/gateway, SPI in the Pi's config.txt,
udev/sysctl/modprobe files, and the systemd units (enabled, and started unless --no-start).

  --wheelhouse DIR  install offline from wheels built by deploy/build-wheelhouse.sh
                    (default: build from this source tree, fetching dependencies with pip)
  --radio-url URL   set GATEWAY_RADIO_URL in $DEFAULTS (e.g. "emulated:?node=1&port_offset=0")
  --no-start        enable the units but do not start or restart them
  --root DIR        install into the system image at DIR (a container or chroot tree) by running
                    this script inside it with systemd-nspawn; the services start at its next boot
  -h, --help        this text
USAGE
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(dirname "$here")
wheelhouse=""
radio_url=""
radio_url_set=0
no_start=0
root_dir=""
while [ $# -gt 0 ]; do
    case "$1" in
        --wheelhouse) wheelhouse=${2:?--wheelhouse needs a directory}; shift 2 ;;
        --wheelhouse=*) wheelhouse=${1#*=}; shift ;;
        --radio-url) radio_url=${2-}; radio_url_set=1; shift 2 ;;
        --radio-url=*) radio_url=${1#*=}; radio_url_set=1; shift ;;
        --no-start) no_start=1; shift ;;
        --root) root_dir=${2:?--root needs a directory}; shift 2 ;;
        --root=*) root_dir=${1#*=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

die() { echo "install.sh: error: $*" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0 ...)"
fi
if [ "$radio_url_set" = 1 ]; then
    [ -n "$radio_url" ] || die "--radio-url needs a URL"
    case "$radio_url" in
        *[[:space:]\"\'\\\$\`]*) die "--radio-url: the URL must not contain spaces, quotes, \\, \$ or \`" ;;
    esac
fi
if [ -n "$wheelhouse" ]; then
    [ -d "$wheelhouse" ] || die "--wheelhouse $wheelhouse: no such directory"
    wheelhouse=$(cd "$wheelhouse" && pwd)
fi

# ---- --root: run this same script inside the image -------------------------------------------
if [ -n "$root_dir" ]; then
    [ -d "$root_dir" ] || die "--root $root_dir: no such directory"
    [ -x "$root_dir/bin/bash" ] || die "--root $root_dir: no /bin/bash in the image"
    command -v systemd-nspawn >/dev/null || die "--root needs systemd-nspawn (apt-get install systemd-container)"
    inner=(/bin/bash /run/gateway-install/src/deploy/install.sh)
    [ "$no_start" = 0 ] || inner+=(--no-start)
    binds=(--bind-ro="$src:/run/gateway-install/src")
    if [ -n "$wheelhouse" ]; then
        # offline: no network in the image, and its resolv.conf left alone
        binds+=(--private-network --resolv-conf=off)
        binds+=(--bind-ro="$wheelhouse:/run/gateway-install/wheelhouse")
        inner+=(--wheelhouse /run/gateway-install/wheelhouse)
    fi
    [ "$radio_url_set" = 0 ] || inner+=(--radio-url "$radio_url")
    exec systemd-nspawn --quiet --register=no --keep-unit --directory="$root_dir" "${binds[@]}" \
        --setenv=GATEWAY_INSTALL_IN_IMAGE=1 "${inner[@]}"
fi

for f in systemd/gateway-radio.service deploy/gateway.toml.example deploy/gateway.default \
    deploy/udev/60-gateway.rules deploy/sysctl.d/60-gateway.conf \
    deploy/modprobe.d/gateway-at86rf230.conf deploy/pi-config.awk; do
    [ -f "$src/$f" ] || die "missing $src/$f (run the installer from the gateway's source tree)"
done

# ---- bookkeeping for the summary --------------------------------------------------------------
summary=()
n_changed=0
n_skipped=0
n_failed=0
note() {  # note STATUS WHAT [DETAIL]
    local status=$1 what=$2 detail=${3-}
    case "$status" in
        created|installed|updated|enabled|started|restarted|added|edited|removed) n_changed=$((n_changed + 1)) ;;
        skipped) n_skipped=$((n_skipped + 1)) ;;
        FAILED) n_failed=$((n_failed + 1)) ;;
    esac
    summary+=("$(printf '  %-10s %-34s %s' "$status" "$what" "$detail")")
    printf '==> %-10s %s %s\n' "$status" "$what" "$detail"
}

# install_file SRC DEST MODE OWNER GROUP: copy when content, mode or owner differ.
install_file() {
    local from=$1 to=$2 mode=$3 owner=$4 group=$5
    if [ -f "$to" ] && cmp -s "$from" "$to" \
        && [ "$(stat -c '%a %U %G' "$to")" = "$(printf '%o' "0$mode") $owner $group" ]; then
        note unchanged "$to"
        return 1
    fi
    local status=installed
    [ -e "$to" ] && status=updated
    install -D -m "$mode" -o "$owner" -g "$group" "$from" "$to" || die "cannot write $to"
    note "$status" "$to"
    return 0
}

systemd_running() { [ -d /run/systemd/system ]; }

# ---- 1. system packages -----------------------------------------------------------------------
pkgs=(python3 python3-venv)
if [ -z "$wheelhouse" ]; then
    # spidev and systemd-python ship no wheels: they are compiled during the install
    pkgs+=(python3-dev build-essential pkg-config libsystemd-dev)
fi
missing=()
for p in "${pkgs[@]}"; do
    if [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" != "ii " ]; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    note unchanged "apt packages" "${pkgs[*]}"
else
    echo "==> installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        apt-get update -q || true
        apt-get install -y -q --no-install-recommends "${missing[@]}" \
            || die "cannot install ${missing[*]} (no network? offline: install them first)"
    fi
    note installed "apt packages" "${missing[*]}"
fi
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "python3 is $(python3 -V 2>&1); the gateway needs 3.11 or newer (Bookworm)"

# ---- 2. user and groups -----------------------------------------------------------------------
nologin=/usr/sbin/nologin
[ -x "$nologin" ] || nologin=/bin/false
if getent group "$USER_NAME" >/dev/null; then
    note unchanged "group $USER_NAME"
else
    groupadd --system "$USER_NAME"
    note created "group $USER_NAME"
fi
if getent passwd "$USER_NAME" >/dev/null; then
    note unchanged "user $USER_NAME"
else
    useradd --system --gid "$USER_NAME" --home-dir /var/lib/gateway --no-create-home \
        --shell "$nologin" --comment "thing gateway services" "$USER_NAME"
    note created "user $USER_NAME" "(system user, no login)"
fi
# Two groups: "$USER_NAME" administers (gwctl, the control sockets); "$RADIO_GROUP" owns the
# radio device and the radio socket. Technicians join the first; only what needs the raw radio
# (the services' user, and whoever runs gwctl radio through the service) the second.
if getent group "$RADIO_GROUP" >/dev/null; then
    note unchanged "group $RADIO_GROUP"
else
    groupadd --system "$RADIO_GROUP"
    note created "group $RADIO_GROUP" "(the radio device and the radio socket)"
fi
for g in "$RADIO_GROUP" spi gpio; do
    if ! getent group "$g" >/dev/null; then
        note skipped "supplementary group $g" "no '$g' group here (not Raspberry Pi OS); the udev rule gives the device to group $RADIO_GROUP"
    elif id -nG "$USER_NAME" | tr ' ' '\n' | grep -qx "$g"; then
        note unchanged "supplementary group $g"
    else
        usermod -a -G "$g" "$USER_NAME"
        note added "supplementary group $g" "user $USER_NAME is now in '$g'"
    fi
done

# ---- 3. venv and the gateway ------------------------------------------------------------------
sys_ver=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ -x "$VENV/bin/python" ] \
    && [ "$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$sys_ver" ]; then
    note unchanged "venv $VENV" "python $sys_ver"
else
    rm -rf "$VENV"
    install -d -m 0755 "$PREFIX"
    python3 -m venv "$VENV"
    note created "venv $VENV" "python $sys_ver"
fi

# What is installed, as one hash: every distribution and version, and the gateway's own files.
fingerprint() {
    "$VENV/bin/python" - "$PKG" <<'PY'
import hashlib, sys
from importlib import metadata
h = hashlib.sha256()
for d in sorted(metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
    h.update(f"{d.metadata['Name']}=={d.version}\n".encode())
    if (d.metadata["Name"] or "").lower() == sys.argv[1]:
        for f in sorted(d.files or [], key=str):
            if f.suffix != ".pyc" and f.name not in ("RECORD", "INSTALLER", "direct_url.json"):
                h.update(str(f).encode() + b"\0" + f.locate().read_bytes())
print(h.hexdigest())
PY
}
before=$(fingerprint)
pip=("$VENV/bin/python" -m pip --disable-pip-version-check --no-input -q)
tmp_wheels=""
cleanup() { [ -z "$tmp_wheels" ] || rm -rf "$tmp_wheels"; }
trap cleanup EXIT
if [ -n "$wheelhouse" ]; then
    shopt -s nullglob
    wheels=("$wheelhouse"/thing_gateway-*.whl)
    shopt -u nullglob
    [ ${#wheels[@]} -eq 1 ] || die "--wheelhouse $wheelhouse: expected one thing_gateway-*.whl, found ${#wheels[@]}"
    wheel=${wheels[0]}
    index=(--no-index --find-links "$wheelhouse")
    how="offline from $wheelhouse"
else
    [ -f "$src/pyproject.toml" ] || die "no pyproject.toml in $src"
    # Debian 12's venv has pip 23.0 and setuptools 66 without `wheel`: current ones build the
    # dependencies that ship only a setup.py as wheels instead of a deprecated legacy install.
    "${pip[@]}" install --upgrade pip setuptools wheel
    tmp_wheels=$(mktemp -d)
    echo "==> building the gateway's wheel from $src"
    # from a copy: the tree may be read-only, and an in-tree build leaves build/ behind
    mkdir "$tmp_wheels/src"
    tar -C "$src" --exclude=./.git --exclude=./.venv --exclude=./build --exclude='*.egg-info' \
        --exclude=__pycache__ -cf - . | tar -C "$tmp_wheels/src" -xf -
    "${pip[@]}" wheel --no-deps --wheel-dir "$tmp_wheels" "$tmp_wheels/src"
    wheel=$(ls "$tmp_wheels"/thing_gateway-*.whl)
    index=()
    how="from $src"
fi
# Dependencies (and the gateway when absent), then the gateway's own files exactly as in the
# wheel: the version number alone does not tell an updated tree from the installed one.
"${pip[@]}" install "${index[@]}" "$wheel"
if ! "$VENV/bin/python" - "$wheel" <<'PY'
import csv, io, sys, zipfile
from importlib import metadata
# Exit 0 when every file of the wheel is installed with the same hash (RECORD entries).
with zipfile.ZipFile(sys.argv[1]) as z:
    record = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
    wanted = {(r[0], r[1]) for r in csv.reader(io.TextIOWrapper(z.open(record))) if r and r[1]}
try:
    dist = metadata.distribution("thing-gateway")
except metadata.PackageNotFoundError:
    sys.exit(1)
have = {(r[0], r[1]) for r in csv.reader(io.StringIO(dist.read_text("RECORD") or "")) if r and r[1]}
sys.exit(0 if wanted <= have else 1)
PY
then
    "${pip[@]}" install "${index[@]}" --force-reinstall --no-deps "$wheel"
fi
after=$(fingerprint)
version=$("$VENV/bin/python" -c "from importlib.metadata import version; print(version('$PKG'))")
if [ "$before" = "$after" ]; then
    note unchanged "$PKG $version" "$how"
    code_changed=0
else
    note installed "$PKG $version" "$how"
    code_changed=1
fi
if [ "$(readlink /usr/local/bin/gwctl 2>/dev/null)" = "$VENV/bin/gwctl" ]; then
    note unchanged "/usr/local/bin/gwctl"
else
    ln -sfn "$VENV/bin/gwctl" /usr/local/bin/gwctl
    note installed "/usr/local/bin/gwctl" "-> $VENV/bin/gwctl"
fi
if [ -f "$src/docs/install.md" ]; then
    install_file "$src/docs/install.md" "$PREFIX/doc/install.md" 0644 root root || true
fi

# ---- 4. configuration and the factory directory ----------------------------------------------
# The factory provisioning (serial, factory secret, claim code) is written at manufacturing into
# $FACTORY_DIR; the services read it, nothing here or in uninstall/reset ever writes it.
if [ -d "$FACTORY_DIR" ]; then
    note unchanged "$FACTORY_DIR" "(factory provisioning; never modified)"
else
    install -d -m 0750 -o root -g "$USER_NAME" "$FACTORY_DIR"
    note created "$FACTORY_DIR" "(empty: the maker installs cbsb-factory.json here, 0640 root:$USER_NAME)"
fi
install -d -m 0755 -o root -g root /etc/gateway
if [ -e "$CONFIG" ]; then
    note unchanged "$CONFIG" "(exists; never overwritten)"
else
    install -m 0644 -o root -g root "$src/deploy/gateway.toml.example" "$CONFIG"
    note installed "$CONFIG" "from deploy/gateway.toml.example"
    # border routing on the interface of the default route (the uplink), when there is one
    lan_if=$(ip -o route show default 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }' || true)
    if [ -n "$lan_if" ] && printf '%s' "$lan_if" | grep -Eq '^[A-Za-z0-9._-]{1,15}$'; then
        sed -i "s/^#infra_interface = \"\" .*/infra_interface = \"$lan_if\"              # set by the installer: the uplink/" "$CONFIG"
        note edited "$CONFIG" "border routing on $lan_if ([border_router] infra_interface)"
    fi
fi
tmp_default=$(mktemp)
if [ -f "$DEFAULTS" ]; then cp "$DEFAULTS" "$tmp_default"; else cp "$src/deploy/gateway.default" "$tmp_default"; fi
if [ "$radio_url_set" = 1 ]; then
    grep -v '^[[:space:]]*GATEWAY_RADIO_URL=' "$tmp_default" >"$tmp_default.new" || true
    printf 'GATEWAY_RADIO_URL="%s"\n' "$radio_url" >>"$tmp_default.new"
    mv "$tmp_default.new" "$tmp_default"
fi
install_file "$tmp_default" "$DEFAULTS" 0644 root root && defaults_changed=1 || defaults_changed=0
rm -f "$tmp_default"

# ---- 5. Raspberry Pi: SPI on, the kernel's at86rf233 overlay off ------------------------------
boot_cfg=""
if [ -d /boot/firmware ]; then
    [ -f /boot/firmware/config.txt ] && boot_cfg=/boot/firmware/config.txt
elif [ -f /boot/config.txt ]; then
    boot_cfg=/boot/config.txt  # releases before Bookworm
fi
reboot_needed=0
if [ -z "$boot_cfg" ]; then
    note skipped "config.txt (SPI, overlay)" "no /boot/firmware/config.txt: not a Raspberry Pi"
else
    new_cfg=$(mktemp)
    awk -f "$src/deploy/pi-config.awk" "$boot_cfg" >"$new_cfg"
    if cmp -s "$new_cfg" "$boot_cfg"; then
        note unchanged "$boot_cfg" "dtparam=spi=on, no at86rf233 overlay"
    else
        [ -e "$boot_cfg.gateway-orig" ] || cp -p "$boot_cfg" "$boot_cfg.gateway-orig"
        cat "$new_cfg" >"$boot_cfg"
        note edited "$boot_cfg" "SPI on, at86rf233 overlay off (original: $boot_cfg.gateway-orig); reboot to apply"
        reboot_needed=1
    fi
    rm -f "$new_cfg"
fi
install_file "$src/deploy/modprobe.d/gateway-at86rf230.conf" "$MODPROBE_CONF" 0644 root root || true

# ---- 6. udev and sysctl -----------------------------------------------------------------------
if install_file "$src/deploy/udev/60-gateway.rules" "$UDEV_RULE" 0644 root root; then
    if [ -S /run/udev/control ] && command -v udevadm >/dev/null; then
        udevadm control --reload || true
        udevadm trigger --subsystem-match=spidev --subsystem-match=gpio --subsystem-match=tty \
            --action=change || true
    fi
fi
if install_file "$src/deploy/sysctl.d/60-gateway.conf" "$SYSCTL_CONF" 0644 root root; then
    if systemd_running && [ -z "${GATEWAY_INSTALL_IN_IMAGE-}" ] \
        && /lib/systemd/systemd-sysctl "$SYSCTL_CONF" 2>/dev/null; then
        note applied "$SYSCTL_CONF"
    else
        note skipped "applying $SYSCTL_CONF" "not writable here (container?); applies at boot"
    fi
fi

# ---- 7. systemd units -------------------------------------------------------------------------
units_changed=0
for u in "${UNITS[@]}"; do
    if install_file "$src/systemd/$u" "$UNIT_DIR/$u" 0644 root root; then units_changed=1; fi
done
enable_out=""
if systemd_running; then
    [ "$units_changed" = 0 ] || systemctl daemon-reload
    enable_out=$(systemctl enable "${UNITS[@]}" 2>&1) || die "systemctl enable failed: $enable_out"
else
    enable_out=$(systemctl --root=/ enable "${UNITS[@]}" 2>&1) || die "systemctl enable failed: $enable_out"
fi
if [ -n "$enable_out" ]; then note enabled "${UNITS[*]}"; else note unchanged "units enabled"; fi

# Which radio will the radio service open? The default is the Pi's SPI device.
# shellcheck source=/dev/null
effective_url=$(set +u; [ ! -f "$DEFAULTS" ] || . "$DEFAULTS"; export GATEWAY_RADIO_URL
    "$VENV/bin/python" -c 'from gateway.runtime.settings import load_settings; print(load_settings().radio.url)' 2>&1) \
    || { note FAILED "$CONFIG" "bad configuration: $effective_url"; effective_url=""; }
start_reason=""
case "$effective_url" in
    "") start_reason="the configuration has an error (above)" ;;
    at86rf233://*)
        dev=${effective_url#at86rf233://}
        dev=${dev%%\?*}
        [ -e "$dev" ] || start_reason="no $dev yet ($([ "$reboot_needed" = 1 ] && echo 'reboot to enable SPI' || echo 'is SPI on and the radio wired?')); they start at boot, or pass --radio-url for the emulated radio"
        ;;
esac
if [ "$no_start" = 1 ]; then
    note skipped "starting the services" "--no-start"
elif ! systemd_running; then
    note skipped "starting the services" "systemd is not running here; they start at boot"
elif [ -n "$start_reason" ]; then
    note skipped "starting the services" "$start_reason"
else
    changed=$((units_changed + code_changed + defaults_changed))
    active=1
    for u in "${UNITS[@]}"; do systemctl -q is-active "$u" || active=0; done
    if [ "$active" = 1 ] && [ "$changed" = 0 ]; then
        note unchanged "services" "running"
    else
        verb=start
        [ "$changed" = 0 ] || verb=restart
        if systemctl "$verb" "${UNITS[@]}"; then
            note "${verb}ed" "${UNITS[*]}"
        else
            note FAILED "starting the services" "see: journalctl -u 'gateway-*'"
        fi
    fi
fi

# ---- summary ----------------------------------------------------------------------------------
echo
echo "Gateway installation summary"
printf '%s\n' "${summary[@]}"
echo
[ "$reboot_needed" = 0 ] || echo "Reboot to apply the config.txt change (SPI)."
echo "Status: gwctl status    Logs: journalctl -u 'gateway-*'    Config: $CONFIG"
echo "install: $n_changed changed, $n_skipped skipped, $n_failed failed"
[ "$n_failed" = 0 ]
