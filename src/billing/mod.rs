//! Billing: the pure money rules ([`rules`]: charge per byte in u128 with carried remainders,
//! the node/platform split, holds and the overdraft bound) and the metering service
//! ([`meter`]: per-stream sessions, once-a-second accruals, postings at least once a minute and
//! at session end, per-client budgets that cut streams when the money runs out). Only `rules`
//! is pure; `meter` talks to the store.

pub mod meter;
pub mod rules;
