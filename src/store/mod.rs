//! The durable backends: an atomically written 0600 file ([`file`]) and the fleet's Redis
//! ([`redis`]). They store bytes and run scripts; the token and credit services own what is
//! stored and under which keys.

pub mod file;
pub mod redis;
