"""The API's permission table: every route has a rule, and the rules mean what the roles say."""

from __future__ import annotations

from aiohttp import web

from node.api.acl import ROUTES, Principal
from node.api.app import ROUTE_TABLES
from node.api.openapi import routes_of


def served_routes() -> set[tuple[str, str]]:
    app = web.Application()
    for table in ROUTE_TABLES:
        app.add_routes(table)
    return set(routes_of(app.router))


def test_every_route_has_a_permission_and_every_permission_a_route():
    served = served_routes()
    assert sorted(served - set(ROUTES)) == [], "add these routes to node.api.acl.ROUTES"
    assert sorted(set(ROUTES) - served) == [], "rules for routes the API does not serve"


def test_reads_need_read_only_and_writes_an_operator_or_more():
    for (method, path), rule in ROUTES.items():
        if rule.permission == "read":
            assert method == "GET", path
        if method != "GET" and rule.permission not in ("open", "node"):
            assert rule.permission in ("write", "admin"), (method, path)
        if rule.service_in:
            assert rule.permission == "write", (method, path)


def test_roles_reach_their_permissions_and_tokens_never_the_internal_routes():
    reader = Principal("token r (1)", "read-only", token_id="1")
    operator = Principal("token o (2)", "operator", "web-*", token_id="2")
    admin_token = Principal("token a (3)", "admin", token_id="3")
    local = Principal("local", "admin")
    assert reader.may("read") and not reader.may("write") and not reader.may("admin")
    assert operator.may("write") and not operator.may("admin")
    assert operator.covers("web-1") and not operator.covers("db")
    assert admin_token.may("admin") and not admin_token.may("node")
    assert local.may("node") and local.may("admin")
    # The secrets' contents and the tokens that give admin are not for readers.
    assert ROUTES[("GET", "/v1/cluster/token")].permission == "admin"
    assert ROUTES[("GET", "/v1/tokens")].permission == "admin"
