//! Identity policies and their evaluation.
//!
//! A policy document is `{"Version":"1.1"|"5.0","Statement":[{"Effect":"Allow"|"Deny",
//! "Action":[...]|"...","Resource":[...]}]}` (keys matched case-insensitively, as the vendor's
//! console accepts both spellings). Actions are `service:resourceType:operation`, matched
//! case-insensitively with `*` (any run) and `?` (one character).
//!
//! Evaluation: an explicit Deny that matches wins; otherwise a matching Allow grants; otherwise the
//! request is implicitly denied. The legacy action `dds:instance:session` is an alias: a statement
//! matching it also matches `dds:instance:listSession` and `dds:instance:deleteSession`.
//! docplane does not evaluate `Condition` blocks: an Allow with a Condition never grants, a Deny with
//! a Condition always applies (fail closed). `Resource` is accepted and ignored (project scope is
//! enforced by the grant, not by resource strings).

use serde_json::Value;

/// The legacy alias and the actions it covers.
pub const SESSION_ALIAS: &str = "dds:instance:session";
const ALIASED: [&str; 2] = ["dds:instance:listsession", "dds:instance:deletesession"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// The result of evaluating an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// A Deny statement matched.
    ExplicitDeny,
    /// Nothing matched.
    ImplicitDeny,
}

/// One statement, with lower-cased action patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub effect: Effect,
    pub actions: Vec<String>,
    pub has_condition: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy is not a JSON object")]
    NotObject,
    #[error("unsupported policy Version {0:?} (expected \"1.1\" or \"5.0\")")]
    Version(String),
    #[error("policy has no Statement")]
    NoStatement,
    #[error("statement {0}: {1}")]
    Statement(usize, &'static str),
}

fn get<'a>(obj: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

/// Parses and validates one policy document.
pub fn parse_policy(doc: &Value) -> Result<Vec<Statement>, PolicyError> {
    let obj = doc.as_object().ok_or(PolicyError::NotObject)?;
    let version = get(obj, "Version").and_then(Value::as_str).unwrap_or("");
    if version != "1.1" && version != "5.0" {
        return Err(PolicyError::Version(version.to_owned()));
    }
    let stmts = get(obj, "Statement").and_then(Value::as_array).ok_or(PolicyError::NoStatement)?;
    if stmts.is_empty() {
        return Err(PolicyError::NoStatement);
    }
    stmts
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let s = s.as_object().ok_or(PolicyError::Statement(i, "not an object"))?;
            let effect = match get(s, "Effect").and_then(Value::as_str) {
                Some(e) if e.eq_ignore_ascii_case("allow") => Effect::Allow,
                Some(e) if e.eq_ignore_ascii_case("deny") => Effect::Deny,
                _ => return Err(PolicyError::Statement(i, "Effect must be Allow or Deny")),
            };
            let actions: Vec<String> = match get(s, "Action") {
                Some(Value::String(a)) => vec![a.to_ascii_lowercase()],
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| x.as_str().map(str::to_ascii_lowercase))
                    .collect::<Option<_>>()
                    .ok_or(PolicyError::Statement(i, "Action entries must be strings"))?,
                _ => return Err(PolicyError::Statement(i, "Action is required")),
            };
            if actions.is_empty() || actions.iter().any(|a| a.is_empty() || a.len() > 256) {
                return Err(PolicyError::Statement(i, "bad Action"));
            }
            let has_condition = get(s, "Condition").is_some_and(|c| !c.is_null());
            Ok(Statement { effect, actions, has_condition })
        })
        .collect()
}

/// Parses a policy document from JSON text.
pub fn parse_policy_text(text: &str) -> Result<Vec<Statement>, PolicyError> {
    let v: Value = serde_json::from_str(text).map_err(|_| PolicyError::NotObject)?;
    parse_policy(&v)
}

/// Glob match of lower-cased `pattern` against lower-cased `text` (`*` any run, `?` one char).
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Whether a statement's pattern covers `action` (already lower-cased), honouring the alias.
fn pattern_covers(pattern: &str, action: &str) -> bool {
    wildcard_match(pattern, action) || (ALIASED.contains(&action) && wildcard_match(pattern, SESSION_ALIAS))
}

/// Evaluates `action` against every statement of every policy reaching the principal.
pub fn evaluate<'a>(statements: impl IntoIterator<Item = &'a Statement>, action: &str) -> Decision {
    let action = action.to_ascii_lowercase();
    let mut allowed = false;
    for s in statements {
        if !s.actions.iter().any(|p| pattern_covers(p, &action)) {
            continue;
        }
        match s.effect {
            Effect::Deny => return Decision::ExplicitDeny,
            Effect::Allow if !s.has_condition => allowed = true,
            Effect::Allow => {}
        }
    }
    if allowed { Decision::Allow } else { Decision::ImplicitDeny }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn doc(effect: &str, actions: &[&str]) -> Vec<Statement> {
        parse_policy(
            &json!({"Version":"1.1","Statement":[{"Effect":effect,"Action":actions,"Resource":["*"]}]}),
        )
        .unwrap()
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("dds:*:*", "dds:instance:listsession"));
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("dds:instance:?istsession", "dds:instance:listsession"));
        assert!(!wildcard_match("dds:instance:?", "dds:instance:ab"));
        assert!(wildcard_match("dds:*session", "dds:instance:deletesession"));
        assert!(!wildcard_match("dds:*session", "dds:instance:deletesessions"));
        assert!(!wildcard_match("rds:*", "dds:instance:x"));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("a*b*c", "axxbyy"));
        assert!(wildcard_match("", ""));
        assert!(!wildcard_match("", "x"));
    }

    #[test]
    fn evaluation_rules() {
        let allow = doc("Allow", &["dds:instance:listSession"]);
        assert_eq!(evaluate(&allow, "dds:instance:listsession"), Decision::Allow);
        assert_eq!(evaluate(&allow, "DDS:Instance:ListSession"), Decision::Allow);
        assert_eq!(evaluate(&allow, "dds:instance:deleteSession"), Decision::ImplicitDeny);
        let alias = doc("Allow", &["dds:instance:session"]);
        assert_eq!(evaluate(&alias, "dds:instance:listSession"), Decision::Allow);
        assert_eq!(evaluate(&alias, "dds:instance:deleteSession"), Decision::Allow);
        assert_eq!(evaluate(&alias, "dds:instance:list"), Decision::ImplicitDeny);
        let deny_alias = doc("Deny", &["dds:instance:session"]);
        let both: Vec<_> = allow.iter().chain(deny_alias.iter()).collect();
        assert_eq!(evaluate(both, "dds:instance:listSession"), Decision::ExplicitDeny);
        let star_deny = doc("Deny", &["dds:*"]);
        let all: Vec<_> = doc("Allow", &["*"]).into_iter().chain(star_deny).collect();
        assert_eq!(evaluate(&all, "dds:instance:listSession"), Decision::ExplicitDeny);
        assert_eq!(evaluate(&all, "iam:users:createUser"), Decision::Allow);
        assert_eq!(evaluate(&[], "x:y:z"), Decision::ImplicitDeny);
    }

    #[test]
    fn parsing() {
        assert!(
            parse_policy(&json!({"Version":"5.0","Statement":[{"Effect":"Allow","Action":"dds:*"}]})).is_ok()
        );
        assert!(
            parse_policy(&json!({"version":"1.1","statement":[{"effect":"deny","action":["x"]}]})).is_ok()
        );
        assert!(matches!(
            parse_policy(&json!({"Version":"1.0","Statement":[]})),
            Err(PolicyError::Version(_))
        ));
        assert!(parse_policy(&json!({"Version":"1.1","Statement":[]})).is_err());
        assert!(
            parse_policy(&json!({"Version":"1.1","Statement":[{"Effect":"Maybe","Action":["x"]}]})).is_err()
        );
        assert!(parse_policy(&json!({"Version":"1.1","Statement":[{"Effect":"Allow"}]})).is_err());
        assert!(
            parse_policy(&json!({"Version":"1.1","Statement":[{"Effect":"Allow","Action":[1]}]})).is_err()
        );
        assert!(parse_policy(&json!([1])).is_err());
        assert!(parse_policy_text("{not json").is_err());
    }

    #[test]
    fn conditions_fail_closed() {
        let s = parse_policy(&json!({"Version":"5.0","Statement":[
            {"Effect":"Allow","Action":["dds:*"],"Condition":{"StringEquals":{"g:x":["y"]}}}]}))
        .unwrap();
        assert_eq!(evaluate(&s, "dds:instance:listSession"), Decision::ImplicitDeny);
        let d = parse_policy(&json!({"Version":"5.0","Statement":[
            {"Effect":"Allow","Action":["dds:*"]},
            {"Effect":"Deny","Action":["dds:*"],"Condition":{"StringEquals":{"g:x":["y"]}}}]}))
        .unwrap();
        assert_eq!(evaluate(&d, "dds:instance:listSession"), Decision::ExplicitDeny);
    }

    fn pattern() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_owned()),
            Just("dds:*".to_owned()),
            Just("dds:instance:*".to_owned()),
            Just("dds:instance:session".to_owned()),
            Just("dds:instance:listSession".to_owned()),
            Just("dds:instance:deleteSession".to_owned()),
            Just("dds:instance:?istSession".to_owned()),
            Just("iam:*:*".to_owned()),
            "[a-z]{1,4}:[a-z*?]{1,6}:[a-zA-Z*?]{1,8}",
        ]
    }

    fn stmt() -> impl Strategy<Value = Statement> {
        (any::<bool>(), prop::collection::vec(pattern(), 1..3)).prop_map(|(allow, acts)| Statement {
            effect: if allow { Effect::Allow } else { Effect::Deny },
            actions: acts.into_iter().map(|a| a.to_ascii_lowercase()).collect(),
            has_condition: false,
        })
    }

    fn action() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("dds:instance:listSession".to_owned()),
            Just("dds:instance:deleteSession".to_owned()),
            Just("dds:instance:list".to_owned()),
            Just("iam:users:createUser".to_owned()),
            "[a-z]{1,4}:[a-z]{1,6}:[a-zA-Z]{1,8}",
        ]
    }

    proptest! {
        /// Any matching Deny wins, whatever else is present and in whatever order.
        #[test]
        fn deny_overrides(mut stmts in prop::collection::vec(stmt(), 0..8), act in action(), seed in any::<u64>()) {
            let matches = |s: &Statement| s.actions.iter().any(|p| pattern_covers(p, &act.to_ascii_lowercase()));
            let any_deny = stmts.iter().any(|s| s.effect == Effect::Deny && matches(s));
            let any_allow = stmts.iter().any(|s| s.effect == Effect::Allow && matches(s));
            let d = evaluate(&stmts, &act);
            let expected = if any_deny { Decision::ExplicitDeny } else if any_allow { Decision::Allow } else { Decision::ImplicitDeny };
            prop_assert_eq!(d, expected);
            // Order independence.
            let n = stmts.len().max(1);
            stmts.rotate_left((seed as usize) % n);
            stmts.reverse();
            prop_assert_eq!(evaluate(&stmts, &act), d);
            // Adding a matching Deny always denies.
            stmts.push(Statement { effect: Effect::Deny, actions: vec![act.to_ascii_lowercase()], has_condition: false });
            prop_assert_eq!(evaluate(&stmts, &act), Decision::ExplicitDeny);
        }

        /// Adding an Allow never turns an explicit Deny into an Allow, and case never matters.
        #[test]
        fn allow_is_monotone_and_case_insensitive(stmts in prop::collection::vec(stmt(), 0..6), act in action()) {
            let before = evaluate(&stmts, &act);
            let mut more = stmts.clone();
            more.push(Statement { effect: Effect::Allow, actions: vec!["*".into()], has_condition: false });
            let after = evaluate(&more, &act);
            if before == Decision::ExplicitDeny { prop_assert_eq!(after, Decision::ExplicitDeny); } else { prop_assert_eq!(after, Decision::Allow); }
            prop_assert_eq!(evaluate(&stmts, &act.to_ascii_uppercase()), before);
        }
    }
}
