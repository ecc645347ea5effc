//! The inspection proxy: TLS landing, plain-HTTP landing, explicit proxy, upstream client.
