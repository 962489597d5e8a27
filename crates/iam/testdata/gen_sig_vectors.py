"""Produces SDK-HMAC-SHA256 test vectors with the vendor's official Python SDK signer.

Run: /work/main/.venv/bin/python crates/iam/testdata/gen_sig_vectors.py > crates/iam/testdata/sdk_sig_vectors.json
Each vector records the request exactly as it goes on the wire (method, raw path, raw query, headers
after signing, body) plus the signer's canonical request and string to sign, so the Rust verifier is
checked against the SDK's own intermediate values.
"""
import json
from urllib.parse import quote

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

AK = "HPUAQ7YQKVXX2EXAMPLE"
SK = "qHk3ZQkq8bFzUe1YRbwK4pWnT5s9vJd2mAaXcE0L"
PROJECT = "0123456789abcdef0123456789abcdef"
UA = "huaweicloud-usdk-python/3.0"

CASES = [
    dict(name="get_sessions_query", method="GET",
         path_params={"project_id": PROJECT, "node_id": "a" * 32 + "no02"},
         template="/v3/{project_id}/nodes/{node_id}/sessions",
         query=[("limit", 20), ("offset", 0), ("namespace", "db.coll"), ("plan_summary", "COLLSCAN")],
         headers={"Content-Type": "application/json"}, body=""),
    dict(name="post_kill_json", method="POST",
         path_params={"project_id": PROJECT, "node_id": "b" * 32 + "no02"},
         template="/v3/{project_id}/nodes/{node_id}/session",
         query=[], headers={"Content-Type": "application/json;charset=UTF-8"},
         body=json.dumps({"sessions": ["34631", "shard0:34703"]})),
    dict(name="list_projects_by_name", method="GET", path_params={}, template="/v3/projects",
         query=[("name", "cn-north-4")], headers={}, body=""),
    dict(name="special_chars", method="GET",
         path_params={"project_id": PROJECT, "name": "a b/c~d*e'f"},
         template="/v3/{project_id}/things/{name}",
         query=[("q", "x y+z&w=~!*'()"), ("a", "é"), ("tags", ["b", "a"]), ("flag", True), ("empty", "")],
         headers={"Content-Type": "application/json", "X-Custom-Header": "  padded value  "}, body=""),
    dict(name="put_unsigned_payload", method="PUT", path_params={"project_id": PROJECT},
         template="/v3/{project_id}/upload", query=[],
         headers={"Content-Type": "application/octet-stream"}, body="raw bytes here"),
    dict(name="delete_no_body", method="DELETE", path_params={"project_id": PROJECT},
         template="/v3/{project_id}/instances/" + "c" * 32 + "in02", query=[],
         headers={"Content-Type": "application/json"}, body=""),
]


def build(case):
    path = case["template"]
    for k, v in case["path_params"].items():
        path = path.replace("{%s}" % k, quote(str(v), safe=""))
    headers = {"User-Agent": UA, "X-Sdk-Date": "20240102T030405Z"}
    headers.update(case["headers"])
    body = case["body"]
    return SdkRequest(method=case["method"], schema="http", host="127.0.0.1:8443", resource_path=path,
                      query_params=list(case["query"]), header_params=headers,
                      body=body.encode() if body else "")


out = []
for case in CASES:
    creds = BasicCredentials(AK, SK, PROJECT)
    req = build(case)
    # BasicCredentials adds X-Project-Id before signing, as the SDK does on every call.
    req.header_params["X-Project-Id"] = PROJECT
    inner = Signer(creds)
    signed_headers = None
    # Recompute the intermediate values through the signer's own steps.
    probe = build(case)
    probe.header_params["X-Project-Id"] = PROJECT
    inner._process_content_header(probe)
    t = inner._process_header_time(probe)
    inner._process_header_host(probe)
    sh = inner._process_signed_headers(probe)
    canonical = inner._process_canonical_request(probe, sh)
    sts = inner._process_string_to_sign(canonical, t)
    signed = inner.sign(req)
    raw_path, _, raw_query = signed.uri.partition("?")
    body = req.body if isinstance(req.body, (bytes, bytearray)) else (req.body or "").encode()
    out.append(dict(
        name=case["name"], method=case["method"], path=raw_path, query=raw_query,
        headers=[[k, v] for k, v in signed.header_params.items()],
        body=body.decode("utf-8"), ak=AK, sk=SK,
        canonical_request=canonical, string_to_sign=sts,
        authorization=signed.header_params["Authorization"],
    ))
print(json.dumps(out, indent=1, ensure_ascii=False))
