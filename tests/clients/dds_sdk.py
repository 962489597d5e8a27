"""DDS session APIs driven by the vendor's official Python SDK (huaweicloudsdkdds, AK/SK signing).

Usage: dds_sdk.py <endpoint> <ak> <sk> <project_id> <mongodb-uri>   (ak/sk: the account administrator's)
ListInstances finds the node, pymongo runs a `sleep` on it, ListSessions shows the sleep,
DeleteSession kills it and pymongo sees error 11601; invalid parameters and unknown ids come back
as the vendor's error codes. Then tenancy: the IAM SDK creates a second project B and a user with
DDS access only in B; through the DDS SDK that user sees no instance, and project A's instance and
node are 404 for it. Exits 0 and prints OK on success.
"""
import os
import uuid
import json
import sys
import threading
import time

from huaweicloudsdkcore.auth.credentials import BasicCredentials, GlobalCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkdds.v3 import (
    DdsClient,
    DeleteInstanceRequest,
    DeleteSessionRequest,
    DeleteSessionRequestBody,
    ListInstancesRequest,
    ListSessionsRequest,
)
from huaweicloudsdkiam.v3 import IamClient
from huaweicloudsdkiam.v3.model import (
    CreateCloudServiceCustomPolicyRequest, CreateCloudServiceCustomPolicyRequestBody, CreateCredentialOption,
    CreatePermanentAccessKeyRequest, CreatePermanentAccessKeyRequestBody, KeystoneAddUserToGroupRequest,
    KeystoneAssociateGroupWithProjectPermissionRequest, KeystoneCreateGroupOption, KeystoneCreateGroupRequest,
    KeystoneCreateGroupRequestBody, KeystoneCreateProjectOption, KeystoneCreateProjectRequest,
    KeystoneCreateProjectRequestBody, KeystoneCreateUserOption, KeystoneCreateUserRequest,
    KeystoneCreateUserRequestBody, ServicePolicy, ServicePolicyRoleOption, ServiceStatement,
)
from pymongo import MongoClient
from pymongo.errors import OperationFailure

endpoint, ak, sk, project_id, uri = sys.argv[1:6]
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
        assert e.status_code == status, (e.status_code, e.error_code, e.error_msg)
        assert e.error_code == code, (e.error_code, e.error_msg)
        return e
    raise AssertionError(f"expected {code}")


# ListInstances: the registered embedded node.
instances = dds.list_instances(ListInstancesRequest(mode="Single", limit=10))
assert instances.total_count == 1, instances
instance = instances.instances[0]
assert instance.datastore.type == "DDS-Community", instance.datastore
node_id = instance.groups[0].nodes[0].id
assert instance.groups[0].nodes[0].role == "Primary"

# pymongo runs the operation that gets killed.
victim_client = MongoClient(uri, appName="sdk-victim", serverSelectionTimeoutMS=5000)
result = {}


def victim():
    try:
        victim_client.admin.command({"sleep": 1, "millis": 30000})
        result["err"] = None
    except OperationFailure as e:
        result["err"] = e


t = threading.Thread(target=victim)
t.start()

# ListSessions shows it.
sleep = None
deadline = time.time() + 10
while sleep is None and time.time() < deadline:
    page = dds.list_sessions(ListSessionsRequest(node_id=node_id, type="command", limit=100))
    for s in page.sessions:
        if s.active and '"sleep"' in s.operation:
            sleep = s
    if sleep is None:
        time.sleep(0.05)
assert sleep is not None, "sleep never listed"
assert isinstance(sleep.cost_time, str) and int(sleep.cost_time) >= 0, sleep.cost_time
assert sleep.type == "command" and sleep.namespace == "admin.$cmd", sleep
assert json.loads(sleep.operation)["millis"] == 30000
assert page.total_count >= 1

# Vendor error codes come through the SDK's exception.
expect_error(lambda: dds.list_sessions(ListSessionsRequest(node_id=node_id, plan_summary="TABLESCAN")), "DBS.301072")
expect_error(lambda: dds.list_sessions(ListSessionsRequest(node_id=node_id, limit=101)), "DBS.280439")
expect_error(
    lambda: dds.delete_session(
        DeleteSessionRequest(node_id=node_id, body=DeleteSessionRequestBody(sessions=[sleep.id, "999999"]))
    ),
    "DBS.301071",
)
assert t.is_alive(), "a refused kill must kill nothing"

# DeleteSession kills it; pymongo sees 11601.
dds.delete_session(DeleteSessionRequest(node_id=node_id, body=DeleteSessionRequestBody(sessions=[sleep.id])))
t.join(10)
assert not t.is_alive(), "the sleep did not end"
assert result["err"] is not None and result["err"].code == 11601, result

# ---- tenancy: project B and a user with DDS access only in B (set up through the IAM SDK)
os.environ["HUAWEICLOUD_SDK_IAM_ENDPOINT"] = endpoint
iam = IamClient.new_builder().with_credentials(GlobalCredentials(ak, sk).with_iam_endpoint(endpoint)) \
    .with_endpoints([endpoint]).build()
tag = uuid.uuid4().hex[:8]
project_b = iam.keystone_create_project(KeystoneCreateProjectRequest(body=KeystoneCreateProjectRequestBody(
    project=KeystoneCreateProjectOption(name="team-b-" + tag)))).project.id
assert project_b != project_id
user_b = iam.keystone_create_user(KeystoneCreateUserRequest(body=KeystoneCreateUserRequestBody(
    user=KeystoneCreateUserOption(name="b-user-" + tag, password="B-user-pass-1")))).user.id
group_b = iam.keystone_create_group(KeystoneCreateGroupRequest(body=KeystoneCreateGroupRequestBody(
    group=KeystoneCreateGroupOption(name="b-group-" + tag)))).group.id
role_b = iam.create_cloud_service_custom_policy(CreateCloudServiceCustomPolicyRequest(
    body=CreateCloudServiceCustomPolicyRequestBody(role=ServicePolicyRoleOption(
        display_name="b-dds-" + tag, type="XA", description="DDS in project B",
        policy=ServicePolicy(version="1.1", statement=[
            ServiceStatement(action=["dds:*:*"], effect="Allow", resource=["*"])]))))).role.id
iam.keystone_associate_group_with_project_permission(KeystoneAssociateGroupWithProjectPermissionRequest(
    project_id=project_b, group_id=group_b, role_id=role_b))
iam.keystone_add_user_to_group(KeystoneAddUserToGroupRequest(group_id=group_b, user_id=user_b))
key_b = iam.create_permanent_access_key(CreatePermanentAccessKeyRequest(body=CreatePermanentAccessKeyRequestBody(
    credential=CreateCredentialOption(user_id=user_b)))).credential


def dds_for(project):
    return DdsClient.new_builder().with_credentials(BasicCredentials(key_b.access, key_b.secret, project)) \
        .with_endpoints([endpoint]).build()


dds_b = dds_for(project_b)
# Project B lists none of project A's instances, by any filter.
assert dds_b.list_instances(ListInstancesRequest()).total_count == 0
assert dds_b.list_instances(ListInstancesRequest(id=instance.id)).instances == []
# Project A's node and instance do not exist as far as project B is concerned.
expect_error(lambda: dds_b.list_sessions(ListSessionsRequest(node_id=node_id)), "DBS.200013", 404)
expect_error(
    lambda: dds_b.delete_session(DeleteSessionRequest(node_id=node_id, body=DeleteSessionRequestBody(sessions=["1"]))),
    "DBS.200013", 404,
)
expect_error(lambda: dds_b.delete_instance(DeleteInstanceRequest(instance_id=instance.id)), "DBS.200002", 404)
# The same key has no DDS permission in project A.
expect_error(lambda: dds_for(project_id).list_instances(ListInstancesRequest()), "DBS.280063", 403)
# And project A still has its instance.
assert dds.list_instances(ListInstancesRequest(id=instance.id)).total_count == 1
print("OK")
