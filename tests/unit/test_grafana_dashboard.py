"""deploy/grafana/ingressd.json: valid dashboard JSON whose every query uses series ingressd exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "ingressd.json"

# PromQL words that are not series names.
FUNCTIONS_AND_KEYWORDS = {
    "abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk", "ceil", "changes", "clamp", "clamp_max",
    "clamp_min", "count", "count_over_time", "count_values", "day_of_month", "day_of_week", "days_in_month",
    "delta", "deriv", "exp", "floor", "group", "histogram_quantile", "holt_winters", "hour", "idelta", "increase",
    "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2", "max", "max_over_time", "min",
    "min_over_time", "minute", "month", "predict_linear", "quantile", "quantile_over_time", "rate", "resets",
    "round", "scalar", "sgn", "sort", "sort_desc", "sqrt", "stddev", "stddev_over_time", "stdvar",
    "stdvar_over_time", "sum", "sum_over_time", "time", "timestamp", "topk", "vector", "year",
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "inf", "nan",
}
LABEL_LIST_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}

_TOKEN = re.compile(r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<variable>\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*)
  | (?P<duration>\d+(?:\.\d+)?(?:ms|[smhdwy])\b)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<open>[({\[])
  | (?P<close>[)}\]])
  | (?P<other>\S)
""", re.X)


def metric_names(expr: str) -> set[str]:
    """Series names an expression selects: identifiers outside ``{...}`` matchers, ``[...]`` ranges and
    ``by/on/...(...)`` label lists that are not functions (followed by ``(``) or keywords."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(expr)]
    names: set[str] = set()
    stack: list[str] = []  # "{", "[", "(" or "labels" for a by/on/... list
    pending_label_list = False
    for index, (kind, text) in enumerate(tokens):
        if kind == "open":
            if text == "(" and pending_label_list:
                stack.append("labels")
            else:
                stack.append(text)
            pending_label_list = False
            continue
        if kind == "close":
            if stack:
                stack.pop()
            continue
        if kind != "ident":
            pending_label_list = False
            continue
        if any(frame in ("{", "[", "labels") for frame in stack):
            continue  # a label name inside a matcher, range or label list
        following = tokens[index + 1][1] if index + 1 < len(tokens) else ""
        if text in LABEL_LIST_WORDS:
            pending_label_list = True
            continue
        pending_label_list = False
        if text in FUNCTIONS_AND_KEYWORDS or following == "(":
            continue
        names.add(text)
    return names


def variable_expressions(query: str) -> list[str]:
    """The PromQL inside a Grafana Prometheus variable query."""
    query = query.strip()
    match = re.fullmatch(r"label_values\((.*)\)", query, re.S)
    if match:
        inner = match.group(1)
        if "," not in inner:
            return []  # label_values(label): no series
        return [inner.rsplit(",", 1)[0]]
    match = re.fullmatch(r"query_result\((.*)\)", query, re.S)
    if match:
        return [match.group(1)]
    if query.startswith("metrics(") or query.startswith("label_names("):
        return []
    return [query]


def load() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found += panel.get("panels", [])  # panels inside collapsed rows
    return found


def expressions(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    found = []
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            if target.get("expr"):
                found.append((f"panel {panel['title']!r} {target.get('refId')}", target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        query = query.get("query", "") if isinstance(query, dict) else query
        for expr in variable_expressions(query):
            found.append((f"variable ${variable['name']}", expr))
    return found


def exported(name: str, series: frozenset[str]) -> bool:
    if name in series:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[:-len(suffix)] in series:
            return True
    return False


# --- the tokenizer itself -------------------------------------------------------------------------


@pytest.mark.parametrize("expr, names", [
    ('sum by (namespace, ingress) (rate(nginx_ingress_controller_requests{status=~"5..", ingress="x"}[5m]))',
     {"nginx_ingress_controller_requests"}),
    ("histogram_quantile(0.99, sum by (le) (rate(a_bucket{job=\"x\"}[$__rate_interval])))", {"a_bucket"}),
    ("foo - time()", {"foo"}),
    ("rate(cpu[1m]) and on (instance, job) build_info{class=~\"$class\"}", {"cpu", "build_info"}),
    ("sum(x) / ignoring(code) group_left(state) y offset 5m > bool 1e3", {"x", "y"}),
    ("max without (pod) (up)", {"up"}),
])
def test_metric_names_tokenizer(expr, names):
    assert metric_names(expr) == names


def test_variable_queries_are_unwrapped():
    assert variable_expressions('label_values(m{a=~"$a"}, b)') == ['m{a=~"$a"}']
    assert variable_expressions("label_values(controller_class)") == []
    assert variable_expressions("query_result(sum(m))") == ["sum(m)"]


# --- the dashboard --------------------------------------------------------------------------------


def test_dashboard_is_a_grafana_dashboard_with_a_prometheus_datasource_variable():
    dashboard = load()
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("controller_class", "namespace", "ingress"):
        assert variables[name]["type"] == "query"
        query = variables[name]["query"]
        assert "label_values(" in (query["query"] if isinstance(query, dict) else query)
        assert variables[name]["datasource"]["uid"] == "${datasource}"
    ids = [p["id"] for p in all_panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in all_panels(dashboard):
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


def test_dashboard_has_the_promised_panels():
    text = " ".join(expr for _, expr in expressions(load()))
    for needle in ("rate(nginx_ingress_controller_requests", 'status=~"5..', 'status=~"4..',
                   "histogram_quantile(0.5,", "histogram_quantile(0.9,", "histogram_quantile(0.99,",
                   "nginx_ingress_controller_request_duration_seconds_bucket",
                   "nginx_ingress_controller_response_duration_seconds",
                   "nginx_ingress_controller_nginx_process_connections", "ingressd_upgraded_connections",
                   "nginx_ingress_controller_ssl_expire_time_seconds", "time()",
                   "nginx_ingress_controller_config_last_reload_successful", "process_cpu_seconds_total",
                   "process_resident_memory_bytes"):
        assert needle in text, needle


def test_every_query_references_only_series_ingressd_exports():
    from ingressd.metrics import EXPORTED_SERIES

    series = frozenset(EXPORTED_SERIES)
    found = expressions(load())
    assert len(found) >= 20
    referenced: set[str] = set()
    unknown = []
    for where, expr in found:
        names = metric_names(expr)
        assert names, f"{where}: no series found in {expr!r}"
        referenced |= names
        unknown += [f"{where}: {name}" for name in sorted(names) if not exported(name, series)]
    assert not unknown, "series not exported by ingressd:\n" + "\n".join(unknown)
    assert "nginx_ingress_controller_request_duration_seconds_bucket" in referenced
