//! The agent-facing resolver: DoH, UDP and TCP listeners, per-app steering, upstream forwarding.
