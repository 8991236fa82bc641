#!/usr/bin/env bash
# Install or remove the appliance on a Debian host: a kiosk (edge), the back office or a
# pathology server.
#
#   deploy/install.sh edge       [--config F] [--password-file F] [--ca F]
#   deploy/install.sh backoffice --worker NAME [--config F] [--password-file F] [--ca F]
#   deploy/install.sh pathology  --instance I [--config F] [--password-file F] [--ca F]
#   deploy/install.sh edge|backoffice|pathology --uninstall [--purge]
#
# What it does (each step is skipped when already done, so running it again changes nothing):
#   system user "appliance" (edge: also in group video) and its state folder
#   /var/lib/appliance (0750, as the units' StateDirectory= makes it), a venv in
#   /opt/appliance/venv with this checkout installed, the shipped skin models in
#   /opt/appliance/models, the config in
#   /etc/appliance (a template when none is there; an existing one is never overwritten unless
#   --config is given), the broker CA and password as systemd credentials in
#   /etc/appliance/credentials (0600, root), the units (and the camera's udev rule; the back
#   office's: its worker's, the console's, the model repository's server and the timer that
#   re-signs its timestamp, and the store's nightly backup timer); the units are enabled and started only once the config passes
#   `appliance config check` as the unit reads it (as user appliance, with the unit's
#   APPLIANCE__ variables; a template passes when its placeholders are set; the config is made
#   group appliance's, 0640, so that user reads it), the model repository's two once
#   /srv/models holds a repository (`appliance models repo init /srv/models`, as root); until
#   then it says which file to edit, or what to make, and how to start them after.
#   The first run whose config passes enables and starts the unit; a run after that leaves it
#   as it finds it (stopped, disabled or masked by hand: it says so, and what starts it).
#   Run again after an upgrade, it restarts the units that were running and run from what it
#   changed (this role's units: any file it wrote; another role's: the venv or the CA), each
#   only when its config passes the check, and says which; a unit that was stopped stays so.
#   A run cut short (killed while building the venv) is finished by the next: it repairs the
#   venv and restarts what the cut-short run changed.
# --uninstall stops and removes units, udev rule and /opt/appliance; it keeps /etc/appliance
# and /var/lib/appliance (unsent results, the store) unless --purge is given as well; the
# edge's results the back office confirmed, kept in its outbox for a resend, it deletes. While
# another role's units remain on the host (a back office beside a pathology server), it removes
# only this role's units: the others run from the same venv, config folder and state. The
# edge's also stops and disables the kiosk screen's unit (it shows the edge's page) and keeps
# its file, copied by hand.
# For packaging and tests: --root DIR installs under DIR (no user, no service start) and
# --skip-pip creates the venv without installing into it. Sourced, it defines its functions and
# runs nothing (tests/test_deploy_install.py runs main with a recording systemctl).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVICE_USER=appliance  # User= of every daemon's unit
SCREEN=appliance-kiosk-screen.service  # copied by hand beside the edge (its comment says how)
# beside the workers: the console, the model repository's server and its refresh timer, and
# the store's nightly backup timer
BACKOFFICE_UNITS=(appliance-console.service appliance-models-repo.service appliance-models-refresh.timer appliance-store-backup.timer)

usage() { sed -n '2,11p' "${BASH_SOURCE[0]}" >&2; exit 2; }

parse_arguments() {  # the options into the globals below
  role=${1:-}; shift || true
  [[ "$role" == edge || "$role" == backoffice || "$role" == pathology ]] || usage
  ROOT=/ CONFIG= CONFIG_FILE= STARTED= PASSWORD_FILE= CA= WORKER= INSTANCE= UNINSTALL=0 PURGE=0 SKIP_PIP=0
  CHANGED=() RUNNING=() KEPT=() SUMMARY=() CODE_BEFORE=
  declare -gA CHECKED=()  # "ROLE INSTANCE" -> the check's exit status, each checked once
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --root) ROOT=$(realpath -m "$2"); shift 2 ;;
      --config) CONFIG=$2; shift 2 ;;
      --password-file) PASSWORD_FILE=$2; shift 2 ;;
      --ca) CA=$2; shift 2 ;;
      --worker) WORKER=$2; shift 2 ;;
      --instance) INSTANCE=$2; shift 2 ;;
      --uninstall) UNINSTALL=1; shift ;;
      --purge) PURGE=1; shift ;;
      --skip-pip) SKIP_PIP=1; shift ;;
      *) echo "unknown option $1" >&2; usage ;;
    esac
  done
  R=${ROOT%/}
  OPT=$R/opt/appliance ETC=$R/etc/appliance UNITS=$R/etc/systemd/system STATE=$R/var/lib/appliance
  ENABLED_BY_INSTALL=$OPT/enabled-units  # the units a run enabled or found enabled, one a line
  PENDING=$OPT/install.pending  # while a run changes things: the code before it, what it wrote
  VENV_BUILDING=$OPT/venv.building  # while the venv is built: a build cut short left it
  OWED=$OPT/restarts-owed  # the running units a run kept on the install before: one a line
  REMOVED=$R/opt/.appliance.removed  # /opt/appliance while --uninstall removes it
  MODELS_REPO=/srv/models  # the model repository the back office's units serve and re-sign
}

live() { [[ "$ROOT" == / && -d /run/systemd/system ]]; }
say() { echo "install.sh: $*" >&2; }

check_arguments() {  # refuse what cannot be installed; the role's unit files and names
  if [[ "$ROOT" == / && $(id -u) -ne 0 ]]; then say "run as root"; exit 1; fi
  if [[ "$role" == backoffice && $UNINSTALL -eq 0 && ! "$WORKER" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]*$ ]]; then
    say "backoffice needs --worker NAME (its broker login, see deploy/mosquitto/provision.py)"; exit 2
  fi
  if [[ "$role" == pathology && $UNINSTALL -eq 0 && ! "$INSTANCE" =~ ^[A-Za-z0-9_.-]+$ ]]; then
    say "pathology needs --instance I (0, 1, ...: one per accelerator; its broker login is pathology-HOST-I)"; exit 2
  fi
  if [[ "$role" == edge ]]; then
    unit_files=(appliance-edge.service appliance-kiosk-out-of-order.service)  # OnFailure= starts it
    enabled=(appliance-edge.service)
  elif [[ "$role" == backoffice ]]; then
    unit_files=(appliance-backoffice@.service "${BACKOFFICE_UNITS[@]}" appliance-models-refresh.service appliance-store-backup.service)
    enabled=("appliance-backoffice@${WORKER:-*}.service" "${BACKOFFICE_UNITS[@]}")
  else
    unit_files=(appliance-pathology@.service); enabled=("appliance-pathology@${INSTANCE:-*}.service")
  fi
}

systemctl_do() {  # systemctl on the running system, or offline on the files under --root
  if live; then systemctl "$@"; else systemctl --root="$ROOT" "$@" 2>/dev/null || true; fi
}

role_units() {  # the role's units: those enabled, and those running though not enabled (started
  # by hand, or disabled while they ran), which would run on from the files uninstall removes;
  # the edge's: the kiosk screen's too, where its unit was copied (it shows the edge's page)
  if [[ "$role" == edge ]]; then
    echo appliance-edge.service
    if [[ -e "$UNITS/$SCREEN" ]]; then echo "$SCREEN"; fi
    return 0
  fi
  local link name
  for link in "$UNITS"/multi-user.target.wants/appliance-"$role"@*.service; do
    if [[ -e "$link" || -L "$link" ]]; then basename "$link"; fi
  done
  for name in $(running_units); do
    if [[ "$name" == appliance-"$role"@* ]]; then echo "$name"; fi
  done
  if [[ "$role" == backoffice ]]; then  # one each a host: stopped and disabled where installed
    for name in "${BACKOFFICE_UNITS[@]}"; do
      if [[ -e "$UNITS/$name" ]]; then echo "$name"; fi
    done
  fi
}

uninstall() {
  local names=() name
  mapfile -t names < <(role_units | sort -u)
  for name in "${names[@]}"; do
    if live; then systemctl disable --now "$name" || true; else systemctl_do disable "$name"; fi
    rm -f "$UNITS/multi-user.target.wants/$name" "$UNITS/timers.target.wants/$name"
    forget_enabled "$name"
  done
  for unit in "${unit_files[@]}"; do rm -f "$UNITS/$unit"; done
  if [[ "$role" == edge ]]; then
    remove_edge_files
    if [[ $PURGE -eq 0 ]]; then forget_confirmed_results; fi
  fi
  local others=()  # another role on this host runs from the same venv, config and state (the
  # kiosk screen's unit, copied by hand, runs Chromium: nothing of these)
  for unit in "$UNITS"/appliance-{edge,backoffice@,pathology@}.service; do
    if [[ -e "$unit" ]]; then others+=("$(basename "$unit")"); fi
  done
  if [[ ${#others[@]} -gt 0 ]]; then
    if live; then systemctl daemon-reload; fi
    say "removed the $role units; kept /opt/appliance, /etc/appliance and /var/lib/appliance: ${others[*]} still run from them"
    return 0
  fi
  remove_program
  if live; then systemctl daemon-reload; fi
  if [[ $PURGE -eq 1 ]]; then
    rm -rf "$ETC" "$STATE"
    if [[ "$ROOT" == / ]] && id appliance >/dev/null 2>&1; then userdel appliance || true; fi
  fi
  say "removed the $role install${PURGE:+ }$([[ $PURGE -eq 1 ]] && echo '(config and data purged)' || echo '(kept /etc/appliance and /var/lib/appliance)')"
}

remove_edge_files() {  # the camera's udev rule; the kiosk screen's unit, stopped and disabled
  # with the edge's, is the operator's copy (install.sh does not install it): kept, and said so
  rm -f "$R/etc/udev/rules.d/99-scalar-microscope.rules"
  if [[ -e "$UNITS/$SCREEN" ]]; then
    say "stopped and disabled $SCREEN (it shows the edge's page); kept its file, copied by hand: rm $UNITS/$SCREEN removes it"
  fi
}

forget_confirmed_results() {  # the outbox keeps results the back office confirmed, to send
  # them again after a store restore (appliance/transport/outbox_kept.py), until the daemon's
  # expiry deletes them; with the daemon gone nothing would. They are delivered: delete them,
  # their bytes overwritten (secure_delete), and keep what still waits to be sent; as the
  # units' user, so that a journal file SQLite makes is theirs
  local outbox=$STATE/outbox.sqlite3 python=$OPT/venv/bin/python gone
  [[ -f "$outbox" ]] || return 0
  [[ -x "$python" ]] || python=python3
  if gone=$(as_service_user "$python" - "$outbox" <<'PY'
import sqlite3
import sys

db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
gone = 0
if "confirmed_at_s" in {row[1] for row in db.execute("PRAGMA table_info(outbox)")}:
    db.execute("PRAGMA secure_delete = ON")
    gone = db.execute("DELETE FROM outbox WHERE confirmed_at_s IS NOT NULL").rowcount
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
db.close()
print(gone)
PY
  ); then
    say "deleted the $gone result(s) the back office confirmed that $outbox kept to send again after a store restore; the results still waiting to be sent stay"
  else
    say "could not delete the confirmed results $outbox keeps (above); delete them with --uninstall --purge, which removes every result"
  fi
}

remove_program() {  # /opt/appliance, moved aside first: a removal cut short leaves no half
  # venv (its python there, its pip gone) that the next install would take as built
  rm -rf "$REMOVED"
  if [[ -e "$OPT" ]]; then mv "$OPT" "$REMOVED"; fi
  rm -rf "$REMOVED"
}

forget_enabled() {  # forget_enabled NAME: an install after this one starts it as a first one
  [[ -f "$ENABLED_BY_INSTALL" ]] || return 0
  { grep -vxF "$1" "$ENABLED_BY_INSTALL" || true; } > "$ENABLED_BY_INSTALL.new"
  mv "$ENABLED_BY_INSTALL.new" "$ENABLED_BY_INSTALL"
}

ensure_user() {
  [[ "$ROOT" == / ]] || return 0
  if ! id appliance >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/appliance --no-create-home \
      --shell /usr/sbin/nologin appliance
  fi
  if [[ "$role" == edge ]] && getent group video >/dev/null; then usermod -aG video appliance; fi
}

ensure_state_dir() {  # the state folder as the units' StateDirectory= makes it (0750, their
  # user's), where the check runs as that user: the pathology server's results folder in it
  # cannot be made by that user in /var/lib, only by systemd at the first start
  if switch_user; then install -d -m 0750 -o "$SERVICE_USER" -g "$(id -gn "$SERVICE_USER")" "$STATE"; fi
}

ensure_venv() {  # a build cut short (its marker left) may have left a venv without pip, or a
  # package half unpacked that pip takes as installed: pip put back, every package reinstalled
  local reinstall=()
  if [[ -e "$VENV_BUILDING" ]]; then
    say "the venv build of a run before this one did not finish: repairing $OPT/venv"; reinstall=(--force-reinstall)
  fi
  touch "$VENV_BUILDING"
  if [[ ! -x "$OPT/venv/bin/python" ]]; then make_venv
  elif [[ ${#reinstall[@]} -gt 0 && $SKIP_PIP -eq 0 ]] && ! "$OPT/venv/bin/python" -m pip --version >/dev/null 2>&1; then
    make_venv --clear  # cut short before its pip was in: nothing was installed in it yet
  fi
  if [[ $SKIP_PIP -eq 0 ]]; then
    "$OPT/venv/bin/python" -m pip install --quiet "${reinstall[@]}" "$REPO[$(venv_extras)]"
  fi
  rm -f "$VENV_BUILDING"
}

make_venv() {  # make_venv [--clear]: the venv in /opt/appliance, with pip unless --skip-pip
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt-get install -y -qq python3-venv >/dev/null
  if [[ $SKIP_PIP -eq 1 ]]; then python3 -m venv --without-pip "$@" "$OPT/venv"
  else python3 -m venv "$@" "$OPT/venv"; fi
}

venv_extras() {  # what every role on this host needs: one venv serves them all
  if [[ "$role" != edge || -e "$UNITS/appliance-backoffice@.service" \
        || -e "$UNITS/appliance-pathology@.service" ]]; then echo backoffice,systemd
  else echo systemd; fi
}

ensure_fonts() {  # overlays, the kiosk's screen and heatmap titles draw Japanese (imagetext.py)
  [[ "$ROOT" == / ]] || return 0
  [[ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]] && return 0
  apt-get install -y -qq fonts-noto-cjk >/dev/null 2>&1 \
    || say "could not install fonts-noto-cjk: overlays fall back to ASCII, the screen to the browser's fonts"
}

install_file() {  # install_file MODE SOURCE TARGET: copy only when the content differs
  local mode=$1 source=$2 target=$3
  if ! cmp -s "$source" "$target" 2>/dev/null; then
    install -D -m "$mode" "$source" "$target"; CHANGED+=("$target"); echo "$target" >> "$PENDING"
  fi
  chmod "$mode" "$target"
}

code_fingerprint() {  # what pip installed in the venv: every package's files and their hashes
  { cat "$OPT"/venv/lib/python3*/site-packages/*.dist-info/RECORD 2>/dev/null || true; } | sha256sum
}

unit_environment() {  # unit_environment ROLE INSTANCE: the APPLIANCE__ variables its unit sets
  local role=$1 instance=$2 login=  # (deploy/appliance-*.service)
  [[ "$role" == backoffice ]] && login=$instance
  [[ "$role" == pathology ]] && login=pathology-$(hostname -s)-$instance
  echo "APPLIANCE__STATE_DIR=/var/lib/appliance"
  [[ -n "$login" ]] && echo "APPLIANCE__MQTT__USERNAME=$login" && echo "APPLIANCE__${role^^}__CLIENT_ID=$login"
  [[ "$role" == pathology || "$role" == console ]] \
    && echo "APPLIANCE__PATHOLOGY__RESULTS_DIR=/var/lib/appliance/pathology"
  return 0
}

config_of() {  # config_of ROLE: the file its unit reads (the console and the store's backup:
  # the back office's)
  case "$1" in
    edge) echo "$ETC/config.yaml" ;;
    console | store-backup) echo "$ETC/backoffice.yaml" ;;
    *) echo "$ETC/$1.yaml" ;;
  esac
}

unit_ready() {  # unit_ready NAME: whether the unit can start: its config passes the check as
  # it reads it; the model repository's, once the folder they serve and sign is a repository
  local name=$1 instance=
  [[ "$name" == *@* ]] && instance=${name#*@} && instance=${instance%.service}
  case "$name" in
    appliance-models-*) [[ -f "$R$MODELS_REPO/public/metadata/timestamp.json" ]] ;;
    *) config_passes "$(unit_role "$name")" "$instance" ;;
  esac
}

unit_role() {  # unit_role NAME: the role whose config it reads (console: its own environment)
  local name=${1#appliance-}
  echo "${name%%[@.]*}"
}

role_of() {  # role_of NAME: the install.sh role that installs the unit
  case "$1" in
    appliance-console.service | appliance-models-* | appliance-store-*) echo backoffice ;;
    *) unit_role "$1" ;;
  esac
}

not_ready() {  # not_ready NAME: what to do before the unit can start
  if [[ "$1" == appliance-models-* ]]; then
    echo "no model repository in $R$MODELS_REPO yet: make it (as root, README \"Updating models\"): $OPT/venv/bin/appliance models repo init $R$MODELS_REPO"
  else
    echo "edit $(config_of "$(unit_role "$1")") until $(check_command "$(unit_role "$1")") passes"
  fi
}

switch_user() {  # whether commands run as the units' user (User=appliance): root, where it exists
  [[ $(id -u) -eq 0 ]] && id "$SERVICE_USER" >/dev/null 2>&1
}

as_service_user() {  # a command as the units run it: as root, a config (or a file it names)
  # readable by root only passed the check and failed at start
  if switch_user; then (cd / && runuser -u "$SERVICE_USER" -- "$@"); else "$@"; fi
}

config_passes() {  # config_passes ROLE INSTANCE: whether its config passes (checked once a run)
  local key="$1 ${2:-}"
  if [[ -z "${CHECKED[$key]:-}" ]]; then
    if check_config "$1" "${2:-}"; then CHECKED[$key]=0; else CHECKED[$key]=1; fi
  fi
  return "${CHECKED[$key]}"
}

check_config() {  # check_config ROLE INSTANCE: `appliance config check` as its unit reads it
  # the console's and the backup's after the worker's check refused the same file and said
  # why: theirs (no MQTT login) refuse nothing more, so their words would only repeat the worker's
  if [[ ( "$1" == console || "$1" == store-backup ) && "${CHECKED[backoffice $WORKER]:-}" == 1 ]]; then
    run_check "$@" >/dev/null 2>&1
  else
    run_check "$@"
  fi
}

run_check() {  # run_check ROLE INSTANCE: the check, its words on stderr
  local appliance=$OPT/venv/bin/appliance config variables
  config=$(config_of "$1")
  if [[ ! -x "$appliance" ]]; then say "could not check $config: no $appliance (--skip-pip)"; return 1; fi
  mapfile -t variables < <(unit_environment "$1" "$2")
  as_service_user env "${variables[@]}" "$appliance" config check "$config" >&2
}

check_command() {  # check_command ROLE: what to run by hand to check its config so
  local prefix=
  if switch_user; then prefix="runuser -u $SERVICE_USER -- "; fi
  echo "$prefix$OPT/venv/bin/appliance config check $(config_of "$1")"
}

ensure_config() {
  local name=config.yaml template=$REPO/deploy/config.edge.yaml edit="broker host; the kiosk's device and site"
  [[ "$role" == backoffice ]] && edit="broker host, store.url"
  [[ "$role" == pathology ]] && edit="broker host, store.url, pathology.slide_roots, model"
  if [[ "$role" != edge ]]; then name=$role.yaml template=$REPO/deploy/config.$role.yaml; fi
  install -d -m 0755 "$ETC"
  install -d -m 0700 "$ETC/credentials"
  CONFIG_FILE=$ETC/$name
  if [[ -n "$CONFIG" ]]; then install_file 0640 "$CONFIG" "$ETC/$name"
  elif [[ ! -e "$ETC/$name" ]]; then install_file 0640 "$template" "$ETC/$name"
    say "wrote the template $ETC/$name: edit it ($edit) before starting"; fi
  [[ -n "$CA" ]] && install_file 0644 "$CA" "$ETC/ca.crt"
  local credential=mqtt-password
  [[ "$role" == backoffice ]] && credential=$WORKER.password
  [[ "$role" == pathology ]] && credential=pathology-$(hostname -s)-$INSTANCE.password
  if [[ -n "$PASSWORD_FILE" ]]; then install_file 0600 "$PASSWORD_FILE" "$ETC/credentials/$credential"
  elif [[ ! -e "$ETC/credentials/$credential" ]]; then say "no password yet: put it in $ETC/credentials/$credential (0600)"; fi
  # the check (and the unit) reads it as the units' user: under --root too, where that user
  # exists (root's alone, the check said "permission denied")
  if switch_user; then chgrp "$(id -gn "$SERVICE_USER")" "$ETC/$name"; fi
}

ensure_store_tools() {  # a PostgreSQL store is backed up with pg_dump (appliance-store-backup):
  # without postgresql-client on the host the nightly backup failed every night
  [[ "$role" == backoffice ]] && postgres_store || return 0
  command -v pg_dump >/dev/null 2>&1 && return 0
  if live && apt-get install -y -qq postgresql-client >/dev/null 2>&1; then
    say "installed postgresql-client: the store's nightly backup runs its pg_dump"; return 0
  fi
  say "no pg_dump here, and store.url in $CONFIG_FILE is PostgreSQL: appliance-store-backup fails each night until it is installed: apt-get install postgresql-client (its major version at least the server's)"
}

postgres_store() {  # whether the back office's config names a PostgreSQL store
  grep -Eq "^[[:space:]]*url:[[:space:]]*[\"']?postgres(ql)?(\+[a-z0-9]+)?://" "$CONFIG_FILE" 2>/dev/null
}

ensure_units() {
  for unit in "${unit_files[@]}"; do install_file 0644 "$REPO/deploy/$unit" "$UNITS/$unit"; done
  if [[ "$role" == edge ]]; then
    install_file 0644 "$REPO/deploy/99-scalar-microscope.rules" "$R/etc/udev/rules.d/99-scalar-microscope.rules"
    live && udevadm control --reload || true
    install -d -m 0755 "$OPT/models"
    for model in "$REPO"/appliance/shipped/skin-*.onnx; do install_file 0644 "$model" "$OPT/models/$(basename "$model")"; done
  fi
  if live; then systemctl daemon-reload; fi
}

ensure_started() {  # each of the role's units, and what became of it, for the closing line
  local name
  for name in "${enabled[@]}"; do
    ensure_unit_started "$name"; SUMMARY+=("$name $STARTED")
  done
}

ensure_unit_started() {  # ensure_unit_started NAME: the first run whose config passes starts
  # the unit (a template would exit 2); a run after that leaves it as the operator left it:
  # stopped for maintenance, it stays so
  local name=$1 enablement
  enablement=$(enablement "$name")
  if [[ "$enablement" == enabled ]]; then remember_enabled "$name"; fi  # by hand, as README says
  if ! unit_ready "$name"; then
    if is_running "$name"; then KEPT+=("$name"); STARTED="kept running the install before this one"
    else
      say "not started: $(not_ready "$name"), then start: $(start_command "$enablement" "$name")"
      STARTED="installed, not started"
    fi
  elif [[ "$enablement" == new ]]; then enable_first "$name"
  elif is_running "$name"; then STARTED="running"  # restart_running restarts it where owed
  elif [[ "$enablement" == enabled ]] && ! live; then STARTED="enabled"
  else left_as_found "$name" "$enablement"; fi
}

left_as_found() {  # left_as_found NAME ENABLEMENT: say why a unit that does not run is not started
  local name=$1 state=$2
  if [[ "$state" == enabled ]]; then
    state=stopped
    if [[ "$(systemctl_do is-active "$name" || true)" == failed ]]; then
      say "$name had failed before this run and is not started: journalctl -u $name says why; systemctl start $name starts it"
      STARTED="installed, left failed"; return 0
    fi
  fi
  say "$name was $state before this run and stays so: $(start_command "$state" "$name") starts it"
  STARTED="installed, left $state"
}

enable_first() {  # enable_first NAME: the first start, remembered as the install's own; one
  # that does not start (it exits before it is ready) is named and ends no install
  if ! live; then systemctl_do enable "$1"; STARTED="enabled"
  elif systemctl enable --now "$1"; then STARTED="enabled and started"
  else say "$1 did not start: journalctl -u $1 says why"; STARTED="enabled, did not start"; fi
  remember_enabled "$1"
}

remember_enabled() {  # remember_enabled NAME: disabled after this, it was disabled by hand
  grep -qsxF "$1" "$ENABLED_BY_INSTALL" || echo "$1" >> "$ENABLED_BY_INSTALL"
}

enablement() {  # enablement NAME: new (no run saw it enabled yet), enabled, disabled or masked
  local state
  state=$(systemctl_do is-enabled "$1" 2>/dev/null || true)
  if [[ "$state" == masked* ]]; then echo masked
  elif [[ "$state" == enabled* ]]; then echo enabled
  elif grep -qsxF "$1" "$ENABLED_BY_INSTALL"; then echo disabled
  else echo new; fi
}

is_running() { [[ " ${RUNNING[*]} " == *" $1 "* ]]; }  # is_running NAME: before this run

start_command() {  # start_command ENABLEMENT NAME: what starts the unit from there
  case "$1" in
    masked) echo "systemctl unmask $2 && systemctl enable --now $2" ;;
    enabled | stopped) echo "systemctl start $2" ;;
    *) echo "systemctl enable --now $2" ;;
  esac
}

running_units() {  # the daemons' units running now (before this install changes anything),
  # and the model repository's refresh timer, waiting
  live || return 0
  systemctl list-units --type=service,timer --state=active --no-legend --plain \
    'appliance-edge.service' 'appliance-backoffice@*.service' 'appliance-pathology@*.service' \
    "${BACKOFFICE_UNITS[@]}" | awk '{print $1}'
}

restart_plan() {  # restart_plan CODE_CHANGED: the running units that run from what changed,
  # and those a run before kept running the install before it (their config failed the check);
  # never a timer: it runs no code of its own, and the service it starts next runs what is
  # installed then
  local code_changed=$1 name changed shared=0
  for changed in "${CHANGED[@]}"; do [[ "$changed" == "$ETC/ca.crt" ]] && shared=1; done
  for name in "${RUNNING[@]}"; do
    [[ "$name" == *.timer ]] && continue
    if [[ "$(role_of "$name")" == "$role" && ( $code_changed -eq 1 || ${#CHANGED[@]} -gt 0 ) ]] \
      || [[ $code_changed -eq 1 || $shared -eq 1 ]] || grep -qsxF "$name" "$OWED"; then echo "$name"; fi
  done
}

restart_running() {  # a running daemon keeps the code and config it started with until restarted
  local code_changed=0 name restarted=()
  [[ "$(code_fingerprint)" != "$CODE_BEFORE" ]] && code_changed=1
  for name in $(restart_plan "$code_changed"); do
    [[ " ${KEPT[*]} " == *" $name "* ]] && continue
    if ! unit_ready "$name"; then KEPT+=("$name")
    elif systemctl restart "$name"; then restarted+=("$name")
    else say "$name did not start again: journalctl -u $name says why"; fi
  done
  if [[ ${#restarted[@]} -gt 0 ]]; then say "restarted ${restarted[*]}: they ran the install before this one"; fi
  rm -f "$OWED"
  if [[ ${#KEPT[@]} -gt 0 ]]; then
    printf '%s\n' "${KEPT[@]}" > "$OWED"
    say "not restarted: ${KEPT[*]} keep running the install before this one until their config passes the check; then: systemctl restart ${KEPT[*]}"
  fi
  return 0
}

begin_or_resume() {  # the code the units ran before this run, and the files written since:
  # after a run cut short, those of that run, whose restarts are still owed
  rm -rf "$REMOVED"  # what an --uninstall cut short left
  install -d -m 0755 "$OPT"
  if [[ -s "$PENDING" ]]; then
    say "a run before this one did not finish: finishing it"
    mapfile -t CHANGED < <(tail -n +2 "$PENDING"); CODE_BEFORE=$(head -n 1 "$PENDING")
  else
    CODE_BEFORE=$(code_fingerprint); echo "$CODE_BEFORE" > "$PENDING"
  fi
}

main() {
  parse_arguments "$@"
  check_arguments
  if [[ $UNINSTALL -eq 1 ]]; then uninstall; exit 0; fi
  mapfile -t RUNNING < <(running_units)
  begin_or_resume
  ensure_user
  ensure_state_dir
  ensure_venv
  ensure_fonts
  ensure_config
  ensure_store_tools
  ensure_units
  ensure_started
  if live; then restart_running; fi
  rm -f "$PENDING"
  local summary; summary=$(printf '%s; ' "${SUMMARY[@]}")
  say "installed the $role ($([[ "$ROOT" == / ]] && echo "this host" || echo "under $ROOT")): ${summary%; }"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
