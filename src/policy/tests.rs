//! Table-driven tests of the whole policy (classification + allowlist decision).
