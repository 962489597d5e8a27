//! What a node is: its version (`buildInfo`) and its place in a deployment (`hello`).
//!
//! Parsing is pure ([`ServerVersion::from_build_info`], [`HelloInfo::from_document`]) and
//! unit-tested; `NodeTransport::server_info` only adds the two round trips. docplane manages
//! MongoDB 3.4 or later; [`ServerVersion::check_supported`] is the one place that says so.

use mongodb::bson::{Bson, Document, doc};

use crate::error::{DriverError, Result};
use crate::pool::OfficialPool;

/// The oldest server docplane manages.
pub const MIN_SUPPORTED: ServerVersion = ServerVersion { major: 3, minor: 4, patch: 0 };

/// A server version, ordered numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl ServerVersion {
    /// A version from its parts.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self { major, minor, patch }
    }

    /// Parses `"4.4.18"`, `"3.4"`, `"7.0.2-rc1"` (suffixes after the numeric part are ignored).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.').map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        let major = parts.next().flatten()?;
        let minor = parts.next().flatten().unwrap_or(0);
        let patch = parts.next().flatten().unwrap_or(0);
        Some(Self::new(major, minor, patch))
    }

    /// From a `buildInfo` reply: `versionArray` when present and well-formed, else `version`.
    pub fn from_build_info(reply: &Document) -> Option<Self> {
        if let Ok(array) = reply.get_array("versionArray") {
            let nums: Vec<u32> =
                array.iter().filter_map(bson_u64).filter_map(|n| u32::try_from(n).ok()).collect();
            if nums.len() >= 2 && nums.len() == array.len() {
                return Some(Self::new(nums[0], nums[1], nums.get(2).copied().unwrap_or(0)));
            }
        }
        reply.get_str("version").ok().and_then(Self::parse)
    }

    /// True when `self >= major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// `Err(UnsupportedVersion)` below [`MIN_SUPPORTED`].
    pub fn check_supported(&self) -> Result<()> {
        if *self >= MIN_SUPPORTED {
            Ok(())
        } else {
            Err(DriverError::UnsupportedVersion(format!("{self} is older than {MIN_SUPPORTED}")))
        }
    }

    /// Whether the `$currentOp` aggregation stage exists (3.6+); 3.4 has only the command.
    pub fn has_current_op_stage(&self) -> bool {
        self.at_least(3, 6)
    }
}

/// The role of a node as the vendor API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeRole {
    /// Writable primary, or a standalone mongod.
    Primary,
    /// Readable secondary.
    Secondary,
    /// Hidden member.
    Hidden,
    /// A mongos router (the vendor calls it "master").
    Mongos,
    /// Anything else (arbiter, recovering, startup, unreachable).
    Unknown,
}

impl NodeRole {
    /// The vendor's spelling: Primary, Secondary, Hidden, master, unknown.
    pub fn vendor_name(&self) -> &'static str {
        match self {
            NodeRole::Primary => "Primary",
            NodeRole::Secondary => "Secondary",
            NodeRole::Hidden => "Hidden",
            NodeRole::Mongos => "master",
            NodeRole::Unknown => "unknown",
        }
    }

    /// Inverse of [`NodeRole::vendor_name`] (unknown spellings give `Unknown`).
    pub fn from_vendor_name(name: &str) -> Self {
        match name {
            "Primary" => NodeRole::Primary,
            "Secondary" => NodeRole::Secondary,
            "Hidden" => NodeRole::Hidden,
            "master" => NodeRole::Mongos,
            _ => NodeRole::Unknown,
        }
    }
}

/// The topology facts of a `hello` (or legacy `isMaster`) reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HelloInfo {
    /// `isWritablePrimary` (or `ismaster`).
    pub is_writable_primary: bool,
    /// `secondary`.
    pub secondary: bool,
    /// `hidden`.
    pub hidden: bool,
    /// `arbiterOnly`.
    pub arbiter_only: bool,
    /// `msg == "isdbgrid"`: the node is a mongos.
    pub is_mongos: bool,
    /// `setName` of a replica-set member.
    pub set_name: Option<String>,
    /// `hosts`: electable members.
    pub hosts: Vec<String>,
    /// `passives`: priority-0 members.
    pub passives: Vec<String>,
    /// `arbiters`.
    pub arbiters: Vec<String>,
    /// `me`: the member's own address as the set knows it.
    pub me: Option<String>,
    /// `primary`: the current primary's address.
    pub primary: Option<String>,
    /// `maxWireVersion`.
    pub max_wire_version: Option<i32>,
}

impl HelloInfo {
    /// Reads the fields docplane uses; absent fields take their defaults.
    pub fn from_document(reply: &Document) -> Self {
        let flag = |k: &str| reply.get_bool(k).unwrap_or(false);
        let strings = |k: &str| -> Vec<String> {
            reply
                .get_array(k)
                .map(|a| a.iter().filter_map(|b| b.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        let opt_str = |k: &str| reply.get_str(k).ok().map(str::to_owned);
        Self {
            is_writable_primary: flag("isWritablePrimary") || flag("ismaster"),
            secondary: flag("secondary"),
            hidden: flag("hidden"),
            arbiter_only: flag("arbiterOnly"),
            is_mongos: reply.get_str("msg").is_ok_and(|m| m == "isdbgrid"),
            set_name: opt_str("setName"),
            hosts: strings("hosts"),
            passives: strings("passives"),
            arbiters: strings("arbiters"),
            me: opt_str("me"),
            primary: opt_str("primary"),
            max_wire_version: reply
                .get("maxWireVersion")
                .and_then(bson_u64)
                .and_then(|n| i32::try_from(n).ok()),
        }
    }

    /// The vendor role this reply implies.
    pub fn role(&self) -> NodeRole {
        if self.is_mongos {
            NodeRole::Mongos
        } else if self.hidden {
            NodeRole::Hidden
        } else if self.is_writable_primary {
            NodeRole::Primary
        } else if self.secondary {
            NodeRole::Secondary
        } else {
            NodeRole::Unknown
        }
    }
}

/// `buildInfo` + `hello` of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// The `version` string as reported.
    pub version_text: String,
    /// Parsed version.
    pub version: ServerVersion,
    /// Topology facts.
    pub hello: HelloInfo,
}

impl ServerInfo {
    /// The vendor role of the node.
    pub fn role(&self) -> NodeRole {
        self.hello.role()
    }
}

/// Reads an integer-valued BSON number (Int32, Int64, or a Double with no fraction).
pub fn bson_u64(b: &Bson) -> Option<u64> {
    match b {
        Bson::Int32(n) => u64::try_from(*n).ok(),
        Bson::Int64(n) => u64::try_from(*n).ok(),
        Bson::Double(d) if d.fract() == 0.0 && *d >= 0.0 && *d < 1.8e19 =>
        {
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "range checked above"
            )]
            Some(*d as u64)
        }
        _ => None,
    }
}

/// Runs `hello`, falling back to the legacy `isMaster` on servers that predate `hello`.
pub(crate) async fn hello(pool: &OfficialPool, client: &mongodb::Client) -> Result<Document> {
    match pool.command_on(client, "admin", doc! {"hello": 1}).await {
        Err(DriverError::CommandFailed { code: 59, .. }) => {
            pool.command_on(client, "admin", doc! {"isMaster": 1}).await
        }
        other => other,
    }
}

/// `buildInfo` then `hello` on an already-built client.
pub(crate) async fn server_info_with(pool: &OfficialPool, client: &mongodb::Client) -> Result<ServerInfo> {
    let build = pool.command_on(client, "admin", doc! {"buildInfo": 1}).await?;
    let version_text = build.get_str("version").unwrap_or_default().to_owned();
    let version = ServerVersion::from_build_info(&build)
        .ok_or_else(|| DriverError::UnsupportedVersion(format!("unparseable version {version_text:?}")))?;
    let hello = HelloInfo::from_document(&hello(pool, client).await?);
    Ok(ServerInfo { version_text, version, hello })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(ServerVersion::parse("4.4.18"), Some(ServerVersion::new(4, 4, 18)));
        assert_eq!(ServerVersion::parse("3.4"), Some(ServerVersion::new(3, 4, 0)));
        assert_eq!(ServerVersion::parse("7.0.2-rc1"), Some(ServerVersion::new(7, 0, 2)));
        assert_eq!(ServerVersion::parse("x.y"), None);
        assert!(ServerVersion::new(3, 4, 0).check_supported().is_ok());
        assert!(matches!(
            ServerVersion::new(3, 2, 22).check_supported(),
            Err(DriverError::UnsupportedVersion(_))
        ));
        assert!(ServerVersion::new(3, 6, 0).has_current_op_stage());
        assert!(!ServerVersion::new(3, 4, 24).has_current_op_stage());
        assert!(ServerVersion::new(10, 0, 0) > ServerVersion::new(9, 9, 9));
    }

    #[test]
    fn build_info_prefers_version_array() {
        let d = doc! {"version": "garbage", "versionArray": [4, 2, 8, 0]};
        assert_eq!(ServerVersion::from_build_info(&d), Some(ServerVersion::new(4, 2, 8)));
        let d = doc! {"version": "5.0.1"};
        assert_eq!(ServerVersion::from_build_info(&d), Some(ServerVersion::new(5, 0, 1)));
        let d = doc! {"version": "3.4.1", "versionArray": ["a"]};
        assert_eq!(ServerVersion::from_build_info(&d), Some(ServerVersion::new(3, 4, 1)));
    }

    #[test]
    fn hello_roles() {
        let primary = doc! {"isWritablePrimary": true, "setName": "rs0", "hosts": ["a:1", "b:2"], "passives": ["c:3"], "arbiters": ["d:4"], "me": "a:1"};
        let h = HelloInfo::from_document(&primary);
        assert_eq!(h.role(), NodeRole::Primary);
        assert_eq!(h.set_name.as_deref(), Some("rs0"));
        assert_eq!(h.hosts, vec!["a:1", "b:2"]);
        assert_eq!(h.passives, vec!["c:3"]);
        assert_eq!(h.arbiters, vec!["d:4"]);
        let legacy = doc! {"ismaster": true};
        assert_eq!(HelloInfo::from_document(&legacy).role(), NodeRole::Primary);
        let secondary = doc! {"isWritablePrimary": false, "secondary": true, "setName": "rs0"};
        assert_eq!(HelloInfo::from_document(&secondary).role(), NodeRole::Secondary);
        let hidden = doc! {"isWritablePrimary": false, "secondary": true, "hidden": true};
        assert_eq!(HelloInfo::from_document(&hidden).role(), NodeRole::Hidden);
        let mongos = doc! {"isWritablePrimary": true, "msg": "isdbgrid"};
        assert_eq!(HelloInfo::from_document(&mongos).role(), NodeRole::Mongos);
        let arbiter = doc! {"isWritablePrimary": false, "arbiterOnly": true};
        assert_eq!(HelloInfo::from_document(&arbiter).role(), NodeRole::Unknown);
        for r in
            [NodeRole::Primary, NodeRole::Secondary, NodeRole::Hidden, NodeRole::Mongos, NodeRole::Unknown]
        {
            assert_eq!(NodeRole::from_vendor_name(r.vendor_name()), r);
        }
    }

    #[test]
    fn bson_numbers() {
        assert_eq!(bson_u64(&Bson::Int32(5)), Some(5));
        assert_eq!(bson_u64(&Bson::Int64(-1)), None);
        assert_eq!(bson_u64(&Bson::Double(3.0)), Some(3));
        assert_eq!(bson_u64(&Bson::Double(3.5)), None);
        assert_eq!(bson_u64(&Bson::String("3".into())), None);
    }
}
