"""End-to-end IAM check driven by the vendor's official Python SDKs (huaweicloudsdkiam/core/dds 3.1.219).

Run by crates/api/tests/sdk_iam.rs against an in-process docplane. Inputs (environment):
  DOCPLANE_ENDPOINT   http://127.0.0.1:<port>
  DOCPLANE_AK / DOCPLANE_SK          the account admin's access key (from bootstrap)
  DOCPLANE_PROJECT_ID / DOCPLANE_PROJECT_NAME
  DOCPLANE_DOMAIN_NAME
Prints one line per step; exits non-zero on the first failure.
"""
import json
import os
import sys
import urllib.error
import urllib.request
import uuid

from huaweicloudsdkcore.auth.credentials import BasicCredentials, GlobalCredentials
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.region.region import Region
from huaweicloudsdkdds.v3 import DdsClient
from huaweicloudsdkiam.v3 import IamClient
from huaweicloudsdkiam.v3.model import (
    CreateCloudServiceCustomPolicyRequest, CreateCloudServiceCustomPolicyRequestBody,
    CreateCredentialOption, CreatePermanentAccessKeyRequest, CreatePermanentAccessKeyRequestBody,
    CreateUserOption, CreateUserRequest, CreateUserRequestBody,
    KeystoneAddUserToGroupRequest, KeystoneAssociateGroupWithProjectPermissionRequest,
    KeystoneCreateGroupOption, KeystoneCreateGroupRequest, KeystoneCreateGroupRequestBody,
    KeystoneCreateUserOption, KeystoneCreateUserRequest, KeystoneCreateUserRequestBody,
    KeystoneListProjectsRequest, ServicePolicy, ServicePolicyRoleOption, ServiceStatement,
    UpdateUserOption, UpdateUserRequest, UpdateUserRequestBody,
    KeystoneCreateProjectOption, KeystoneCreateProjectRequest, KeystoneCreateProjectRequestBody,
    KeystoneShowProjectRequest, KeystoneUpdateProjectOption, KeystoneUpdateProjectRequest,
    KeystoneUpdateProjectRequestBody, KeystoneListUsersRequest, KeystoneListGroupsRequest,
    ListCustomPoliciesRequest, KeystoneValidateTokenRequest, KeystoneUpdateUserByAdminRequest,
    KeystoneUpdateUserByAdminRequestBody, KeystoneUpdateUserOption,
    KeystoneAssociateGroupWithDomainPermissionRequest,
)

EP = os.environ["DOCPLANE_ENDPOINT"]
AK = os.environ["DOCPLANE_AK"]
SK = os.environ["DOCPLANE_SK"]
PROJECT_ID = os.environ["DOCPLANE_PROJECT_ID"]
PROJECT_NAME = os.environ["DOCPLANE_PROJECT_NAME"]
DOMAIN_NAME = os.environ["DOCPLANE_DOMAIN_NAME"]
# Both the IAM discovery calls (domain id, project id) go here instead of the public cloud.
os.environ["HUAWEICLOUD_SDK_IAM_ENDPOINT"] = EP


def step(msg):
    print("ok:", msg, flush=True)


def check(cond, msg):
    if not cond:
        print("FAILED:", msg, flush=True)
        sys.exit(1)
    step(msg)


def config():
    c = HttpConfig.get_default_config()
    c.ignore_ssl_verification = True
    c.timeout = (5, 30)
    c.retry_times = 0
    return c


def http(method, path, token=None, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(EP + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(e.read() or b"{}")


# ---- admin: GlobalCredentials without a domain id, so the SDK first calls GET /v3/auth/domains
admin_creds = GlobalCredentials(AK, SK).with_iam_endpoint(EP)
iam = IamClient.new_builder().with_credentials(admin_creds).with_http_config(config()) \
    .with_region(Region("docplane", EP)).build()
check(admin_creds.domain_id is not None and len(admin_creds.domain_id) == 32,
      "GlobalCredentials discovered the domain id via /v3/auth/domains")
domain_id = admin_creds.domain_id

projects = iam.keystone_list_projects(KeystoneListProjectsRequest(name=PROJECT_NAME))
check([p.id for p in projects.projects] == [PROJECT_ID], "KeystoneListProjects by name")

suffix = uuid.uuid4().hex[:8]
user_name = "sdk-user-" + suffix
password = "Sdk-pass-" + suffix
user = iam.keystone_create_user(KeystoneCreateUserRequest(body=KeystoneCreateUserRequestBody(
    user=KeystoneCreateUserOption(name=user_name, domain_id=domain_id, password=password, enabled=True))))
check(user.user.name == user_name and len(user.user.id) == 32, "KeystoneCreateUser")
user_id = user.user.id

other = iam.create_user(CreateUserRequest(body=CreateUserRequestBody(
    user=CreateUserOption(name="sdk-other-" + suffix, domain_id=domain_id, password="Other-pass-1",
                          access_mode="programmatic"))))
check(other.user.name == "sdk-other-" + suffix and other.user.enabled, "CreateUser (OS-USER)")

group = iam.keystone_create_group(KeystoneCreateGroupRequest(body=KeystoneCreateGroupRequestBody(
    group=KeystoneCreateGroupOption(name="sdk-group-" + suffix, domain_id=domain_id))))
check(len(group.group.id) == 32, "KeystoneCreateGroup")
group_id = group.group.id

def custom_policy(name, effect, actions):
    r = iam.create_cloud_service_custom_policy(CreateCloudServiceCustomPolicyRequest(
        body=CreateCloudServiceCustomPolicyRequestBody(role=ServicePolicyRoleOption(
            display_name=name, type="AX", description="e2e",
            policy=ServicePolicy(version="1.1", statement=[
                ServiceStatement(action=actions, effect=effect, resource=["*"])])))))
    return r.role.id

allow_id = custom_policy("allow-list-" + suffix, "Allow", ["dds:instance:listSession"])
check(len(allow_id) == 32, "CreateCloudServiceCustomPolicy (Allow dds:instance:listSession)")

iam.keystone_associate_group_with_project_permission(KeystoneAssociateGroupWithProjectPermissionRequest(
    project_id=PROJECT_ID, group_id=group_id, role_id=allow_id))
step("KeystoneAssociateGroupWithProjectPermission")
iam.keystone_add_user_to_group(KeystoneAddUserToGroupRequest(group_id=group_id, user_id=user_id))
step("KeystoneAddUserToGroup")

cred = iam.create_permanent_access_key(CreatePermanentAccessKeyRequest(
    body=CreatePermanentAccessKeyRequestBody(credential=CreateCredentialOption(user_id=user_id, description="e2e"))))
check(cred.credential.user_id == user_id and len(cred.credential.access) == 20 and len(cred.credential.secret) == 40,
      "CreatePermanentAccessKey")
user_ak, user_sk = cred.credential.access, cred.credential.secret

# ---- the new user: token by password
status, headers, body = http("POST", "/v3/auth/tokens", body={"auth": {
    "identity": {"methods": ["password"], "password": {"user": {
        "name": user_name, "password": password, "domain": {"name": DOMAIN_NAME}}}},
    "scope": {"project": {"id": PROJECT_ID}}}})
check(status == 201 and "x-subject-token" in headers and body["token"]["project"]["id"] == PROJECT_ID,
      "POST /v3/auth/tokens by password -> 201 + X-Subject-Token")
token = headers["x-subject-token"]
status, _, body = http("POST", "/v3/auth/tokens", body={"auth": {
    "identity": {"methods": ["password"], "password": {"user": {
        "name": user_name, "password": "wrong-" + password, "domain": {"name": DOMAIN_NAME}}}},
    "scope": {"project": {"name": PROJECT_NAME}}}})
check(status == 401, "wrong password -> 401")

status, headers, body = http("GET", "/v3/%s/whoami" % PROJECT_ID, token=token)
check(status == 200 and body["user_id"] == user_id and body["auth_method"] == "token"
      and "x-request-id" in headers, "protected route with the token")

# ---- the new user: AK/SK signed by the SDK; BasicCredentials without a project id discovers it
# through GET /v3/projects?name=<region> (signed too).
user_creds = BasicCredentials(user_ak, user_sk).with_iam_endpoint(EP)
dds = DdsClient.new_builder().with_credentials(user_creds).with_http_config(config()) \
    .with_region(Region(PROJECT_NAME, EP)).build()
check(user_creds.project_id == PROJECT_ID, "BasicCredentials discovered the project id via KeystoneListProjects")


def signed_whoami():
    resp = dds.call_api(resource_path="/v3/{project_id}/whoami", method="GET", path_params={},
                        query_params=[], header_params={"Content-Type": "application/json"},
                        body=None, post_params={}, cname=None, response_type="ListSessionsResponse",
                        response_headers=[], auth_settings=[], collection_formats={}, request_type=None)
    return json.loads(resp.raw_content)


who = signed_whoami()
check(who["user_id"] == user_id and who["auth_method"] == "access_key", "protected route with SDK AK/SK signing")

# ---- add a Deny policy through the same group: both credentials are now refused with 403 DBS.280063
deny_id = custom_policy("deny-sessions-" + suffix, "Deny", ["dds:instance:session"])
iam.keystone_associate_group_with_project_permission(KeystoneAssociateGroupWithProjectPermissionRequest(
    project_id=PROJECT_ID, group_id=group_id, role_id=deny_id))
step("granted a Deny policy (alias dds:instance:session)")
status, _, body = http("GET", "/v3/%s/whoami" % PROJECT_ID, token=token)
check(status == 403 and body.get("error_code") == "DBS.280063" and "dds:instance:listSession" in body["error_msg"],
      "token now refused: 403 DBS.280063 naming the action")
try:
    signed_whoami()
    check(False, "AK/SK call should have been refused")
except exceptions.ClientRequestException as e:
    check(e.status_code == 403 and e.error_code == "DBS.280063", "AK/SK now refused: 403 DBS.280063")

# ---- revocation: changing the password invalidates the earlier token
iam.update_user(UpdateUserRequest(user_id=user_id, body=UpdateUserRequestBody(
    user=UpdateUserOption(password="New-pass-" + suffix))))
status, _, body = http("GET", "/v3/%s/whoami" % PROJECT_ID, token=token)
check(status == 401 and body.get("error_code") == "APIGW.0307", "password change revoked the token (401 APIGW.0307)")

# ---- a non-admin user cannot manage IAM
weak = IamClient.new_builder().with_credentials(GlobalCredentials(user_ak, user_sk, domain_id)) \
    .with_http_config(config()).with_endpoints([EP]).build()
try:
    weak.keystone_create_group(KeystoneCreateGroupRequest(body=KeystoneCreateGroupRequestBody(
        group=KeystoneCreateGroupOption(name="nope-" + suffix, domain_id=domain_id))))
    check(False, "non-admin created a group")
except exceptions.ClientRequestException as e:
    check(e.status_code == 403 and e.error_code == "DBS.280063", "non-admin IAM write refused: 403 DBS.280063")

# ---- projects: KeystoneCreateProject / ListProjects / ShowProject / UpdateProject
created = iam.keystone_create_project(KeystoneCreateProjectRequest(body=KeystoneCreateProjectRequestBody(
    project=KeystoneCreateProjectOption(name="team-" + suffix, parent_id=domain_id, domain_id=domain_id,
                                        description="second team"))))
check(len(created.project.id) == 32 and created.project.domain_id == domain_id, "KeystoneCreateProject")
project_b = created.project.id
listed = iam.keystone_list_projects(KeystoneListProjectsRequest())
check(sorted(p.id for p in listed.projects) == sorted([PROJECT_ID, project_b]), "KeystoneListProjects lists both projects")
shown = iam.keystone_show_project(KeystoneShowProjectRequest(project_id=project_b))
check(shown.project.name == "team-" + suffix and shown.project.description == "second team", "KeystoneShowProject")
updated = iam.keystone_update_project(KeystoneUpdateProjectRequest(project_id=project_b,
    body=KeystoneUpdateProjectRequestBody(project=KeystoneUpdateProjectOption(description="team B"))))
check(updated.project.description == "team B" and updated.project.id == project_b, "KeystoneUpdateProject")

# ---- the IAM list calls with the filters the SDK sends
users = iam.keystone_list_users(KeystoneListUsersRequest(name=user_name))
check([u.id for u in users.users] == [user_id], "KeystoneListUsers by name")
users = iam.keystone_list_users(KeystoneListUsersRequest(enabled=True, domain_id=domain_id))
check(user_id in [u.id for u in users.users] and all(u.enabled for u in users.users), "KeystoneListUsers enabled=True")
groups = iam.keystone_list_groups(KeystoneListGroupsRequest(name="sdk-group-" + suffix))
check([g.id for g in groups.groups] == [group_id], "KeystoneListGroups by name")
policies = iam.list_custom_policies(ListCustomPoliciesRequest(page=1, per_page=300))
check(policies.total_number == 2 and {allow_id, deny_id} == {r.id for r in policies.roles}, "ListCustomPolicies")
page2 = iam.list_custom_policies(ListCustomPoliciesRequest(page=2, per_page=1))
check(len(page2.roles) == 1 and page2.total_number == 2, "ListCustomPolicies paged")

# ---- KeystoneValidateToken: the administrator (AK/SK) validates the user's fresh token
status, headers, body = http("POST", "/v3/auth/tokens?nocatalog=true", body={"auth": {
    "identity": {"methods": ["password"], "password": {"user": {
        "name": user_name, "password": "New-pass-" + suffix, "domain": {"name": DOMAIN_NAME}}}},
    "scope": {"domain": {"name": DOMAIN_NAME}}}})
check(status == 201 and "catalog" not in body["token"] and body["token"]["domain"]["id"] == domain_id,
      "domain-scoped token with nocatalog")
fresh = headers["x-subject-token"]
valid = iam.keystone_validate_token(KeystoneValidateTokenRequest(x_subject_token=fresh))
check(valid.token.user.id == user_id and valid.token.domain.id == domain_id, "KeystoneValidateToken")
try:
    iam.keystone_validate_token(KeystoneValidateTokenRequest(x_subject_token="DPT1.not.atoken"))
    check(False, "an invalid token validated")
except exceptions.ClientRequestException as e:
    check(e.status_code == 404, "KeystoneValidateToken of an invalid token -> 404")

# ---- no permission is a shortcut to the administrator: a user holding exactly
# iam:users:updateUser and iam:credentials:createCredential (granted account-wide) can neither
# disable the administrator nor mint its access keys (403 DBS.900021), nor mint another user's
# (403 DBS.900020); its own key it may create.
admin_id = iam.keystone_list_users(KeystoneListUsersRequest(name="admin")).users[0].id
helpdesk = iam.keystone_create_user(KeystoneCreateUserRequest(body=KeystoneCreateUserRequestBody(
    user=KeystoneCreateUserOption(name="sdk-helpdesk-" + suffix, domain_id=domain_id, password=password))))
helpdesk_id = helpdesk.user.id
hd_group = iam.keystone_create_group(KeystoneCreateGroupRequest(body=KeystoneCreateGroupRequestBody(
    group=KeystoneCreateGroupOption(name="sdk-helpdesk-" + suffix, domain_id=domain_id)))).group.id
hd_role = custom_policy("helpdesk-" + suffix, "Allow", ["iam:users:updateUser", "iam:credentials:createCredential"])
iam.keystone_associate_group_with_domain_permission(KeystoneAssociateGroupWithDomainPermissionRequest(
    domain_id=domain_id, group_id=hd_group, role_id=hd_role))
iam.keystone_add_user_to_group(KeystoneAddUserToGroupRequest(group_id=hd_group, user_id=helpdesk_id))
hd_key = iam.create_permanent_access_key(CreatePermanentAccessKeyRequest(
    body=CreatePermanentAccessKeyRequestBody(credential=CreateCredentialOption(user_id=helpdesk_id)))).credential
hd = IamClient.new_builder().with_credentials(GlobalCredentials(hd_key.access, hd_key.secret, domain_id)) \
    .with_http_config(config()).with_endpoints([EP]).build()


def refused(call, code, what):
    try:
        call()
        check(False, what + " was allowed")
    except exceptions.ClientRequestException as e:
        check(e.status_code == 403 and e.error_code == code, "%s refused: 403 %s" % (what, code))


refused(lambda: hd.keystone_update_user_by_admin(KeystoneUpdateUserByAdminRequest(user_id=admin_id,
        body=KeystoneUpdateUserByAdminRequestBody(user=KeystoneUpdateUserOption(enabled=False)))),
        "DBS.900021", "updateUser disabling the administrator")
refused(lambda: hd.create_permanent_access_key(CreatePermanentAccessKeyRequest(body=CreatePermanentAccessKeyRequestBody(
        credential=CreateCredentialOption(user_id=admin_id)))), "DBS.900021", "createCredential for the administrator")
refused(lambda: hd.create_permanent_access_key(CreatePermanentAccessKeyRequest(body=CreatePermanentAccessKeyRequestBody(
        credential=CreateCredentialOption(user_id=user_id)))), "DBS.900020", "createCredential for another user")
own = hd.create_permanent_access_key(CreatePermanentAccessKeyRequest(body=CreatePermanentAccessKeyRequestBody(
    credential=CreateCredentialOption(user_id=helpdesk_id))))
check(own.credential.user_id == helpdesk_id, "createCredential for oneself")
still = iam.keystone_list_users(KeystoneListUsersRequest(name="admin")).users
check(len(still) == 1 and still[0].enabled, "the administrator is still enabled and its key still works")

# ---- the gateway's code for a bad signature, through the SDK
bad = IamClient.new_builder().with_credentials(GlobalCredentials(AK, "x" * 40, domain_id)) \
    .with_http_config(config()).with_endpoints([EP]).build()
try:
    bad.keystone_list_projects(KeystoneListProjectsRequest())
    check(False, "a wrong secret key was accepted")
except exceptions.ClientRequestException as e:
    check(e.status_code == 401 and e.error_code == "APIGW.0301", "wrong secret: 401 APIGW.0301")
print("ALL OK")
