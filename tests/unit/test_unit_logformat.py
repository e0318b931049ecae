"""log-format-upstream compiled into a formatter (ingressd.dataplane.logformat), pure."""

from __future__ import annotations

import base64
from types import SimpleNamespace

from ingressd.dataplane.logformat import DEFAULT_TEMPLATE, LogFormat, compile_format, unknown_variables
from ingressd.routing import Backend, Route


class _Log:
    def time_local(self) -> str:
        return "04/Dec/2026:01:02:03 +0000"


def exchange(**extra):
    route = Route("a.example.com", "/", "Prefix", "ns", "ing", Backend("ns", "svc", "80", (("10.0.0.1", 80),)))
    fields = dict(conn=SimpleNamespace(client_ip="192.0.2.1", listener=SimpleNamespace(scheme="https", port=8443),
                                       proxied_ip=None),
                  method=b"GET", url=b"/p/a?x=1", http10=False, status=200, sent=123, head_size=40, received=2,
                  started=10.0, referer=b"", user_agent=b'curl "8"\n', route=route, upstream_addr=("10.0.0.1", 80),
                  upstream_header=10.2, upstream_start=10.1, upstream_connected=10.1, upstream_received=100,
                  upstream_status=200, request_id=b"abc", host="a.example.com",
                  headers=[(b"User-Agent", b'curl "8"\n'), (b"X-Thing", b"v\xe9"),
                           (b"Authorization", b"Basic " + base64.b64encode(b"alice:pw"))])
    fields.update(extra)
    return SimpleNamespace(**fields)


def test_default_template_is_ingress_nginx_default():
    line = compile_format(LogFormat())(exchange(), 10.5, _Log())
    assert line == ('192.0.2.1 - alice [04/Dec/2026:01:02:03 +0000] "GET /p/a?x=1 HTTP/1.1" 200 123 "-" '
                    '"curl \\x228\\x22\\x0A" 42 0.500 [ns-svc-80] [] 10.0.0.1:80 100 0.400 200 abc')
    assert unknown_variables(DEFAULT_TEMPLATE) == []


def test_variables_and_escapes():
    template = ('{"host":"$host","ns":"$namespace","ing":"$ingress_name","svc":"$service_name",'
                '"port":"$service_port","scheme":"$scheme","sp":"$server_port","uri":"$uri","args":"$args",'
                '"m":"$request_method","ru":"${request_uri}","ua":"$http_user_agent","t":"$http_x_thing",'
                '"none":"$http_missing","bad":"$no_such_thing"}')
    assert unknown_variables(template) == ["no_such_thing"]
    line = compile_format(LogFormat(template, "json"))(exchange(), 10.5, _Log())
    assert line == ('{"host":"a.example.com","ns":"ns","ing":"ing","svc":"svc","port":"80","scheme":"https",'
                    '"sp":"8443","uri":"/p/a","args":"x=1","m":"GET","ru":"/p/a?x=1","ua":"curl \\"8\\"\\n",'
                    '"t":"v\xe9","none":"-","bad":"-"}')
    line = compile_format(LogFormat("$http_user_agent|$http_x_thing", "default"))(exchange(), 10.5, _Log())
    assert line == "curl \\x228\\x22\\x0A|v\\xE9"
    line = compile_format(LogFormat("$http_user_agent", "none"))(exchange(), 10.5, _Log())
    assert line == 'curl "8"\n'


def test_local_answer_without_upstream():
    x = exchange(route=Route("", "", "Default"), upstream_addr=None, upstream_header=0.0, upstream_status=0,
                 headers=[])
    line = compile_format(LogFormat())(x, 10.5, _Log())
    assert line.endswith("[upstream-default-backend] [] - - - - abc") and line.startswith("192.0.2.1 - - [")
