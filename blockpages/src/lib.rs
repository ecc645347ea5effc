//! Block, warn, inspection and error pages.
