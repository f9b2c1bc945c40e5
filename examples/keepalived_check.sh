#!/bin/sh
# A keepalived vrrp_script: exit 0 only on the pg_leader leader (with a valid lease), so the
# virtual IP follows the leader. Asks the worker's HTTP health check (pg_leader.http_port); a
# server that is down, unreachable or slower than one second counts as "not the leader".
#
#   examples/keepalived_check.sh [URL]      default http://127.0.0.1:8008/leader
#
# keepalived.conf:
#   vrrp_script pg_leader {
#       script "/etc/keepalived/pg_leader_check.sh http://127.0.0.1:8008/leader"
#       interval 1
#       fall 1
#       rise 1
#   }
#   vrrp_instance VI_1 { ... track_script { pg_leader } }
exec curl --silent --fail --max-time 1 --output /dev/null "${1:-http://127.0.0.1:8008/leader}"
