#!/usr/bin/env bash
# The recipe-flows service stack on one machine, without containers: PostgreSQL, a Prefect server and an MLflow
# tracking server (each on its own Postgres database), MLflow artifacts on local disk, and a Prefect worker for the
# work pool of deploy/prefect.yaml. Every server listens on 127.0.0.1 only. deploy/compose.yaml is the same stack
# for machines with a container engine.
#
#   deploy/stack.sh up              start whatever is not running yet (running twice is fine); writes $RUN/env
#   deploy/stack.sh down            stop exactly what `up` started (by pid files); fine when nothing runs
#   deploy/stack.sh status          each component: pid, port, healthy or not (exit 0 only when all are healthy)
#   deploy/stack.sh env             the exports that point clients (flows, prefect, mlflow) at the stack
#   deploy/stack.sh logs [NAME]     the last lines of each component's log (NAME: postgres, prefect-server, ...)
#   deploy/stack.sh ports           each component, its port and the variable that sets it
#   deploy/stack.sh help            this text
#
# Settings, from the environment (defaults in brackets):
#   RECIPE_STACK_DIR       run directory: database files, artifacts, logs, pid files, secrets  [<repo>/.stack]
#   RECIPE_PG_PORT         PostgreSQL                                   [5433: clear of a system postgres on 5432]
#   RECIPE_PREFECT_PORT    Prefect server: UI and API                   [4200]
#   RECIPE_MLFLOW_PORT     MLflow tracking server: UI and API           [5000]
#   RECIPE_MLFLOW_WORKERS  MLflow server processes                      [2]
#   RECIPE_PG_PASSWORD     the database password                        [generated on first up: $RUN/secrets/]
#   RECIPE_WORK_POOL       the worker's work pool                       [the pool of deploy/prefect.yaml]
#   RECIPE_PYTHON          a Python with recipe-flows installed         [<repo>/.venv/bin/python]
#   RECIPE_PG_BIN          the directory holding initdb and pg_ctl      [found on PATH or in /usr/lib/postgresql]
#   RECIPE_STACK_TIMEOUT   seconds to wait for a component to be healthy [180]
# The worker hands its environment to every flow run: export RECIPE_DATA_DIR, CUDA_VISIBLE_DEVICES, ... before `up`.
#   RECIPE_STACK_AUTH      basic: Prefect and MLflow basic auth, credentials generated on first up into
#                          $RUN/secrets/ and exported by $RUN/env (mode 0600); none: no auth    [basic]
# Given PREFECT_SERVER_API_AUTH_STRING / PREFECT_API_AUTH_STRING, RECIPE_MLFLOW_APP, MLFLOW_AUTH_ADMIN_PASSWORD,
# MLFLOW_FLASK_SERVER_SECRET_KEY or MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD win over the generated
# ones; see README, "Security defaults".
# With MLflow's basic auth the worker does not get the admin's login: `up` creates the MLflow user `worker`
# (flows/mlflow_users.py: no admin rights, so flow runs cannot manage users or permissions) with a password from
# RECIPE_MLFLOW_WORKER_PASSWORD or generated into $RUN/secrets/mlflow-worker-password (0600), and starts the
# worker with it. MLflow's auth settings are $RUN/mlflow-auth.ini (default_permission EDIT, as in compose) unless
# MLFLOW_AUTH_CONFIG_PATH names another file.
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
HOST=127.0.0.1  # deliberately not configurable: see README, "Run it as a service", before exposing anything
PG_PORT=${RECIPE_PG_PORT:-5433}
PREFECT_PORT=${RECIPE_PREFECT_PORT:-4200}
MLFLOW_PORT=${RECIPE_MLFLOW_PORT:-5000}
MLFLOW_WORKERS=${RECIPE_MLFLOW_WORKERS:-2}
TIMEOUT=${RECIPE_STACK_TIMEOUT:-180}
PY=${RECIPE_PYTHON:-$ROOT/.venv/bin/python}
PG_USER=recipe
COMPONENTS=(postgres prefect-server mlflow worker)

RUN=${RECIPE_STACK_DIR:-$ROOT/.stack}
[[ $RUN == /* ]] || RUN=$PWD/$RUN
if [[ ${1:-} == up ]]; then mkdir -p "$RUN"; fi  # only up creates it
if [[ -d $RUN ]]; then RUN=$(cd "$RUN" && pwd -P); fi  # the canonical path marks the stack's processes
PGDATA=$RUN/postgres
LOGS=$RUN/logs
PIDS=$RUN/pids
SECRETS=$RUN/secrets

say() { printf '%s\n' "$*"; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

port_of() {
    case $1 in
        postgres) echo "$PG_PORT" ;;
        prefect-server) echo "$PREFECT_PORT" ;;
        mlflow) echo "$MLFLOW_PORT" ;;
        *) echo "-" ;;
    esac
}
port_var() {
    case $1 in
        postgres) echo RECIPE_PG_PORT ;;
        prefect-server) echo RECIPE_PREFECT_PORT ;;
        mlflow) echo RECIPE_MLFLOW_PORT ;;
    esac
}

# ---------------------------------------------------------------- processes

# Alive: running, not a zombie (an exited process waits a moment for init to reap it, and kill -0 still finds it).
alive() {
    [[ -n ${1:-} ]] || return 1
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ -n $st && $st != Z* ]]
}
group_alive() {
    ps -eo pgid=,stat= 2>/dev/null | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

# A pid is ours when the process carries this run directory in its environment (set for every process `up` starts),
# so a recycled pid or a process of another stack is never signalled.
ours() {
    local pid=$1
    alive "$pid" || return 1
    [[ -r /proc/$pid/environ ]] || return 0  # no /proc (not Linux): trust the pid file
    tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qxF "RECIPE_STACK_DIR=$RUN"
}

pidfile() { echo "$PIDS/$1.pid"; }

# The pid of a running component, or nothing.
running_pid() {
    local name=$1 pid
    if [[ $name == postgres ]]; then
        [[ -f $PGDATA/postmaster.pid ]] || return 0
        pid=$(head -1 "$PGDATA/postmaster.pid")
        alive "$pid" && [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *"$PGDATA"* ]] && echo "$pid"
        return 0
    fi
    [[ -f $(pidfile "$name") ]] || return 0
    pid=$(<"$(pidfile "$name")")
    if ours "$pid"; then echo "$pid"; fi
    return 0
}

# Who listens on a loopback port: "name (pid N)" when the system lets us see it, "another process" otherwise.
port_owner() {
    local who=""
    if command -v ss >/dev/null; then
        who=$(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -1 |
            sed -E 's/users:\(\("([^"]*)",pid=([0-9]*)/\1 (pid \2)/') || true
    fi
    echo "${who:-another process}"
}

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# Start a command in its own session (its pid is its process group id, so `down` can stop its children too),
# output appended to the component's log. The caller exports what the command needs.
start_bg() {
    local name=$1
    shift
    printf '\n---- %s: %s\n' "$(date '+%F %T')" "$*" >>"$LOGS/$name.log"
    # A background command of a script starts with SIGINT ignored, which keeps a Prefect worker from ever stopping
    # (it turns SIGTERM into SIGINT): the launcher restores it, then becomes the command in a new session.
    "$PY" -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.setsid()
os.execvp(sys.argv[1], sys.argv[1:])' "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 9>&- &  # 9: the lock
    echo $! >"$(pidfile "$name")"
}

stop_group() {
    local name=$1 pid=$2 i
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        group_alive "$pid" || break
        sleep 0.2
    done
    if group_alive "$pid"; then
        say "$name: still running 20 s after SIGTERM, killing it"
        kill -KILL -- "-$pid" 2>/dev/null || true
        sleep 0.5
    fi
}

stop_component() {
    local name=$1 pid pf
    pf=$(pidfile "$name")
    if [[ $name == postgres ]]; then
        pid=$(running_pid postgres)
        if [[ -n $pid ]]; then
            as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null || stop_group postgres "$pid"
            say "postgres: stopped (pid $pid)"
        fi
        rm -f "$pf"
        return 0
    fi
    [[ -f $pf ]] || return 0
    pid=$(<"$pf")
    if ours "$pid"; then
        stop_group "$name" "$pid"
        say "$name: stopped (pid $pid)"
    elif alive "$pid"; then
        say "$name: pid $pid is not a process of this stack any more; left alone"
    else
        # The leader is gone; children it left in its process group are still ours to stop.
        local left
        left=$(ps -eo pid=,pgid=,stat= 2>/dev/null | awk -v g="$pid" '$2 == g && $3 !~ /^Z/ { print $1; exit }')
        if [[ -n $left ]] && ours "$left"; then
            stop_group "$name" "$pid"
            say "$name: stopped what pid $pid left"
        else
            say "$name: not running (stale pid file removed)"
        fi
    fi
    rm -f "$pf"
}

# ---------------------------------------------------------------- health

http_ok() {  # URL [user:password]
    local auth=()
    [[ -n ${2:-} ]] && auth=(-u "$2")
    if command -v curl >/dev/null; then
        curl -fsS --noproxy '*' --max-time 3 "${auth[@]}" -o /dev/null "$1" 2>/dev/null
    else
        "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)' "$1" 2>/dev/null
    fi
}

worker_name() { echo "stack-$(hostname -s 2>/dev/null || echo local)"; }

work_pool() {
    if [[ -n ${RECIPE_WORK_POOL:-} ]]; then echo "$RECIPE_WORK_POOL"; return; fi
    "$PY" -c 'import sys; from flows.deployments import work_pools; print(work_pools()[0])' 2>/dev/null ||
        die "cannot read the work pool from deploy/prefect.yaml with $PY (is recipe-flows installed? make test does it)"
}

# Is our worker ONLINE in the Prefect server's list of the pool's workers?
worker_online() {
    local pool=$1 body
    body=$(curl -fsS --noproxy '*' --max-time 3 ${PREFECT_API_AUTH_STRING:+-u "$PREFECT_API_AUTH_STRING"} \
        -H 'Content-Type: application/json' -d '{"limit": 200}' \
        "http://$HOST:$PREFECT_PORT/api/work_pools/$pool/workers/filter" 2>/dev/null) || return 1
    WORKER_JSON=$body "$PY" -c '
import json, os, sys
workers = json.loads(os.environ["WORKER_JSON"])
sys.exit(0 if any(w["name"] == sys.argv[1] and w.get("status") == "ONLINE" for w in workers) else 1)' "$(worker_name)"
}

healthy() {
    case $1 in
        postgres) "$(pg_bin)/pg_isready" -q -h "$HOST" -p "$PG_PORT" -t 3 2>/dev/null ;;
        prefect-server) http_ok "http://$HOST:$PREFECT_PORT/api/health" "${PREFECT_API_AUTH_STRING:-}" ;;
        mlflow) http_ok "http://$HOST:$MLFLOW_PORT/health" ;;
        worker) worker_online "$POOL" ;;
    esac
}

wait_healthy() {
    local name=$1 pid=$2 start=$SECONDS
    while ! healthy "$name"; do
        if ! alive "$pid"; then
            say "---- last lines of $LOGS/$name.log" >&2
            tail -n 30 "$LOGS/$name.log" >&2 || true
            die "$name exited while starting (log: $LOGS/$name.log)"
        fi
        if ((SECONDS - start > TIMEOUT)); then
            tail -n 30 "$LOGS/$name.log" >&2 || true
            die "$name did not become healthy within $TIMEOUT s (log: $LOGS/$name.log; raise RECIPE_STACK_TIMEOUT?)"
        fi
        sleep 1
    done
}

# ---------------------------------------------------------------- postgres

pg_bin() {
    if [[ -n ${RECIPE_PG_BIN:-} ]]; then echo "$RECIPE_PG_BIN"; return 0; fi
    if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return 0
    fi
    # Debian and Ubuntu keep the server programs off PATH, under /usr/lib/postgresql/<version>/bin
    local newest
    newest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [[ -n $newest && -x $newest/pg_ctl ]] && echo "$newest" && return 0
    return 1
}

ensure_postgres_installed() {
    pg_bin >/dev/null && return 0
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        say "postgres: not installed; installing Debian's postgresql package"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends postgresql >/dev/null ||
            die "apt-get install postgresql failed; install PostgreSQL yourself"
        pg_bin >/dev/null && return 0
    fi
    die "PostgreSQL is not installed. Install it (Debian/Ubuntu: sudo apt-get install postgresql; Fedora: sudo dnf
install postgresql-server; macOS: brew install postgresql@16), or set RECIPE_PG_BIN to the directory holding pg_ctl"
}

# PostgreSQL refuses to run as root: as root, the cluster belongs to the postgres user (Debian's package creates it).
as_pg() {
    if [[ $(id -u) == 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root, and there is no postgres user to run PostgreSQL as"
        runuser -u postgres -- env RECIPE_STACK_DIR="$RUN" "$@" 9>&-
    else
        env RECIPE_STACK_DIR="$RUN" "$@" 9>&-
    fi
}

load_password() {
    if [[ -n ${RECIPE_PG_PASSWORD:-} ]]; then
        PG_PASSWORD=$RECIPE_PG_PASSWORD
    else
        (umask 077 && mkdir -p "$SECRETS")
        if [[ ! -s $SECRETS/pg-password ]]; then
            (umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$SECRETS/pg-password")
        fi
        PG_PASSWORD=$(<"$SECRETS/pg-password")
    fi
    PG_PASSWORD_URL=$("$PY" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' \
        "$PG_PASSWORD")
}

# A generated secret kept in $SECRETS/NAME (mode 0600), created on first use unless $2 is "existing".
secret() {
    if [[ ! -s $SECRETS/$1 ]]; then
        [[ ${2:-} == existing ]] && return 1
        (umask 077 && mkdir -p "$SECRETS" && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$SECRETS/$1")
    fi
    cat "$SECRETS/$1"
}

# Basic auth for both servers unless RECIPE_STACK_AUTH=none. `load_auth existing` (status, env) reads the
# credentials `up` generated and generates none.
load_auth() {
    local mode=${1:-} pw
    case ${RECIPE_STACK_AUTH:-basic} in
        none) return 0 ;;
        basic) ;;
        *) die "RECIPE_STACK_AUTH=${RECIPE_STACK_AUTH}: use basic (the default) or none" ;;
    esac
    if [[ -z ${PREFECT_SERVER_API_AUTH_STRING:-} ]] && pw=$(secret prefect-password "$mode"); then
        export PREFECT_SERVER_API_AUTH_STRING="admin:$pw"
    fi
    if [[ -n ${PREFECT_SERVER_API_AUTH_STRING:-} ]]; then
        export PREFECT_API_AUTH_STRING=${PREFECT_API_AUTH_STRING:-$PREFECT_SERVER_API_AUTH_STRING}
    fi
    export RECIPE_MLFLOW_APP=${RECIPE_MLFLOW_APP:-basic-auth}
    [[ $RECIPE_MLFLOW_APP == basic-auth ]] || return 0
    if [[ -z ${MLFLOW_AUTH_ADMIN_PASSWORD:-} ]] && pw=$(secret mlflow-admin-password "$mode"); then
        export MLFLOW_AUTH_ADMIN_PASSWORD=$pw
    fi
    if [[ -z ${MLFLOW_FLASK_SERVER_SECRET_KEY:-} ]] && pw=$(secret mlflow-flask-secret-key "$mode"); then
        export MLFLOW_FLASK_SERVER_SECRET_KEY=$pw
    fi
    if [[ -n ${MLFLOW_AUTH_ADMIN_PASSWORD:-} ]]; then
        export MLFLOW_TRACKING_USERNAME=${MLFLOW_TRACKING_USERNAME:-${MLFLOW_AUTH_ADMIN_USERNAME:-admin}}
        export MLFLOW_TRACKING_PASSWORD=${MLFLOW_TRACKING_PASSWORD:-$MLFLOW_AUTH_ADMIN_PASSWORD}
    fi
    return 0
}

init_postgres() {
    [[ -f $PGDATA/PG_VERSION ]] && return 0
    say "postgres: creating a private cluster in $PGDATA (superuser $PG_USER)"
    mkdir -p "$PGDATA"
    local pwfile=$PGDATA.pwfile
    (umask 077 && printf '%s\n' "$PG_PASSWORD" >"$pwfile")
    if [[ $(id -u) == 0 ]]; then
        chown postgres: "$PGDATA" "$pwfile"
        as_pg test -w "$PGDATA" ||
            die "the postgres user cannot reach $PGDATA (a parent directory is closed to it); set RECIPE_STACK_DIR to
a directory it can traverse"
    fi
    chmod 700 "$PGDATA"
    if ! as_pg "$(pg_bin)/initdb" -D "$PGDATA" -U "$PG_USER" --pwfile="$pwfile" --auth=scram-sha-256 -E UTF8 \
        --no-locale >>"$LOGS/postgres.log" 2>&1; then
        rm -f "$pwfile"
        die "initdb failed (log: $LOGS/postgres.log)"
    fi
    rm -f "$pwfile"
    # TCP on loopback only; no Unix socket (its default directory is often not writable by us).
    as_pg sh -c "printf '%s\n' \"listen_addresses = '$HOST'\" \"unix_socket_directories = ''\" >>'$PGDATA/postgresql.conf'"
}

start_postgres() {
    init_postgres
    : >>"$LOGS/postgres.log"
    [[ $(id -u) == 0 ]] && chown postgres: "$LOGS/postgres.log"
    say "postgres: starting on $HOST:$PG_PORT"
    as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA" -l "$LOGS/postgres.log" -o "-p $PG_PORT" -w -t "$TIMEOUT" start >/dev/null ||
        { tail -n 20 "$LOGS/postgres.log" >&2; die "postgres did not start (log: $LOGS/postgres.log)"; }
    head -1 "$PGDATA/postmaster.pid" >"$(pidfile postgres)"
}

psql_admin() {
    PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=10 "$(pg_bin)/psql" -X -q -t -A -v ON_ERROR_STOP=1 -h "$HOST" \
        -p "$PG_PORT" -U "$PG_USER" -d postgres -c "$1"
}

ensure_databases() {
    local db
    for db in prefect mlflow; do
        if [[ $(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$db'") != 1 ]]; then
            psql_admin "CREATE DATABASE $db" >/dev/null || die "could not create database $db (is RECIPE_PG_PASSWORD
the password this cluster was created with?)"
            say "postgres: created database $db"
        fi
    done
}

# ---------------------------------------------------------------- servers and worker

bin_of() { local d; d=$(dirname "$PY"); if [[ -x $d/$1 ]]; then echo "$d/$1"; else echo "$1"; fi; }

start_prefect_server() {
    say "prefect-server: starting on http://$HOST:$PREFECT_PORT (database prefect)"
    (
        unset PREFECT_API_URL RECIPE_PG_PASSWORD MLFLOW_AUTH_ADMIN_PASSWORD MLFLOW_FLASK_SERVER_SECRET_KEY \
            MLFLOW_TRACKING_PASSWORD
        export RECIPE_STACK_DIR=$RUN PREFECT_HOME=$RUN/prefect-server DO_NOT_TRACK=1
        export PREFECT_SERVER_ANALYTICS_ENABLED=false
        export PREFECT_API_DATABASE_CONNECTION_URL="postgresql+asyncpg://$PG_USER:$PG_PASSWORD_URL@$HOST:$PG_PORT/prefect"
        start_bg prefect-server "$(bin_of prefect)" server start --host "$HOST" --port "$PREFECT_PORT"
    )
}

# MLflow's basic-auth settings for the stack, as deploy/compose/basic_auth.ini: default_permission EDIT lets a user
# without admin rights (the worker) log runs and register models in every experiment, including those the admin
# created, but not delete them, change permissions or manage users. The user database stays where the server
# kept it before this file existed ($RUN/basic_auth.db).
write_mlflow_auth_config() {
    (umask 077 && printf '%s\n' "# Written by deploy/stack.sh up (rewritten on every start of the MLflow server)." \
        "[mlflow]" "default_permission = EDIT" "database_uri = sqlite:///$RUN/basic_auth.db" \
        "admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}" \
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth" >"$RUN/mlflow-auth.ini")
}

start_mlflow() {
    say "mlflow: starting on http://$HOST:$MLFLOW_PORT (database mlflow, artifacts in $RUN/mlflow-artifacts)"
    local app=()
    [[ -n ${RECIPE_MLFLOW_APP:-} ]] && app=(--app-name "$RECIPE_MLFLOW_APP")
    mkdir -p "$RUN/mlflow-artifacts"
    if [[ ${RECIPE_MLFLOW_APP:-} == basic-auth && -z ${MLFLOW_AUTH_CONFIG_PATH:-} ]]; then write_mlflow_auth_config; fi
    (
        unset RECIPE_PG_PASSWORD MLFLOW_TRACKING_URI PREFECT_SERVER_API_AUTH_STRING PREFECT_API_AUTH_STRING \
            RECIPE_MLFLOW_WORKER_PASSWORD
        export RECIPE_STACK_DIR=$RUN
        # MLflow 3's server otherwise starts a job runner and seven huey consumers (eight more Python processes
        # importing mlflow, seconds of CPU each, and their memory) for server-side jobs the recipe never submits;
        # set MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true to have them
        export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
        if [[ ${RECIPE_MLFLOW_APP:-} == basic-auth ]]; then
            export MLFLOW_AUTH_CONFIG_PATH=${MLFLOW_AUTH_CONFIG_PATH:-$RUN/mlflow-auth.ini}
        fi
        cd "$RUN"  # files the server keeps relative to its directory (the basic-auth app's user database) go here
        # the store URI holds the password: given through the environment, it stays out of `ps`
        export MLFLOW_BACKEND_STORE_URI="postgresql://$PG_USER:$PG_PASSWORD_URL@$HOST:$PG_PORT/mlflow"
        start_bg mlflow "$(bin_of mlflow)" server --host "$HOST" --port "$MLFLOW_PORT" --workers "$MLFLOW_WORKERS" \
            --artifacts-destination "file://$RUN/mlflow-artifacts" "${app[@]}"
    )
}

# The worker's MLflow login with basic auth on: the user `worker` without admin rights, created (or its password
# reset and admin rights taken away) by flows/mlflow_users.py as the admin. Sets WORKER_MLFLOW_USER and
# WORKER_MLFLOW_PASSWORD; both stay empty when MLflow runs without basic auth.
ensure_worker_user() {
    WORKER_MLFLOW_USER="" WORKER_MLFLOW_PASSWORD=""
    [[ ${RECIPE_MLFLOW_APP:-} == basic-auth && -n ${MLFLOW_TRACKING_PASSWORD:-} ]] || return 0
    local pw=${RECIPE_MLFLOW_WORKER_PASSWORD:-}
    [[ -n $pw ]] || pw=$(secret mlflow-worker-password)
    # As the admin (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD from load_auth); output to mlflow's log.
    if ! (cd "$ROOT" && MLFLOW_TRACKING_URI="http://$HOST:$MLFLOW_PORT" RECIPE_MLFLOW_USER_PASSWORD=$pw \
        "$PY" -m flows.mlflow_users worker >>"$LOGS/mlflow.log" 2>&1 9>&-); then
        tail -n 5 "$LOGS/mlflow.log" >&2 || true
        die "could not create the worker's MLflow user (is MLFLOW_TRACKING_USERNAME an MLflow admin? log: $LOGS/mlflow.log)"
    fi
    WORKER_MLFLOW_USER=worker WORKER_MLFLOW_PASSWORD=$pw
    say "mlflow: user worker ready (no admin rights; the worker logs in as it)"
}

start_worker() {
    ensure_worker_user
    say "worker: starting $(worker_name) on work pool $POOL"
    (
        # what flow runs must not see: the servers' secrets and the MLflow admin's login (it keeps
        # PREFECT_API_AUTH_STRING, and logs in to MLflow as the user `worker`, without admin rights)
        unset RECIPE_PG_PASSWORD PGPASSWORD PREFECT_SERVER_API_AUTH_STRING MLFLOW_AUTH_ADMIN_PASSWORD \
            MLFLOW_FLASK_SERVER_SECRET_KEY RECIPE_MLFLOW_WORKER_PASSWORD
        if [[ -n $WORKER_MLFLOW_USER ]]; then
            export MLFLOW_TRACKING_USERNAME=$WORKER_MLFLOW_USER MLFLOW_TRACKING_PASSWORD=$WORKER_MLFLOW_PASSWORD
        fi
        export RECIPE_STACK_DIR=$RUN PREFECT_HOME=$RUN/prefect-worker DO_NOT_TRACK=1
        export PREFECT_API_URL="http://$HOST:$PREFECT_PORT/api"
        export MLFLOW_TRACKING_URI="http://$HOST:$MLFLOW_PORT"
        export RECIPE_FLOWS_HOME=${RECIPE_FLOWS_HOME:-$ROOT}  # where flow runs find the code (deploy/prefect.yaml)
        cd "$ROOT"
        start_bg worker "$(bin_of prefect)" worker start --pool "$POOL" --type process --name "$(worker_name)" \
            --install-policy never
    )
}

write_env() {
    # mode 0600: it holds the clients' credentials
    (umask 077 && { echo "# Written by deploy/stack.sh up. \`source $RUN/env\` points flows, prefect and mlflow at the stack."
                   env_lines; } >"$RUN/env")
    chmod 600 "$RUN/env"
}

env_lines() {  # the exports of $RUN/env: where the servers are and, with auth on, the clients' credentials
    echo "export PREFECT_API_URL=http://$HOST:$PREFECT_PORT/api"
    echo "export MLFLOW_TRACKING_URI=http://$HOST:$MLFLOW_PORT"
    if [[ -n ${PREFECT_API_AUTH_STRING:-} ]]; then echo "export PREFECT_API_AUTH_STRING=$PREFECT_API_AUTH_STRING"; fi
    if [[ -n ${MLFLOW_TRACKING_PASSWORD:-} ]]; then
        echo "export MLFLOW_TRACKING_USERNAME=$MLFLOW_TRACKING_USERNAME"
        echo "export MLFLOW_TRACKING_PASSWORD=$MLFLOW_TRACKING_PASSWORD"
    fi
    return 0
}

# ---------------------------------------------------------------- commands

lock() {
    exec 9>"$RUN/.lock"
    flock -n 9 || die "another deploy/stack.sh is working on $RUN; try again when it is done"
}

cmd_up() {
    lock
    mkdir -p "$LOGS" "$PIDS"
    [[ -x $PY ]] || die "no Python at $PY: run \`make test\` once (it creates .venv) or set RECIPE_PYTHON"
    # Every port first, so one run names every clash.
    local name clash=() pid
    for name in postgres prefect-server mlflow; do
        pid=$(running_pid "$name")
        if [[ -z $pid ]] && port_in_use "$(port_of "$name")"; then
            clash+=("port $(port_of "$name") ($name, $(port_var "$name")) is taken by $(port_owner "$(port_of "$name")")")
        fi
    done
    if ((${#clash[@]})); then
        printf 'stack: error: %s\n' "${clash[@]}" >&2
        die "stop what holds the port, or choose another with the variable named (e.g. RECIPE_PREFECT_PORT=4201 $0 up)"
    fi
    ensure_postgres_installed
    load_password
    load_auth
    POOL=$(work_pool)

    pid=$(running_pid postgres)
    if [[ -n $pid ]]; then say "postgres: already running (pid $pid)"; else start_postgres; fi
    ensure_databases

    local started=()
    for name in prefect-server mlflow; do
        pid=$(running_pid "$name")
        if [[ -n $pid ]]; then
            say "$name: already running (pid $pid)"
        else
            "start_${name//-/_}"
            started+=("$name")
        fi
    done
    for name in "${started[@]}"; do  # started side by side, waited for in turn
        wait_healthy "$name" "$(<"$(pidfile "$name")")"
        say "$name: healthy"
    done

    pid=$(running_pid worker)
    if [[ -n $pid ]]; then
        say "worker: already running (pid $pid)"
    else
        start_worker
        wait_healthy worker "$(<"$(pidfile worker)")"
        say "worker: online"
    fi
    write_env
    say ""
    cmd_status || true
    say ""
    say "Next: source $RUN/env && $ROOT/.venv/bin/flows deploy"
    say "      Prefect UI http://$HOST:$PREFECT_PORT   MLflow UI http://$HOST:$MLFLOW_PORT"
}

cmd_down() {
    if [[ ! -d $RUN ]]; then say "nothing running in $RUN"; return 0; fi
    lock
    local name any=0
    for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
        name=${COMPONENTS[i]}
        if [[ -n $(running_pid "$name") || -f $(pidfile "$name") ]]; then any=1; fi
        if [[ $name == postgres ]] && ! pg_bin >/dev/null; then continue; fi
        stop_component "$name"
    done
    ((any)) || say "nothing running in $RUN"
}

cmd_status() {
    local name pid port state all=0
    load_auth existing
    POOL=${POOL:-$(work_pool 2>/dev/null || echo '?')}
    printf '%-15s %-8s %-6s %s\n' component pid port state
    for name in "${COMPONENTS[@]}"; do
        port=$(port_of "$name")
        if [[ $name == postgres ]] && ! pg_bin >/dev/null; then
            pid="" state="not installed"
        else
            pid=$(running_pid "$name")
            if [[ -z $pid ]]; then
                state=stopped
                if [[ $port != - ]] && port_in_use "$port"; then state="stopped; port taken by $(port_owner "$port")"; fi
            elif healthy "$name"; then
                case $name in
                    postgres) state="healthy (pg_isready)" ;;
                    prefect-server) state="healthy  http://$HOST:$PREFECT_PORT" ;;
                    mlflow) state="healthy  http://$HOST:$MLFLOW_PORT" ;;
                    worker) state="healthy (online in work pool $POOL)" ;;
                esac
                ((++all))
            else
                state="running, NOT healthy (log: $LOGS/$name.log)"
            fi
        fi
        printf '%-15s %-8s %-6s %s\n' "$name" "${pid:--}" "$port" "$state"
    done
    ((all == ${#COMPONENTS[@]}))
}

cmd_env() {
    load_auth existing
    env_lines
}

cmd_ports() {  # component, port, the variable that sets it
    local name
    for name in postgres prefect-server mlflow; do say "$name $(port_of "$name") $(port_var "$name")"; done
}

cmd_logs() {
    local name
    for name in "${@:-${COMPONENTS[@]}}"; do
        [[ -f $LOGS/$name.log ]] || continue
        say "==== $LOGS/$name.log"
        tail -n "${LOG_LINES:-40}" "$LOGS/$name.log"
    done
}

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

case ${1:-} in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    ports) cmd_ports ;;
    logs) shift; cmd_logs "$@" ;;
    help | -h | --help) usage ;;
    *) usage >&2; exit 2 ;;
esac
