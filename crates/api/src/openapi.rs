//! `/openapi.json`, generated from the code.
//!
//! Operations come from the `#[utoipa::path]` annotations on the handlers (IAM here, DDS in
//! `dds::DdsDoc`); the route table then stamps each operation with its security requirement and an
//! `x-iam-action` extension, so the document states what each route needs. The committed copy
//! `docs/openapi.json` is checked by a test; regenerate it with
//! `DOCPLANE_BLESS=1 cargo test -p docplane-api --lib openapi`.

use utoipa::OpenApi;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, ResponseBuilder};

use crate::error::ErrorBody;
use crate::iam_routes as iam;
use crate::route::{Route, Scope};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "docplane",
        description = "DDS v3 session management and IAM v3 subset. Errors: docs/errors.md.",
        version = "v3"
    ),
    paths(
        iam::create_token, iam::list_auth_domains, iam::list_projects, iam::create_user,
        iam::keystone_create_user, iam::update_user, iam::keystone_update_user, iam::delete_user,
        iam::create_group, iam::add_user_to_group, iam::remove_user_from_group, iam::create_role,
        iam::grant_on_project, iam::grant_on_domain, iam::create_credential, iam::whoami,
        iam::validate_token, iam::create_project, iam::show_project, iam::update_project, iam::list_users,
        iam::list_groups, iam::list_custom_policies, iam::delete_credential
    ),
    components(schemas(ErrorBody)),
    tags((name = "iam", description = "Identity (vendor IAM v3 shapes)"),
         (name = "docplane", description = "docplane extensions"))
)]
struct IamDoc;

fn operation_mut<'a>(
    paths: &'a mut utoipa::openapi::Paths,
    path: &str,
    method: &axum::http::Method,
) -> Option<&'a mut Operation> {
    let item = paths.paths.get_mut(path)?;
    match method.as_str() {
        "GET" => item.get.as_mut(),
        "POST" => item.post.as_mut(),
        "PUT" => item.put.as_mut(),
        "PATCH" => item.patch.as_mut(),
        "DELETE" => item.delete.as_mut(),
        _ => None,
    }
}

/// The OpenAPI document for `routes`. Fails if a route has no documented operation.
pub fn document(routes: &[Route]) -> Result<utoipa::openapi::OpenApi, String> {
    let mut doc = IamDoc::openapi();
    doc.merge(crate::dds::DdsDoc::openapi());
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "token",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Auth-Token"))),
    );
    components.add_security_scheme(
        "aksk",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "Authorization",
            "SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<...>, Signature=<hex>; with X-Sdk-Date and X-Project-Id",
        ))),
    );
    for r in routes {
        if r.path == "/openapi.json" {
            continue;
        }
        let op = operation_mut(&mut doc.paths, r.path, &r.method)
            .ok_or_else(|| format!("route {} {} has no #[utoipa::path]", r.method, r.path))?;
        if r.scope != Scope::Public {
            op.security = Some(vec![
                SecurityRequirement::new("token", Vec::<String>::new()),
                SecurityRequirement::new("aksk", Vec::<String>::new()),
            ]);
        }
        let scope = match r.scope {
            Scope::Public => "public",
            Scope::Account => "account",
            Scope::Project => "project",
        };
        let mut ext = ExtensionsBuilder::new().add("x-docplane-scope", scope);
        if let Some(a) = r.action {
            ext = ext.add("x-iam-action", a);
        }
        op.extensions = Some(ext.build());
        add_generic_responses(op, r);
    }
    Ok(doc)
}

/// The answers any route can give whatever its handler does, from the layers in front of it
/// (docs/errors.md): a malformed request, a body over the limit, not JSON or too slow, an
/// unreachable store; and, behind authentication, the gateway's 401 and the scope/action 403.
/// Listed on every operation so that a client (or schemathesis) knows every status it may see.
fn add_generic_responses(op: &mut Operation, r: &Route) {
    let mut generic = vec![
        ("400", "Invalid request (DBS.200001 or a parameter's own code)"),
        ("408", "The body did not arrive in time (DBS.900408)"),
        ("413", "The body exceeds the limit (DBS.900413)"),
        ("415", "A body that is not application/json (DBS.900415)"),
        ("503", "The metadata store is unreachable (DBS.900503)"),
    ];
    if r.scope != Scope::Public {
        generic.push(("401", "Missing or invalid credentials (APIGW.0301, APIGW.0307)"));
        generic.push(("403", "Credential outside the scope, or the IAM action is missing"));
    }
    if r.path.contains('{') {
        generic.push(("404", "A resource of the path does not exist in the caller's scope"));
    }
    for (status, description) in generic {
        op.responses.responses.entry(status.to_owned()).or_insert_with(|| {
            ResponseBuilder::new()
                .description(description)
                .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
                .into()
        });
    }
}

/// The document as pretty JSON with a trailing newline (the committed form).
pub fn document_json(routes: &[Route]) -> Result<String, String> {
    let doc = document(routes)?;
    // Extensions live in a HashMap: sort every object's keys so the output is deterministic.
    let value = sorted(serde_json::to_value(&doc).map_err(|e| e.to_string())?);
    let mut s = serde_json::to_string_pretty(&value).map_err(|e| e.to_string())?;
    s.push('\n');
    Ok(s)
}

fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut entries: Vec<_> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn openapi_matches_committed_copy() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let fresh = document_json(&crate::all_routes()).unwrap();
        if std::env::var("DOCPLANE_BLESS").is_ok_and(|v| v == "1") {
            std::fs::write(path, &fresh).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == fresh,
            "docs/openapi.json is stale: run `DOCPLANE_BLESS=1 cargo test -p docplane-api --lib openapi`"
        );
    }

    #[test]
    fn every_documented_operation_is_routed() {
        let routes = crate::all_routes();
        let doc = document(&routes).unwrap();
        for (path, item) in &doc.paths.paths {
            for (m, op) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("PATCH", &item.patch),
                ("DELETE", &item.delete),
            ] {
                if op.is_some() {
                    assert!(
                        routes.iter().any(|r| r.path == path && r.method.as_str() == m),
                        "documented {m} {path} has no route"
                    );
                }
            }
        }
    }
}
