//! The stateful firewall's control plane.
//!
//! - `rule`: the rule model and its validation.
//! - `compile`: ruleset -> per-field bitmaps (pure), with the linear
//!   reference classifier it is tested against.
//! - `store`: candidate, active ruleset and commit history in SQLite.
//! - `file`: the declarative ruleset file (`xdpgate acl apply`).
//! - `install`: writes a compiled ruleset into the inactive generation of the
//!   maps and flips the generation index.
pub mod rule;
