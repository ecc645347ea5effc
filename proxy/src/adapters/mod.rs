//! Adapters from the proxy's boundary traits to the swg crates: swg-identity for
//! device tokens and correlation hints, swg-policy for decisions, swg-blockpages for
//! pages, swg-activity for events and swg-ca for leaves.

mod activity;
mod identity;
mod leaves;
mod pages;
mod policy;

pub use activity::ActivityRecorder;
pub use identity::IdentityAdapter;
pub use leaves::CaLeaves;
pub use pages::BlockPages;
pub use policy::PolicyDecider;
