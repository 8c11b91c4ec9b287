//! The faustus user guide.
//!
//! Every page of `docs/guide/` is a module of this crate, as are the README and `docs/http.md`,
//! so `cargo test -p faustus-guide` (and `scripts/test`) compiles every Rust example in them,
//! and runs those not marked `no_run`. Read the pages on GitHub or in `docs/guide/`; this crate only checks them.
//!
//! Conventions for a page's code blocks:
//! - ` ```rust ` is compiled and run; ` ```rust,no_run ` (it needs a broker, or runs forever) is
//!   compiled only; lines starting with `# ` are compiled but hidden from readers.
//! - Shell, output, TOML and the like are fenced as ` ```sh `, ` ```text `, ` ```toml `, which
//!   are not compiled.

#![doc = include_str!("../../docs/guide/README.md")]

/// The repository's README: its quickstart is compiled with the guide.
#[doc = include_str!("../../README.md")]
pub mod readme {}

/// The HTTP API (`docs/http.md`): its embedding example is compiled with the guide.
#[doc = include_str!("../../docs/http.md")]
pub mod http {}

/// The guide's pages, in reading order.
pub mod pages {
    #[doc = include_str!("../../docs/guide/topics.md")]
    pub mod topics {}
    #[doc = include_str!("../../docs/guide/models.md")]
    pub mod models {}
    #[doc = include_str!("../../docs/guide/streams.md")]
    pub mod streams {}
    #[doc = include_str!("../../docs/guide/tables.md")]
    pub mod tables {}
    #[doc = include_str!("../../docs/guide/windows.md")]
    pub mod windows {}
    #[doc = include_str!("../../docs/guide/joins.md")]
    pub mod joins {}
    #[doc = include_str!("../../docs/guide/agents.md")]
    pub mod agents {}
    #[doc = include_str!("../../docs/guide/workflows.md")]
    pub mod workflows {}
    #[doc = include_str!("../../docs/guide/testing.md")]
    pub mod testing {}
    #[doc = include_str!("../../docs/guide/differential.md")]
    pub mod differential {}
    #[doc = include_str!("../../docs/guide/operations.md")]
    pub mod operations {}
    #[doc = include_str!("../../docs/guide/deployment.md")]
    pub mod deployment {}
    #[doc = include_str!("../../docs/guide/availability.md")]
    pub mod availability {}
    #[doc = include_str!("../../docs/guide/from-faust.md")]
    pub mod from_faust {}
    #[doc = include_str!("../../docs/guide/from-kafka-streams.md")]
    pub mod from_kafka_streams {}
}
