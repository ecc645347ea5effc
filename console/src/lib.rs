//! Admin API and agent API.
