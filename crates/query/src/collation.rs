//! MongoDB collations: the `collation` document parsed and validated as mongod 7.0's IDL and
//! `CollatorFactoryICU` do, and string comparison under it with ICU4X's collator (its data
//! compiled into the binary, nothing read at run time).
//!
//! The collation a command runs under is installed for the current thread ([`scoped`]), the way
//! [`crate::interrupt::scoped`] installs its interrupt: the node does it around each command's
//! (or statement's, or getMore's) blocking work, and [`crate::cmp_bson`] and
//! [`crate::canonical_key`] read it when they meet a string. So the matcher, sorts, `$group`,
//! `distinct`, expressions and update operators all compare under it without each parsed object
//! carrying it. Without a collation the cost is one thread-local `bool` read per string
//! comparison; the simple collation stays the byte comparison.
//!
//! What ICU4X cannot do exactly is refused, not approximated: `backwards` other than the
//! locale's own setting (ICU4X exposes no switch for it) and locales outside mongod's list.
//! Known differences from mongod: ICU4X always normalizes (mongod's `normalization: false`
//! skips normalization, which only changes results for text not in FCD form), and its data is
//! CLDR's current one where mongod 7.0 ships ICU 57.1's (`version` is still reported as
//! `"57.1"`, the version drivers and mongod compare).

use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::sync::Arc;

use bson::{Bson, Document};
use icu_collator::options::{AlternateHandling, CaseLevel, CollatorOptions, MaxVariable, Strength};
use icu_collator::preferences::{CollationCaseFirst, CollationNumericOrdering};
use icu_collator::{CollatorBorrowed, CollatorPreferences};

use crate::error::{CommandError, Result};

/// The ICU version mongod 7.0 reports in a normalized collation spec.
pub const ICU_VERSION: &str = "57.1";

/// mongod's supported locale ids (its documentation's list) and the BCP-47 tag ICU4X reads
/// for each. An id not here is refused as mongod refuses an unknown locale; `en_US_POSIX`,
/// mongod's only other id, is refused as unsupported (ICU4X has no POSIX collation).
const LOCALES: &[(&str, &str)] = &[
    ("af", "af"),
    ("sq", "sq"),
    ("am", "am"),
    ("ar", "ar"),
    ("hy", "hy"),
    ("as", "as"),
    ("az", "az"),
    ("bn", "bn"),
    ("be", "be"),
    ("bs", "bs"),
    ("bs_Cyrl", "bs-Cyrl"),
    ("bg", "bg"),
    ("my", "my"),
    ("ca", "ca"),
    ("chr", "chr"),
    ("zh", "zh"),
    ("zh@collation=pinyin", "zh-u-co-pinyin"),
    ("zh@collation=stroke", "zh-u-co-stroke"),
    ("zh@collation=zhuyin", "zh-u-co-zhuyin"),
    ("zh@collation=unihan", "zh-u-co-unihan"),
    ("zh_Hant", "zh-Hant"),
    ("hr", "hr"),
    ("cs", "cs"),
    ("da", "da"),
    ("nl", "nl"),
    ("dz", "dz"),
    ("en", "en"),
    ("en_US", "en-US"),
    ("eo", "eo"),
    ("et", "et"),
    ("ee", "ee"),
    ("fo", "fo"),
    ("fil", "fil"),
    ("fi_FI", "fi-FI"),
    ("fr", "fr"),
    ("fr_CA", "fr-CA"),
    ("gl", "gl"),
    ("ka", "ka"),
    ("de", "de"),
    ("de@collation=phonebook", "de-u-co-phonebk"),
    ("de_AT", "de-AT"),
    ("el", "el"),
    ("gu", "gu"),
    ("ha", "ha"),
    ("haw", "haw"),
    ("he", "he"),
    ("hi", "hi"),
    ("hu", "hu"),
    ("is", "is"),
    ("ig", "ig"),
    ("smn", "smn"),
    ("id", "id"),
    ("ga", "ga"),
    ("it", "it"),
    ("ja", "ja"),
    ("kl", "kl"),
    ("kn", "kn"),
    ("kk", "kk"),
    ("km", "km"),
    ("kok", "kok"),
    ("ko", "ko"),
    ("ky", "ky"),
    ("lkt", "lkt"),
    ("lo", "lo"),
    ("lv", "lv"),
    ("ln", "ln"),
    ("lt", "lt"),
    ("dsb", "dsb"),
    ("lb", "lb"),
    ("mk", "mk"),
    ("ms", "ms"),
    ("ml", "ml"),
    ("mt", "mt"),
    ("mr", "mr"),
    ("mn", "mn"),
    ("ne", "ne"),
    ("se", "se"),
    ("nb", "nb"),
    ("nn", "nn"),
    ("or", "or"),
    ("om", "om"),
    ("ps", "ps"),
    ("fa", "fa"),
    ("fa_AF", "fa-AF"),
    ("pl", "pl"),
    ("pt", "pt"),
    ("pa", "pa"),
    ("ro", "ro"),
    ("ru", "ru"),
    ("sr", "sr"),
    ("sr_Latn", "sr-Latn"),
    ("si", "si"),
    ("sk", "sk"),
    ("sl", "sl"),
    ("es", "es"),
    ("es@collation=traditional", "es-u-co-trad"),
    ("sw", "sw"),
    ("sv", "sv"),
    ("ta", "ta"),
    ("te", "te"),
    ("th", "th"),
    ("bo", "bo"),
    ("to", "to"),
    ("tr", "tr"),
    ("uk", "uk"),
    ("hsb", "hsb"),
    ("ur", "ur"),
    ("ug", "ug"),
    ("vi", "vi"),
    ("wae", "wae"),
    ("cy", "cy"),
    ("yi", "yi"),
    ("yo", "yo"),
    ("zu", "zu"),
];

/// The only locale whose CLDR rules compare secondary differences backwards: the one place
/// `backwards: true` is honoured (ICU4X takes it from the locale's data only).
const BACKWARDS_LOCALE: &str = "fr_CA";

/// A non-simple collation: its normalized spec (what listIndexes, listCollections and explain
/// show) and the collator.
pub struct Collation {
    spec: Document,
    collator: CollatorBorrowed<'static>,
}

impl std::fmt::Debug for Collation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Collation({})", self.spec)
    }
}

impl PartialEq for Collation {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

/// What a `collation` field asks for.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Requested {
    /// Absent, null or `{}`: the collection's default applies.
    #[default]
    Default,
    /// `{locale: "simple"}`: the binary comparison, whatever the collection's default.
    Simple,
    /// Another collation.
    Collated(Arc<Collation>),
}

impl Requested {
    /// The collation in effect given the collection's default (`None`: binary comparison).
    pub fn resolve(&self, default: Option<&Arc<Collation>>) -> Option<Arc<Collation>> {
        match self {
            Requested::Default => default.cloned(),
            Requested::Simple => None,
            Requested::Collated(c) => Some(c.clone()),
        }
    }
}

/// Two collations in effect are the same (both simple, or equal normalized specs).
pub fn same(a: Option<&Arc<Collation>>, b: Option<&Arc<Collation>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => x.spec == y.spec,
        _ => false,
    }
}

fn type_name(v: &Bson) -> &'static str {
    match v {
        Bson::Double(_) => "double",
        Bson::String(_) => "string",
        Bson::Document(_) => "object",
        Bson::Array(_) => "array",
        Bson::Binary(_) => "binData",
        Bson::ObjectId(_) => "objectId",
        Bson::Boolean(_) => "bool",
        Bson::DateTime(_) => "date",
        Bson::Null => "null",
        Bson::RegularExpression(_) => "regex",
        Bson::Int32(_) => "int",
        Bson::Timestamp(_) => "timestamp",
        Bson::Int64(_) => "long",
        Bson::Decimal128(_) => "decimal",
        Bson::MinKey => "minKey",
        Bson::MaxKey => "maxKey",
        Bson::Undefined => "undefined",
        _ => "javascript",
    }
}

fn wrong_type(field: &str, v: &Bson, expected: &str) -> CommandError {
    CommandError::type_mismatch(format!(
        "BSON field 'collation.{field}' is the wrong type '{}', expected {expected}",
        type_name(v)
    ))
}

fn want_bool(field: &str, v: &Bson) -> Result<bool> {
    match v {
        Bson::Boolean(b) => Ok(*b),
        other => Err(wrong_type(field, other, "type 'bool'")),
    }
}

fn want_str<'a>(field: &str, v: &'a Bson) -> Result<&'a str> {
    match v {
        Bson::String(s) => Ok(s),
        other => Err(wrong_type(field, other, "type 'string'")),
    }
}

fn bad_enum(field: &str, value: &str) -> CommandError {
    CommandError::bad_value(format!(
        "Enumeration value '{value}' for field 'collation.{field}' is not a valid value."
    ))
}

/// `strength`: IDL's `safeInt` (int, long, integral double or decimal) within 1..=5 (51024,
/// IDL's validator error, outside).
fn want_strength(v: &Bson) -> Result<i32> {
    let n = match v {
        Bson::Int32(i) => i64::from(*i),
        Bson::Int64(i) => *i,
        Bson::Double(f) if f.fract() == 0.0 && f.abs() < 1e18 => *f as i64,
        Bson::Decimal128(d) => d
            .to_string()
            .parse::<i64>()
            .map_err(|_| wrong_type("strength", v, "types '[long, int, decimal, double]'"))?,
        other => return Err(wrong_type("strength", other, "types '[long, int, decimal, double]'")),
    };
    if !(1..=5).contains(&n) {
        let bound = if n < 1 { ">= 1" } else { "<= 5" };
        return Err(CommandError::location(
            51024,
            format!("BSON field 'strength' value must be {bound}, actual value '{n}'"),
        ));
    }
    Ok(n as i32)
}

/// The fields of a collation document, as given.
#[derive(Debug, Default)]
struct Fields {
    locale: Option<String>,
    case_level: Option<bool>,
    case_first: Option<String>,
    strength: Option<i32>,
    numeric_ordering: Option<bool>,
    alternate: Option<String>,
    max_variable: Option<String>,
    normalization: Option<bool>,
    backwards: Option<bool>,
    version: Option<String>,
}

impl Fields {
    /// mongod's IDL pass: unknown fields (40415), types (14), enumerations (2), strength's range.
    fn read(d: &Document) -> Result<Fields> {
        let mut f = Fields::default();
        for (k, v) in d {
            match k.as_str() {
                "locale" => f.locale = Some(want_str(k, v)?.to_string()),
                "caseLevel" => f.case_level = Some(want_bool(k, v)?),
                "caseFirst" => {
                    let s = want_str(k, v)?;
                    if !matches!(s, "upper" | "lower" | "off") {
                        return Err(bad_enum(k, s));
                    }
                    f.case_first = Some(s.to_string());
                }
                "strength" => f.strength = Some(want_strength(v)?),
                "numericOrdering" => f.numeric_ordering = Some(want_bool(k, v)?),
                "alternate" => {
                    let s = want_str(k, v)?;
                    if !matches!(s, "non-ignorable" | "shifted") {
                        return Err(bad_enum(k, s));
                    }
                    f.alternate = Some(s.to_string());
                }
                "maxVariable" => {
                    let s = want_str(k, v)?;
                    if !matches!(s, "punct" | "space") {
                        return Err(bad_enum(k, s));
                    }
                    f.max_variable = Some(s.to_string());
                }
                "normalization" => f.normalization = Some(want_bool(k, v)?),
                "backwards" => f.backwards = Some(want_bool(k, v)?),
                "version" => f.version = Some(want_str(k, v)?.to_string()),
                other => {
                    return Err(CommandError::location(
                        40415,
                        format!("BSON field 'collation.{other}' is an unknown field."),
                    ));
                }
            }
        }
        Ok(f)
    }

    fn is_locale_only(&self) -> bool {
        self.case_level.is_none()
            && self.case_first.is_none()
            && self.strength.is_none()
            && self.numeric_ordering.is_none()
            && self.alternate.is_none()
            && self.max_variable.is_none()
            && self.normalization.is_none()
            && self.backwards.is_none()
    }
}

/// The shell form mongod puts in its locale errors.
fn shell(d: &Document) -> String {
    let mut s = String::from("{ ");
    for (i, (k, v)) in d.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!("{k}: {v}"));
    }
    s.push_str(" }");
    s
}

/// Parses a command's, statement's, collection's or index's `collation` value.
pub fn parse(v: Option<&Bson>) -> Result<Requested> {
    match v {
        None | Some(Bson::Null) => Ok(Requested::Default),
        Some(Bson::Document(d)) if d.is_empty() => Ok(Requested::Default),
        Some(Bson::Document(d)) => parse_doc(d),
        Some(other) => Err(CommandError::type_mismatch(format!(
            "BSON field 'collation' is the wrong type '{}', expected type 'object'",
            type_name(other)
        ))),
    }
}

fn parse_doc(d: &Document) -> Result<Requested> {
    let f = Fields::read(d)?;
    let Some(locale) = f.locale.as_deref() else {
        return Err(CommandError::location(
            40414,
            "BSON field 'collation.locale' is missing but a required field",
        ));
    };
    if let Some(v) = &f.version
        && v != ICU_VERSION
    {
        return Err(CommandError::bad_value(format!("Field 'version' is invalid in: {}", shell(d))));
    }
    if locale == "simple" {
        if !f.is_locale_only() {
            return Err(CommandError::bad_value(format!(
                "If 'locale' is 'simple', the collation cannot have other options, in: {}",
                shell(d)
            )));
        }
        return Ok(Requested::Simple);
    }
    if locale.is_empty() {
        return Err(CommandError::bad_value(format!(
            "Field 'locale' cannot be the empty string in: {}",
            shell(d)
        )));
    }
    if locale == "en_US_POSIX" {
        return Err(CommandError::command_not_supported(
            "collation locale 'en_US_POSIX' is not supported by docplane's node (ICU4X has no POSIX collation)",
        ));
    }
    let Some((_, tag)) = LOCALES.iter().find(|(id, _)| *id == locale) else {
        return Err(CommandError::bad_value(format!("Field 'locale' is invalid in: {}", shell(d))));
    };
    let locale_backwards = locale == BACKWARDS_LOCALE;
    if let Some(b) = f.backwards
        && b != locale_backwards
    {
        return Err(CommandError::command_not_supported(format!(
            "collation backwards: {b} for locale '{locale}' is not supported by docplane's node (its collator compares secondary differences backwards only where the locale does: fr_CA)"
        )));
    }
    let collator = build(tag, &f)?;
    let spec = normalized(locale, &f, &collator, locale_backwards);
    Ok(Requested::Collated(Arc::new(Collation { spec, collator })))
}

fn build(tag: &str, f: &Fields) -> Result<CollatorBorrowed<'static>> {
    let loc: icu_locale_core::Locale =
        tag.parse().map_err(|_| CommandError::bad_value(format!("Field 'locale' is invalid: {tag}")))?;
    let mut prefs = CollatorPreferences::from(&loc);
    prefs.case_first = f.case_first.as_deref().map(|c| match c {
        "upper" => CollationCaseFirst::Upper,
        "lower" => CollationCaseFirst::Lower,
        _ => CollationCaseFirst::False,
    });
    prefs.numeric_ordering = f
        .numeric_ordering
        .map(|n| if n { CollationNumericOrdering::True } else { CollationNumericOrdering::False });
    let mut opts = CollatorOptions::default();
    opts.strength = f.strength.map(|s| match s {
        1 => Strength::Primary,
        2 => Strength::Secondary,
        3 => Strength::Tertiary,
        4 => Strength::Quaternary,
        _ => Strength::Identical,
    });
    opts.case_level = f.case_level.map(|c| if c { CaseLevel::On } else { CaseLevel::Off });
    opts.alternate_handling = f
        .alternate
        .as_deref()
        .map(|a| if a == "shifted" { AlternateHandling::Shifted } else { AlternateHandling::NonIgnorable });
    opts.max_variable = f
        .max_variable
        .as_deref()
        .map(|m| if m == "space" { MaxVariable::Space } else { MaxVariable::Punctuation });
    CollatorBorrowed::try_new(prefs, opts).map_err(|e| {
        CommandError::new(1, "InternalError", format!("cannot build the collator for {tag}: {e}"))
    })
}

/// mongod's normalized spec: every field, with the collator's resolved values, in the IDL's order.
fn normalized(locale: &str, f: &Fields, c: &CollatorBorrowed<'static>, backwards: bool) -> Document {
    let r = c.resolved_options();
    let strength = match r.strength {
        Strength::Primary => 1,
        Strength::Secondary => 2,
        Strength::Tertiary => 3,
        Strength::Quaternary => 4,
        _ => 5,
    };
    let case_first = match r.case_first {
        CollationCaseFirst::Upper => "upper",
        CollationCaseFirst::Lower => "lower",
        _ => "off",
    };
    let alternate = match r.alternate_handling {
        AlternateHandling::Shifted => "shifted",
        _ => "non-ignorable",
    };
    let max_variable = match r.max_variable {
        MaxVariable::Space => "space",
        _ => "punct",
    };
    let mut d = Document::new();
    d.insert("locale", locale);
    d.insert("caseLevel", r.case_level == CaseLevel::On);
    d.insert("caseFirst", case_first);
    d.insert("strength", strength);
    d.insert("numericOrdering", r.numeric == CollationNumericOrdering::True);
    d.insert("alternate", alternate);
    d.insert("maxVariable", max_variable);
    d.insert("normalization", f.normalization.unwrap_or(false));
    d.insert("backwards", backwards);
    d.insert("version", ICU_VERSION);
    d
}

impl Collation {
    /// The normalized spec, as mongod lists it.
    pub fn spec(&self) -> &Document {
        &self.spec
    }

    /// The two strings' order under this collation.
    pub fn compare(&self, a: &str, b: &str) -> Ordering {
        self.collator.compare(a, b)
    }

    /// The collation key of `s` as a string of lowercase hex digits: two strings compare under
    /// the collation as their keys compare bytewise (ICU's sort key guarantee, hex keeping the
    /// order), so keys serve for hashing (`$group`, `distinct`) and for index entries.
    pub fn key(&self, s: &str) -> String {
        let mut bytes: Vec<u8> = Vec::with_capacity(s.len() * 2);
        let Ok(()) = self.collator.write_sort_key_to(s, &mut bytes);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        out
    }

    /// `v` with every string (also inside documents and arrays) replaced by its collation key,
    /// the form a collated index stores, as mongod's indexes do: the index then orders and
    /// compares (uniqueness) under the collation with the binary comparison.
    pub fn index_value(&self, v: &Bson) -> Bson {
        match v {
            Bson::String(s) | Bson::Symbol(s) => Bson::String(self.key(s)),
            Bson::Document(d) => {
                Bson::Document(d.iter().map(|(k, v)| (k.clone(), self.index_value(v))).collect())
            }
            Bson::Array(a) => Bson::Array(a.iter().map(|v| self.index_value(v)).collect()),
            other => other.clone(),
        }
    }
}

/// Whether `v` holds a string anywhere (the values whose comparison a collation changes).
pub fn has_string(v: &Bson) -> bool {
    match v {
        Bson::String(_) | Bson::Symbol(_) => true,
        Bson::Document(d) => d.values().any(has_string),
        Bson::Array(a) => a.iter().any(has_string),
        _ => false,
    }
}

thread_local! {
    /// Whether a collation is installed: the one read the simple path pays.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static CURRENT: RefCell<Option<Arc<Collation>>> = const { RefCell::new(None) };
}

/// Restores the previous collation when the scope ends (also on unwind).
struct Restore(Option<Arc<Collation>>);

impl Drop for Restore {
    fn drop(&mut self) {
        let prev = self.0.take();
        ACTIVE.with(|a| a.set(prev.is_some()));
        CURRENT.with_borrow_mut(|c| *c = prev);
    }
}

/// Runs `f` with `c` as this thread's collation (`None`: binary comparison).
pub fn scoped<R>(c: Option<Arc<Collation>>, f: impl FnOnce() -> R) -> R {
    ACTIVE.with(|a| a.set(c.is_some()));
    let prev = CURRENT.with_borrow_mut(|cur| std::mem::replace(cur, c));
    let _restore = Restore(prev);
    f()
}

/// This thread's collation.
pub fn current() -> Option<Arc<Collation>> {
    if !ACTIVE.with(Cell::get) {
        return None;
    }
    CURRENT.with_borrow(Clone::clone)
}

/// Two strings' order under this thread's collation.
#[inline]
pub(crate) fn cmp_str(a: &str, b: &str) -> Ordering {
    if !ACTIVE.with(Cell::get) {
        return a.as_bytes().cmp(b.as_bytes());
    }
    CURRENT.with_borrow(|c| match c {
        Some(c) => c.compare(a, b),
        None => a.as_bytes().cmp(b.as_bytes()),
    })
}

/// Appends the hash key of a string under this thread's collation: the string itself, or its
/// collation key. Written into `out` in place: this runs once per string of every `$group` key
/// and `distinct` value, and an allocation per call made `$group` measurably slower.
pub(crate) fn push_str_key(s: &str, out: &mut String) {
    if ACTIVE.with(Cell::get)
        && let Some(key) = CURRENT.with_borrow(|c| c.as_ref().map(|c| c.key(s)))
    {
        push_tagged(out, 'k', &key);
        return;
    }
    push_tagged(out, 's', s);
}

/// `<tag><len>:<text>;`, the length keeping keys unambiguous.
fn push_tagged(out: &mut String, tag: char, text: &str) {
    use std::fmt::Write as _;
    out.push(tag);
    // `String`'s `fmt::Write` never fails.
    write!(out, "{}", text.len()).unwrap_or(());
    out.push(':');
    out.push_str(text);
    out.push(';');
}

#[cfg(test)]
#[path = "collation_tests.rs"]
mod tests;
