//! Discovering an existing deployment from one seed address, for registration.
//!
//! From the seed's `buildInfo` and `hello`: a mongos means a sharded cluster (its routers are the
//! seed plus the mongos list the caller gives); a `setName` means a replica set (members from
//! `hosts` and `passives`, hidden members from `replSetGetConfig` when the credentials allow it);
//! anything else is a standalone. Every member is probed directly for its own role and version.
//!
//! Invariant: discovery never caches pools (the deployment is not registered yet) and refuses a
//! seed below 3.4 or a topology that contradicts the caller's mode hint.

use futures::future::join_all;
use mongodb::bson::{Bson, doc};

use crate::config::{ConnectionKey, Credentials, NodeKind};
use crate::error::{DriverError, Result};
use crate::info::{NodeRole, ServerInfo, ServerVersion, server_info_with};
use crate::transport::Driver;

/// Deployment mode, as the vendor API names instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeploymentMode {
    /// One node (a standalone, or a one-member replica set).
    Single,
    /// A replica set.
    ReplicaSet,
    /// A sharded cluster reached through mongos routers.
    Sharding,
}

impl DeploymentMode {
    /// Vendor spelling: Single, ReplicaSet, Sharding.
    pub fn vendor_name(&self) -> &'static str {
        match self {
            DeploymentMode::Single => "Single",
            DeploymentMode::ReplicaSet => "ReplicaSet",
            DeploymentMode::Sharding => "Sharding",
        }
    }

    /// Parses the vendor spelling.
    pub fn from_vendor_name(name: &str) -> Option<Self> {
        match name {
            "Single" => Some(DeploymentMode::Single),
            "ReplicaSet" => Some(DeploymentMode::ReplicaSet),
            "Sharding" => Some(DeploymentMode::Sharding),
            _ => None,
        }
    }
}

/// What to discover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverRequest {
    /// `host:port` of any node of the deployment (a mongos for a cluster).
    pub seed: String,
    /// Credentials valid on every node.
    pub credentials: Option<Credentials>,
    /// Mode the caller expects; `None` accepts whatever is found.
    pub mode: Option<DeploymentMode>,
    /// Further mongos routers of a cluster (`host:port`).
    pub mongos: Vec<String>,
}

/// One discovered node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredNode {
    /// `host:port`.
    pub address: String,
    /// mongod or mongos.
    pub kind: NodeKind,
    /// Role at discovery time (`Unknown` if it could not be probed).
    pub role: NodeRole,
    /// Whether the probe succeeded.
    pub reachable: bool,
    /// Version reported by the node, when reachable.
    pub version: Option<String>,
}

/// A discovered deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Mode found.
    pub mode: DeploymentMode,
    /// The seed's version.
    pub version: ServerVersion,
    /// The seed's version string.
    pub version_text: String,
    /// Replica-set name, if any.
    pub set_name: Option<String>,
    /// Nodes (seed first for standalone and sharded deployments; set order for replica sets).
    pub nodes: Vec<DiscoveredNode>,
}

/// Decides the mode from the seed's `hello` and checks it against the caller's hint and inputs.
pub fn decide_mode(seed: &ServerInfo, request: &DiscoverRequest) -> Result<DeploymentMode> {
    let members = seed.hello.hosts.len() + seed.hello.passives.len();
    let found = if seed.hello.is_mongos {
        DeploymentMode::Sharding
    } else if seed.hello.set_name.is_some() {
        DeploymentMode::ReplicaSet
    } else {
        DeploymentMode::Single
    };
    if found != DeploymentMode::Sharding && !request.mongos.is_empty() {
        return Err(DriverError::InvalidRequest(
            "a mongos list was given but the seed is not a mongos".into(),
        ));
    }
    match (request.mode, found) {
        (None, m) => Ok(m),
        (Some(want), got) if want == got => Ok(got),
        // A one-member replica set is what many providers call a single-node instance.
        (Some(DeploymentMode::Single), DeploymentMode::ReplicaSet) if members <= 1 => {
            Ok(DeploymentMode::Single)
        }
        (Some(want), got) => Err(DriverError::InvalidRequest(format!(
            "mode {} was requested but the seed belongs to a {} deployment",
            want.vendor_name(),
            got.vendor_name()
        ))),
    }
}

fn push_unique(list: &mut Vec<String>, address: &str) {
    if !list.iter().any(|a| a.eq_ignore_ascii_case(address)) {
        list.push(address.to_owned());
    }
}

impl Driver {
    /// One command on an unregistered address through whichever transport reaches it.
    async fn any_wire_command(
        &self,
        key: &ConnectionKey,
        db: &str,
        command: mongodb::bson::Document,
    ) -> Result<mongodb::bson::Document> {
        if let Some(reply) = self.legacy().command_at(key, db, command.clone()).await? {
            return Ok(reply);
        }
        let pool = self.official();
        pool.with_ephemeral(key, |client| async move { pool.command_on(&client, db, command).await }).await
    }

    async fn probe_address(&self, address: &str, credentials: &Option<Credentials>) -> Result<ServerInfo> {
        let key = ConnectionKey { address: address.to_owned(), credentials: credentials.clone() };
        if let Some(info) = self.legacy().probe_info(&key).await? {
            return Ok(info);
        }
        self.official()
            .with_ephemeral(&key, |client| async move { server_info_with(self.official(), &client).await })
            .await
    }

    async fn probe_many(
        &self,
        addresses: &[String],
        credentials: &Option<Credentials>,
        expect_mongos: bool,
    ) -> Result<Vec<DiscoveredNode>> {
        let probes = join_all(addresses.iter().map(|a| self.probe_address(a, credentials))).await;
        let mut nodes = Vec::with_capacity(addresses.len());
        for (address, probe) in addresses.iter().zip(probes) {
            let kind = if expect_mongos { NodeKind::Mongos } else { NodeKind::Mongod };
            match probe {
                Ok(info) => {
                    if info.hello.is_mongos != expect_mongos {
                        return Err(DriverError::InvalidRequest(format!(
                            "{address} is {}a mongos",
                            if info.hello.is_mongos { "" } else { "not " }
                        )));
                    }
                    nodes.push(DiscoveredNode {
                        address: address.clone(),
                        kind,
                        role: info.role(),
                        reachable: true,
                        version: Some(info.version_text),
                    });
                }
                Err(e) if e.is_connectivity() => {
                    tracing::warn!(%address, error = %e, "discovered node not reachable");
                    nodes.push(DiscoveredNode {
                        address: address.clone(),
                        kind,
                        role: NodeRole::Unknown,
                        reachable: false,
                        version: None,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(nodes)
    }

    /// Hidden members are absent from `hello`; `replSetGetConfig` lists them (when permitted).
    async fn hidden_members(&self, request: &DiscoverRequest) -> Vec<String> {
        let key = ConnectionKey { address: request.seed.clone(), credentials: request.credentials.clone() };
        match self.any_wire_command(&key, "admin", doc! {"replSetGetConfig": 1}).await {
            Ok(reply) => reply
                .get_document("config")
                .ok()
                .and_then(|c| c.get_array("members").ok())
                .map(|members| {
                    members
                        .iter()
                        .filter_map(Bson::as_document)
                        .filter(|m| m.get_bool("hidden").unwrap_or(false))
                        .filter_map(|m| m.get_str("host").ok().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            Err(e) => {
                tracing::debug!(error = %e, "replSetGetConfig unavailable; hidden members not discovered");
                Vec::new()
            }
        }
    }

    /// Connects to the seed, checks its version, and discovers the deployment's nodes.
    pub async fn discover(&self, request: &DiscoverRequest) -> Result<Topology> {
        let seed = self.probe_address(&request.seed, &request.credentials).await?;
        seed.version.check_supported()?;
        let mode = decide_mode(&seed, request)?;
        let nodes = if seed.hello.is_mongos {
            let mut routers = vec![request.seed.clone()];
            for m in &request.mongos {
                push_unique(&mut routers, m);
            }
            self.probe_many(&routers, &request.credentials, true).await?
        } else if seed.hello.set_name.is_some() {
            let mut members = Vec::new();
            for a in seed.hello.hosts.iter().chain(&seed.hello.passives) {
                push_unique(&mut members, a);
            }
            for a in self.hidden_members(request).await {
                push_unique(&mut members, &a);
            }
            if members.is_empty() {
                members.push(request.seed.clone());
            }
            self.probe_many(&members, &request.credentials, false).await?
        } else {
            vec![DiscoveredNode {
                address: request.seed.clone(),
                kind: NodeKind::Mongod,
                role: seed.role(),
                reachable: true,
                version: Some(seed.version_text.clone()),
            }]
        };
        Ok(Topology {
            mode,
            version: seed.version,
            version_text: seed.version_text,
            set_name: seed.hello.set_name,
            nodes,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::info::HelloInfo;

    fn info(hello: HelloInfo) -> ServerInfo {
        ServerInfo { version_text: "4.4.0".into(), version: ServerVersion::new(4, 4, 0), hello }
    }

    fn request(mode: Option<DeploymentMode>, mongos: &[&str]) -> DiscoverRequest {
        DiscoverRequest {
            seed: "a:1".into(),
            credentials: None,
            mode,
            mongos: mongos.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn modes() {
        let standalone = info(HelloInfo { is_writable_primary: true, ..Default::default() });
        let rs1 =
            info(HelloInfo { set_name: Some("rs".into()), hosts: vec!["a:1".into()], ..Default::default() });
        let rs3 = info(HelloInfo {
            set_name: Some("rs".into()),
            hosts: vec!["a:1".into(), "b:1".into()],
            passives: vec!["c:1".into()],
            ..Default::default()
        });
        let mongos = info(HelloInfo { is_mongos: true, ..Default::default() });
        use DeploymentMode::*;
        assert_eq!(decide_mode(&standalone, &request(None, &[])).unwrap(), Single);
        assert_eq!(decide_mode(&standalone, &request(Some(Single), &[])).unwrap(), Single);
        assert!(decide_mode(&standalone, &request(Some(ReplicaSet), &[])).is_err());
        assert!(decide_mode(&standalone, &request(None, &["m:1"])).is_err());
        assert_eq!(decide_mode(&rs1, &request(Some(Single), &[])).unwrap(), Single);
        assert!(decide_mode(&rs3, &request(Some(Single), &[])).is_err());
        assert_eq!(decide_mode(&rs3, &request(None, &[])).unwrap(), ReplicaSet);
        assert_eq!(decide_mode(&mongos, &request(Some(Sharding), &["m:2"])).unwrap(), Sharding);
        assert!(decide_mode(&mongos, &request(Some(ReplicaSet), &[])).is_err());
        for m in [Single, ReplicaSet, Sharding] {
            assert_eq!(DeploymentMode::from_vendor_name(m.vendor_name()), Some(m));
        }
        assert_eq!(DeploymentMode::from_vendor_name("single"), None);
    }

    #[test]
    fn unique_addresses() {
        let mut v = vec!["A:1".to_owned()];
        push_unique(&mut v, "a:1");
        push_unique(&mut v, "b:1");
        assert_eq!(v, vec!["A:1", "b:1"]);
    }
}
