#!/bin/bash
# The deployments, INSIDE the container booted by tests/deployments/run.sh
# (systemd is PID 1; there is no network but loopback). It finds:
#   /harness/wheels/   ferrocorn's wheel and every package's, for python3
#   /harness/apps/     tests/deployments/apps/ and flasktodo.py
#
# usage: inside.sh [N...]   N is a deployment, 1..5 (default: all)
#
# Each deployment gets its own venv, made offline from /harness/wheels, and
# is set up the way its guide says, with `gunicorn` renamed `ferrocorn`.
# One "PASS: ..." or "FAIL: ..." line per assertion, the evidence before
# it; ends with "N passed, N failed". Every wait polls against a deadline
# and every load loop is bounded in time and count.
set -u

CHECKS=("$@")
[ ${#CHECKS[@]} -gt 0 ] || CHECKS=(1 2 3 4 5)
APPS=/harness/apps
TMP=/tmp/deployments
mkdir -p "$TMP"
# A debootstrapped rootfs has no /etc/hosts; every real machine names
# localhost there (Zope's guide binds localhost:8080).
grep -qs '^127.0.0.1.*localhost' /etc/hosts || printf '127.0.0.1 localhost\n::1 localhost ip6-localhost\n' >> /etc/hosts
pass=0
fail=0

# ------------------------------------------------------------------ helpers
step()  { printf '\n### %s\n' "$*"; }
run()   { printf '$ %s\n' "$*"; "$@"; }
pass()  { echo "PASS: $*"; pass=$((pass + 1)); }
fail()  { echo "FAIL: $*"; fail=$((fail + 1)); }
check() {
  local desc=$1; shift
  if "$@"; then pass "$desc"; else fail "$desc"; fi
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# wait_for SECONDS CMD...: poll CMD every 0.2 s until it succeeds or time is up
wait_for() {
  local deadline=$(( $(now_ms) + $1 * 1000 )); shift
  while :; do
    "$@" && return 0
    [ "$(now_ms)" -ge "$deadline" ] && return 1
    sleep 0.2
  done
}

# code URL [CURL ARGS...]: the HTTP status (000 if none), body in $TMP/body
code() {
  local url=$1; shift
  curl -sS --max-time 20 -o "$TMP/body" -w '%{http_code}' "$@" "$url" 2>"$TMP/curl.err" || true
}
# answers URL WANT: the URL answers with status WANT (shows the exchange)
answers() {
  local got; got=$(code "$1")
  printf '$ curl %s  -> %s\n' "$1" "$got"
  head -c 300 "$TMP/body" | sed 's/^/    /'; echo
  [ "$got" = "$2" ]
}
up() { [ "$(code "$1")" = 200 ]; }
body_has() { grep -q -- "$1" "$TMP/body"; }

# make_venv DIR PACKAGE...: a venv of the system's python3 with ferrocorn's
# wheel and PACKAGEs, offline.
make_venv() {
  local dir=$1; shift
  python3 -m venv "$dir" &&
    "$dir/bin/pip" install --quiet --no-index --find-links /harness/wheels ferrocorn "$@"
}

# slow_requests N URL OUTDIR: N requests in the background, each status in
# OUTDIR/N; `wait` collects them.
slow_requests() {
  local i
  mkdir -p "$3"
  for i in $(seq "$1"); do
    (curl -sS --max-time 30 -o /dev/null -w '%{http_code}' "$2" > "$3/$i" 2>/dev/null || echo 000 > "$3/$i") &
  done
}
all_200() { local f; for f in "$1"/*; do [ "$(cat "$f")" = 200 ] || return 1; done; }
statuses() { local f; for f in "$1"/*; do cat "$f"; echo; done | sort | uniq -c | tr -s ' \n' ' '; }

# ------------------------------------------------------------ 1. Django
deploy_1() {
  step "1. Django 5.2 by the guide's systemd unit (User=p, gevent, IPv4 + IPv6)"
  useradd --system --home-dir /opt/p --shell /usr/sbin/nologin p
  if run make_venv /opt/p/venv 'Django>=5.2,<5.3'; then pass "1 venv with Django 5.2 and ferrocorn"
  else fail "1 venv with Django 5.2 and ferrocorn"; return; fi
  cp -r "$APPS/django" /opt/p/src
  install -d -o p -g p /var/log/p /var/lib/p
  run runuser -u p -- env PYTHONPATH=/opt/p/src DJANGO_SETTINGS_MODULE=settings \
      /opt/p/venv/bin/django-admin migrate --noinput > "$TMP/migrate.log" 2>&1
  check "1 django-admin migrate" grep -q "Applying auth" "$TMP/migrate.log"
  cp "$APPS/etc/p.service" /etc/systemd/system/p.service
  run systemctl daemon-reload
  run systemctl start p.service
  check "1 p.service serves on 127.0.0.1:8000" wait_for 30 up http://127.0.0.1:8000/form/
  local main; main=$(systemctl show -p MainPID --value p.service)
  run ps -o user=,pid=,args= --ppid "$main" -p "$main"
  check "1 the master runs as User=p" test "$(ps -o user= -p "$main")" = p
  local host
  for host in 127.0.0.1 '[::1]'; do
    local url=http://$host:8000/form/ jar=$TMP/jar-$host token
    rm -f "$jar"
    code "$url" -c "$jar" > /dev/null
    token=$(grep -o 'name="csrfmiddlewaretoken" value="[^"]*"' "$TMP/body" | sed 's/.*value="//; s/"$//')
    check "1 GET $url gives a form with a CSRF token" test -n "$token"
    local got; got=$(code "$url" -b "$jar" --data-urlencode "csrfmiddlewaretoken=$token" --data-urlencode "name=ferrocorn")
    printf '$ curl -b jar -d csrfmiddlewaretoken=...&name=ferrocorn %s -> %s: %s\n' "$url" "$got" "$(cat "$TMP/body")"
    check "1 POST $url with the token: 200 from the client's address" \
      sh -c "[ $got = 200 ] && grep -q 'thanks ferrocorn, from ${host//[\[\]]/}' $TMP/body"
    got=$(code "$url" -d name=forged)
    check "1 POST $url without the token: 403 (CSRF)" test "$got" = 403
  done
  check "1 the admin login page" answers http://127.0.0.1:8000/admin/login/ 200
  check "1 ... is Django's" body_has 'id="login-form"'
  run tail -5 /var/log/p/gunicorn.log
  check "1 --log-file=/var/log/p/gunicorn.log has the error log" grep -q "Booting worker" /var/log/p/gunicorn.log
  check "1 --worker-class=gevent is mapped to threads, with a warning" grep -q "gevent" /var/log/p/gunicorn.log
  run systemctl stop p.service
  check "1 systemctl stop: inactive, result success" \
    sh -c '[ "$(systemctl show -p ActiveState --value p.service)" = inactive ] && [ "$(systemctl show -p Result --value p.service)" = success ]'
}

# ------------------------------------------ 2. Flask, nginx, supervisor
deploy_2() {
  step "2. Flask at /flasktodo behind nginx, ferrocorn run by supervisor as www-data"
  if run make_venv /opt/flasktodo/venv flask; then pass "2 venv with Flask and ferrocorn"
  else fail "2 venv with Flask and ferrocorn"; return; fi
  cp "$APPS/flasktodo.py" /opt/flasktodo/
  install -d -o www-data -g www-data /run/flasktodo
  cp "$APPS/etc/flasktodo.supervisor.conf" /etc/supervisor/conf.d/flasktodo.conf
  rm -f /etc/nginx/sites-enabled/default
  cp "$APPS/etc/flasktodo.nginx.conf" /etc/nginx/sites-enabled/flasktodo
  run nginx -t 2>&1
  run systemctl restart nginx supervisor
  check "2 supervisor started it; nginx serves /flasktodo/" wait_for 30 up http://127.0.0.1/flasktodo/
  run supervisorctl status flasktodo
  check "2 links are built under /flasktodo (SCRIPT_NAME from nginx)" \
    sh -c "grep -q '\"item\": *\"/flasktodo/todo/0\"' $TMP/body || grep -q '\"item\":\"/flasktodo/todo/0\"' $TMP/body"
  check "2 a link followed through nginx" answers http://127.0.0.1/flasktodo/todo/0 200
  local pid; pid=$(cat /run/flasktodo/flasktodo.pid)
  check "2 the master runs as www-data, its pid in --pid" test "$(ps -o user= -p "$pid")" = www-data

  # supervisorctl restart under load: every request in flight is answered.
  slow_requests 6 "http://127.0.0.1/flasktodo/slow?s=2" "$TMP/restart"
  sleep 0.5
  run supervisorctl restart flasktodo
  wait
  echo "    in flight across the restart: $(statuses "$TMP/restart")"
  tail -3 /var/log/nginx/error.log | sed 's/^/    nginx: /'
  check "2 supervisorctl restart: the 6 requests in flight all get 200" all_200 "$TMP/restart"
  check "2 ... and a new master serves" wait_for 20 up http://127.0.0.1/flasktodo/
  local new; new=$(cat /run/flasktodo/flasktodo.pid)
  check "2 ... with a new pid ($pid -> $new)" test "$new" != "$pid"

  slow_requests 6 "http://127.0.0.1/flasktodo/slow?s=2" "$TMP/stop"
  sleep 0.5
  run supervisorctl stop flasktodo
  wait
  echo "    in flight across the stop: $(statuses "$TMP/stop")"
  tail -3 /var/log/nginx/error.log | sed 's/^/    nginx: /'
  check "2 supervisorctl stop: the 6 requests in flight all get 200" all_200 "$TMP/stop"
  run supervisorctl status flasktodo
  check "2 ... then it is stopped and nginx says 502" answers http://127.0.0.1/flasktodo/ 502
  check "2 ... leaving no process behind" sh -c '! pgrep -u www-data -f "[f]errocorn:" >/dev/null'
}

# ------------------------------------------------------------- 3. Zope
deploy_3() {
  step "3. Zope from PyPI: PasteDeploy (runwsgi, egg:ferrocorn#main), then the guide's gunicornapp"
  if run make_venv /opt/zope/venv Zope Paste PasteDeploy; then pass "3 venv with Zope, Paste and ferrocorn"
  else fail "3 venv with Zope, Paste and ferrocorn"; return; fi
  run /opt/zope/venv/bin/mkwsgiinstance -d /opt/zope/instance -u admin:secret
  local ini=/opt/zope/instance/etc/zope.ini
  # The one change the switch from waitress (or Gunicorn) needs.
  sed -i 's/^use = egg:waitress#main/use = egg:ferrocorn#main/; s/^port = 8080/port = 8080\nthreads = 4/' "$ini"
  run sed -n '/server:main/,/^$/p' "$ini"
  systemd-run --unit zope-paste --working-directory=/opt/zope/instance \
    /opt/zope/venv/bin/runwsgi "$ini"
  check "3 runwsgi zope.ini serves Zope's root" wait_for 60 up http://127.0.0.1:8080/
  local main; main=$(systemctl show -p MainPID --value zope-paste.service)
  run ps -o pid=,args= -p "$main"
  check "3 runwsgi's process became the ferrocorn master" \
    sh -c "ps -o args= -p $main | grep -q 'ferrocorn: master \[/opt/zope/instance/etc/zope.ini\]'"
  check "3 ... with the section's threads = 4" \
    sh -c "journalctl -u zope-paste --no-pager -o cat | grep -q '1 worker(s) × 4 thread(s)'"
  check "3 the ZMI with admin's credentials" \
    sh -c "[ \$(curl -s -o /dev/null -w '%{http_code}' -u admin:secret http://127.0.0.1:8080/manage_main) = 200 ]"
  check "3 ... and without them 401" \
    sh -c "[ \$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/manage_main) = 401 ]"
  run systemctl stop zope-paste
  check "3 systemctl stop: the master and its worker are gone" \
    sh -c "! pgrep -f '[f]errocorn: .*zope.ini' >/dev/null"

  cp "$APPS/zope/gunicornapp.py" /opt/zope/
  systemd-run --unit zope-gunicornapp --working-directory=/opt/zope \
    /opt/zope/venv/bin/ferrocorn -b localhost:8080 --threads 4 gunicornapp:application
  check "3 ferrocorn -b localhost:8080 --threads 4 gunicornapp:application serves Zope" \
    wait_for 60 up http://127.0.0.1:8080/
  check "3 ... the ZMI with admin's credentials" \
    sh -c "[ \$(curl -s -o /dev/null -w '%{http_code}' -u admin:secret http://127.0.0.1:8080/manage_main) = 200 ]"
  run systemctl stop zope-gunicornapp
}

# ----------------------------------------------------------- 4. OpenERP
deploy_4() {
  step "4. An OpenERP-style app initialised by its gunicorn.conf.py's on_starting"
  if run make_venv /opt/openerp/venv; then pass "4 venv with ferrocorn"
  else fail "4 venv with ferrocorn"; return; fi
  cp -r "$APPS/openerp/." /opt/openerp/
  install -d /run/openerp /var/log/openerp
  run cat /opt/openerp/gunicorn.conf.py
  systemd-run --unit openerp --working-directory=/opt/openerp \
    /opt/openerp/venv/bin/ferrocorn openerp:wsgi.core.application -c gunicorn.conf.py
  check "4 serves (the library refuses to unless on_starting ran)" wait_for 30 up http://127.0.0.1:8069/web/login
  local main arbiter worker
  main=$(systemctl show -p MainPID --value openerp.service)
  run ps -o pid=,ppid=,args= --ppid "$main" -p "$main"
  arbiter=$(grep -o '"initialized_in": [0-9]*' "$TMP/body" | grep -o '[0-9]*$')
  worker=$(grep -o '"worker": [0-9]*' "$TMP/body" | grep -o '[0-9]*$')
  check "4 on_starting ran in the arbiter ($arbiter), before the worker ($worker) was forked" \
    sh -c "ps -o args= -p $arbiter | grep -q 'ferrocorn: arbiter' && [ $arbiter != $worker ]"
  check "4 the file's conf['addons_path'] reached the worker" body_has '"addons_path": "/opt/openerp/addons"'
  run cat /var/log/openerp/hooks.log
  check "4 on_starting and when_ready in the arbiter" \
    sh -c "grep -q 'on_starting pid=$arbiter master=$main' /var/log/openerp/hooks.log && grep -q 'when_ready pid=$arbiter workers=2' /var/log/openerp/hooks.log"
  check "4 pre_request and post_request saw the request, in the worker" \
    sh -c "grep -q 'pre_request pid=$worker GET /web/login' /var/log/openerp/hooks.log && grep -q 'post_request pid=$worker /web/login 200 OK' /var/log/openerp/hooks.log"
  check "4 pidfile from the file" test "$(cat /run/openerp/gunicorn.pid)" = "$main"
  run systemctl stop openerp
  # Without its configuration file the library refuses: the check above
  # could not pass by accident.
  systemd-run --unit openerp-bare --working-directory=/opt/openerp \
    /opt/openerp/venv/bin/ferrocorn -b 127.0.0.1:8069 -c /dev/null openerp:wsgi.core.application
  wait_for 30 sh -c '[ "$(curl -s -o /dev/null -w "%{http_code}" http://127.0.0.1:8069/)" != 000 ]'
  check "4 without the gunicorn.conf.py it answers 503" answers http://127.0.0.1:8069/ 503
  run systemctl stop openerp-bare
}

# ------------------------------------------------------------ 5. runit
# sv_under_load COMMAND DESC_INFLIGHT DESC_AGAIN: `sv COMMAND app` with four
# slow requests in flight; they all get 200, then a new master serves.
sv_under_load() {
  local old; old=$(cat /var/run/gunicorn.pid)
  slow_requests 4 http://127.0.0.1:8050/slow "$TMP/sv-$1"
  sleep 0.5
  run sv "$1" app
  wait
  echo "    in flight across sv $1: $(statuses "$TMP/sv-$1")"
  check "$2" all_200 "$TMP/sv-$1"
  check "$3" wait_for 20 sh -c "[ \"\$(cat /var/run/gunicorn.pid 2>/dev/null)\" != $old ] && curl -sf -o /dev/null http://127.0.0.1:8050/"
}

deploy_5() {
  step "5. runit: /etc/sv/app/run as the Gunicorn docs write it"
  if run make_venv /opt/app/venv; then pass "5 venv with ferrocorn"
  else fail "5 venv with ferrocorn"; return; fi
  cp "$APPS/runit/main.py" "$APPS/runit/gunicorn.conf.py" /opt/app/
  install -d /etc/sv/app
  cp "$APPS/etc/runit-run" /etc/sv/app/run
  run cat /etc/sv/app/run
  run systemctl start runit
  ln -s /etc/sv/app /etc/service/app
  check "5 runsvdir started it: serves on 127.0.0.1:8050" wait_for 30 up http://127.0.0.1:8050/
  run sv status app
  local pid; pid=$(cat /var/run/gunicorn.pid)
  check "5 run exec'd ferrocorn: runsv's child is the master, its pid in --pid" \
    sh -c "sv status app | grep -q '(pid $pid)' && ps -o args= -p $pid | grep -q 'ferrocorn: master'"

  sv_under_load restart "5 sv restart: the requests in flight all get 200" "5 ... and a new master serves"
  sv_under_load term "5 sv term: the requests in flight all get 200 (graceful TERM)" "5 ... and runsv starts it again"
  run sv status app

  run sv down app
  check "5 sv down: stopped, nothing listens" wait_for 20 sh -c "! curl -s -o /dev/null http://127.0.0.1:8050/"
  check "5 ... and no ferrocorn process is left" sh -c "! pgrep -f '[f]errocorn: (master|worker|arbiter) \[main:application\]' >/dev/null"
}

for n in "${CHECKS[@]}"; do
  "deploy_$n"
done
echo
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
