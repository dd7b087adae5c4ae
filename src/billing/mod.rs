//! Billing: the pure money rules of metering ([`rules`]: charge per byte in u128 with carried
//! remainders, the node/platform split, hold sizing and the overdraft bound). No I/O, no axum,
//! no redb: the ledger's storage lives in `store::ledger`, the metering loop will live with the
//! relay's meter. (Posting usage to the ledger is the billing issue's work and not wired yet.)

pub mod rules;
