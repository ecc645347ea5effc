//! Tenants' keys, device tokens, signed cookies and tickets, correlation hints.
