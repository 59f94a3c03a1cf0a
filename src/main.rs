//! The binary: the global allocator, then the command line ([`zoho_auth_proxy::cli::main`]).

#![forbid(unsafe_code)]

// glibc's malloc showed up as about a tenth of the proxy's CPU time per request (many small,
// short-lived allocations across threads); mimalloc's thread-local free lists make them cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    zoho_auth_proxy::cli::main()
}
