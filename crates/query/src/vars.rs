//! Variables: a command's `let` parameters and the parse-time check that every `$$name` an
//! expression reads is defined.
//!
//! mongod resolves variables when it parses an expression (`VariablesParseState`): a `$$name`
//! that is neither a system variable nor bound by an enclosing `$let` / `$map` / `$filter` /
//! `$reduce` nor by the command's `let` fails the command with 17276 "Use of undefined variable",
//! whether or not a document is ever examined. [`check_expr`] is that check over a parsed
//! [`Expr`]; [`crate::Filter::with_let`] applies it to a command's filter and binds the `let`
//! values for its `$expr`, and [`crate::Pipeline::with_let`] binds them for a pipeline.
//!
//! A command's `let` values are expressions evaluated once, before any document is read
//! (mongod's `Variables::seedVariablesWithLetParameters`): they may use system variables
//! (`$$NOW`) and constant operators but no field path (4890500).

use bson::{Bson, Document};

use crate::error::{CommandError, Result};
use crate::expr::{EvalCtx, Expr};

/// System variables an expression may always read (mongod's `Variables::kBuiltinVarNameToId`);
/// those the node does not provide fail where they are evaluated.
const SYSTEM: &[&str] = &[
    "ROOT",
    "CURRENT",
    "NOW",
    "REMOVE",
    "CLUSTER_TIME",
    "DESCEND",
    "PRUNE",
    "KEEP",
    "USER_ROLES",
    "SEARCH_META",
];

/// mongod's `Variables::validateNameForUserWrite`: a user variable starts with a lowercase ASCII
/// letter or a non-ASCII character and continues with letters, digits, `_` or non-ASCII.
pub fn validate_user_name(name: &str) -> Result<()> {
    if name == "CURRENT" {
        return Ok(());
    }
    let Some(first) = name.chars().next() else {
        return Err(CommandError::location(16866, "empty variable names are not allowed"));
    };
    if !first.is_ascii_lowercase() && first.is_ascii() {
        return Err(CommandError::location(
            16867,
            format!("'{name}' starts with an invalid character for a user variable name"),
        ));
    }
    if let Some(bad) =
        name.chars().skip(1).find(|c| c.is_ascii() && !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(CommandError::location(
            16868,
            format!("'{name}' contains an invalid character for a variable name: '{bad}'"),
        ));
    }
    Ok(())
}

/// A command's `let` parameters, evaluated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LetVars {
    vars: Vec<(String, Bson)>,
}

impl LetVars {
    /// No variables.
    pub fn none() -> LetVars {
        LetVars::default()
    }

    /// Parses and evaluates a command's `let` field (absent or null: none).
    pub fn parse(v: Option<&Bson>) -> Result<LetVars> {
        let d: &Document = match v {
            None | Some(Bson::Null) => return Ok(LetVars::none()),
            Some(Bson::Document(d)) => d,
            Some(other) => {
                return Err(CommandError::type_mismatch(format!(
                    "BSON field 'let' is the wrong type '{}', expected type 'object'",
                    crate::expr::type_name(other)
                )));
            }
        };
        let mut vars = Vec::with_capacity(d.len());
        let mut ctx = EvalCtx::new();
        for (name, value) in d {
            validate_user_name(name)?;
            let e = Expr::parse(value)?;
            check_expr(&e, &mut Vec::new())?;
            let mut deps = crate::aggregate::Deps::default();
            e.add_deps(&mut deps);
            if deps.into_fields().is_none_or(|f| !f.is_empty()) {
                return Err(CommandError::location(
                    4890500,
                    "Command let Expression tried to access a field, but this is not allowed because command let expressions run before the query examines any documents.",
                ));
            }
            let value = e.eval(&Document::new(), &mut ctx)?;
            vars.push((name.clone(), value));
        }
        Ok(LetVars { vars })
    }

    /// Variables with these values (names as a binding stage checked them).
    pub fn from_values(vars: Vec<(String, Bson)>) -> LetVars {
        LetVars { vars }
    }

    /// These variables and then `more`'s, which shadow same-named ones.
    #[must_use]
    pub fn with(&self, more: LetVars) -> LetVars {
        let mut vars = self.vars.clone();
        vars.extend(more.vars);
        LetVars { vars }
    }

    /// True without variables.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// The variables' names.
    pub fn names(&self) -> Vec<String> {
        self.vars.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Binds the variables in `ctx`.
    pub(crate) fn bind_into(&self, ctx: &mut EvalCtx) {
        for (n, v) in &self.vars {
            ctx.bind(n.clone(), v.clone());
        }
    }

    /// A fresh evaluation context holding the variables.
    pub(crate) fn eval_ctx(&self) -> EvalCtx {
        let mut ctx = EvalCtx::new();
        self.bind_into(&mut ctx);
        ctx
    }
}

fn undefined(name: &str) -> CommandError {
    CommandError::location(17276, format!("Use of undefined variable: {name}"))
}

fn named<'a>(args: &'a [(String, Expr)], key: &str) -> Option<&'a Expr> {
    args.iter().find(|(k, _)| k == key).map(|(_, e)| e)
}

fn check_opt(e: Option<&Expr>, scope: &mut Vec<String>) -> Result<()> {
    e.map_or(Ok(()), |e| check_expr(e, scope))
}

/// Checks `body` with `names` bound on top of `scope`.
fn check_bound(body: Option<&Expr>, names: &[String], scope: &mut Vec<String>) -> Result<()> {
    let mark = scope.len();
    scope.extend(names.iter().cloned());
    let r = check_opt(body, scope);
    scope.truncate(mark);
    r
}

/// Fails with 17276 when `e` reads a user variable that is not in `scope` (nor bound inside `e`
/// by `$let`, `$map`, `$filter` or `$reduce`); checks the names those operators bind.
pub fn check_expr(e: &Expr, scope: &mut Vec<String>) -> Result<()> {
    match e {
        Expr::Literal(_) | Expr::Field(_) => Ok(()),
        Expr::Var(name, _) => {
            if SYSTEM.contains(&name.as_str()) || scope.iter().any(|s| s == name) {
                Ok(())
            } else {
                Err(undefined(name))
            }
        }
        Expr::Object(fs) => fs.iter().try_for_each(|(_, e)| check_expr(e, scope)),
        Expr::Array(es) | Expr::Op(_, es) => es.iter().try_for_each(|e| check_expr(e, scope)),
        Expr::Named("$let", args) => {
            let mut names = Vec::new();
            if let Some(Expr::Object(vars)) = named(args, "vars") {
                for (k, v) in vars {
                    validate_user_name(k)?;
                    check_expr(v, scope)?;
                    names.push(k.clone());
                }
            }
            check_bound(named(args, "in"), &names, scope)
        }
        Expr::Named(op @ ("$map" | "$filter"), args) => {
            check_opt(named(args, "input"), scope)?;
            check_opt(named(args, "limit"), scope)?;
            let var = match named(args, "as") {
                Some(Expr::Literal(Bson::String(s))) => s.clone(),
                _ => "this".to_owned(),
            };
            validate_user_name(&var)?;
            let body = if *op == "$map" { named(args, "in") } else { named(args, "cond") };
            check_bound(body, &[var], scope)
        }
        Expr::Named("$reduce", args) => {
            check_opt(named(args, "input"), scope)?;
            check_opt(named(args, "initialValue"), scope)?;
            check_bound(named(args, "in"), &["value".to_owned(), "this".to_owned()], scope)
        }
        Expr::Named(_, args) => args.iter().try_for_each(|(_, e)| check_expr(e, scope)),
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use bson::doc;

    use super::*;

    fn check(v: Bson, scope: &[&str]) -> Result<()> {
        let mut s: Vec<String> = scope.iter().map(|s| (*s).to_owned()).collect();
        check_expr(&Expr::parse(&v).unwrap(), &mut s)
    }

    #[test]
    fn undefined_variables_fail_at_parse() {
        assert_eq!(check(Bson::String("$$x".into()), &[]).unwrap_err().code, 17276);
        assert!(check(Bson::String("$$x.a".into()), &["x"]).is_ok());
        assert!(check(Bson::String("$$NOW".into()), &[]).is_ok());
        assert!(check(Bson::String("$$ROOT.a".into()), &[]).is_ok());
        let e = check(Bson::Document(doc! {"$add": [1, "$$y"]}), &["x"]).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (17276, "Use of undefined variable: y"));
        // Binders scope their names to their body only.
        let l = doc! {"$let": {"vars": {"v": 1}, "in": {"$add": ["$$v", 1]}}};
        assert!(check(Bson::Document(l), &[]).is_ok());
        let l = doc! {"$let": {"vars": {"v": "$$v"}, "in": "$$v"}};
        assert_eq!(check(Bson::Document(l), &[]).unwrap_err().code, 17276);
        let m = doc! {"$map": {"input": [1], "as": "e", "in": "$$e"}};
        assert!(check(Bson::Document(m), &[]).is_ok());
        let m = doc! {"$map": {"input": "$$e", "as": "e", "in": "$$e"}};
        assert_eq!(check(Bson::Document(m), &[]).unwrap_err().code, 17276);
        let f = doc! {"$filter": {"input": [1], "cond": "$$this"}};
        assert!(check(Bson::Document(f), &[]).is_ok());
        let r = doc! {"$reduce": {"input": [1], "initialValue": 0, "in": {"$add": ["$$value", "$$this"]}}};
        assert!(check(Bson::Document(r.clone()), &[]).is_ok());
        let outside = doc! {"$add": [r, "$$this"]};
        assert_eq!(check(Bson::Document(outside), &[]).unwrap_err().code, 17276);
    }

    #[test]
    fn user_names_follow_mongods_rules() {
        assert!(validate_user_name("abc_D9").is_ok());
        assert!(validate_user_name("été").is_ok());
        assert_eq!(validate_user_name("").unwrap_err().code, 16866);
        assert_eq!(validate_user_name("Abc").unwrap_err().code, 16867);
        assert_eq!(validate_user_name("_a").unwrap_err().code, 16867);
        let e = validate_user_name("a-b").unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (16868, "'a-b' contains an invalid character for a variable name: '-'")
        );
        let m = doc! {"$map": {"input": [1], "as": "E", "in": 1}};
        assert_eq!(check(Bson::Document(m), &[]).unwrap_err().code, 16867);
    }

    #[test]
    fn let_values_are_evaluated_once_without_a_document() {
        let l = LetVars::parse(Some(&Bson::Document(doc! {"x": {"$add": [1, 2]}, "s": "a"}))).unwrap();
        assert_eq!(l.names(), vec!["x".to_owned(), "s".to_owned()]);
        assert_eq!(l.vars[0].1, Bson::Int32(3));
        assert!(LetVars::parse(None).unwrap().is_empty());
        assert_eq!(LetVars::parse(Some(&Bson::Int32(1))).unwrap_err().code, 14);
        assert_eq!(LetVars::parse(Some(&Bson::Document(doc! {"x": "$a"}))).unwrap_err().code, 4890500);
        assert_eq!(LetVars::parse(Some(&Bson::Document(doc! {"X": 1}))).unwrap_err().code, 16867);
        assert_eq!(LetVars::parse(Some(&Bson::Document(doc! {"x": "$$y"}))).unwrap_err().code, 17276);
        assert!(LetVars::parse(Some(&Bson::Document(doc! {"t": "$$NOW"}))).is_ok());
    }
}
