//! A loaded set of policy files: every tenant, with lookups by id and by source address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;

use crate::compile::Compiler;
use crate::error::LoadErrors;
use crate::model::{FeedInfo, Shared};
use crate::tenant::Tenant;
use crate::upload::Upload;

/// Every tenant of one or more policy files, validated and ready for decisions.
///
/// A set is immutable; reloading builds a new one (see [`crate::PolicyWatcher`]).
#[derive(Debug)]
pub struct PolicySet {
    tenants: Vec<Tenant>,
    by_id: HashMap<String, usize>,
    locations: LocationIndex,
    shared: Arc<Shared>,
    files: Vec<PathBuf>,
    /// The text of each policy file, in the order of `files`.
    texts: Vec<Arc<str>>,
    inputs: Vec<PathBuf>,
}

/// Every tenant's location networks, for finding the most specific network that
/// contains a source. A lookup probes one hash map entry per distinct prefix length
/// (at most 33 for IPv4 and 129 for IPv6), so its cost does not grow with the number
/// of tenants and locations.
#[derive(Debug, Default)]
struct LocationIndex {
    /// Network (host bits cleared) to (tenant, location). For a network listed
    /// twice, the first in file order.
    networks: HashMap<IpNet, (usize, usize)>,
    /// The distinct prefix lengths of the IPv4 networks, longest first.
    v4_lengths: Vec<u8>,
    /// The same for IPv6.
    v6_lengths: Vec<u8>,
}

impl LocationIndex {
    fn insert(&mut self, network: IpNet, tenant: usize, location: usize) {
        self.networks
            .entry(network.trunc())
            .or_insert((tenant, location));
        let lengths = match network {
            IpNet::V4(_) => &mut self.v4_lengths,
            IpNet::V6(_) => &mut self.v6_lengths,
        };
        lengths.push(network.prefix_len());
    }

    /// Orders and deduplicates the prefix lengths after the last insert.
    fn finish(&mut self) {
        for lengths in [&mut self.v4_lengths, &mut self.v6_lengths] {
            lengths.sort_unstable_by(|a, b| b.cmp(a));
            lengths.dedup();
        }
    }

    /// Returns the (tenant, location) of the most specific network containing `source`.
    fn find(&self, source: IpAddr) -> Option<(usize, usize)> {
        let lengths = match source {
            IpAddr::V4(_) => &self.v4_lengths,
            IpAddr::V6(_) => &self.v6_lengths,
        };
        lengths.iter().find_map(|&length| {
            let network = IpNet::new(source, length).ok()?.trunc();
            self.networks.get(&network).copied()
        })
    }
}

impl PolicySet {
    pub(crate) fn new(
        tenants: Vec<Tenant>,
        shared: Arc<Shared>,
        files: Vec<PathBuf>,
        texts: Vec<Arc<str>>,
        inputs: Vec<PathBuf>,
    ) -> PolicySet {
        let by_id = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        let mut locations = LocationIndex::default();
        for (tenant_index, tenant) in tenants.iter().enumerate() {
            for (location_index, location) in tenant.locations.iter().enumerate() {
                for network in &location.cidrs {
                    locations.insert(*network, tenant_index, location_index);
                }
            }
        }
        locations.finish();
        PolicySet {
            tenants,
            by_id,
            locations,
            shared,
            files,
            texts,
            inputs,
        }
    }

    /// Loads and validates policy files together (tenant ids must be unique across them).
    ///
    /// Every problem in every file is reported; any problem rejects the whole set.
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<PolicySet, LoadErrors> {
        let mut compiler = Compiler::new();
        for path in paths {
            let path = path.as_ref();
            match std::fs::read_to_string(path) {
                Ok(text) => compiler.add_file(path, &text),
                Err(error) => compiler.io_error(path, &error),
            }
        }
        compiler.finish()
    }

    /// Validates policy texts as if they were the files at the given paths (feed paths
    /// resolve relative to those paths). Used to check a replacement before writing it.
    ///
    /// The text for the file of `uploaded`, when given, came from outside the machine
    /// (the console API). Its feed paths must obey the rule of `uploaded`, and its
    /// diagnostics do not name other tenants, their networks or their files.
    pub fn from_texts(
        files: &[(PathBuf, String)],
        uploaded: Option<&Upload>,
    ) -> Result<PolicySet, LoadErrors> {
        let mut compiler = Compiler::new();
        compiler.set_upload(uploaded);
        for (path, text) in files {
            compiler.add_file(path, text);
        }
        compiler.finish()
    }

    /// The tenant with this id.
    pub fn tenant(&self, id: &str) -> Option<&Tenant> {
        self.by_id.get(id).map(|i| &self.tenants[*i])
    }

    /// All tenants, in file order.
    pub fn tenants(&self) -> &[Tenant] {
        &self.tenants
    }

    /// The tenant and location whose networks contain `source`, for plain DNS; the most
    /// specific network wins. `None` means the source belongs to no tenant (answer REFUSED).
    /// An IPv4-mapped IPv6 source (`::ffff:192.0.2.1`, as a dual-stack listener sees
    /// IPv4 clients) matches as its IPv4 address.
    pub fn tenant_by_source(&self, source: IpAddr) -> Option<(&Tenant, &str)> {
        let (tenant, location) = self.locations.find(source.to_canonical())?;
        let tenant = &self.tenants[tenant];
        Some((tenant, tenant.locations[location].id.as_str()))
    }

    /// The policy files of the set.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Returns the text of the policy file `path` as this set compiled it. It can differ
    /// from the file on disk when a later edit is not loaded yet or failed validation.
    pub fn file_text(&self, path: &Path) -> Option<&str> {
        let index = self.files.iter().position(|file| file == path)?;
        self.texts.get(index).map(|text| &**text)
    }

    /// Every file the set was built from: policy files and feed files.
    pub fn inputs(&self) -> &[PathBuf] {
        &self.inputs
    }

    /// The loaded feeds, each once even when several tenants name it.
    pub fn feeds(&self) -> &[FeedInfo] {
        &self.shared.feeds
    }

    /// Distinct host names in the shared index (lists, exceptions and feeds).
    pub fn name_count(&self) -> usize {
        self.shared.names.len()
    }

    /// Estimated heap bytes of the shared name index.
    pub fn index_heap_bytes(&self) -> usize {
        self.shared.names.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_index_finds_most_specific_network() {
        let mut index = LocationIndex::default();
        for (network, tenant) in [
            ("10.0.0.0/8", 0),
            ("10.1.2.0/24", 1),
            ("10.1.2.7/32", 2),
            ("10.1.2.9/24", 3),
            ("0.0.0.0/0", 4),
            ("2001:db8::/32", 5),
            ("2001:db8:1::/48", 6),
        ] {
            index.insert(network.parse().unwrap(), tenant, 0);
        }
        index.finish();

        let find = |source: &str| index.find(source.parse().unwrap()).map(|hit| hit.0);
        assert_eq!(find("10.1.2.7"), Some(2));
        // Equal networks: the first one inserted wins.
        assert_eq!(find("10.1.2.8"), Some(1));
        assert_eq!(find("10.9.9.9"), Some(0));
        assert_eq!(find("192.0.2.1"), Some(4));
        assert_eq!(find("2001:db8:1::5"), Some(6));
        assert_eq!(find("2001:db8:2::5"), Some(5));
        assert_eq!(find("2001:db9::1"), None);
    }
}
