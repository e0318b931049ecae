"""Every ingress-nginx annotation and controller ConfigMap key, and what ingressd does with it.

One table, three readers: the translator (a key used on an Ingress or in the ConfigMap that is not
``yes`` or ``accepted`` becomes a diagnostic saying what will differ), ``deploy/migration.md``
(generated from it: ``python -m ingressd.catalog > deploy/migration.md``, checked by a test) and
the people moving a cluster over.

Statuses:

- ``yes``: implemented with ingress-nginx's syntax, defaults and behaviour;
- ``accepted``: the value is checked, and nothing needs doing (ingressd streams bodies, so buffer
  sizes have no use): not reported;
- ``partial``: implemented, with the difference the note gives: reported once per object;
- ``no``: not implemented (the note says why, or that it is planned): reported, the key is ignored.
"""

from __future__ import annotations

from typing import NamedTuple

YES, ACCEPTED, PARTIAL, NO = "yes", "accepted", "partial", "no"


class Entry(NamedTuple):
    status: str
    note: str


def _table(text: str) -> dict[str, Entry]:
    table = {}
    for line in text.strip().splitlines():
        name, status, note = (part.strip() for part in line.split("|", 2))
        assert status in (YES, ACCEPTED, PARTIAL, NO), line
        table[name] = Entry(status, note)
    return table


SNIPPET = ("raw nginx configuration is never executed or templated by ingressd, by design "
           "(the source of ingress-nginx's critical CVEs)")
LATER = "not implemented yet (planned, issue 12)"

ANNOTATIONS = _table(f"""
app-root | yes | `/` answers 302 to the path (a relative Location: right behind any port)
affinity | yes | cookie: the first response sets the cookie, the cookie's endpoint serves while it exists; ingress-nginx's cookie format (an ingress-nginx cookie keeps its endpoint); wins over upstream-hash-by and load-balance
affinity-mode | yes | balanced (default: a random key on the hash ring, scaling moves some sessions) or persistent (the endpoint's salted hash: sessions never move while the endpoint exists)
affinity-canary-behavior | yes | sticky (default: a session served by the canary stays on it) or legacy (the canary ignores affinity)
allowlist-source-range | yes | others get 403
auth-realm | yes |
auth-secret | yes | NAMESPACE/NAME or NAME; missing or unreadable: every request gets 401
auth-secret-type | yes | auth-file (key `auth`) or auth-map (one key per user)
auth-type | yes | basic (digest: the requests get 503, never served unauthenticated)
auth-tls-secret | no | client certificates are not requested: the Ingress's requests get 503 (never served unauthenticated)
auth-tls-verify-depth | no | client certificates are not requested
auth-tls-verify-client | no | client certificates are not requested
auth-tls-error-page | no | client certificates are not requested
auth-tls-pass-certificate-to-upstream | no | client certificates are not requested
auth-tls-match-cn | no | client certificates are not requested
auth-url | yes | nginx's auth_request: the method and headers (no body) with X-Original-URL, X-Original-Method, X-Forwarded-*, X-Auth-Request-Redirect; 2xx proxied, 401/403 answered, anything else or no answer 500; http and https (certificate not verified, as nginx's proxy_pass); variables such as $host; asynchronous, keep-alive per worker
auth-method | yes |
auth-signin | yes | 401 becomes 302 to it, with rd= the original URL unless the URL has that parameter
auth-signin-redirect-param | yes |
auth-response-headers | yes | set on the proxied request, replacing the client's headers of those names
auth-request-redirect | yes | the X-Auth-Request-Redirect value (default: the request URI)
auth-cache-key | partial | answers cached per configuration and per worker (nginx: one cache zone for all workers)
auth-cache-duration | yes | default 200 202 401 5m
auth-always-set-cookie | yes | the auth service's Set-Cookie on refusals too (always: on proxied responses)
auth-keepalive | accepted | connection reuse to the auth service is ingressd's choice
auth-keepalive-requests | accepted | connection reuse to the auth service is ingressd's choice
auth-keepalive-timeout | accepted | connection reuse to the auth service is ingressd's choice
auth-keepalive-share-vars | no | nginx variables do not exist in ingressd
auth-proxy-set-headers | yes | NAMESPACE/NAME of a ConfigMap whose keys and values are sent to the auth service
auth-snippet | no | {SNIPPET}
enable-global-auth | yes | default true: the ConfigMap's global-auth-url applies
backend-protocol | yes | HTTP, HTTPS, GRPC (HTTP/2 with prior knowledge) and GRPCS (TLS, ALPN h2, with the proxy-ssl-* annotations): streams multiplexed on pooled HTTP/2 connections, trailers forwarded, failures as gRPC statuses in trailers-only answers (UNAVAILABLE, DEADLINE_EXCEEDED); AUTO_HTTP and FCGI: reported, HTTP
canary | yes | a canary Ingress's paths split the main Ingress's route of the same host, path and pathType (the main Ingress's other annotations apply); precedence: affinity, then header, cookie, weight; the oldest canary of a route wins; a canary spec.defaultBackend is reported and ignored
canary-by-header | yes | `always` / `never`, else the other rules
canary-by-header-value | yes | the header value that selects the canary
canary-by-header-pattern | yes | searched with RE2 (linear time; a pattern RE2 cannot run is reported); ignored when canary-by-header-value is set
canary-by-cookie | yes | `always` / `never`, else the weight
canary-weight | yes | requests out of canary-weight-total, default 0
canary-weight-total | yes | default 100 (values below 100 count as 100, as ingress-nginx)
client-body-buffer-size | accepted | sizes only: ingressd streams request bodies
configuration-snippet | no | {SNIPPET}
connection-proxy-header | no | ingressd manages Connection to the upstream itself
custom-headers | yes | NAME or NAMESPACE/NAME of a ConfigMap: its keys and values are response headers of the Ingress (replacing the upstream's, over add-headers), each allowed by global-allowed-response-headers, else (and when the ConfigMap is missing) its requests get 503, as ingress-nginx; values are literal (nginx variables reported)
custom-http-errors | yes | upstream answers (and ingressd's own 502/504) with those codes replaced by the error backend's answer to METHOD / with X-Code, X-Format, X-Original-URI, X-Namespace, X-Ingress-Name, X-Service-Name, X-Service-Port, X-Request-ID; not for requests whose body is still arriving
default-backend | yes | a Service of the Ingress's namespace (its first port): serves when the route's Service has no ready endpoints, and the custom-http-errors answers
denylist-source-range | yes | those get 403
disable-proxy-intercept-errors | yes | "true": custom-http-errors (also the ConfigMap's) does not apply
enable-access-log | yes |
enable-cors | yes | preflight OPTIONS answered with 204; CORS headers added to responses
cors-allow-origin | yes | `*` or a comma list of origins (wildcard subdomains `https://*.example.com`)
cors-allow-methods | yes | default `GET, PUT, POST, DELETE, PATCH, OPTIONS`
cors-allow-headers | yes | ingress-nginx's default list
cors-expose-headers | yes | default none
cors-allow-credentials | yes | default true
cors-max-age | yes | default 1728000
enable-modsecurity | no | no web application firewall
enable-owasp-core-rules | no | no web application firewall
modsecurity-transaction-id | no | no web application firewall
modsecurity-snippet | no | {SNIPPET}
enable-opentelemetry | no | no tracing
opentelemetry-trust-incoming-span | no | no tracing
opentelemetry-operation-name | no | no tracing
enable-opentracing | no | no tracing
opentracing-trust-incoming-span | no | no tracing
enable-influxdb | no | no InfluxDB export (Prometheus metrics are exported)
influxdb-measurement | no | no InfluxDB export
influxdb-port | no | no InfluxDB export
influxdb-host | no | no InfluxDB export
influxdb-server-name | no | no InfluxDB export
enable-rewrite-log | accepted | rewrites are shown by `ingressd routes`
force-ssl-redirect | yes | 308 to HTTPS even without TLS for the host
from-to-www-redirect | yes | 308 between `www.` and the bare name (the name without a rule)
global-rate-limit | no | removed from ingress-nginx (memcached); not planned
global-rate-limit-window | no | removed from ingress-nginx; not planned
global-rate-limit-key | no | removed from ingress-nginx; not planned
global-rate-limit-ignored-cidrs | no | removed from ingress-nginx; not planned
http2-push-preload | no | HTTP/2 server push is obsolete (browsers removed it)
limit-connections | partial | concurrent connections with a request in progress, per client address and Ingress, counted per worker process (nginx: per controller pod): with --workers N up to N times as many
limit-rps | partial | per client address, burst = rate x limit-burst-multiplier, nodelay, 503 (limit-req-status-code), as ingress-nginx; but counted per worker process (with --workers N an address can get up to N times the rate)
limit-rpm | partial | as limit-rps (per worker process), per minute
limit-burst-multiplier | yes | default 5
limit-rate | no | response bandwidth is not limited
limit-rate-after | no | response bandwidth is not limited
limit-whitelist | yes | addresses never rate or connection limited
limit-allowlist | yes | addresses never rate or connection limited
load-balance | yes | round_robin (default) or ewma: peak EWMA of each endpoint's latency (10 s decay), the better of two random endpoints not yet tried; scores are kept per worker process (ingress-nginx shares them between its workers)
mirror-request-body | no | request mirroring is not implemented
mirror-target | no | request mirroring is not implemented
mirror-host | no | request mirroring is not implemented
permanent-redirect | yes | checked template: only known nginx variables
permanent-redirect-code | yes | 300-308, else 301
temporal-redirect | yes | wins over permanent-redirect
temporal-redirect-code | yes | 300-308, else 302
preserve-trailing-slash | yes | the HTTPS redirect keeps the request target as sent
proxy-body-size | yes | over it: 413
proxy-buffering | accepted | ingressd streams responses with backpressure (as "off", ingress-nginx's default)
proxy-buffers-number | accepted | ingressd streams responses
proxy-buffer-size | accepted | sizes only: ingressd streams responses
proxy-max-temp-file-size | accepted | ingressd never buffers to disk
proxy-request-buffering | partial | "on" reads the whole body (in memory, bounded by proxy-body-size; with "0" it streams) before asking the upstream, and proxy-next-upstream can resend it; but ingressd's default is "off" (streamed), ingress-nginx's "on"
proxy-connect-timeout | yes | seconds
proxy-read-timeout | yes | seconds
proxy-send-timeout | yes | seconds
proxy-next-upstream | partial | error, timeout, http_500/502/503/504/403/404/429, non_idempotent and off as nginx (default "error timeout"; invalid_header is accepted, an invalid response head is a 502); a request whose body was already streamed to the upstream is not sent again (nginx buffers bodies and can resend them)
proxy-next-upstream-timeout | yes | seconds for all tries of a request (0: no limit)
proxy-next-upstream-tries | yes | default 3, never more than the endpoints; 0: all of them
proxy-cookie-domain | no | Set-Cookie is passed unchanged
proxy-cookie-path | no | Set-Cookie is passed unchanged
proxy-redirect-from | no | Location is passed unchanged
proxy-redirect-to | no | Location is passed unchanged
proxy-http-version | partial | ingressd speaks HTTP/1.1 to upstreams ("1.0" is accepted, not honoured)
proxy-ssl-secret | partial | its ca.crt verifies the upstream; a client certificate (tls.crt/tls.key) is not presented yet
proxy-ssl-ciphers | yes | OpenSSL cipher list
proxy-ssl-name | yes | the name verified (and sent with proxy-ssl-server-name); default NAME.NAMESPACE.svc of the Service
proxy-ssl-protocols | yes | TLSv1.2 and TLSv1.3 only (older ones are dropped from the list)
proxy-ssl-verify | yes | default off, as ingress-nginx
proxy-ssl-verify-depth | accepted | accepted; OpenSSL's default depth
proxy-ssl-server-name | yes | SNI to the upstream, default off
rewrite-target | yes | regexes run on RE2 (linear time): a pattern RE2 cannot run (backreferences, lookaround) is reported and the path is served without rewriting
use-regex | yes | RE2: case-insensitive, anchored at the start, as ingress-nginx's `location ~*`
satisfy | no | {LATER}
server-alias | yes | the aliases are served by the Ingress's rules (a host defined by another rule wins)
server-snippet | no | {SNIPPET}
stream-snippet | no | {SNIPPET}
service-upstream | yes | the Service's cluster IP and port (a headless or ExternalName Service: its endpoints, reported)
session-cookie-name | yes | default INGRESSCOOKIE
session-cookie-path | yes | default the Ingress path that matched (reported when use-regex is set without it)
session-cookie-domain | yes |
session-cookie-expires | yes | seconds from now, as an Expires date
session-cookie-max-age | yes | seconds
session-cookie-secure | yes | Secure also on plain HTTP (always on HTTPS requests)
session-cookie-samesite | yes | None, Lax or Strict
session-cookie-conditional-samesite-none | yes | SameSite=None left out for the browsers that reject it (ingress-nginx's list)
session-cookie-hash | accepted | removed from ingress-nginx; the cookie value is always its current format
session-cookie-change-on-failure | yes | default false: a retry after a failed attempt stays on the cookie's endpoint; true: a new endpoint and a new cookie
ssl-redirect | yes | 308, or the ConfigMap's http-redirect-code
ssl-passthrough | yes | with `--enable-ssl-passthrough`, as ingress-nginx (without it the annotation is ignored, as there): TLS connections whose SNI is the host go undecrypted to the backend of its `/` path; the Ingress's other annotations do not apply to them (layer 4)
ssl-ciphers | yes | OpenSSL cipher list (TLS 1.2 suites) for the Ingress's hosts, chosen by SNI; the oldest Ingress naming a host sets it
ssl-prefer-server-ciphers | partial | the server's cipher order is always preferred (ingress-nginx's default); turning it off is not supported
upstream-hash-by | yes | nginx variables and text ($request_uri, $uri, $args, $host, $remote_addr, $binary_remote_addr, $scheme, $request_method, $http_*, $cookie_*, $arg_*); consistent hashing as ingress-nginx's resty.chash (the same key reaches the same endpoint as with ingress-nginx; adding an endpoint moves about 1/N of the keys); wins over load-balance
upstream-hash-by-subset | yes | the key hashes to a group of endpoints, a random one of the group serves it
upstream-hash-by-subset-size | yes | default 3
upstream-vhost | yes | the Host sent upstream
whitelist-source-range | yes | others get 403
x-forwarded-prefix | yes | X-Forwarded-Prefix sent upstream
""")

CONFIGMAP = _table(f"""
add-headers | yes | NAMESPACE/NAME (or NAME in the controller's namespace) of a ConfigMap: response headers of every response, replacing the upstream's; values are literal (nginx variables reported)
global-allowed-response-headers | yes | the response headers the custom-headers annotation may set (default none)
allow-backend-server-header | accepted | ingressd passes the upstream's Server header
allow-snippet-annotations | accepted | always effectively false: snippets are never executed
annotation-value-word-blocklist | accepted | every annotation is parsed into a typed value, never templated
annotations-risk-level | accepted | every annotation is parsed into a typed value
hide-headers | yes | comma list of upstream response headers removed
access-log-params | accepted | nginx log buffering has no equivalent
access-log-path | no | the access log goes to stdout
http-access-log-path | no | the access log goes to stdout
stream-access-log-path | no | the access log goes to stdout
enable-access-log-for-default-backend | yes | default false, as ingress-nginx: requests for undefined hosts and paths without a backend are not logged
error-log-path | no | logs go to stderr
error-log-level | no | use --log-level
enable-modsecurity | no | no web application firewall
enable-owasp-modsecurity-crs | no | no web application firewall
modsecurity-snippet | no | {SNIPPET}
client-header-buffer-size | accepted | sizes only
client-header-timeout | yes | seconds to receive a request head
client-body-buffer-size | accepted | sizes only: ingressd streams request bodies
client-body-timeout | yes | seconds between two reads of a request body
disable-access-log | no | use --no-access-log
disable-ipv6 | accepted | listeners are set on the command line
disable-ipv6-dns | accepted | no DNS resolution on the request path
enable-underscores-in-headers | accepted | headers with underscores are passed
enable-ocsp | no | no OCSP stapling
ignore-invalid-headers | accepted | invalid headers are rejected by the HTTP parser
retry-non-idempotent | accepted | only requests without a body are retried, on a reused connection
http2-max-field-size | accepted | deprecated in ingress-nginx and ignored by its nginx (obsolete since 1.19.7): large-client-header-buffers bounds HTTP/2 request headers, in ingressd too (the decoded header list, advertised as SETTINGS_MAX_HEADER_LIST_SIZE; GOAWAY ENHANCE_YOUR_CALM past it)
http2-max-header-size | accepted | deprecated in ingress-nginx and ignored by its nginx (obsolete since 1.19.7): large-client-header-buffers bounds HTTP/2 request headers, in ingressd too (the decoded header list, advertised as SETTINGS_MAX_HEADER_LIST_SIZE; GOAWAY ENHANCE_YOUR_CALM past it)
http2-max-requests | partial | ingressd honours it: streams per HTTP/2 connection, then GOAWAY NO_ERROR (streams in flight finish), for connections opened after a change; ingress-nginx deprecated it and its nginx ignores it (obsolete since 1.19.7), applying keep-alive-requests, as ingressd does when it is unset or 0
http2-max-concurrent-streams | yes | default 128: advertised as SETTINGS_MAX_CONCURRENT_STREAMS, streams beyond get RST_STREAM REFUSED_STREAM; for connections opened after a change
hsts | yes | Strict-Transport-Security on HTTPS responses
hsts-include-subdomains | yes |
hsts-max-age | yes |
hsts-preload | yes |
keep-alive | yes | seconds idle between requests (0: no keep-alive)
keep-alive-requests | yes | default 1000; on HTTP/2 the streams per connection (GOAWAY NO_ERROR after the last), as nginx
large-client-header-buffers | partial | NUMBER x SIZE bounds the whole request head (431 past it; nginx answers 414/400 per line)
log-format-escape-none | yes | variables logged unescaped (wins over log-format-escape-json)
log-format-escape-json | yes | variables escaped as JSON strings (with ingress-nginx's default format when log-format-upstream is unset)
log-format-upstream | partial | compiled once per configuration; the variables ingressd fills: $remote_addr $remote_user $proxy_add_x_forwarded_for $time_local $time_iso8601 $msec $request $request_method $request_uri $uri $args $query_string $is_args $server_protocol $status $body_bytes_sent and $bytes_sent (both with the response head) $http_referer $http_user_agent $http_NAME (request headers) $request_length $request_time $proxy_upstream_name $proxy_alternative_upstream_name (empty) $upstream_addr $upstream_response_length $upstream_response_time $upstream_connect_time $upstream_header_time $upstream_status $req_id $request_id $host $server_name $namespace $ingress_name $service_name $service_port $scheme $server_port $the_real_ip $proxy_protocol_addr $pid $hostname; any other is reported and logged as "-"; a websocket is logged once, when it closes (as nginx)
log-format-stream | no | no stream proxying
enable-multi-accept | accepted | the event loop accepts in batches
max-worker-connections | accepted | no fixed connection table
max-worker-open-files | accepted | the process's open-file limit applies
map-hash-bucket-size | accepted | nginx tuning without an equivalent
nginx-status-ipv4-whitelist | accepted | the status page is on the metrics port
nginx-status-ipv6-whitelist | accepted | the status page is on the metrics port
proxy-real-ip-cidr | yes | trusted proxies (see use-forwarded-headers)
proxy-set-headers | partial | NAMESPACE/NAME (or NAME in the controller's namespace) of a ConfigMap: request headers sent to every upstream, replacing the client's and ingressd's own (X-Forwarded-*, X-Real-IP, X-Request-ID); values are literal: nginx variables are not expanded (reported)
server-name-hash-max-size | accepted | nginx tuning without an equivalent
server-name-hash-bucket-size | accepted | nginx tuning without an equivalent
proxy-headers-hash-max-size | accepted | nginx tuning without an equivalent
proxy-headers-hash-bucket-size | accepted | nginx tuning without an equivalent
plugins | no | no Lua plugins
reuse-port | accepted | workers share the listening sockets
server-tokens | accepted | ingressd sends no Server header of its own
ssl-ciphers | yes | OpenSSL cipher list (TLS 1.2 suites; TLS 1.3's are OpenSSL's); default ingress-nginx's without the DHE suites (no DH parameters)
ssl-ecdh-curve | accepted | OpenSSL's default curves
ssl-dh-param | no | no DHE ciphers
ssl-protocols | partial | TLSv1.2 and/or TLSv1.3 (default both); SSLv2, SSLv3, TLSv1 and TLSv1.1 are never offered (reported)
ssl-session-cache | accepted | OpenSSL's session cache
ssl-session-cache-size | accepted | OpenSSL's session cache
ssl-session-tickets | accepted | OpenSSL's defaults
ssl-session-ticket-key | no | session ticket keys are per process
ssl-session-timeout | accepted | OpenSSL's defaults
ssl-buffer-size | accepted | nginx tuning without an equivalent
use-proxy-protocol | yes | PROXY protocol v1/v2 on every connection
proxy-protocol-header-timeout | no | {LATER}
use-gzip | no | responses are not compressed by ingressd
gzip-level | no | responses are not compressed by ingressd
gzip-min-length | no | responses are not compressed by ingressd
gzip-types | no | responses are not compressed by ingressd
gzip-disable | no | responses are not compressed by ingressd
enable-brotli | no | responses are not compressed by ingressd
brotli-level | no | responses are not compressed by ingressd
brotli-min-length | no | responses are not compressed by ingressd
brotli-types | no | responses are not compressed by ingressd
use-geoip | no | no GeoIP
use-geoip2 | no | no GeoIP
use-http2 | yes | default "true": ALPN offers h2 and http/1.1 on the HTTPS listener; "false": http/1.1 only, for connections opened after a change (open HTTP/2 connections go on); `--no-http2` wins; h2c (`--h2c`) is not affected
worker-processes | no | use --workers
worker-cpu-affinity | accepted | the kernel schedules workers
worker-shutdown-timeout | yes | on SIGTERM (default 240s): new connections refused, idle keep-alive connections closed, requests in flight finish (Connection: close), websockets kept until the timeout; also with --workers; a second SIGTERM/SIGINT to the control plane ends the wait
load-balance | yes | the default of every Ingress without its own load-balance (round_robin or ewma)
variables-hash-bucket-size | accepted | nginx tuning without an equivalent
variables-hash-max-size | accepted | nginx tuning without an equivalent
upstream-keepalive-connections | partial | idle connections kept per endpoint (nginx: per upstream and worker)
upstream-keepalive-time | no | {LATER}
upstream-keepalive-timeout | yes |
upstream-keepalive-requests | yes |
limit-conn-zone-variable | accepted | limits are per client address
proxy-stream-timeout | no | no stream proxying
proxy-stream-next-upstream | no | no stream proxying
proxy-stream-next-upstream-timeout | no | no stream proxying
proxy-stream-next-upstream-tries | no | no stream proxying
proxy-stream-responses | no | no stream proxying
bind-address | no | listeners are set on the command line
use-forwarded-headers | yes | X-Forwarded-* from trusted proxies
enable-real-ip | yes | the client address from forwarded-for-header
forwarded-for-header | yes |
compute-full-forwarded-for | yes |
proxy-add-original-uri-header | no | {LATER}
generate-request-id | accepted | X-Request-ID is always set (the client's when sent)
enable-opentelemetry | no | no tracing
enable-opentracing | no | no tracing
main-snippet | no | {SNIPPET}
http-snippet | no | {SNIPPET}
server-snippet | no | {SNIPPET}
stream-snippet | no | {SNIPPET}
location-snippet | no | {SNIPPET}
custom-http-errors | yes | the default of every Ingress without its own annotation; answers from the controller's default backend
proxy-body-size | yes | the default of every Ingress (its annotation wins)
proxy-connect-timeout | yes | the default of every Ingress
proxy-read-timeout | yes | the default of every Ingress
proxy-send-timeout | yes | the default of every Ingress
proxy-buffers-number | accepted | ingressd streams responses
proxy-buffer-size | accepted | sizes only
proxy-buffering | accepted | ingressd streams responses
proxy-cookie-path | no | Set-Cookie is passed unchanged
proxy-cookie-domain | no | Set-Cookie is passed unchanged
proxy-next-upstream | partial | error, timeout, http_500/502/503/504/403/404/429, non_idempotent and off as nginx (default "error timeout"; invalid_header is accepted, an invalid response head is a 502); a request whose body was already streamed to the upstream is not sent again (nginx buffers bodies and can resend them)
proxy-next-upstream-timeout | yes | seconds for all tries of a request (0: no limit)
proxy-next-upstream-tries | yes | default 3, never more than the endpoints; 0: all of them
proxy-redirect-from | no | Location is passed unchanged
proxy-request-buffering | partial | as the annotation: "on" honoured, default "off"
proxy-http-version | accepted | ingressd speaks HTTP/1.1 to upstreams
ssl-redirect | yes | the default of every Ingress
force-ssl-redirect | yes | the default of every Ingress
whitelist-source-range | yes | the default of every Ingress without its own
denylist-source-range | yes | the default of every Ingress without its own
block-cidrs | yes | 403 for every request from those addresses
block-user-agents | yes | comma list: exact User-Agent (ignoring case) or ~regex / ~*regex (RE2): 403
block-referers | yes | comma list: exact Referer (ignoring case) or ~regex / ~*regex (RE2): 403
skip-access-log-urls | yes | request targets (path and query) matched exactly
limit-rate | no | response bandwidth is not limited
limit-rate-after | no | response bandwidth is not limited
lua-shared-dicts | accepted | no Lua
http-redirect-code | yes | the HTTP-to-HTTPS redirect (301, 302, 307, 308)
limit-req-status-code | yes | the status of rate-limited requests (default 503)
limit-conn-status-code | yes | the status of connection-limited requests (default 503)
enable-syslog | no | logs go to stdout/stderr
syslog-host | no | logs go to stdout/stderr
syslog-port | no | logs go to stdout/stderr
no-tls-redirect-locations | no | {LATER}: only /.well-known/acme-challenge is exempt
global-auth-url | yes | external auth for every Ingress without its own auth-url, unless enable-global-auth is "false"
global-auth-method | yes |
global-auth-signin | yes |
global-auth-signin-redirect-param | yes |
global-auth-response-headers | yes |
global-auth-request-redirect | yes |
global-auth-always-set-cookie | yes |
global-auth-snippet | no | {SNIPPET}
global-auth-cache-key | partial | cached per configuration and per worker
global-auth-cache-duration | yes |
no-auth-locations | yes | paths (and below) global auth does not apply to; default /.well-known/acme-challenge
proxy-ssl-location-only | accepted | upstream TLS is per Ingress
default-type | accepted | ingressd's own answers are text/plain
global-rate-limit-memcached-host | no | removed from ingress-nginx; not planned
global-rate-limit-memcached-port | no | removed from ingress-nginx; not planned
global-rate-limit-memcached-connect-timeout | no | removed from ingress-nginx; not planned
global-rate-limit-memcached-max-idle-timeout | no | removed from ingress-nginx; not planned
global-rate-limit-memcached-pool-size | no | removed from ingress-nginx; not planned
global-rate-limit-status-code | no | removed from ingress-nginx; not planned
service-upstream | no | {LATER}: endpoints are used
ssl-reject-handshake | no | {LATER}: unknown names get the default certificate
debug-connections | accepted | nginx debugging without an equivalent
""")


def reported(entry: Entry | None) -> bool:
    """Whether using the key deserves a diagnostic (unknown, partly supported or unsupported)."""
    return entry is None or entry.status in (PARTIAL, NO)


def describe(kind: str, name: str, entry: Entry | None) -> str:
    """The diagnostic for one key used: ``kind`` is "annotation" or "ConfigMap key"."""
    if entry is None:
        return f"{kind} {name} is not an ingress-nginx {kind} ingressd knows; ignored"
    if entry.status == NO:
        return f"{kind} {name} is not supported: {entry.note}; ignored"
    return f"{kind} {name} is supported in part: {entry.note}"


_STATUS_TEXT = {YES: "yes", ACCEPTED: "accepted", PARTIAL: "partial", NO: "no"}


def markdown() -> str:
    """``deploy/migration.md``: both tables, in the same words as ``ingressd check``."""
    out = [
        "# Moving from ingress-nginx to ingressd",
        "",
        "ingressd reads ingress-nginx's Ingress annotations (prefix `nginx.ingress.kubernetes.io/`) and its",
        "controller ConfigMap (`--configmap NAMESPACE/NAME`; in a manifest directory, a `ConfigMap` object",
        "of that name, `ingress-nginx/ingress-nginx-controller` by default) unchanged. `ingressd check` prints a",
        "warning naming the object for every key below marked *partial* or *no*, and for every key it does not",
        "know; annotations override the ConfigMap per Ingress, as in ingress-nginx. A value that does not parse",
        "is reported and the default is used.",
        "",
        "Statuses: **yes** as ingress-nginx; **accepted** the value is checked and nothing needs doing (not",
        "reported); **partial** works with the difference noted (reported); **no** ignored, for the reason",
        "noted (reported).",
        "",
        "This file is generated: `python -m ingressd.catalog > deploy/migration.md`.",
        "",
    ]
    for title, table in (("Annotations", ANNOTATIONS), ("ConfigMap keys", CONFIGMAP)):
        counts = {status: sum(1 for e in table.values() if e.status == status) for status in _STATUS_TEXT}
        out += [f"## {title}", "",
                ", ".join(f"{n} {s}" for s, n in counts.items()) + f" ({len(table)} in all).", "",
                "| key | ingressd | notes |", "|---|---|---|"]
        for name in sorted(table):
            entry = table[name]
            out.append(f"| `{name}` | {_STATUS_TEXT[entry.status]} | {entry.note.replace('|', '/')} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown(), end="")
