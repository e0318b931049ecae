"""The translator: a pure function from a snapshot of Kubernetes objects to a configuration.

It applies the Ingress specification as ingress-nginx implements it (see
``../shared/reference/ingress-nginx.md``): class selection, oldest-wins merging of rules for one
host, TLS per host, per-Ingress annotations, and backends resolved to endpoint addresses. Every
problem becomes a diagnostic naming the object; none stops the rest from being served.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict

from .annotations import DEFAULT_OPTIONS, Redirect, RouteOptions, parse_route_options
from .controller_config import ControllerSettings, parse_controller_configmap
from .certs import Certificate, load_certificate
from .config import CONTROLLER_NAME, Config, Settings, Snapshot
from .diagnostics import ERROR, WARNING, Diagnostic
from .hosts import HostMap, is_wildcard
from .objects import BackendRef, ConfigMap, EndpointSlice, Ingress, IngressClass, KubeObject, Secret, Service
from .options.balance import Balance, Canary, feedback
from .options.basicauth import BasicAuth, parse_htpasswd
from .options.headers import ResponseHeaders, header_lines
from .options.rewrite import Rewrite, compile_path
from .options.upstream_tls import UpstreamTLSSpec
from .options.upstream_tls import build as build_upstream_tls
from .routing import UNDEFINED_HOST, Backend, HostRoutes, Route, RouteTable


_TOKEN_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


class _Index:
    """The snapshot's objects by the keys the translator looks them up with."""

    def __init__(self, objects: tuple[KubeObject, ...]):
        self.ingresses: list[Ingress] = []
        self.classes: dict[str, IngressClass] = {}
        self.services: dict[tuple[str, str], Service] = {}
        self.slices: dict[tuple[str, str], list[EndpointSlice]] = defaultdict(list)
        self.secrets: dict[tuple[str, str], Secret] = {}
        self.config_maps: dict[tuple[str, str], ConfigMap] = {}
        self.all_secrets: dict[tuple[str, str], Secret] = {}  # TLS ones and those annotations use
        for obj in objects:
            if isinstance(obj, Ingress):
                self.ingresses.append(obj)
            elif isinstance(obj, Service):
                self.services[(obj.meta.namespace, obj.meta.name)] = obj
            elif isinstance(obj, EndpointSlice):
                self.slices[(obj.meta.namespace, obj.service_name)].extend(obj.parts())
            elif isinstance(obj, Secret):
                if obj.is_tls:
                    self.secrets[(obj.meta.namespace, obj.meta.name)] = obj
                self.all_secrets[(obj.meta.namespace, obj.meta.name)] = obj
            elif isinstance(obj, IngressClass):
                self.classes[obj.meta.name] = obj
            elif isinstance(obj, ConfigMap):
                self.config_maps[(obj.meta.namespace, obj.meta.name)] = obj


class _Translation:
    def __init__(self, snapshot: Snapshot, settings: Settings):
        self.settings = settings
        self.index = _Index(snapshot.objects)
        self.diagnostics: list[Diagnostic] = list(snapshot.diagnostics)
        self.backends: dict[tuple[str, str, str], Backend] = {}
        self.certificates: dict[tuple[str, str], Certificate | None] = {}
        self.base_options = DEFAULT_OPTIONS  # the ConfigMap's defaults, once read
        self.default_backend_options = DEFAULT_OPTIONS
        self.upstream_contexts: dict[tuple, object] = {}
        self.auths: dict[tuple, object] = {}
        self.custom: dict = {}  # custom-headers per Ingress
        self.allowed_response_headers: frozenset = frozenset()
        self.required: set = set(required_objects(settings))

    def report(self, severity: str, obj: KubeObject | None, message: str, code: str = "") -> None:
        meta = obj.meta if obj is not None else None
        self.diagnostics.append(Diagnostic(severity, message, meta.origin if meta else None,
                                           meta.ref if meta else None, code))

    # --- classes ----------------------------------------------------------------------------

    def served(self, ingress: Ingress) -> bool:
        return is_served(ingress, self.index.classes, self.settings)

    # --- backends ---------------------------------------------------------------------------

    def backend(self, namespace: str, ref: BackendRef, owner: KubeObject | None,
                service_upstream: bool = False) -> Backend:
        key = (namespace, ref.service, ref.port, service_upstream)
        backend = self.backends.get(key)
        if backend is None:
            backend = self.backends[key] = self.resolve(namespace, ref)
            if service_upstream and not backend.error:
                backend = self.backends[key] = self.cluster_ip_backend(namespace, ref, backend, owner)
        if backend.error and owner is not None:
            self.report(WARNING, owner, f"backend {backend.error}; its requests get 503", "reference")
        return backend

    def cluster_ip_backend(self, namespace: str, ref: BackendRef, backend: Backend, owner) -> Backend:
        """``service-upstream``: the Service's cluster IP and port (kube-proxy balances)."""
        service = self.index.services[(namespace, ref.service)]
        port = next((p for p in service.ports
                     if (p.port == ref.port_number if ref.port_number is not None else p.name == ref.port_name)), None)
        if service.external_name is not None or port is None or service.cluster_ip in ("", "None"):
            if owner is not None:
                self.report(WARNING, owner, f"service-upstream: service {namespace}/{ref.service} has no cluster IP; "
                                            "using its endpoints", "annotation")
            return backend
        return Backend(namespace, ref.service, ref.port, ((service.cluster_ip, port.port),))

    def resolve(self, namespace: str, ref: BackendRef) -> Backend:
        def unavailable(reason: str, orphan: str = "no-endpoint") -> Backend:
            return Backend(namespace, ref.service, ref.port, (), reason, orphan)

        service = self.index.services.get((namespace, ref.service))
        if service is None:
            return unavailable(f"service {namespace}/{ref.service} not found", "no-service")
        port = next((p for p in service.ports
                     if (p.port == ref.port_number if ref.port_number is not None else p.name == ref.port_name)),
                    None)
        if service.external_name is not None:
            number = port.port if port is not None else ref.port_number
            if number is None:
                return unavailable(f"service {namespace}/{ref.service} has no port named {ref.port_name!r}")
            return Backend(namespace, ref.service, ref.port, ((service.external_name, number),))
        if port is None:
            return unavailable(f"service {namespace}/{ref.service} has no port {ref.port}")
        endpoints: dict[tuple[str, int], None] = {}
        for endpoint_slice in self.index.slices.get((namespace, ref.service), ()):
            number = next((p.port for p in endpoint_slice.ports if p.name == port.name), None)
            if number is None and not endpoint_slice.ports and isinstance(port.target_port, int):
                number = port.target_port  # a slice without ports: the Service's targetPort
            if number is None:
                continue
            for address in endpoint_slice.ready_addresses:
                endpoints[(address, number)] = None
        if not endpoints:
            return unavailable(f"service {namespace}/{ref.service} port {ref.port} has no ready endpoints")
        return Backend(namespace, ref.service, ref.port, tuple(endpoints))

    def default_backend_service(self) -> Backend | None:
        spec = self.settings.default_backend_service
        if not spec:
            return None
        namespace, _, rest = spec.rpartition("/")
        name, _, port = rest.partition(":")
        ref = BackendRef(name, port_number=int(port)) if port.isdigit() else BackendRef(name, port_name=port)
        backend = self.backend(namespace or "default", ref, None)
        if backend.error:
            self.diagnostics.append(Diagnostic(WARNING, f"--default-backend-service: {backend.error}"))
        return backend

    # --- certificates -----------------------------------------------------------------------

    def certificate(self, namespace: str, name: str, owner: KubeObject | None) -> Certificate | None:
        key = (namespace, name)
        if key in self.certificates:
            return self.certificates[key]
        secret = self.index.secrets.get(key)
        cert = None
        if secret is None:
            if owner is not None:
                self.report(WARNING, owner, f"TLS secret {namespace}/{name} not found; using the default certificate",
                            "reference")
        else:
            try:
                cert = load_certificate(f"{namespace}/{name}", secret.cert_pem, secret.key_pem)
            except ValueError as error:
                self.report(ERROR, secret, str(error), "invalid")
        self.certificates[key] = cert
        return cert

    # --- the controller ConfigMap ---------------------------------------------------------

    def controller(self) -> ControllerSettings:
        name = self.settings.configmap
        if not name:
            return ControllerSettings()
        namespace, _, name = name.rpartition("/")
        config_map = self.index.config_maps.get((namespace or "default", name))
        if config_map is None:
            return ControllerSettings()
        controller, warnings = parse_controller_configmap(config_map.data, self.settings.trust)
        for warning in warnings:
            self.report(WARNING, config_map, warning, "configmap")
        return controller

    # --- the whole translation --------------------------------------------------------------

    def run(self) -> Config:
        ingresses = sorted((i for i in self.index.ingresses if self.served(i)),
                           key=lambda i: (i.meta.creation_timestamp, i.meta.namespace, i.meta.name))  # oldest first
        controller = self.controller()
        controller = self.global_headers(controller)
        self.base_options = controller.defaults.options
        self.default_backend_options = dataclasses.replace(
            self.base_options, access_log=controller.defaults.default_backend_log)
        options = {}
        regex_hosts: set[str] = set()
        canaries: list[Ingress] = []  # canary: "true": their paths split main Ingresses' (merge_canaries)
        # Ingresses mostly share their annotations: parse each set once. Not for options holding
        # per-Ingress state (limit-rps, limit-connections count each Ingress's clients apart).
        parsed: dict[tuple, tuple[RouteOptions, list[str]]] = {}
        for ingress in ingresses:
            annotations = ingress.meta.annotations
            same = tuple(annotations.items())
            found = parsed.get(same)
            if found is None:
                found = parse_route_options(annotations, controller.defaults)
                if not found[0].rate_limits and found[0].conn_limit is None:
                    parsed[same] = found
            opts, warnings = found
            options[ingress.meta.key] = opts
            for warning in warnings:
                self.report(WARNING, ingress, warning, "annotation")
            if opts.canary is not None:
                canaries.append(ingress)
                continue
            if opts.use_regex or opts.rewrite_target is not None:
                # ingress-nginx: one such Ingress makes every path of the host a regex.
                regex_hosts.update(rule.host for rule in ingress.rules)

        if canaries:  # ingress-nginx builds servers and locations from the other Ingresses only
            ingresses = [i for i in ingresses if options[i.meta.key].canary is None]
        certificates, tls_hosts = self.tls(ingresses)
        table = RouteTable()
        global_default = self.global_default(ingresses)
        table.default = global_default
        self.global_backend = global_default.backend
        owners: dict[tuple[str, str, str], Ingress] = {}
        orphans: dict[tuple[str, str, str], None] = {}
        regex_buckets: dict[int, dict] = {}  # id(HostRoutes) -> {path: Route}, for conflicts
        regex_routes: dict[int, tuple] = {}  # id(HostRoutes) -> (HostRoutes, [(-length, order, regex, route)])

        for ingress in ingresses:
            opts = options[ingress.meta.key]
            for rule in ingress.rules:
                host_routes = self.host_routes(table, rule.host, tls_hosts, opts)
                for path in rule.paths:
                    is_prefix = path.path_type != "Exact"
                    key = path.path.rstrip("/") if is_prefix else path.path
                    bucket = host_routes.prefix if is_prefix else host_routes.exact
                    regex = None
                    if is_prefix and rule.host in regex_hosts:
                        try:
                            regex = compile_path(path.path)
                        except ValueError as error:
                            self.report(WARNING, ingress, f"{error}; served as a prefix", "annotation")
                    if regex is not None:
                        key, bucket = path.path, regex_buckets.setdefault(id(host_routes), {})
                    owner_key = (rule.host, key, "regex" if regex is not None else "prefix" if is_prefix else "exact")
                    if key in bucket:
                        winner = owners[owner_key]
                        self.report(WARNING, ingress,
                                    f"host {rule.host or '*'} path {path.path} ({path.path_type}) is already "
                                    f"defined by the older {winner.meta.ref}; this rule is ignored", "conflict")
                        continue
                    owners[owner_key] = ingress
                    backend = self.backend(ingress.meta.namespace, path.backend, ingress, opts.service_upstream)
                    error_backend = None
                    if opts.error_backend_ref is not None:
                        error_backend = self.error_backend(ingress, opts.error_backend_ref)
                        if backend.error and error_backend is not None and not error_backend.error:
                            backend = error_backend  # default-backend: the Service has no endpoints
                    if backend.orphan:
                        orphans[(ingress.meta.namespace, ingress.meta.name, backend.orphan)] = None
                    route_opts = opts
                    if opts.upstream_tls_spec is not None:
                        route_opts = self.upstream_tls(ingress, route_opts, path.backend.service)
                    if opts.auth_secret is not None:
                        route_opts = self.basic_auth(ingress, route_opts)
                    if opts.ext_auth is not None:
                        route_opts = self.ext_auth(ingress, route_opts, path.path, controller.defaults, rule.host)
                    if opts.error_codes:
                        route_opts = dataclasses.replace(route_opts, custom_errors=self.custom_errors(
                            ingress, opts, error_backend, rule.host, path, backend))
                    if opts.rewrite_target is not None and is_prefix:
                        try:
                            route_opts = dataclasses.replace(route_opts, rewrite=Rewrite(path.path, opts.rewrite_target))
                        except ValueError as error:
                            self.report(WARNING, ingress, f"{error}; not rewriting", "annotation")
                    if opts.custom_headers is not None:
                        route_opts = self.custom_headers(ingress, route_opts)
                    route = bucket[key] = Route(
                        host=rule.host, path=path.path, path_type=path.path_type,
                        namespace=ingress.meta.namespace, ingress=ingress.meta.name, backend=backend,
                        options=route_opts,
                        https_redirect=(opts.ssl_redirect and _has_tls(rule.host, tls_hosts))
                        or opts.force_ssl_redirect,
                        labels=(ingress.meta.namespace, ingress.meta.name, backend.service, rule.host, path.path),
                        activity=feedback(route_opts),
                    )
                    if regex is not None:
                        entry = regex_routes.setdefault(id(host_routes), (host_routes, []))
                        entry[1].append((-len(path.path), len(entry[1]), regex, route))
        if canaries:
            self.merge_canaries(canaries, options, table, regex_routes)
        for host_routes, found in regex_routes.values():  # longest path first, then in order
            host_routes.regex = tuple((regex, route) for _, _, regex, route in sorted(found, key=lambda f: f[:2]))
        self.host_aliases(table, ingresses, options, tls_hosts)

        default_certificate = None
        if self.settings.default_ssl_certificate:
            namespace, _, name = self.settings.default_ssl_certificate.rpartition("/")
            default_certificate = self.certificate(namespace or "default", name, None)
            if default_certificate is None:
                self.diagnostics.append(Diagnostic(
                    ERROR, f"--default-ssl-certificate {self.settings.default_ssl_certificate}: secret not found "
                           "or not a valid kubernetes.io/tls Secret; using a generated certificate"))
        return Config(table=table, certificates=certificates,
                      default_certificate=default_certificate,
                      diagnostics=tuple(dict.fromkeys(self.diagnostics)),
                      ingress_count=len(ingresses) + len(canaries), orphans=tuple(orphans),
                      trust=controller.trust or self.settings.trust, hsts=controller.hsts,
                      client=controller.client, upstream=controller.upstream, tls=controller.tls,
                      shutdown_timeout=controller.shutdown_timeout, log_format=controller.log_format,
                      blocked=controller.blocked,
                      required=frozenset(self.required))

    def merge_canaries(self, canaries: list[Ingress], options: dict, table: RouteTable, regex_routes: dict) -> None:
        """Each path of a canary Ingress splits the main route of the same host, path and pathType
        (ingress-nginx's mergeAlternativeBackends): the oldest canary of a route wins; a path without
        a main route is not served."""
        for ingress in canaries:  # oldest first
            opts = options[ingress.meta.key]
            if ingress.default_backend is not None:
                self.report(WARNING, ingress, "canary: spec.defaultBackend is not split with the default backend; "
                                              "ignored", "annotation")
            for rule in ingress.rules:
                host_routes = table.hosts.pattern_value(rule.host) if rule.host else table.any_host
                for path in rule.paths:
                    where = f"host {rule.host or '*'} path {path.path} ({path.path_type})"
                    found = _find_route(host_routes, path.path, path.path_type, regex_routes)
                    if found is None:
                        self.report(WARNING, ingress, f"canary: no main Ingress defines {where}; this rule is "
                                                      "not served", "conflict")
                        continue
                    route, put = found
                    balance = route.options.balance or Balance()
                    if balance.canary is not None:
                        self.report(WARNING, ingress, f"canary: {where} is already split with the older canary "
                                                      f"{balance.canary.ingress}; this rule is ignored", "conflict")
                        continue
                    backend = self.backend(ingress.meta.namespace, path.backend, None, opts.service_upstream)
                    if backend.error:
                        self.report(WARNING, ingress, f"canary backend {backend.error}; {where} is served by the "
                                                      "main Ingress only", "reference")
                        continue
                    main = route.backend
                    if main is None or (main.namespace, main.service, main.port) == (
                            backend.namespace, backend.service, backend.port):
                        self.report(WARNING, ingress, f"canary: {where} uses the main Ingress's own backend; "
                                                      "ignored", "conflict")
                        continue
                    own = opts.balance or Balance()
                    affinity = balance.affinity if opts.canary.sticky else own.affinity
                    side = Balance(opts.load_balance, opts.hash_by, affinity, subset=own.subset)
                    split = dataclasses.replace(balance, canary=Canary(backend, opts.canary, side, ingress.meta.ref))
                    route_opts = dataclasses.replace(route.options, balance=split)
                    put(dataclasses.replace(route, options=route_opts, activity=route.activity or feedback(route_opts)))

    def named_config_map(self, ref: str, namespace: str) -> tuple[str, ConfigMap | None]:
        """A ConfigMap an option names (NAME or NAMESPACE/NAME), required from the source."""
        ns, _, name = ref.rpartition("/")
        ns = ns or namespace
        self.required.add(("ConfigMap", ns, name))
        return f"{ns}/{name}", self.index.config_maps.get((ns, name))

    def global_headers(self, controller: ControllerSettings) -> ControllerSettings:
        """add-headers, proxy-set-headers (named ConfigMaps) and hide-headers: the defaults of every route."""
        self.allowed_response_headers = frozenset(n.lower() for n in controller.allowed_response_headers)
        if not (controller.add_headers or controller.proxy_set_headers or controller.hide_headers):
            return controller
        namespace = (self.settings.configmap.rpartition("/")[0] or "default")
        source = self.index.config_maps.get((namespace, self.settings.configmap.rpartition("/")[2]))
        found = {}
        for key, ref in (("add-headers", controller.add_headers), ("proxy-set-headers", controller.proxy_set_headers)):
            if not ref:
                continue
            name, config_map = self.named_config_map(ref, namespace)
            if config_map is None:
                self.report(WARNING, source, f"{key}: ConfigMap {name} not found; no headers set", "reference")
                continue
            lines, warnings = header_lines(config_map.data, f"{key} ConfigMap {name}")
            for warning in warnings:
                self.report(WARNING, config_map, warning, "configmap")
            found[key] = lines
        hidden = tuple(n.lower().encode() for n in controller.hide_headers)
        options = controller.defaults.options
        response = ResponseHeaders.build(found.get("add-headers", ()), hidden)
        request = found.get("proxy-set-headers", ())
        if response is None and not request:
            return controller
        options = dataclasses.replace(options, response_headers=response, request_headers=request)
        return dataclasses.replace(controller, defaults=dataclasses.replace(controller.defaults, options=options))

    def custom_headers(self, ingress: Ingress, opts: RouteOptions) -> RouteOptions:
        """custom-headers: the Ingress's response headers from a ConfigMap, each allowed by the
        ConfigMap's global-allowed-response-headers (else, as ingress-nginx, its requests get 503)."""
        key = ingress.meta.key
        cached = self.custom.get(key)
        if cached is None:
            name, config_map = self.named_config_map(opts.custom_headers, ingress.meta.namespace)
            refused = None
            lines: tuple = ()
            if config_map is None:
                refused = f"custom-headers: ConfigMap {name} not found"
            else:
                lines, warnings = header_lines(config_map.data, f"custom-headers ConfigMap {name}")
                for warning in warnings:
                    self.report(WARNING, ingress, warning, "annotation")
                denied = [line[1].partition(b":")[0].decode() for line in lines
                          if line[0].decode() not in self.allowed_response_headers]
                if denied:
                    refused = (f"custom-headers: {', '.join(denied)} not allowed by the controller ConfigMap's "
                               "global-allowed-response-headers")
            if refused is not None:
                self.report(WARNING, ingress, f"{refused}; its requests get 503 (as ingress-nginx)", "annotation")
            cached = self.custom[key] = (lines, refused)
        lines, refused = cached
        if refused is not None:
            return dataclasses.replace(opts, refused=refused)
        if not lines:
            return opts
        base = opts.response_headers
        return dataclasses.replace(opts, response_headers=base.merged(lines) if base is not None
                                   else ResponseHeaders.build(lines))

    def basic_auth(self, ingress: Ingress, opts: RouteOptions) -> RouteOptions:
        """``auth-type: basic``: the users of the Secret (none when it cannot be read: every request 401)."""
        ref, secret_type, realm = opts.auth_secret
        key = (ingress.meta.key, ref, secret_type, realm)
        auth = self.auths.get(key)
        if auth is None:
            users: dict[str, str] = {}
            namespace, _, name = ref.rpartition("/")
            namespace = namespace or ingress.meta.namespace
            if ref:
                self.required.add(("Secret", namespace, name))
            secret = self.index.all_secrets.get((namespace, name)) if ref else None
            if ref and secret is None:
                self.report(WARNING, ingress, f"auth-secret {ref} not found (or without an auth key); every request "
                                              "gets 401", "reference")
            elif secret is not None:
                try:
                    if secret_type == "auth-map":
                        users = {user: value.decode().strip() for user, value in secret.data.items()}
                    else:
                        users = parse_htpasswd(secret.data.get("auth", b"").decode("utf-8", "replace"))
                except ValueError as error:
                    self.report(WARNING, ingress, f"auth-secret {ref}: {error}; every request gets 401", "invalid")
                    users = {}
                if not users and secret_type == "auth-file" and "auth" not in secret.data:
                    self.report(WARNING, ingress, f"auth-secret {ref} has no auth key; every request gets 401",
                                "reference")
            auth = self.auths[key] = BasicAuth(users, realm)
        return dataclasses.replace(opts, basic_auth=auth)

    def error_backend(self, ingress: Ingress, name: str) -> Backend | None:
        """``default-backend``: the Service's first port in the Ingress's namespace (None when missing)."""
        namespace = ingress.meta.namespace
        service = self.index.services.get((namespace, name))
        if service is None or not service.ports:
            self.report(WARNING, ingress, f"default-backend: service {namespace}/{name} not found (or without "
                                          "ports); the controller's default backend is used", "reference")
            return None
        port = service.ports[0]
        ref = BackendRef(name, port_number=port.port)
        return self.backend(namespace, ref, ingress)

    def custom_errors(self, ingress: Ingress, opts: RouteOptions, error_backend: Backend | None, host: str,
                      path, backend: Backend):
        """``custom-http-errors``: the route the error answers come from."""
        from .options.errorpages import CustomErrors
        target = error_backend if error_backend is not None else self.global_backend
        route = None
        if target is not None:
            route = Route(host, path.path, path.path_type, ingress.meta.namespace, ingress.meta.name, target,
                          options=self.base_options,
                          labels=(ingress.meta.namespace, ingress.meta.name, backend.service, host, path.path))
        return CustomErrors(opts.error_codes, route, ingress.meta.namespace, ingress.meta.name,
                            path.backend.service, path.backend.port)

    def ext_auth(self, ingress: Ingress, opts: RouteOptions, path: str, defaults, host: str) -> RouteOptions:
        """``auth-url``: the ``auth-proxy-set-headers`` ConfigMap read; global auth left out of
        ``no-auth-locations``; a warning when the client's Host chooses the auth server."""
        auth = opts.ext_auth
        if auth.source == "global-auth-url" and any(
                path == exempt or path.startswith(exempt.rstrip("/") + "/") for exempt in defaults.no_auth_locations):
            return dataclasses.replace(opts, ext_auth=None)
        if (not host or is_wildcard(host)) and auth.url.host_is_variable:
            self.report(WARNING, ingress, f"{auth.source} {auth.url.text} takes its server from the request's Host, "
                                          f"and rule host {host or '(any)'} admits any such name: a client can "
                                          "choose the server that authorizes it (as in ingress-nginx); name the "
                                          "auth server's host in the URL", "annotation")
        if auth.proxy_headers_ref is None:
            return opts
        key = ("ext_auth", ingress.meta.key, id(auth))
        built = self.auths.get(key)
        if built is None:
            namespace, _, name = auth.proxy_headers_ref.rpartition("/")
            namespace = namespace or ingress.meta.namespace
            self.required.add(("ConfigMap", namespace, name))
            config_map = self.index.config_maps.get((namespace, name))
            lines = []
            if config_map is None:
                self.report(WARNING, ingress, f"auth-proxy-set-headers: ConfigMap {namespace}/{name} not found; "
                                              "no extra headers are sent to the auth service", "reference")
            else:
                for header, value in sorted(config_map.data.items()):
                    if not _TOKEN_RE.match(header) or any(ord(c) < 0x20 or ord(c) == 0x7f for c in value):
                        self.report(WARNING, ingress, f"auth-proxy-set-headers: {header!r} in ConfigMap "
                                                      f"{namespace}/{name} is not a valid header; skipped", "invalid")
                        continue
                    lines.append(f"{header}: {value.strip()}\r\n".encode("latin-1", "replace"))
            built = self.auths[key] = dataclasses.replace(auth, proxy_headers=b"".join(lines))
        return dataclasses.replace(opts, ext_auth=built)

    def upstream_tls(self, ingress: Ingress, opts: RouteOptions, service: str) -> RouteOptions:
        """``backend-protocol: HTTPS``: one client context per distinct setting in this configuration."""
        spec = opts.upstream_tls_spec
        namespace = ingress.meta.namespace
        ca = None
        if spec.secret:
            secret_ns, _, secret_name = spec.secret.rpartition("/")
            self.required.add(("Secret", secret_ns or namespace, secret_name))
            secret = self.index.all_secrets.get((secret_ns or namespace, secret_name))
            if secret is None:
                self.report(WARNING, ingress, f"proxy-ssl-secret {spec.secret} not found (or without ca.crt)",
                            "reference")
            else:
                ca = secret.data.get("ca.crt")
        key = (spec, f"{service}.{namespace}.svc", ca)
        tls = self.upstream_contexts.get(key)
        if tls is None:
            try:
                tls = build_upstream_tls(spec, key[1], ca)
            except ValueError as error:
                self.report(WARNING, ingress, f"{error}; requests to this backend get 502", "annotation")
                tls = build_upstream_tls(UpstreamTLSSpec(verify=True), key[1], None, unusable=True)
            self.upstream_contexts[key] = tls
        return dataclasses.replace(opts, upstream_tls=tls)

    def host_aliases(self, table: RouteTable, ingresses: list[Ingress], options: dict, tls_hosts) -> None:
        """``server-alias`` (the aliases share the host's routes) and ``from-to-www-redirect`` (the
        other name of a host redirects to it), for names no rule defines."""
        for ingress in ingresses:
            opts = options[ingress.meta.key]
            if not opts.server_aliases and not opts.from_to_www:
                continue
            for rule in ingress.rules:
                routes = table.hosts.pattern_value(rule.host) if rule.host else None
                if routes is None:
                    continue
                for alias in opts.server_aliases:
                    if table.hosts.pattern_value(alias) is None:
                        table.hosts[alias] = routes
                    elif table.hosts.pattern_value(alias) is not routes:
                        self.report(WARNING, ingress, f"server-alias {alias} is a host defined by another rule; "
                                                      "that rule serves it", "conflict")
                if opts.from_to_www and not is_wildcard(rule.host):
                    other = rule.host[4:] if rule.host.startswith("www.") else "www." + rule.host
                    if table.hosts.pattern_value(other) is not None:
                        continue
                    redirect = Redirect(308, ("", "scheme", "://" + rule.host, "request_uri", ""))
                    default = table.default
                    route = Route(other, "", "Default", ingress.meta.namespace, ingress.meta.name, default.backend,
                                  dataclasses.replace(self.base_options, redirect=redirect), False,
                                  (ingress.meta.namespace, ingress.meta.name, default.service, other, ""))
                    table.hosts[other] = HostRoutes(fallback=route, tls=_has_tls(other, tls_hosts))

    def host_routes(self, table: RouteTable, host: str, tls_hosts: HostMap[bool], opts: RouteOptions) -> HostRoutes:
        """A host's routes; the first (oldest) Ingress naming the host sets its fallback's redirect,
        as its annotations shape ingress-nginx's implicit "/" location for the host."""
        if not host:
            if table.any_host is None:
                table.any_host = HostRoutes(fallback=table.default)
            return table.any_host
        routes = table.hosts.pattern_value(host)
        if routes is None:
            # A defined host's unmatched paths: the default backend, counted under the host.
            default = table.default
            redirect = (_has_tls(host, tls_hosts) and opts.ssl_redirect) or opts.force_ssl_redirect
            fallback = Route(host, default.path, default.path_type, default.namespace, default.ingress,
                             default.backend, default.options, redirect, (*default.labels[:3], host, ""),
                             activity=default.activity)
            routes = table.hosts[host] = HostRoutes(fallback=fallback, tls=_has_tls(host, tls_hosts))
        if opts.ssl_ciphers is not None and routes.ssl_ciphers is None:
            routes.ssl_ciphers = opts.ssl_ciphers  # the oldest Ingress with the annotation sets it, as ingress-nginx
        return routes

    def global_default(self, ingresses: list[Ingress]) -> Route:
        for ingress in ingresses:  # oldest first
            if ingress.default_backend is not None:
                backend = self.backend(ingress.meta.namespace, ingress.default_backend, ingress)
                return Route("", "", "Default", ingress.meta.namespace, ingress.meta.name, backend,
                             options=self.base_options, labels=(ingress.meta.namespace, ingress.meta.name, backend.service, UNDEFINED_HOST, ""),
                             activity=feedback(self.base_options))
        backend = self.default_backend_service()
        if backend is not None:
            return Route("", "", "Default", backend=backend, options=self.default_backend_options,
                         labels=("", "", backend.service, UNDEFINED_HOST, ""),
                         activity=feedback(self.default_backend_options))
        return Route("", "", "Default", options=self.default_backend_options,
                     labels=("", "", "", UNDEFINED_HOST, ""))

    def tls(self, ingresses: list[Ingress]):
        certificates: HostMap[Certificate] = HostMap()
        tls_hosts: HostMap[bool] = HostMap()
        owners: dict[str, Ingress] = {}
        for ingress in ingresses:  # oldest first: the oldest Ingress's TLS wins for a shared host
            for entry in ingress.tls:
                cert = None
                if entry.secret_name:
                    cert = self.certificate(ingress.meta.namespace, entry.secret_name, ingress)
                for host in entry.hosts:
                    if host in owners:
                        if owners[host] is not ingress and cert is not None:
                            if certificates.pattern_value(host) is not cert:
                                self.report(WARNING, ingress, f"TLS for host {host} is already set by the older "
                                                              f"{owners[host].meta.ref}; this entry is ignored",
                                            "conflict")
                        continue
                    owners[host] = ingress
                    tls_hosts[host] = True
                    if cert is None:
                        continue
                    if not cert.covers(host):
                        self.report(WARNING, ingress, f"certificate in secret {cert.source} does not cover host "
                                                      f"{host} (it names {', '.join(cert.names) or 'nothing'})",
                                    "reference")
                    certificates[host] = cert
        return certificates, tls_hosts


def is_served(ingress: Ingress, classes: dict[str, IngressClass], settings: Settings) -> bool:
    """Whether ingressd serves this Ingress, given the IngressClasses by name (see the README)."""
    def ours(class_name: str) -> bool:
        ingress_class = classes.get(class_name)
        return class_name in settings.ingress_classes or (
            ingress_class is not None and ingress_class.controller == CONTROLLER_NAME)

    if ingress.class_name is not None:
        return ours(ingress.class_name)
    defaults = [c for c in classes.values() if c.is_default]
    if defaults:  # what the API server's DefaultIngressClass admission would have set
        return any(ours(c.meta.name) for c in defaults)
    return settings.watch_ingress_without_class


def served_ingresses(objects, settings: Settings) -> list[Ingress]:
    """The Ingresses ingressd serves, oldest first: the order in which conflicts are decided."""
    classes = {o.meta.name: o for o in objects if isinstance(o, IngressClass)}
    return sorted((o for o in objects if isinstance(o, Ingress) and is_served(o, classes, settings)),
                  key=lambda i: (i.meta.creation_timestamp, i.meta.namespace, i.meta.name))


def _find_route(host_routes: HostRoutes | None, path: str, path_type: str, regex_routes: dict):
    """The route of ``host_routes`` defined with exactly this path and pathType, and a function
    that replaces it; None when there is none."""
    if host_routes is None:
        return None
    found = regex_routes.get(id(host_routes))
    if found is not None:
        entries = found[1]
        for index, (length, order, regex, route) in enumerate(entries):
            if route.path == path and route.path_type == path_type:
                def put_regex(new, index=index, length=length, order=order, regex=regex):
                    entries[index] = (length, order, regex, new)
                return route, put_regex
    bucket, key = ((host_routes.exact, path) if path_type == "Exact" else (host_routes.prefix, path.rstrip("/")))
    route = bucket.get(key)
    if route is None or route.path != path or route.path_type != path_type:
        return None

    def put(new):
        bucket[key] = new
    return route, put


def _has_tls(host: str, tls_hosts: HostMap[bool]) -> bool:
    """Whether a rule host is covered by some spec.tls host (a wildcard rule only by the same wildcard)."""
    if not host:
        return False
    return bool(tls_hosts.pattern_value(host) if is_wildcard(host) else tls_hosts.get(host))


def required_objects(settings: Settings) -> list[tuple[str, str, str]]:
    """What a source must read for ``settings`` besides its kinds: the controller ConfigMap."""
    if not settings.configmap:
        return []
    namespace, _, name = settings.configmap.rpartition("/")
    return [("ConfigMap", namespace or "default", name)]


def translate(snapshot: Snapshot, settings: Settings = Settings()) -> Config:
    """Compile a snapshot into a configuration. Pure: same input, same output, no IO."""
    return _Translation(snapshot, settings).run()
