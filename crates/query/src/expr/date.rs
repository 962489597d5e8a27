//! Date operators: the date parts, `$dateToString`, `$dateAdd`/`$dateSubtract`, `$dateDiff`,
//! `$dateTrunc`, `$dateFromString`, and time zones.

use bson::{Bson, DateTime};
use chrono::{Datelike, Timelike};

use super::arith::to_i64_exact;
use super::{EvalCtx, Expr, NamedFn, OpFn, arg, eval_arg, is_nullish, named, type_err, type_name};
use crate::error::{CommandError, Result};
use crate::path::Fields;

/// The positional operators of this module.
pub(super) const OPS: &[(&str, OpFn)] = &[
    ("$year", part),
    ("$month", part),
    ("$dayOfMonth", part),
    ("$hour", part),
    ("$minute", part),
    ("$second", part),
    ("$millisecond", part),
    ("$dayOfWeek", part),
    ("$dayOfYear", part),
    ("$week", part),
];

/// The operators with named arguments of this module.
pub(super) const NAMED_OPS: &[(&str, NamedFn)] = &[
    ("$dateToString", date_to_string),
    ("$year", part_named),
    ("$month", part_named),
    ("$dayOfMonth", part_named),
    ("$hour", part_named),
    ("$minute", part_named),
    ("$second", part_named),
    ("$millisecond", part_named),
    ("$dayOfWeek", part_named),
    ("$dayOfYear", part_named),
    ("$week", part_named),
    ("$dateAdd", date_add_op),
    ("$dateSubtract", date_add_op),
    ("$dateDiff", date_diff),
    ("$dateTrunc", date_trunc_op),
    ("$dateFromString", date_from_string),
];

pub(super) fn to_chrono(v: &Bson) -> Option<chrono::DateTime<chrono::Utc>> {
    match v {
        Bson::DateTime(d) => Some(d.to_chrono()),
        Bson::Timestamp(t) => chrono::DateTime::from_timestamp(i64::from(t.time), 0),
        Bson::ObjectId(o) => Some(o.timestamp().to_chrono()),
        _ => None,
    }
}

pub(super) fn parse_tz(tz: &Bson) -> Result<chrono::FixedOffset> {
    let utc = chrono::FixedOffset::east_opt(0).ok_or_else(|| CommandError::bad_value("bad timezone"))?;
    let s = match tz {
        Bson::Null | Bson::Undefined => return Ok(utc),
        Bson::String(s) => s.as_str(),
        other => {
            return Err(CommandError::location(
                40517,
                format!("timezone must evaluate to a string, found {}", type_name(other)),
            ));
        }
    };
    if matches!(s, "UTC" | "GMT" | "Z" | "Etc/UTC" | "Etc/GMT") {
        return Ok(utc);
    }
    let bad = || CommandError::location(40485, format!("unrecognized time zone identifier: \"{s}\""));
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) || !(digits.len() == 2 || digits.len() == 4) {
        return Err(bad());
    }
    let h: i32 = digits[..2].parse().map_err(|_| bad())?;
    let m: i32 = if digits.len() == 4 { digits[2..].parse().map_err(|_| bad())? } else { 0 };
    chrono::FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
}

pub(super) fn date_part(name: &str, d: chrono::DateTime<chrono::FixedOffset>) -> Bson {
    let v: i64 = match name {
        "$year" => i64::from(d.year()),
        "$month" => i64::from(d.month()),
        "$dayOfMonth" => i64::from(d.day()),
        "$hour" => i64::from(d.hour()),
        "$minute" => i64::from(d.minute()),
        "$second" => i64::from(d.second()),
        "$millisecond" => i64::from(d.timestamp_subsec_millis()),
        "$dayOfWeek" => i64::from(d.weekday().number_from_sunday()),
        "$dayOfYear" => i64::from(d.ordinal()),
        "$week" => d.format("%U").to_string().parse().unwrap_or(0),
        _ => 0,
    };
    Bson::Int32(v as i32)
}

/// Formats a date with MongoDB's `$dateToString` specifiers.
pub fn format_date(d: chrono::DateTime<chrono::FixedOffset>, fmt: &str) -> Result<String> {
    let mut out = String::new();
    let mut it = fmt.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let spec = it
            .next()
            .ok_or_else(|| CommandError::location(18535, "Unmatched '%' at end of format string"))?;
        let piece = match spec {
            'Y' => format!("{:04}", d.year()),
            'm' => format!("{:02}", d.month()),
            'd' => format!("{:02}", d.day()),
            'H' => format!("{:02}", d.hour()),
            'M' => format!("{:02}", d.minute()),
            'S' => format!("{:02}", d.second()),
            'L' => format!("{:03}", d.timestamp_subsec_millis()),
            'j' => format!("{:03}", d.ordinal()),
            'w' => d.weekday().number_from_sunday().to_string(),
            'u' => d.weekday().number_from_monday().to_string(),
            'U' => d.format("%U").to_string(),
            'V' => format!("{:02}", d.iso_week().week()),
            'G' => format!("{:04}", d.iso_week().year()),
            'z' => d.format("%z").to_string(),
            'Z' => (d.offset().local_minus_utc() / 60).to_string(),
            'b' => d.format("%b").to_string(),
            'B' => d.format("%B").to_string(),
            '%' => "%".to_string(),
            other => {
                return Err(CommandError::location(
                    18536,
                    format!("Invalid format character '%{other}' in format string"),
                ));
            }
        };
        out.push_str(&piece);
    }
    Ok(out)
}

/// ISO-8601 rendering used by `$toString` of dates.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Year,
    Quarter,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

fn parse_unit(v: &Bson, op: &str) -> Result<Unit> {
    let Bson::String(s) = v else {
        return Err(CommandError::location(
            5439013,
            format!("{op} requires 'unit' to be a string, but got {}", type_name(v)),
        ));
    };
    Ok(match s.as_str() {
        "year" => Unit::Year,
        "quarter" => Unit::Quarter,
        "month" => Unit::Month,
        "week" => Unit::Week,
        "day" => Unit::Day,
        "hour" => Unit::Hour,
        "minute" => Unit::Minute,
        "second" => Unit::Second,
        "millisecond" => Unit::Millisecond,
        other => {
            return Err(CommandError::location(
                5439014,
                format!("{op} parameter 'unit' value cannot be recognized as a time unit: {other}"),
            ));
        }
    })
}

fn fixed_ms(unit: Unit) -> Option<i64> {
    Some(match unit {
        Unit::Week => 7 * 86_400_000,
        Unit::Day => 86_400_000,
        Unit::Hour => 3_600_000,
        Unit::Minute => 60_000,
        Unit::Second => 1000,
        Unit::Millisecond => 1,
        _ => return None,
    })
}

fn months_of(unit: Unit) -> i64 {
    match unit {
        Unit::Year => 12,
        Unit::Quarter => 3,
        _ => 1,
    }
}

fn date_add(
    d: chrono::DateTime<chrono::FixedOffset>,
    unit: Unit,
    amount: i64,
) -> Result<chrono::DateTime<chrono::FixedOffset>> {
    let overflow = || CommandError::location(5976500, "invalid $dateAdd parameters: date overflow");
    if let Some(ms) = fixed_ms(unit) {
        let delta = chrono::Duration::try_milliseconds(amount.checked_mul(ms).ok_or_else(overflow)?)
            .ok_or_else(overflow)?;
        return d.checked_add_signed(delta).ok_or_else(overflow);
    }
    let months = amount.checked_mul(months_of(unit)).ok_or_else(overflow)?;
    let m = chrono::Months::new(u32::try_from(months.unsigned_abs()).map_err(|_| overflow())?);
    if months >= 0 { d.checked_add_months(m) } else { d.checked_sub_months(m) }.ok_or_else(overflow)
}

/// Truncates a date to the start of its unit (weeks start on Sunday unless told otherwise).
fn date_trunc(
    d: chrono::DateTime<chrono::FixedOffset>,
    unit: Unit,
    week_start: chrono::Weekday,
) -> chrono::DateTime<chrono::FixedOffset> {
    let tz = *d.offset();
    let naive = d.naive_local();
    let date = naive.date();
    let midnight = |day: chrono::NaiveDate| day.and_hms_opt(0, 0, 0).unwrap_or(naive);
    let t = match unit {
        Unit::Year => midnight(chrono::NaiveDate::from_ymd_opt(date.year(), 1, 1).unwrap_or(date)),
        Unit::Quarter => {
            let m = (date.month0() / 3) * 3 + 1;
            midnight(chrono::NaiveDate::from_ymd_opt(date.year(), m, 1).unwrap_or(date))
        }
        Unit::Month => {
            midnight(chrono::NaiveDate::from_ymd_opt(date.year(), date.month(), 1).unwrap_or(date))
        }
        Unit::Week => {
            let back = (7 + date.weekday().num_days_from_sunday() - week_start.num_days_from_sunday()) % 7;
            midnight(date - chrono::Days::new(u64::from(back)))
        }
        Unit::Day => midnight(date),
        Unit::Hour => naive
            .with_minute(0)
            .and_then(|x| x.with_second(0))
            .and_then(|x| x.with_nanosecond(0))
            .unwrap_or(naive),
        Unit::Minute => naive.with_second(0).and_then(|x| x.with_nanosecond(0)).unwrap_or(naive),
        Unit::Second => naive.with_nanosecond(0).unwrap_or(naive),
        Unit::Millisecond => naive,
    };
    chrono::TimeZone::from_local_datetime(&tz, &t).single().unwrap_or(d)
}

fn parse_weekday(v: &Bson) -> Result<chrono::Weekday> {
    match v {
        Bson::Null | Bson::Undefined => Ok(chrono::Weekday::Sun),
        Bson::String(s) => match s.to_ascii_lowercase().as_str() {
            "sunday" | "sun" => Ok(chrono::Weekday::Sun),
            "monday" | "mon" => Ok(chrono::Weekday::Mon),
            "tuesday" | "tue" => Ok(chrono::Weekday::Tue),
            "wednesday" | "wed" => Ok(chrono::Weekday::Wed),
            "thursday" | "thu" => Ok(chrono::Weekday::Thu),
            "friday" | "fri" => Ok(chrono::Weekday::Fri),
            "saturday" | "sat" => Ok(chrono::Weekday::Sat),
            other => Err(CommandError::location(
                5439015,
                format!("startOfWeek parameter value cannot be recognized as a day of a week: {other}"),
            )),
        },
        other => Err(type_err(5439015, "startOfWeek", "requires a string", other)),
    }
}

fn to_bson_date(d: chrono::DateTime<chrono::FixedOffset>) -> Bson {
    Bson::DateTime(DateTime::from_millis(d.timestamp_millis()))
}

/// Translates a MongoDB date format to chrono's.
fn chrono_format(fmt: &str) -> String {
    fmt.replace("%L", "%3f")
}

fn parse_date_string(
    s: &str,
    format: Option<&str>,
    tz: chrono::FixedOffset,
) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    use chrono::TimeZone;
    if let Some(f) = format {
        let f = chrono_format(f);
        if let Ok(d) = chrono::DateTime::parse_from_str(s, &f) {
            return Some(d);
        }
        if let Ok(n) = chrono::NaiveDateTime::parse_from_str(s, &f) {
            return tz.from_local_datetime(&n).single();
        }
        return chrono::NaiveDate::parse_from_str(s, &f)
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .and_then(|n| tz.from_local_datetime(&n).single());
    }
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(d);
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(n) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return tz.from_local_datetime(&n).single();
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|n| tz.from_local_datetime(&n).single())
}

/// A date argument of `op` in time zone `tz` (none for null or missing; 5439012 for a non-date).
fn as_date(
    op: &str,
    v: &Bson,
    what: &str,
    tz: chrono::FixedOffset,
) -> Result<Option<chrono::DateTime<chrono::FixedOffset>>> {
    if is_nullish(v) {
        return Ok(None);
    }
    to_chrono(v).map(|d| Some(d.with_timezone(&tz))).ok_or_else(|| {
        CommandError::location(
            5439012,
            format!("{op} requires '{what}' to be a date, but got {}", type_name(v)),
        )
    })
}

/// `$dateAdd` / `$dateSubtract`.
fn date_add_op(name: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    let ev = |key: &str, ctx: &mut EvalCtx| eval_arg(args, key, doc, ctx);
    let tz = parse_tz(&ev("timezone", ctx)?)?;
    let as_date = |v: &Bson, what: &str| as_date(name, v, what, tz);
    let start = ev("startDate", ctx)?;
    let unit = ev("unit", ctx)?;
    let amount = ev("amount", ctx)?;
    if is_nullish(&unit) || is_nullish(&amount) {
        return Ok(Bson::Null);
    }
    let Some(d) = as_date(&start, "startDate")? else {
        return Ok(Bson::Null);
    };
    let unit = parse_unit(&unit, name)?;
    let amount = to_i64_exact(&amount).ok_or_else(|| {
        CommandError::location(5166402, format!("{name} expects integer amount of time units"))
    })?;
    let amount = if name == "$dateSubtract" { amount.checked_neg().unwrap_or(i64::MAX) } else { amount };
    Ok(to_bson_date(date_add(d, unit, amount)?))
}

/// `$dateDiff`.
fn date_diff(name: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    let ev = |key: &str, ctx: &mut EvalCtx| eval_arg(args, key, doc, ctx);
    let tz = parse_tz(&ev("timezone", ctx)?)?;
    let as_date = |v: &Bson, what: &str| as_date(name, v, what, tz);
    let start = ev("startDate", ctx)?;
    let end = ev("endDate", ctx)?;
    let unit = ev("unit", ctx)?;
    if is_nullish(&unit) {
        return Ok(Bson::Null);
    }
    let (Some(a), Some(b)) = (as_date(&start, "startDate")?, as_date(&end, "endDate")?) else {
        return Ok(Bson::Null);
    };
    let unit = parse_unit(&unit, name)?;
    let week_start = parse_weekday(&ev("startOfWeek", ctx)?)?;
    let n = match unit {
        Unit::Year | Unit::Quarter | Unit::Month => {
            let ma = i64::from(a.year()) * 12 + i64::from(a.month0());
            let mb = i64::from(b.year()) * 12 + i64::from(b.month0());
            let per = months_of(unit);
            mb.div_euclid(per) - ma.div_euclid(per)
        }
        other => {
            let ms = fixed_ms(other).unwrap_or(1);
            let ta = date_trunc(a, other, week_start).timestamp_millis();
            let tb = date_trunc(b, other, week_start).timestamp_millis();
            (tb - ta).div_euclid(ms)
        }
    };
    Ok(Bson::Int64(n))
}

/// `$dateTrunc`.
fn date_trunc_op(name: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    let ev = |key: &str, ctx: &mut EvalCtx| eval_arg(args, key, doc, ctx);
    let tz = parse_tz(&ev("timezone", ctx)?)?;
    let as_date = |v: &Bson, what: &str| as_date(name, v, what, tz);
    let date = ev("date", ctx)?;
    let unit = ev("unit", ctx)?;
    if is_nullish(&unit) {
        return Ok(Bson::Null);
    }
    let Some(d) = as_date(&date, "date")? else {
        return Ok(Bson::Null);
    };
    let unit = parse_unit(&unit, name)?;
    let week_start = parse_weekday(&ev("startOfWeek", ctx)?)?;
    let bin = match ev("binSize", ctx)? {
        Bson::Null | Bson::Undefined => 1,
        v => to_i64_exact(&v).filter(|b| *b > 0).ok_or_else(|| {
            CommandError::location(5439017, "$dateTrunc requires 'binSize' to be a positive 64-bit integer")
        })?,
    };
    let t = date_trunc(d, unit, week_start);
    if bin == 1 {
        return Ok(to_bson_date(t));
    }
    // Bins count from the reference 2000-01-01 (MongoDB's), in the unit.
    let reference = date_trunc(
        chrono::TimeZone::with_ymd_and_hms(&tz, 2000, 1, 1, 0, 0, 0).single().unwrap_or(t),
        unit,
        week_start,
    );
    let r = match unit {
        Unit::Year | Unit::Quarter | Unit::Month => {
            let per = months_of(unit);
            let m = (i64::from(t.year()) * 12 + i64::from(t.month0()) - (2000 * 12)) / per;
            let binned = m.div_euclid(bin) * bin;
            date_add(reference, unit, binned)?
        }
        other => {
            let ms = fixed_ms(other).unwrap_or(1).saturating_mul(bin);
            let off = t.timestamp_millis() - reference.timestamp_millis();
            let binned = off.div_euclid(ms) * ms;
            reference + chrono::Duration::milliseconds(binned)
        }
    };
    Ok(to_bson_date(r))
}

/// `$dateFromString`.
fn date_from_string(
    _name: &str,
    args: &[(String, Expr)],
    doc: &dyn Fields,
    ctx: &mut EvalCtx,
) -> Result<Bson> {
    let ev = |key: &str, ctx: &mut EvalCtx| eval_arg(args, key, doc, ctx);
    let tz = parse_tz(&ev("timezone", ctx)?)?;
    let s = ev("dateString", ctx)?;
    let s = match s {
        Bson::Null | Bson::Undefined => {
            return match named(args, "onNull") {
                Some(e) => e.eval(doc, ctx),
                None => Ok(Bson::Null),
            };
        }
        Bson::String(s) => s,
        other => {
            return Err(type_err(241, "$dateFromString", "requires that 'dateString' be a string", &other));
        }
    };
    let format = match ev("format", ctx)? {
        Bson::String(f) => Some(f),
        _ => None,
    };
    match parse_date_string(&s, format.as_deref(), tz) {
        Some(d) => Ok(to_bson_date(d)),
        None => match named(args, "onError") {
            Some(e) => e.eval(doc, ctx),
            None => Err(CommandError::location(241, format!("Error parsing date string '{s}'"))),
        },
    }
}

fn part(name: &str, v: Vec<Bson>) -> Result<Bson> {
    let a0: &Bson = arg(&v, 0);
    if is_nullish(a0) {
        return Ok(Bson::Null);
    }
    let d = to_chrono(a0).ok_or_else(|| {
        CommandError::location(16006, format!("can't convert from BSON type {} to Date", type_name(a0)))
    })?;
    let tz = parse_tz(&Bson::Null)?;
    Ok(date_part(name, d.with_timezone(&tz)))
}

fn date_to_string(_name: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    let get = |key: &str| named(args, key);
    let ev = |key: &str, ctx: &mut EvalCtx| eval_arg(args, key, doc, ctx);
    let date = ev("date", ctx)?;
    if is_nullish(&date) {
        return match get("onNull") {
            Some(e) => e.eval(doc, ctx),
            None => Ok(Bson::Null),
        };
    }
    let d = to_chrono(&date).ok_or_else(|| {
        CommandError::location(16006, format!("can't convert from BSON type {} to Date", type_name(&date)))
    })?;
    let tz = parse_tz(&ev("timezone", ctx)?)?;
    let fmt = match ev("format", ctx)? {
        Bson::String(s) => s,
        Bson::Null | Bson::Undefined => "%Y-%m-%dT%H:%M:%S.%LZ".to_string(),
        other => {
            return Err(type_err(18533, "$dateToString", "requires that 'format' be a string", &other));
        }
    };
    Ok(Bson::String(format_date(d.with_timezone(&tz), &fmt)?))
}

fn part_named(name: &str, args: &[(String, Expr)], doc: &dyn Fields, ctx: &mut EvalCtx) -> Result<Bson> {
    let ev = |key: &str, ctx: &mut EvalCtx| eval_arg(args, key, doc, ctx);
    let date = ev("date", ctx)?;
    if is_nullish(&date) {
        return Ok(Bson::Null);
    }
    let d = to_chrono(&date).ok_or_else(|| {
        CommandError::location(16006, format!("can't convert from BSON type {} to Date", type_name(&date)))
    })?;
    let tz = parse_tz(&ev("timezone", ctx)?)?;
    Ok(date_part(name, d.with_timezone(&tz)))
}
