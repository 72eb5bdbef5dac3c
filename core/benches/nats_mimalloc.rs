//! The NATS benchmark of `nats.rs` with mimalloc as the global allocator, for raw
//! async-nats and busbar alike.
//!
//!     cargo bench -p busbar-benches --bench nats_mimalloc

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "nats.rs"]
mod nats;

fn main() {
    nats::main()
}
