//! Activity events, the batched writer, stores, retention and queries.
