//! The one config file: its sections composed from the module crates' section types, loaded with
//! every error located by file, line, column and key.
//!
//! Each module crate owns the serde type of its section; this module only composes them, plus
//! `[global]`, which belongs to the binary.

mod global;
mod load;
mod locate;

use std::collections::BTreeMap;

use fulcrum_common::Spanned;
use fulcrum_monitoring::{alert::AlertSection, config::AdminSection, nrpe::NrpeSection};
use fulcrum_proxy::config::{
    l4_section::VirtualServerSection,
    section::{BackendSection, FrontendSection},
};
use fulcrum_storage::{sync::config::SyncSection, volume::config::VolumeSection};
use fulcrum_vrrp::config::VrrpSection;
use serde::Deserialize;

pub(crate) use global::{GlobalSection, LogFormat};
pub(crate) use load::{Loaded, load};

/// The whole file as users write it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(default)]
    pub(crate) global: GlobalSection,
    #[serde(default)]
    pub(crate) frontend: BTreeMap<String, FrontendSection>,
    #[serde(default)]
    pub(crate) backend: BTreeMap<String, BackendSection>,
    #[serde(default)]
    pub(crate) virtual_server: BTreeMap<String, VirtualServerSection>,
    pub(crate) admin: Option<AdminSection>,
    pub(crate) vrrp: Option<VrrpSection>,
    #[serde(default)]
    pub(crate) volume: BTreeMap<Spanned<String>, VolumeSection>,
    #[serde(default)]
    pub(crate) sync: BTreeMap<Spanned<String>, SyncSection>,
    pub(crate) nrpe: Option<NrpeSection>,
    /// Spanned, so that an error about the whole section (it sends nowhere) points at it.
    pub(crate) alert: Option<Spanned<AlertSection>>,
}
