//! `cargo run -- stats <host:port>`: queries a running image's management endpoint.

/// Queries the endpoint at `addr` and prints what it answers.
pub fn query(addr: &str) -> Result<i32, String> {
    Err(format!("stats {addr}: the management endpoint is not implemented yet"))
}
