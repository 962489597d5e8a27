"""Kill-op rules and connection statistics driven by the vendor's official Python SDK
(huaweicloudsdkdds, AK/SK signing).

Usage: rules_sdk.py <endpoint> <ak> <sk> <project_id> <instance_id> <node_id> <mongodb-uri>
The lifecycle (CreateKillOpRule, ShowKillOpRuleRuleList with filters and paging, UpdateKillOpRule
enable/disable, DeleteKillOpRuleList), every validation refusal with its code (nothing created),
the limit of 10 rules, an enabled rule killing a pymongo `sleep` (11601), and
ShowConnectionStatistics with pymongo connections open. Exits 0 and prints OK on success.
"""
import sys
import threading
import time

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkdds.v3 import (
    CreateKillOpRuleRequest,
    CreateKillOpRuleRequestBody,
    DdsClient,
    DeleteKillOpRuleListRequest,
    DeleteKillOpRuleListRequestBody,
    ShowConnectionStatisticsRequest,
    ShowKillOpRuleRuleListRequest,
    UpdateKillOpRuleRequest,
    UpdateKillOpRuleRequestBody,
)
from pymongo import MongoClient
from pymongo.errors import OperationFailure

endpoint, ak, sk, project_id, instance_id, node_id, uri = sys.argv[1:8]
dds = (
    DdsClient.new_builder()
    .with_credentials(BasicCredentials(ak, sk, project_id))
    .with_endpoints([endpoint])
    .build()
)


def expect_error(call, code, status=400):
    try:
        call()
    except ClientRequestException as e:
        assert e.status_code == status, (code, e.status_code, e.error_code, e.error_msg)
        assert e.error_code == code, (code, e.error_code, e.error_msg)
        return e
    raise AssertionError(f"expected {code}")


def rules(**filters):
    return dds.show_kill_op_rule_rule_list(ShowKillOpRuleRuleListRequest(instance_id=instance_id, **filters))


def create(**fields):
    return dds.create_kill_op_rule(
        CreateKillOpRuleRequest(instance_id=instance_id, body=CreateKillOpRuleRequestBody(**fields))
    )


def update(ids, action):
    return dds.update_kill_op_rule(
        UpdateKillOpRuleRequest(instance_id=instance_id, body=UpdateKillOpRuleRequestBody(ids=ids, action=action))
    )


def delete(ids):
    return dds.delete_kill_op_rule_list(
        DeleteKillOpRuleListRequest(instance_id=instance_id, body=DeleteKillOpRuleListRequestBody(ids=ids))
    )


# ---- nothing yet
listed = rules()
assert listed.total_count == 0 and listed.rules == [], listed

# ---- every invalid input has its own code, and creates nothing
base = dict(operation_types=["query"], secs_running=5, node_type="replica")
refusals = [
    (dict(base, operation_types=None), "DBS.301073"),
    (dict(base, operation_types=[]), "DBS.301073"),
    (dict(base, operation_types=["drop"]), "DBS.301073"),
    (dict(base, operation_types=["query"] * 2), "DBS.301073"),
    (dict(base, operation_types=["insert", "update", "query", "command", "remove", "getmore", "query"]), "DBS.301073"),
    (dict(base, namespaces=["a.b", "c"]), "DBS.301074"),
    (dict(base, namespaces=["bad name"]), "DBS.301074"),
    (dict(base, client_ips=["::1"]), "DBS.900110"),
    (dict(base, client_ips=["10.0.0.%d" % i for i in range(6)]), "DBS.900110"),
    (dict(base, plan_summary="IXSCAN"), "DBS.301072"),
    (dict(base, max_concurrency=100001), "DBS.900111"),
    (dict(base, max_concurrency=-1), "DBS.900111"),
    (dict(base, secs_running=1), "DBS.900112"),
    (dict(base, secs_running=86401), "DBS.900112"),
    (dict(base, secs_running=0), "DBS.900113"),
    (dict(base, secs_running=None, max_concurrency=None), "DBS.900113"),
    (dict(base, node_type=None), "DBS.900114"),
    (dict(base, node_type="config"), "DBS.900114"),
    (dict(base, node_type="mongos"), "DBS.900114"),  # a single-node instance has no mongos
]
for fields, code in refusals:
    expect_error(lambda: create(**fields), code)
assert rules().total_count == 0, "a refused create must create nothing"
expect_error(lambda: dds.create_kill_op_rule(CreateKillOpRuleRequest(
    instance_id="0" * 32 + "in02", body=CreateKillOpRuleRequestBody(**base))), "DBS.200002", 404)

# ---- create: disabled, lists joined into strings as the SDK's KillOpRule model types them
create(operation_types=["query", "insert"], namespaces=["shop.orders"], client_ips=["10.0.0.5", "10.0.0.6"],
       plan_summary="COLLSCAN", secs_running=30, max_concurrency=3, node_type="replica")
listed = rules()
assert listed.total_count == 1, listed
r = listed.rules[0]
assert r.status == "DISABLED", r
assert r.operation_types == "query,insert", r.operation_types
assert r.namespaces == "shop.orders" and r.client_ips == "10.0.0.5,10.0.0.6", r
assert r.plan_summary == "COLLSCAN" and r.secs_running == 30 and r.max_concurrency == 3, r
assert r.node_type == "replica" and len(r.id) == 36, r
first = r.id

# ---- the limit: 10 per instance
for i in range(9):
    create(operation_types=["command"], namespaces=["db%d" % i], max_concurrency=i + 1, node_type="replica")
expect_error(lambda: create(**base), "DBS.900116")
assert rules().total_count == 10

# ---- filters and paging
assert rules(operation_types="insert").total_count == 1
assert rules(operation_types="command").total_count == 9
assert rules(namespaces="db3").total_count == 1
assert rules(plan_summary="COLLSCAN").total_count == 1
page = rules(offset=8, limit=5)
assert page.total_count == 10 and len(page.rules) == 2, page
expect_error(lambda: rules(status="ON"), "DBS.900121")
expect_error(lambda: rules(operation_types="drop"), "DBS.301073")
expect_error(lambda: rules(plan_summary="IXSCAN"), "DBS.301072")
expect_error(lambda: rules(limit=101), "DBS.280439")
expect_error(lambda: rules(offset=-1), "DBS.280440")

# ---- enable / disable by ids, all or nothing
others = [x.id for x in rules(operation_types="command").rules]
expect_error(lambda: update([first, "7d2f36b4-6edb-4093-8c78-810b30232943"], "enable"), "DBS.900117", 404)
assert rules(status="ENABLED").total_count == 0, "a refused enable enables nothing"
expect_error(lambda: update([first], "start"), "DBS.900119")
expect_error(lambda: update([], "enable"), "DBS.900118")
update([first], "enable")
assert [x.id for x in rules(status="ENABLED").rules] == [first]
assert rules(status="DISABLED").total_count == 9

# ---- delete: only disabled rules
expect_error(lambda: delete([first]), "DBS.900120")
expect_error(lambda: delete([]), "DBS.900118")
expect_error(lambda: delete(["7d2f36b4-6edb-4093-8c78-810b30232943"]), "DBS.900117", 404)
assert rules().total_count == 10, "a refused delete deletes nothing"
update([first], "disable")
delete([first] + others)
assert rules().total_count == 0

# ---- an enabled rule kills a matching sleep (the enforcer runs in the server)
create(operation_types=["command"], namespaces=["admin"], secs_running=2, node_type="replica")
rule_id = rules().rules[0].id
update([rule_id], "enable")
victim = MongoClient(uri, appName="rules-sdk-victim", serverSelectionTimeoutMS=5000)
result = {}


def sleeper():
    started = time.time()
    try:
        victim.admin.command({"sleep": 1, "millis": 20000})
        result["err"] = None
    except OperationFailure as e:
        result["err"] = e
    result["secs"] = time.time() - started


t = threading.Thread(target=sleeper)
t.start()
t.join(15)
assert not t.is_alive(), "the rule did not kill the sleep"
assert result["err"] is not None and result["err"].code == 11601, result
# secs_running (2 s) plus at most two intervals (1 s each), with slack for a loaded machine.
assert 2 <= result["secs"] < 6, result
update([rule_id], "disable")
delete([rule_id])

# ---- connection statistics: pymongo's connections are outer, docplane's inner
clients = [MongoClient(uri, appName="rules-sdk-conn", serverSelectionTimeoutMS=5000) for _ in range(3)]
for c in clients:
    c.admin.command("ping")
stats = dds.show_connection_statistics(ShowConnectionStatisticsRequest(instance_id=instance_id))
assert stats.total_connections == stats.total_inner_connections + stats.total_outer_connections, stats
outer = {x.client_ip: x.count for x in stats.outer_connections}
assert outer.get("127.0.0.1", 0) >= 3, stats
assert stats.total_inner_connections >= 1, stats
assert len(stats.inner_connections) <= 200 and len(stats.outer_connections) <= 200
by_node = dds.show_connection_statistics(ShowConnectionStatisticsRequest(instance_id=instance_id, node_id=node_id))
assert by_node.total_outer_connections >= 3, by_node
expect_error(lambda: dds.show_connection_statistics(ShowConnectionStatisticsRequest(
    instance_id=instance_id, node_id="0" * 32 + "no02")), "DBS.200013", 404)
for c in clients:
    c.close()
victim.close()
print("OK")
