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
    /// Location networks, most specific first: (network, tenant, location).
    locations: Vec<(IpNet, usize, usize)>,
    shared: Arc<Shared>,
    files: Vec<PathBuf>,
    /// The text of each policy file, in the order of `files`.
    texts: Vec<Arc<str>>,
    inputs: Vec<PathBuf>,
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
        let mut locations = Vec::new();
        for (tenant_index, tenant) in tenants.iter().enumerate() {
            for (location_index, location) in tenant.locations.iter().enumerate() {
                for network in &location.cidrs {
                    locations.push((*network, tenant_index, location_index));
                }
            }
        }
        locations.sort_by_key(|(network, _, _)| std::cmp::Reverse(network.prefix_len()));
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
        let source = source.to_canonical();
        let (_, tenant, location) = self
            .locations
            .iter()
            .find(|(network, _, _)| network.contains(&source))?;
        let tenant = &self.tenants[*tenant];
        Some((tenant, tenant.locations[*location].id.as_str()))
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
